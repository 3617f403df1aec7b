/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dir_i.h - private to sync/dir/: what the scan (dir.c) and the check
 * that spares a rescan (dir_check.c) share: the state of a dir source
 * and what a scan remembers of each file.
 */
#ifndef DAGFS_DIR_I_H
#define DAGFS_DIR_I_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "source_i.h"

#define RACY_NS (2LL * 1000000000) /* well above any timestamp granularity */

/*
 * What the last complete scan knew of an entry besides what its snapshot
 * records: enough to trust a stat instead of rehashing the file. An array
 * of these is kept beside that snapshot, indexed like its entries, so a
 * rescan finds a file's previous hash, size and mtime in the snapshot
 * (snap_lookup) and its inode here, and no second copy of the paths is
 * kept.
 */
struct seen {
	ino_t ino;
	dev_t dev;
	int64_t ctime_ns; /* a rewrite that restores the mtime changes it */
	bool racy;	  /* changed too close to the scan to trust the stat */
};
struct dir_src {
	char *root;
	int debounce_ms;
	int ifd;	   /* inotify */
	bool woken;	   /* an inotify event ended the last wait */
	struct snap *last; /* the last complete scan's listing, or NULL */
	struct seen *seen; /* per entry of @last; only the source thread */
};

static inline int64_t ts_ns(const struct timespec *t)
{
	return t->tv_sec * 1000000000LL + t->tv_nsec;
}

/*
 * What to remember of a file stat'ed by a scan that began at @started_ns.
 * The "racy git" problem: timestamps are coarse and inode numbers are
 * reused, so a file rewritten (tmp + rename) with the same size within
 * the clock's granularity can stat exactly like the file it replaced. A
 * stat is only trusted if the file had been still for a while (its mtime
 * and ctime both) when it was last hashed.
 */
static inline struct seen seen_of(const struct stat *st, int64_t started_ns)
{
	int64_t m = ts_ns(&st->st_mtim), c = ts_ns(&st->st_ctim);

	return (struct seen){ .ino = st->st_ino,
			      .dev = st->st_dev,
			      .ctime_ns = c,
			      .racy = (m > c ? m : c) > started_ns - RACY_NS };
}

/* Whether @st may be trusted to be the file @m describes (its size and
 * mtime are the snapshot's to compare). */
static inline bool seen_trusts(const struct seen *m, const struct stat *st)
{
	return !m->racy && m->ino == st->st_ino && m->dev == st->st_dev &&
	       m->ctime_ns == ts_ns(&st->st_ctim);
}

/* Whether a file read between stat @before and fstat @after stood still:
 * else what was read may mix two versions. */
static inline bool stood_still(const struct stat *before,
			       const struct stat *after)
{
	return after->st_size == before->st_size &&
	       ts_ns(&after->st_mtim) == ts_ns(&before->st_mtim);
}

/* dir.c */

/** An array of @n entries that know nothing yet (never trusted), or
 *  NULL. */
struct seen *dir_seen_alloc(uint32_t n);

/** Add an inotify watch on @path (relative to the root; "" is the root),
 *  with a logged warning if it cannot be. */
void dir_watch(struct source *src, const struct dir_src *ds, const char *path);
/** Read and drop every pending inotify event. */
void dir_drain(int fd);
/** Whether an inotify event is waiting: the tree changed since the drain. */
bool dir_tree_changed(const struct dir_src *ds);
/** Keep @s (the caller's reference) and @seen as the last scan's. */
void dir_keep_listing(struct dir_src *ds, struct snap *s, struct seen *seen);

/* dir_check.c */

/** Whether the tree on disk is still @snap: trusting stats against
 *  ds->seen, or with @fill (per entry of @snap) by hashing each file and
 *  recording its stat there. Allocates no listing. */
bool dir_tree_unchanged(struct source *src, const struct dir_src *ds,
			const struct snap *snap, struct seen *fill);
/** The first rescan of a process: check the revision it serves from the
 *  cache (@prev_rev) by hashing; on success it becomes the last listing. */
bool dir_cached_unchanged(struct source *src, struct dir_src *ds,
			  const char *prev_rev);

#endif
