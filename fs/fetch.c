/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fetch.c - lookups that wait for a revision fetched on demand.
 *
 * A lookup of .dagfs/revs/<source>/<rev> or .dagfs/trees/<id> that the
 * store cannot answer may need the fetcher (the sidecar's: the source
 * type fetches by revision id), which can take seconds. Such a lookup is
 * not answered by the FUSE thread that took it: the request is queued for
 * a small pool of fetch threads of our own, which wait for the fetcher
 * and then answer it (libfuse lets any thread reply), so the FUSE threads
 * stay free for every other request. The kernel sends one lookup per name
 * at a time, and the sources fetch one revision once however many ask;
 * each lookup waits at most fetch_timeout_ms from when it was taken.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

#define FETCH_THREADS 4

/** A lookup waiting for a fetch. */
struct fs_defer {
	struct fs_defer *next;
	fuse_req_t req;
	uint64_t seq;
	int64_t until_ns; /* CLOCK_MONOTONIC */
	char path[];
};

struct fs_fetch {
	fs_fetch_fn fn;
	fs_fetch_tree_fn tree_fn;
	void *payload;
	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cond;
	struct fs_defer *head, **tail;
	pthread_t threads[FETCH_THREADS];
	int nthreads, idle;
	bool stop;
};

void fs_set_fetcher(struct fs *fs, fs_fetch_fn fn, fs_fetch_tree_fn tree_fn,
		    void *payload)
{
	struct fs_fetch *f = calloc(1, sizeof(*f));

	if (!f) {
		log_err("fs", "revisions on demand are off: %s",
			strerror(ENOMEM));
		return;
	}
	f->fn = fn;
	f->tree_fn = tree_fn;
	f->payload = payload;
	f->tail = &f->head;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	fs->fetch = f;
}

int fs_fetch_rev(struct fs *fs, const char *source, const char *rev,
		 int64_t until_ns)
{
	int64_t left = (until_ns - mono_ns()) / 1000000;

	if (!fs->fetch)
		return -ENOENT;
	if (left <= 0) {
		log_warn("fs",
			 "source %s revision %s: no time left to fetch "
			 "it (fetch-timeout %d ms)",
			 source, rev, fs->o.fetch_timeout_ms);
		return -ETIMEDOUT;
	}
	return fs->fetch->fn(source, rev, (int)left, fs->fetch->payload);
}

int fs_fetch_tree(struct fs *fs, const char *id, int64_t until_ns)
{
	int64_t left = (until_ns - mono_ns()) / 1000000;

	if (!fs->fetch || !fs->fetch->tree_fn)
		return -ENOENT;
	if (left <= 0)
		return -ETIMEDOUT;
	return fs->fetch->tree_fn(id, (int)left, fs->fetch->payload);
}

/* Fetch what the lookup of @d->path needs, then answer it. */
static void answer(struct fs *fs, struct fs_defer *d)
{
	const char *rel = d->path + FS_META_LEN + 1;

	if (!strncmp(rel, "trees/", 6)) {
		fs_tree_unref(fs_tree_open(fs, rel + 6, d->until_ns));
	} else if (!strncmp(rel, "revs/", 5)) {
		const char *slash = strchr(rel + 5, '/');
		char source[NAME_MAX + 1];
		size_t n = slash ? (size_t)(slash - rel - 5) : 0;

		if (n && n < sizeof(source)) {
			memcpy(source, rel + 5, n);
			source[n] = '\0';
			if (fs_fetch_rev(fs, source, slash + 1, d->until_ns))
				log_debug("fs", "%s: not fetched", d->path);
		}
	}
	fs_lookup_reply(fs, d->req, d->path, d->seq);
}

static void *fetch_main(void *arg)
{
	struct fs *fs = arg;
	struct fs_fetch *f = fs->fetch;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		struct fs_defer *d;

		f->idle++;
		while (!f->head && !f->stop)
			pthread_cond_wait(&f->cond, &f->lock);
		f->idle--;
		d = f->head;
		if (!d)
			break; /* stopping, nothing left */
		f->head = d->next;
		if (!f->head)
			f->tail = &f->head;
		pthread_mutex_unlock(&f->lock);
		answer(fs, d);
		free(d);
		pthread_mutex_lock(&f->lock);
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

/* True if resolving @path now would miss something a fetch may bring. */
static bool needs_fetch(struct fs *fs, const char *path)
{
	const char *rel = path + FS_META_LEN + 1;

	if (fs_tree_root(path)) {
		struct fs_tree *t = fs_tree_open(fs, rel + 6, 0);

		fs_tree_unref(t);
		return !t;
	}
	if (!strncmp(rel, "revs/", 5) && fs_meta_rev_root(path)) {
		const char *slash = strchr(rel + 5, '/');
		int slot = fs_meta_slot_named(fs, rel + 5,
					      (size_t)(slash - rel - 5));
		struct snap *s;

		if (slot < 0)
			return false;
		s = fs_meta_rev_get(fs, slot, slash + 1);
		snap_unref(s);
		return !s;
	}
	return false;
}

bool fs_fetch_defer(struct fs *fs, fuse_req_t req, const char *path,
		    uint64_t seq)
{
	struct fs_fetch *f = fs->fetch;
	size_t len = strlen(path);
	struct fs_defer *d;

	if (!f || !fs_is_meta(path) || !needs_fetch(fs, path))
		return false;
	d = malloc(sizeof(*d) + len + 1);
	if (!d)
		return false; /* answered now, without a fetch */
	d->next = NULL;
	d->req = req;
	d->seq = seq;
	d->until_ns = mono_ns() + (int64_t)fs->o.fetch_timeout_ms * 1000000;
	memcpy(d->path, path, len + 1);
	pthread_mutex_lock(&f->lock);
	if (!f->stop && !f->idle && f->nthreads < FETCH_THREADS &&
	    !pthread_create(&f->threads[f->nthreads], NULL, fetch_main, fs))
		f->nthreads++;
	if (f->stop || !f->nthreads) {
		pthread_mutex_unlock(&f->lock);
		free(d);
		return false; /* answered now, without a fetch */
	}
	*f->tail = d;
	f->tail = &d->next;
	log_debug("fs", "%s: waits for a fetch (%d threads, %d idle)", path,
		  f->nthreads, f->idle);
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
	return true;
}

void fs_fetch_free(struct fs *fs)
{
	struct fs_fetch *f = fs->fetch;

	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	/* the threads answer what is queued first (the sources are
	 * stopped by now, so fetches fail at once) */
	for (int i = 0; i < f->nthreads; i++)
		pthread_join(f->threads[i], NULL);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	free(f);
	fs->fetch = NULL;
}
