/* SPDX-License-Identifier: Apache-2.0 */
/*
 * swap.c - replacing a slot's snapshot and telling the kernel exactly
 * which of its cached names, attributes and listings went stale.
 *
 * Called from the sources' threads, never from a FUSE handler. It must
 * not fetch, hash or parse anything: the diff comes from snap_diff().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

/*
 * Why the order below is safe.
 *
 * 1. The new snapshot is made current before anything is invalidated, so
 *    any lookup the kernel sends after an invalidation resolves against
 *    the new tree. A lookup that resolved against the old tree just before
 *    is still in flight while the kernel holds the parent directory's
 *    lock, and notify_inval_entry takes that lock: the stale answer is
 *    installed first and then dropped, never the other way round.
 *
 * 2. Notifications are sent with no fs/ lock held. notify_inval_entry
 *    waits for in-flight requests on the parent directory, and those need
 *    a handler thread that may want fs->lock or fs->slot_lock.
 *
 * 3. The kernel's readdir cache (cache_readdir) is filled by a listing
 *    that started at offset 0 and is trusted later only while the
 *    directory's mtime and i_version are unchanged. A listing computed
 *    from the old tree can land in that cache just after the
 *    invalidation dropped it. So every directory whose listing changes
 *    gets a new mtime (mtime_floor, strictly greater than anything it
 *    reported before), raised after the swap and before the invalidation:
 *    the next opendir refreshes the attributes, sees a different mtime
 *    and throws such a listing away. opendir's handle re-resolves at
 *    offset 0 (ops.c), so a handle opened before the swap but read after
 *    it does not fill the cache with the old tree either.
 *
 * 4. Invalidations reach the kernel one by one, so for a moment some of
 *    its cached names are new and others still old. Two checks close that
 *    window for readers: the snapshot flip and the move of unchanged
 *    inodes happen under fs->lock at once, so open() of an inode that is
 *    no longer current answers ESTALE and the kernel walks the path again
 *    (LOOKUP_REVAL) to the new inode; and opendir() of a directory whose
 *    invalidation is still queued (inval_gen > done_gen) drops the
 *    kernel's readdir cache instead of keeping it.
 */

struct change {
	char *path;  /* mount path */
	bool named;  /* the name now means another inode, or nothing */
	bool dirish; /* a directory on either side */
};

struct note {
	fuse_ino_t parent; /* inval_entry(parent, name) if set */
	fuse_ino_t node;   /* else inval_inode(node) */
	const char *name;  /* points into a change's path */
};

struct swap {
	struct fs *fs;
	const struct fs_slot *slot;
	struct snap *old, *new;
	struct change *c;
	size_t nc, capc;
	struct note *n;
	size_t nn, capn;
	int err;
};

static void *grow(void *v, size_t *cap, size_t n, size_t size, int *err)
{
	size_t c = *cap ? *cap * 2 : 64;
	void *p;

	if (n < *cap)
		return v;
	p = realloc(v, c * size);
	if (!p) {
		*err = -ENOMEM;
		return NULL;
	}
	*cap = c;
	return p;
}

static void on_diff(const struct snap *a, int ai, const struct snap *b,
		    int bi, void *payload)
{
	struct swap *sw = payload;
	const struct snap_entry *ea = ai >= 0 ? &a->e[ai] : NULL;
	const struct snap_entry *eb = bi >= 0 ? &b->e[bi] : NULL;
	const char *rel = (ea ? ea : eb)->path;
	struct change *c;
	size_t len;
	void *v;

	if (sw->err)
		return;
	v = grow(sw->c, &sw->capc, sw->nc, sizeof(*c), &sw->err);
	if (!v)
		return;
	sw->c = v;
	c = &sw->c[sw->nc];
	len = sw->slot->atlen + strlen(rel) + 2;
	c->path = malloc(len);
	if (!c->path || fs_path_join(c->path, len, sw->slot->at, rel)) {
		free(c->path);
		sw->err = -ENOMEM;
		return;
	}
	c->dirish = (ea && ea->type == SNAP_DIR) || (eb && eb->type == SNAP_DIR);
	c->named = !ea || !eb || ea->type != eb->type || ea->type != SNAP_DIR;
	sw->nc++;
}

static void queue(struct swap *sw, fuse_ino_t parent, fuse_ino_t node,
		  const char *name)
{
	void *v = grow(sw->n, &sw->capn, sw->nn, sizeof(*sw->n), &sw->err);

	if (!v)
		return;
	sw->n = v;
	sw->n[sw->nn++] = (struct note){ parent, node, name };
}

/* mtime of directory @rel in @s, or 0 */
static int64_t dir_mtime(const struct snap *s, const char *rel)
{
	int i = s ? snap_lookup(s, rel) : -1;

	return i >= 0 ? s->e[i].mtime_ns : 0;
}

/* The listing of @dir changed: new mtime (see above), one inval_inode. */
static void dir_changed(struct swap *sw, struct fs_inode *dir)
{
	const char *at = sw->slot->at, *rel = dir->path;
	int64_t t = now_ns(), prev = dir->mtime_floor, m;

	if (dir->inval_gen == sw->fs->swap_gen)
		return;
	dir->inval_gen = sw->fs->swap_gen;
	if (sw->slot->atlen && !strncmp(rel, at, sw->slot->atlen))
		rel += sw->slot->atlen + (rel[sw->slot->atlen] == '/');
	if (t <= prev)
		t = prev + 1;
	m = dir_mtime(sw->old, rel);
	if (t <= m)
		t = m + 1;
	m = dir_mtime(sw->new, rel);
	if (t <= m)
		t = m + 1;
	if (t < sw->fs->start_ns)
		t = sw->fs->start_ns + 1;
	__atomic_store_n(&dir->mtime_floor, t, __ATOMIC_RELEASE);
	queue(sw, 0, fs_nodeid(sw->fs, dir), NULL);
}

/* Map the changed paths to inodes the kernel holds; fs->lock held. */
static void plan(struct swap *sw)
{
	struct fs *fs = sw->fs;

	fs->swap_gen++;
	for (size_t i = 0; i < sw->nc && !sw->err; i++) {
		struct change *c = &sw->c[i];
		struct fs_inode *ino;
		char *slash;

		if (c->dirish) {
			ino = fs_dir_find(fs, c->path);
			if (ino)
				dir_changed(sw, ino);
		}
		if (!c->named || strlen(c->path) == sw->slot->atlen)
			continue; /* a slot's root keeps its inode */
		slash = strrchr(c->path, '/');
		if (slash)
			*slash = '\0';
		ino = fs_dir_find(fs, slash ? c->path : "");
		if (slash)
			*slash = '/';
		if (!ino)
			continue; /* the kernel caches nothing below */
		queue(sw, fs_nodeid(fs, ino), 0, slash ? slash + 1 : c->path);
		dir_changed(sw, ino);
	}
}

static void notify(struct swap *sw)
{
	struct fs *fs = sw->fs;
	int rc;

	pthread_rwlock_rdlock(&fs->notify_lock);
	for (size_t i = 0; i < sw->nn; i++) {
		const struct note *n = &sw->n[i];

		if (!__atomic_load_n(&fs->mounted, __ATOMIC_ACQUIRE) ||
		    !__atomic_load_n(&fs->looping, __ATOMIC_ACQUIRE))
			break;
		if (n->parent)
			rc = fuse_lowlevel_notify_inval_entry(
				fs->se, n->parent, n->name, strlen(n->name));
		else
			rc = fuse_lowlevel_notify_inval_inode(fs->se, n->node,
							      0, 0);
		/* -ENOENT: the kernel forgot it meanwhile */
		if (rc && rc != -ENOENT)
			log_debug("fs", "invalidation: %s", strerror(-rc));
	}
	pthread_rwlock_unlock(&fs->notify_lock);
}

void fs_swap(struct fs *fs, int slot, struct snap *snap)
{
	struct swap sw = { .fs = fs, .slot = &fs->slots[slot], .new = snap };

	pthread_mutex_lock(&fs->swap_lock);
	snap_ref(snap);
	sw.old = fs->slots[slot].snap; /* only fs_swap writes it */
	snap_diff(sw.old, snap, on_diff, &sw);

	pthread_mutex_lock(&fs->lock);
	pthread_mutex_lock(&fs->slot_lock);
	__atomic_store_n(&fs->slots[slot].snap, snap, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&fs->slot_lock);
	fs_inodes_move(fs, slot, snap);
	plan(&sw);
	pthread_mutex_unlock(&fs->lock);
	if (sw.err)
		log_warn("fs", "source %s: cannot list changes (%s); the kernel "
			 "may serve old names until they expire",
			 sw.slot->source, strerror(-sw.err));
	notify(&sw);
	pthread_mutex_lock(&fs->lock);
	fs->done_gen = fs->swap_gen;
	pthread_mutex_unlock(&fs->lock);
	log_debug("fs", "source %s: %zu paths changed, %zu invalidations",
		  sw.slot->source, sw.nc, sw.nn);

	for (size_t i = 0; i < sw.nc; i++)
		free(sw.c[i].path);
	free(sw.c);
	free(sw.n);
	snap_unref(sw.old);
	pthread_mutex_unlock(&fs->swap_lock);
}
