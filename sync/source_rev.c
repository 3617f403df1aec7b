/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demand.c - revisions on demand: a revision that is asked for by id
 * (a worker running the version the dag-processor recorded) but is no
 * longer retained is built by the source type's fetch_rev op and kept
 * with pub_retain(), never made current.
 *
 * A started source runs each fetch in its own thread, between syncs, so a
 * type never has two operations on its state at once (a git repository
 * is not to be shared between threads). Callers queue a demand, wake the
 * thread through its wakefd and wait on src->demand_cond with a deadline;
 * callers asking for the same revision share one demand, so one fetch
 * answers them all. A demand outlives a caller that gave up waiting: the
 * thread finishes it, and a later call finds the revision retained. The
 * last of the thread and the waiters to let go of a demand frees it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "source_i.h"

/** One revision asked for; every field under src->lock. */
struct source_demand {
	struct source_demand *next;
	char rev[256];
	int refs;     /* waiters, plus one while queued or running */
	bool running; /* taken by the thread */
	bool done;
	int rc;
	struct snap *snap; /* a reference, when done with rc 0 */
	char err[512];
};

static void demand_put(struct source_demand *d)
{
	if (--d->refs)
		return;
	snap_unref(d->snap);
	free(d);
}

/* Build and retain @rev; 0 and *@out, or -errno and a reason in @err. */
static int fetch(struct source *src, const char *rev, struct snap **out,
		 char *err, size_t errlen)
{
	int64_t t0 = mono_ns();
	int rc;

	if (!pub_find_rev(src->store, src->name, rev, out))
		return 0; /* fetched or published meanwhile */
	err[0] = '\0';
	store_sync_begin(src->store);
	rc = src->ops->fetch_rev(src, rev, out, err, errlen);
	if (!rc) {
		rc = pub_retain(src->store, *out, src->keep);
		if (rc) {
			snprintf(err, errlen, "%s: keeping revision %s: %s",
				 src->tag, rev, strerror(-rc));
			snap_unref(*out);
		}
	}
	store_sync_end(src->store);
	if (rc) {
		if (!err[0])
			snprintf(err, errlen, "%s: revision %s: %s", src->tag,
				 rev, strerror(-rc));
		if (src->started) /* else the caller says it */
			log_err(src->tag,
				"revision %s asked for and not "
				"retained (keep=%u): %s",
				rev, src->keep, err);
		return rc;
	}
	log_notice(src->tag,
		   "fetched revision %s on demand (%u entries, "
		   "%.0f ms); kept, not made current",
		   rev, (*out)->n, (double)(mono_ns() - t0) / 1e6);
	return 0;
}

/* Mark @d done with @rc/@snap/@err and let the queue's hold go; lock held. */
static void finish(struct source *src, struct source_demand *d, int rc,
		   struct snap *snap, const char *err)
{
	struct source_demand **pp;

	for (pp = &src->demands; *pp && *pp != d; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = d->next;
	d->done = true;
	d->rc = rc;
	d->snap = snap;
	snprintf(d->err, sizeof(d->err), "%s", err ? err : "");
	pthread_cond_broadcast(&src->demand_cond);
	demand_put(d);
}

void source_demands_run(struct source *src)
{
	char err[512];

	pthread_mutex_lock(&src->lock);
	for (;;) {
		struct source_demand *d = src->demands;
		struct snap *snap = NULL;
		int rc;

		while (d && d->running)
			d = d->next;
		if (!d || src->stop)
			break;
		d->running = true;
		pthread_mutex_unlock(&src->lock);
		rc = fetch(src, d->rev, &snap, err, sizeof(err));
		pthread_mutex_lock(&src->lock);
		finish(src, d, rc, rc ? NULL : snap, err);
	}
	pthread_mutex_unlock(&src->lock);
}

bool source_demands_pending(struct source *src)
{
	bool any = false;

	pthread_mutex_lock(&src->lock);
	for (struct source_demand *d = src->demands; d && !any; d = d->next)
		any = !d->running;
	pthread_mutex_unlock(&src->lock);
	return any;
}

void source_demands_cancel(struct source *src)
{
	pthread_mutex_lock(&src->lock);
	while (src->demands)
		finish(src, src->demands, -ECANCELED, NULL, "");
	pthread_mutex_unlock(&src->lock);
}

static struct timespec deadline_of(int timeout_ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

/* Queue (or join) the demand for @rev; lock held. NULL on ENOMEM. */
static struct source_demand *demand_get(struct source *src, const char *rev)
{
	struct source_demand *d, **pp;

	for (d = src->demands; d; d = d->next)
		if (!strcmp(d->rev, rev)) {
			d->refs++;
			return d;
		}
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	snprintf(d->rev, sizeof(d->rev), "%s", rev);
	d->refs = 2; /* the queue and this caller */
	for (pp = &src->demands; *pp; pp = &(*pp)->next)
		;
	*pp = d;
	return d;
}

int source_fetch_rev(struct source *src, const char *rev, int timeout_ms,
		     struct snap **out, char *err, size_t errlen)
{
	struct timespec until = deadline_of(timeout_ms);
	struct source_demand *d;
	uint64_t one = 1;
	int rc = 0;

	if (!pub_find_rev(src->store, src->name, rev, out))
		return 0;
	if (!src->ops->fetch_rev || strlen(rev) >= sizeof(d->rev)) {
		snprintf(err, errlen,
			 "%s: revision %.200s is not in the cache "
			 "(keep=%u) and %s sources cannot fetch one by id",
			 src->tag, rev, src->keep, src->ops->type);
		if (src->started)
			log_err(src->tag, "%s", err);
		return -ENOENT;
	}
	if (!src->started)
		return fetch(src, rev, out, err, errlen);
	pthread_mutex_lock(&src->lock);
	d = src->stop ? NULL : demand_get(src, rev);
	if (!d) {
		pthread_mutex_unlock(&src->lock);
		snprintf(err, errlen, "%s: %s", src->tag,
			 strerror(src->stop ? ECANCELED : ENOMEM));
		return src->stop ? -ECANCELED : -ENOMEM;
	}
	if (write(src->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_err(src->tag, "wake: %s", strerror(errno));
	while (!d->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&src->demand_cond, &src->lock,
					    &until);
	if (d->done) {
		rc = d->rc;
		*out = rc ? NULL : snap_ref(d->snap);
		snprintf(err, errlen, "%s",
			 d->rc == -ECANCELED ? "the source was stopped" :
					       d->err);
	} else {
		rc = -ETIMEDOUT;
		snprintf(err, errlen,
			 "%s: revision %s: not fetched within "
			 "%d ms (keep=%u); still fetching",
			 src->tag, rev, timeout_ms, src->keep);
		log_err(src->tag, "%s", err);
	}
	demand_put(d);
	pthread_mutex_unlock(&src->lock);
	return rc;
}

int source_fetch_tree(struct source *src, const char *id, int timeout_ms,
		      char *err, size_t errlen)
{
	int rc;

	err[0] = '\0';
	if (!src->ops->fetch_tree)
		return -ENOENT;
	rc = src->ops->fetch_tree(src, id, timeout_ms, err, errlen);
	if (rc)
		log_warn(src->tag, "tree %s: %s", id,
			 err[0] ? err : strerror(-rc));
	else
		log_notice(src->tag, "fetched tree %s on demand", id);
	return rc;
}
