/* SPDX-License-Identifier: Apache-2.0 */
/*
 * prefetch.c - start reading a directory's small files from the store
 * when the kernel lists it for the first time.
 *
 * A scan lists a directory, then reads every file in it (Airflow reads
 * each .py to look for DAGs). On a cold cache each of those READs waits
 * for the disk twice over: for the blob's inode and for its bytes, one
 * file after the other. The kernel only asks for a listing (READDIRPLUS)
 * when its own cache of the directory is empty, so that request is the
 * moment to ask the disk for the blobs of the files just listed, all at
 * once (READDIRPLUS or READDIR: the kernel asks either only for what it
 * has not cached): one thread of ours opens each blob and asks for readahead
 * (posix_fadvise WILLNEED, which queues the reads and returns), and the
 * READs that follow find the bytes in the page cache.
 *
 * Nothing waits for it: the queue is bounded and a blob that does not
 * fit is simply not prefetched; a warm scan, served from the kernel's
 * caches, never lists and so never prefetches. The thread starts on the
 * first listing and sleeps on a condition variable when idle (no CPU at
 * rest). What it reads is page cache, not the daemon's memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_i.h"

#define PREFETCH_QUEUE 4096	      /* blobs waiting; more are dropped */
#define PREFETCH_MAX_BYTES (1u << 20) /* larger files are read as asked */

struct fs_prefetch {
	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cond;
	struct dhash q[PREFETCH_QUEUE];
	unsigned head, n;
	pthread_t thread;
	bool started, stop;
};

static void *prefetch_main(void *arg)
{
	struct fs *fs = arg;
	struct fs_prefetch *p = fs->prefetch;
	char path[PATH_MAX];

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct dhash h;
		int fd;

		while (!p->n && !p->stop)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop)
			break;
		h = p->q[p->head];
		p->head = (p->head + 1) % PREFETCH_QUEUE;
		p->n--;
		pthread_mutex_unlock(&p->lock);
		store_blob_path(fs->st, &h, path, sizeof(path));
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME);
		if (fd < 0 && errno == EPERM) /* not the blob's owner */
			fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			(void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
			close(fd);
			__atomic_add_fetch(&fs->loop_stats.prefetched, 1,
					   __ATOMIC_RELAXED);
		}
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

void fs_prefetch_add(struct fs *fs, const struct snap_entry *e)
{
	struct fs_prefetch *p = fs->prefetch;

	if (!p || e->type != SNAP_FILE || !e->size ||
	    e->size > PREFETCH_MAX_BYTES)
		return;
	pthread_mutex_lock(&p->lock);
	if (!p->started && !p->stop)
		p->started = !pthread_create(&p->thread, NULL, prefetch_main,
					     fs);
	if (p->started && p->n < PREFETCH_QUEUE) {
		p->q[(p->head + p->n) % PREFETCH_QUEUE] = e->hash;
		p->n++;
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
}

int fs_prefetch_init(struct fs *fs)
{
	struct fs_prefetch *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	fs->prefetch = p;
	return 0;
}

void fs_prefetch_free(struct fs *fs)
{
	struct fs_prefetch *p = fs->prefetch;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (p->started)
		pthread_join(p->thread, NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
	fs->prefetch = NULL;
}
