/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dagfs_wait.c - the dagfs source's wait between rounds: the upstream's
 * long-poll when the last round went well, a jittered probe when nobody
 * answered, else the loop's backoff; kicks and stop end it (wakefd).
 *
 * It must not publish or check a statement: what it brings is stashed
 * for the next round to check.
 */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "dagfs_i.h"

/*
 * The upstream was not there (down, restarting): rather than sleep the
 * whole backoff, knock about once a second (jittered) with a plain GET of
 * the statement, and end the wait as soon as one answers, so mirrors
 * catch up within a second or two of the publisher's return. Only for
 * "nobody answered": any other failure waits the loop's backoff.
 */
static void probe(struct source *src, int timeout_ms)
{
	struct dg *g = src->priv;
	int64_t until = mono_ns() + (int64_t)timeout_ms * 1000000;
	char url[PATH_MAX], err[256];

	if (path_fmt(url, sizeof(url), "%s/sources/%s/current", g->base,
		     g->upstream))
		return;
	for (;;) {
		int64_t left = (until - mono_ns()) / 1000000;
		int step = 700 + (int)(random() % 600);
		struct body b = { .max = SDOC_MAX };
		bool go;

		if (left <= 0)
			return;
		source_poll_wake(src, -1, step < left ? step : (int)left);
		pthread_mutex_lock(&src->lock);
		go = src->stop || src->kicked;
		pthread_mutex_unlock(&src->lock);
		if (go || source_demands_pending(src))
			return;
		if (!dg_get(src, g->poll_e, url, "probe", &b, 5, true, NULL,
			    err, sizeof(err))) {
			free(g->stash);
			g->stash = b.p; /* the round checks it */
			g->stashlen = b.len;
			return;
		}
		free(b.p);
		if (!g->unreachable)
			return; /* it answers, with an error: the loop's turn */
	}
}

/*
 * Wait for the next round: the long-poll when the last round went well
 * (it answers when the upstream publishes), else the loop's backoff. A
 * server that did not long-poll (a static copy) is polled every period.
 */
void dg_wait(struct source *src, int timeout_ms)
{
	struct dg *g = src->priv;
	struct body b = { .max = SDOC_MAX };
	char url[PATH_MAX], err[256];
	int64_t t0 = mono_ns();
	struct sdoc d;
	bool waited = false, failing, kicked, changed;
	int rc;

	pthread_mutex_lock(&src->lock);
	failing = src->st.failures > 0;
	kicked = src->kicked || src->stop;
	pthread_mutex_unlock(&src->lock);
	if (kicked)
		return;
	if (failing && g->unreachable) {
		probe(src, timeout_ms);
		return;
	}
	if (failing || !g->up_id[0] ||
	    path_fmt(url, sizeof(url), "%s/sources/%s/current?after=%s&wait=%d",
		     g->base, g->upstream, g->up_id, g->wait_s)) {
		source_poll_wake(src, -1, timeout_ms);
		return;
	}
	rc = dg_get(src, g->poll_e, url, "long-poll", &b, g->wait_s + 15, true,
		    &waited, err, sizeof(err));
	if (rc == 1)
		return; /* kicked or stopping */
	if (rc) {
		log_debug(src->tag, "long-poll: %s", err);
		free(b.p);
		if (g->unreachable)
			probe(src, timeout_ms);
		else
			source_poll_wake(src, -1, timeout_ms);
		return;
	}
	changed = !sdoc_parse(&d, b.p, b.len) && strcmp(d.snapshot, g->up_id);
	free(g->stash);
	g->stash = b.p; /* the next round checks it: no second GET */
	g->stashlen = b.len;
	if (!changed && !waited) { /* a static copy: poll it every period */
		int left = timeout_ms - (int)((mono_ns() - t0) / 1000000);

		if (left > 0)
			source_poll_wake(src, -1, left);
	}
}
