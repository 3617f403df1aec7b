/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ticker.c - a thread that calls one function again and again, each time
 * after the wait it asked for, until stopped: the garbage collector's
 * schedule (gc.c) and the progress line (sidecar/progress.c). A stop
 * wakes the wait at once; it never interrupts a call.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "util.h"

struct ticker {
	ticker_fn fn;
	void *payload;
	int wait_ms;
	pthread_t thread;
	pthread_mutex_t lock; /* guards stop */
	pthread_cond_t cond;
	bool stop;
};

/* Wait @ms or until stopped; true if stopped. */
static bool ticker_wait(struct ticker *t, int ms)
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
	pthread_mutex_lock(&t->lock);
	while (!t->stop &&
	       pthread_cond_timedwait(&t->cond, &t->lock, &ts) != ETIMEDOUT)
		;
	stop = t->stop;
	pthread_mutex_unlock(&t->lock);
	return stop;
}

static void *ticker_main(void *arg)
{
	struct ticker *t = arg;
	int wait = t->wait_ms;

	while (!ticker_wait(t, wait))
		wait = t->fn(t->payload);
	return NULL;
}

int ticker_start(struct ticker **out, int first_ms, ticker_fn fn, void *payload)
{
	struct ticker *t = calloc(1, sizeof(*t));
	pthread_condattr_t ca;
	int rc;

	if (!t)
		return -ENOMEM;
	t->fn = fn;
	t->payload = payload;
	t->wait_ms = first_ms;
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cond, &ca);
	pthread_condattr_destroy(&ca);
	rc = -pthread_create(&t->thread, NULL, ticker_main, t);
	if (rc) {
		pthread_cond_destroy(&t->cond);
		pthread_mutex_destroy(&t->lock);
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void ticker_stop(struct ticker *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->thread, NULL);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
}
