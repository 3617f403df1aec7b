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
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pub_i.h"

#define GC_RETRY_MS 1000

struct gc {
	struct store *st;
	int interval_ms;
	uint64_t done; /* publications collected after */
	struct ticker *t;
};

/* One tick: collect if anything was published since; the next wait. */
static int gc_tick(void *payload)
{
	struct gc *g = payload;
	uint64_t pubs = store_publications(g->st);
	int rc;

	if (pubs == g->done)
		return g->interval_ms;
	rc = pub_gc_try(g->st);
	if (rc == -EBUSY) /* a sync is adding blobs: soon again */
		return GC_RETRY_MS;
	g->done = pubs;
	if (rc > 0)
		log_info("gc", "collected %d unused blobs", rc);
	else if (rc < 0)
		log_warn("gc", "collection failed: %s", strerror(-rc));
	return g->interval_ms;
}

int gc_start(struct gc **out, struct store *st, int interval_ms)
{
	struct gc *g = calloc(1, sizeof(*g));
	int rc;

	if (!g)
		return -ENOMEM;
	g->st = st;
	g->interval_ms = interval_ms;
	rc = ticker_start(&g->t, interval_ms, gc_tick, g);
	if (rc) {
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
	ticker_stop(g->t);
	free(g);
}
