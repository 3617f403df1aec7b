/* SPDX-License-Identifier: Apache-2.0 */
/*
 * serve_wait.c - the served store's suspended requests: long-polls on
 * sources/NAME/current (answered by a publication or by the one timer
 * thread at their deadline) and revisions fetched on demand for
 * sources/NAME/revs/REV (one detached thread each, at most FETCH_MAX).
 *
 * It must not block the listener's thread: a request that waits is
 * suspended (MHD_suspend_connection) and resumed under sv->lock.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve_i.h"
#include "sidecar_i.h"

#define TAG "serve"

/* ----------------------------------------------------------- waiters */

static void unlist(struct serve *sv, struct waiter *w)
{
	if (!w->listed)
		return;
	if (w->prev)
		w->prev->next = w->next;
	else
		sv->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
	w->listed = false;
	sv->nwaiters--;
}

/* Take @w off the list and let libmicrohttpd call the handler again;
 * sv->lock held. */
static void wake_one(struct serve *sv, struct waiter *w)
{
	unlist(sv, w);
	w->resumed = true;
	MHD_resume_connection(w->c);
}

void serve_published(struct serve *sv, const char *source)
{
	struct waiter *w, *next;

	if (!sv)
		return;
	pthread_mutex_lock(&sv->lock);
	for (w = sv->waiters; w; w = next) {
		next = w->next;
		if (!strcmp(w->source, source))
			wake_one(sv, w);
	}
	pthread_mutex_unlock(&sv->lock);
}

void *serve_timer_main(void *arg)
{
	struct serve *sv = arg;

	pthread_mutex_lock(&sv->lock);
	while (!sv->stopping) {
		int64_t now = mono_ns(), next = now + 1000000000LL;
		struct waiter *w, *nw;
		struct timespec ts;

		for (w = sv->waiters; w; w = nw) {
			nw = w->next;
			if (w->deadline <= now)
				wake_one(sv, w);
			else if (w->deadline < next)
				next = w->deadline;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (next - now) / 1000000000LL;
		ts.tv_nsec += (next - now) % 1000000000LL;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&sv->cond, &sv->lock, &ts);
	}
	pthread_mutex_unlock(&sv->lock);
	return NULL;
}

void serve_quiesce(struct serve *sv)
{
	if (!sv)
		return;
	pthread_mutex_lock(&sv->lock);
	sv->stopping = true;
	while (sv->waiters)
		wake_one(sv, sv->waiters);
	pthread_cond_broadcast(&sv->cond);
	while (sv->nfetching) /* each ends within FETCH_WAIT_MS */
		pthread_cond_wait(&sv->cond, &sv->lock);
	pthread_mutex_unlock(&sv->lock);
	if (sv->timer_started)
		pthread_join(sv->timer, NULL);
	sv->timer_started = false;
}

void serve_conn_done(struct serve *sv, void *con_cls)
{
	struct waiter *w = con_cls;

	pthread_mutex_lock(&sv->lock);
	unlist(sv, w);
	pthread_mutex_unlock(&sv->lock);
	snap_unref(w->snap);
	free(w);
}

/* GET sources/NAME/current[?after=ID&wait=S] */
enum MHD_Result serve_get_current(struct serve *sv, struct MHD_Connection *c,
				  const char *name, void **con_cls)
{
	struct waiter *w = *con_cls;
	const char *after = MHD_lookup_connection_value(c,
							MHD_GET_ARGUMENT_KIND,
							"after");
	const char *ws = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
						     "wait");
	struct snap *snap = NULL;
	enum MHD_Result ret;
	long wait_s = ws ? strtol(ws, NULL, 10) : 0;

	if (!serve_find_source(sv, name, &snap))
		return serve_send_text(c, 404, "no such source\n");
	if (!snap)
		return serve_send_text(c, 503, "no revision published yet\n");
	if (w || !after || strlen(after) >= sizeof(w->after) || wait_s <= 0 ||
	    (strcmp(after, snap->id) && strcmp(after, snap->rev))) {
		ret = serve_send_doc(sv, c, snap, w != NULL);
		snap_unref(snap);
		return ret;
	}
	snap_unref(snap);
	snap = NULL; /* looked up again below, under the lock */
	w = calloc(1, sizeof(*w));
	if (!w)
		return MHD_NO;
	w->kind = HTTP_CONN_STORE;
	w->c = c;
	snprintf(w->source, sizeof(w->source), "%s", name);
	snprintf(w->after, sizeof(w->after), "%s", after);
	w->deadline = mono_ns() + (wait_s > WAIT_MAX_S ? WAIT_MAX_S : wait_s) *
					  1000000000LL;
	*con_cls = w;
	pthread_mutex_lock(&sv->lock);
	/* a publication between the check above and here must not be lost;
	 * a daemon stopping answers at once, parks nothing */
	if (serve_find_source(sv, name, &snap) && snap && !sv->stopping &&
	    (!strcmp(snap->id, after) || !strcmp(snap->rev, after))) {
		w->next = sv->waiters;
		if (w->next)
			w->next->prev = w;
		sv->waiters = w;
		w->listed = true;
		sv->nwaiters++;
		atomic_fetch_add(&sv->n_polls, 1);
		MHD_suspend_connection(c);
		pthread_cond_signal(&sv->cond);
		pthread_mutex_unlock(&sv->lock);
		snap_unref(snap);
		return MHD_YES;
	}
	pthread_mutex_unlock(&sv->lock);
	if (!snap) /* a reload dropped the source meanwhile */
		return serve_send_text(c, 404, "no such source\n");
	ret = serve_send_doc(sv, c, snap, true);
	snap_unref(snap);
	return ret;
}

/* A thread per on-demand fetch (rare: a revision nobody here retains):
 * source_fetch_rev() waits on the source's own thread, the connection
 * stays suspended meanwhile. Touches nothing of @w after the resume. */
static void *fetch_main(void *arg)
{
	struct waiter *w = arg;
	struct serve *sv = w->sv;
	struct snap *snap = NULL;
	char err[512];
	int rc = source_fetch_rev(w->src, w->rev, FETCH_WAIT_MS, &snap, err,
				  sizeof(err));

	if (rc)
		log_info(TAG, "revision %s of %s asked for and not served: %s",
			 w->rev, w->source, err);
	pthread_mutex_lock(&sv->lock);
	w->rc = rc;
	w->snap = rc ? NULL : snap;
	w->fetched = true;
	w->resumed = true;
	MHD_resume_connection(w->c);
	sv->nfetching--;
	pthread_cond_broadcast(&sv->cond);
	pthread_mutex_unlock(&sv->lock);
	return NULL;
}

/* revs/REV not retained: fetch it from the source's upstream (a git
 * source by commit, a dagfs mirror from its publisher), suspended. */
static enum MHD_Result fetch_rev(struct serve *sv, struct MHD_Connection *c,
				 struct source *src, const char *name,
				 const char *rev, void **con_cls)
{
	struct waiter *w = calloc(1, sizeof(*w));
	pthread_attr_t a;
	pthread_t t;
	int rc;

	if (!w || strlen(rev) >= sizeof(w->rev)) {
		free(w);
		return serve_send_text(c, 404, "revision not retained\n");
	}
	w->kind = HTTP_CONN_STORE;
	w->c = c;
	w->sv = sv;
	w->src = src;
	w->fetching = true;
	snprintf(w->source, sizeof(w->source), "%s", name);
	snprintf(w->rev, sizeof(w->rev), "%s", rev);
	*con_cls = w;
	pthread_mutex_lock(&sv->lock);
	if (sv->stopping || sv->nfetching >= FETCH_MAX) {
		pthread_mutex_unlock(&sv->lock);
		return serve_send_text(c, 503,
				       "busy fetching other revisions\n");
	}
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	MHD_suspend_connection(c);
	rc = pthread_create(&t, &a, fetch_main, w);
	pthread_attr_destroy(&a);
	if (rc) {
		MHD_resume_connection(c);
		w->fetched = true;
		w->rc = -rc;
	} else {
		sv->nfetching++;
	}
	pthread_mutex_unlock(&sv->lock);
	return MHD_YES;
}

enum MHD_Result serve_get_rev(struct serve *sv, struct MHD_Connection *c,
			      const char *name, const char *rev, void **con_cls)
{
	struct waiter *w = *con_cls;
	struct snap *snap = NULL, *cur = NULL;
	struct source *src;
	enum MHD_Result ret;

	if (w && w->fetching) { /* resumed: the fetch is over */
		if (!w->fetched)
			return MHD_YES;
		if (w->rc)
			return serve_send_text(c, 404,
					       "revision not retained and "
					       "not fetchable\n");
		return serve_send_rev(sv, c, w->snap);
	}
	src = serve_find_source(sv, name, &cur);
	if (!src)
		return serve_send_text(c, 404, "no such source\n");
	snap_unref(cur);
	for (const char *p = rev; *p; p++)
		if (*p <= ' ' || *p > '~')
			return serve_send_text(c, 404, "not found\n");
	if (pub_find_rev(sv->ctx->store, name, rev, &snap))
		return fetch_rev(sv, c, src, name, rev, con_cls);
	ret = serve_send_rev(sv, c, snap);
	snap_unref(snap);
	return ret;
}
