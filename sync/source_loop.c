/* SPDX-License-Identifier: Apache-2.0 */
/*
 * source_loop.c - the polling loop: one thread per source that syncs,
 * gates, publishes, backs off after failures and keeps the status.
 *
 * A source type (dir/, git/, s3/) only builds the current revision; it
 * never publishes, sleeps or counts failures itself.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "source_i.h"

#define BACKOFF_MAX_MS (5 * 60 * 1000)

static void publish_to_reader(struct source *src, struct snap *snap)
{
	struct snap *old;

	pthread_mutex_lock(&src->lock);
	old = src->current;
	src->current = snap_ref(snap);
	snprintf(src->st.rev, sizeof(src->st.rev), "%s", snap->rev);
	src->st.published_ns = snap->published_ns;
	pthread_mutex_unlock(&src->lock);
	snap_unref(old);
	if (src->cb)
		src->cb(src, snap, src->cb_payload);
}

/* One sync attempt: build, publish, collect. Returns 0 or -errno. */
static int attempt(struct source *src, char *err, size_t errlen)
{
	char prev[128];
	struct snap *snap = NULL;
	int64_t t0 = mono_ns();
	int rc;

	pthread_mutex_lock(&src->lock);
	snprintf(prev, sizeof(prev), "%s", src->rebuild ? "" : src->st.rev);
	src->st.last_attempt_ns = now_ns();
	src->st.progress = (struct source_progress){
		.active = true, .started_ns = src->st.last_attempt_ns
	};
	src->progress_absolute = false;
	pthread_mutex_unlock(&src->lock);
	err[0] = '\0';
	store_sync_begin(src->store);
	rc = src->ops->sync(src, prev, &snap, err, errlen);
	if (rc == 1)
		rc = source_gate(src, snap, err, errlen) ?: 1;
	if (rc == 1) {
		rc = pub_publish(src->store, snap, src->keep);
		if (rc)
			snprintf(err, errlen, "%s: publishing snapshot: %s",
				 src->tag, strerror(-rc));
	}
	store_sync_end(src->store);
	pthread_mutex_lock(&src->lock);
	src->st.progress.active = false;
	pthread_mutex_unlock(&src->lock);
	if (rc < 0) {
		snap_unref(snap);
		if (!err[0])
			snprintf(err, errlen, "%s: %s", src->tag,
				 strerror(-rc));
		return rc;
	}
	pthread_mutex_lock(&src->lock);
	src->rebuild = false;
	pthread_mutex_unlock(&src->lock);
	if (snap) {
		log_notice(src->tag,
			   "published revision %s (%u entries, %.0f "
			   "ms)",
			   snap->rev, snap->n, (double)(mono_ns() - t0) / 1e6);
		publish_to_reader(src, snap);
		snap_unref(snap);
	}
	return 0; /* garbage is the collector's (gc.c), never ours */
}

const double source_duration_bounds[10] = { 0.05, 0.1, 0.25, 0.5, 1,
					    2.5,  5,   10,   30,  60 };

/* Count one attempt's duration; src->lock held. */
static void duration_observe(struct source_status *st, double s)
{
	size_t i = 0;

	while (i < 10 && s > source_duration_bounds[i])
		i++;
	st->dur_buckets[i]++;
	st->dur_sum += s;
}

static int next_delay_ms(const struct source *src, unsigned failures)
{
	double d = src->period_ms;

	for (unsigned i = 1; i < failures && d < BACKOFF_MAX_MS; i++)
		d *= 2;
	if (failures) {
		if (d > BACKOFF_MAX_MS)
			d = BACKOFF_MAX_MS;
		d *= 0.8 + 0.4 * ((double)random() / RAND_MAX); /* jitter */
		if (d < src->period_ms)
			d = src->period_ms;
	}
	return (int)d;
}

/*
 * Wait @delay_ms for the next sync, fetching revisions asked for on the
 * way (source_rev.c): a wake that only brought a demand does not start a
 * sync early.
 */
static void wait_next(struct source *src, int delay_ms)
{
	int64_t until = mono_ns() + (int64_t)delay_ms * 1000000;

	for (;;) {
		int64_t left;
		bool go;

		source_demands_run(src);
		pthread_mutex_lock(&src->lock);
		go = src->stop || src->kicked;
		pthread_mutex_unlock(&src->lock);
		left = (until - mono_ns()) / 1000000;
		if (go || left <= 0)
			return;
		if (src->ops->wait)
			src->ops->wait(src, (int)left);
		else
			source_poll_wake(src, -1, (int)left);
		if (!source_demands_pending(src))
			return;
	}
}

static void *source_thread(void *arg)
{
	struct source *src = arg;
	char err[512];

	for (;;) {
		unsigned failures;
		int64_t t0;
		int rc;

		pthread_mutex_lock(&src->lock);
		if (src->stop) {
			pthread_mutex_unlock(&src->lock);
			break;
		}
		src->kicked = false;
		pthread_mutex_unlock(&src->lock);
		t0 = mono_ns();
		rc = attempt(src, err, sizeof(err));
		if (rc == -ECANCELED && source_stopping(src))
			break; /* stopped, not failed */
		pthread_mutex_lock(&src->lock);
		src->st.syncs++;
		duration_observe(&src->st, (double)(mono_ns() - t0) / 1e9);
		if (rc) {
			failures = ++src->st.failures;
			snprintf(src->st.error, sizeof(src->st.error), "%s",
				 err);
		} else {
			failures = src->st.failures = 0;
			src->st.error[0] = '\0';
			src->st.last_success_ns = now_ns();
		}
		pthread_mutex_unlock(&src->lock);
		if (rc)
			log_err(src->tag, "sync failed (%u in a row%s): %s",
				failures,
				failures >= src->max_failures ? ", unhealthy" :
								"",
				err);
		if (__atomic_load_n(&src->stop, __ATOMIC_ACQUIRE))
			break;
		/*
		 * A sync builds a whole listing and drops it (a dir rescan
		 * holds the old and new stat lists and a snapshot builder at
		 * once): hand the freed pages back before sleeping a period,
		 * else glibc keeps every round's peak resident for good.
		 */
		malloc_trim(0);
		wait_next(src, next_delay_ms(src, failures));
	}
	return NULL;
}

/*
 * A kill between a publication's links and its revision index update
 * (pub_publish) leaves the index of the history before: one listing a
 * trimmed snapshot and missing the newest. Writers always update it after
 * changing links, so bringing it up to date once, when a process takes
 * the source over, is enough; it decodes only what the index lacks.
 */
static void index_refresh(struct source *src)
{
	int rc = pub_index_update(src->store, src->name, NULL);

	if (rc && rc != -ENOENT)
		log_warn(src->tag,
			 "revision index not refreshed: %s; it is "
			 "rebuilt when next read",
			 strerror(-rc));
}

int source_sync_once(struct source *src, struct snap **out, char *err,
		     size_t errlen)
{
	struct snap *cached;
	int rc;

	index_refresh(src);
	if (!pub_load_current(src->store, src->name, &cached)) {
		publish_to_reader(src, cached);
		snap_unref(cached);
	}
	rc = attempt(src, err, errlen);
	if (rc)
		return rc;
	rc = pub_gc(src->store); /* one-shot: no collector thread */
	if (rc > 0)
		log_info(src->tag, "collected %d unused blobs", rc);
	*out = source_current(src);
	if (!*out) {
		snprintf(err, errlen, "%s: nothing published", src->tag);
		return -ENOENT;
	}
	return 0;
}

struct snap *source_cached(struct source *src)
{
	struct snap *cached;

	if (!src->cache_loaded) {
		src->cache_loaded = true;
		index_refresh(src);
		if (!pub_load_current(src->store, src->name, &cached)) {
			publish_to_reader(src, cached); /* no reader yet */
			snap_unref(cached);
		}
	}
	return source_current(src);
}

int source_start(struct source *src, source_publish_fn cb, void *payload)
{
	struct snap *cached;
	int rc;

	src->cb = cb;
	src->cb_payload = payload;
	/* the very snapshot the view may already serve (source_cached),
	 * not a second decoded copy of it */
	if ((cached = source_cached(src))) {
		log_info(src->tag, "serving cached revision %s", cached->rev);
		publish_to_reader(src, cached);
		snap_unref(cached);
		if (!source_spec_unchanged(src)) {
			log_info(src->tag, "options changed since the cached "
					   "revision: rebuilding it");
			pthread_mutex_lock(&src->lock);
			src->rebuild = true; /* still serving the cached one */
			pthread_mutex_unlock(&src->lock);
		}
	} else {
		source_spec_unchanged(src); /* records the digest */
	}
	rc = -pthread_create(&src->thread, NULL, source_thread, src);
	if (!rc)
		src->started = true;
	return rc;
}

void source_stop(struct source *src)
{
	if (!src->started)
		return;
	pthread_mutex_lock(&src->lock);
	src->stop = true;
	pthread_mutex_unlock(&src->lock);
	source_wake(src);
	pthread_join(src->thread, NULL);
	src->started = false;
	source_demands_cancel(src);
}
