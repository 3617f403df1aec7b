/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gc.c - garbage collection on its own schedule: one thread per store
 * that, some time after a publication, removes what no source retains.
 *
 * It never makes a sync or a publication wait for it to start: it only
 * tries the store's exclusive lock (store_gc_trybegin) and, while any sync
 * holds the store shared, comes back a second later. Publishing threads
 * never collect (they did, and one slow S3 round then stalled every
 * other source's thread in the collection queued behind it). A round
 * itself (gc_live.c) reads only what changed since the previous one.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "pub_i.h"

#define GC_RETRY_MS 1000

struct gc {
	struct store *st;
	int interval_ms;
	pthread_t thread;
	pthread_mutex_t lock; /* guards stop */
	pthread_cond_t cond;
	bool stop;
};

/* Wait @ms or until stopped; true if stopped. */
static bool gc_wait(struct gc *g, int ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&g->lock);
	while (!g->stop &&
	       pthread_cond_timedwait(&g->cond, &g->lock, &ts) != ETIMEDOUT)
		;
	stop = g->stop;
	pthread_mutex_unlock(&g->lock);
	return stop;
}

static void *gc_thread(void *arg)
{
	struct gc *g = arg;
	uint64_t done = 0; /* publications collected after */
	int wait = g->interval_ms;

	while (!gc_wait(g, wait)) {
		uint64_t pubs = store_publications(g->st);
		int rc;

		wait = g->interval_ms;
		if (pubs == done)
			continue;
		rc = pub_gc_try(g->st);
		if (rc == -EBUSY) { /* a sync is adding blobs: soon again */
			wait = GC_RETRY_MS;
			continue;
		}
		done = pubs;
		if (rc > 0)
			log_info("gc", "collected %d unused blobs", rc);
		else if (rc < 0)
			log_warn("gc", "collection failed: %s", strerror(-rc));
	}
	return NULL;
}

int gc_start(struct gc **out, struct store *st, int interval_ms)
{
	struct gc *g = calloc(1, sizeof(*g));
	pthread_condattr_t ca;
	int rc;

	if (!g)
		return -ENOMEM;
	g->st = st;
	g->interval_ms = interval_ms;
	pthread_mutex_init(&g->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g->cond, &ca);
	pthread_condattr_destroy(&ca);
	rc = -pthread_create(&g->thread, NULL, gc_thread, g);
	if (rc) {
		pthread_cond_destroy(&g->cond);
		pthread_mutex_destroy(&g->lock);
		free(g);
		return rc;
	}
	*out = g;
	return 0;
}

void gc_stop(struct gc *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	pthread_cond_signal(&g->cond);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->thread, NULL);
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
	free(g);
}
