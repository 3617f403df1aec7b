/* SPDX-License-Identifier: Apache-2.0 */
/*
 * swap.c - replacing a slot's snapshot and telling the kernel exactly
 * which of its cached names, attributes and listings went stale.
 *
 * Called from the sources' threads, never from a FUSE handler. It must
 * not fetch, hash or parse anything: the diff comes from snap_diff().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

/*
 * Why the order below is safe.
 *
 * The kernel caches names (dentries, negative ones too), attributes and
 * directory listings for a day, and it can only be told to forget them
 * one notification at a time. Opendir costs no request (ops.c), so the
 * kernel keeps the listing of every directory and answers getdents from
 * it with no word to us; it checks a directory's mtime only at offset 0,
 * and asks for it only when its attributes have expired (auto_inval_data,
 * fs/fuse/readdir.c fuse_readdir_cached). A reader must still never see
 * the new revision of one file and then the old revision of another, nor
 * an old listing after a new file. So a swap runs in two phases,
 * bracketed by fs->seq (odd in between):
 *
 * A. Before the flip, every changed name the kernel may hold under a
 *    directory it knows is invalidated, and so is every directory whose
 *    listing will change: its cached listing and attributes are dropped
 *    (dir_inval). While fs->seq is odd, lookups, getattr and readdirplus
 *    hand out names and attributes with a zero timeout (or none at all),
 *    so nothing cached from here on outlives its first use: a listing
 *    cached meanwhile is stamped with an mtime the kernel must ask for
 *    again at the next offset 0. A request that began earlier is still in
 *    flight while the kernel holds its parent directory's lock, and
 *    notify_inval_entry takes that lock: its answer is installed first and
 *    dropped after, never the reverse (attributes that arrive late are
 *    dropped by their attr_version). When phase A ends the kernel holds
 *    no long-lived name, attribute or listing that the flip will change,
 *    so after the flip every path walk and every listing from offset 0
 *    reaches the new tree.
 *
 * B. The flip (and the move of unchanged inodes to the new snapshot)
 *    happens under fs->lock. Each directory whose listing changed gets a
 *    new mtime, the view number of the flip in its lgen (ops.c continues
 *    a listing begun before it in the view before it), and once more an
 *    inval_inode, sent once the kernel's lock on that directory has been
 *    taken and released (dir_inval), which drops what phase A let in.
 *
 * A slot joining or leaving the view (fs_relayout) runs the same two
 * phases, its changes being the directories from the top down to the
 * slot's root.
 *
 * Directories under .dagfs are not told: their listings are made at each
 * read and their mtime is new at every getattr (inode.c), so the kernel
 * never reuses one.
 *
 * Notifications are sent with no fs/ lock held: notify_inval_entry waits
 * for in-flight requests on the directory, and those need handler
 * threads that may want fs->lock or fs->slot_lock.
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
	struct snap *gone; /* a kept state that made room (fs_past_keep) */
	struct change *c;
	size_t nc, capc;
	struct note *n;
	size_t nn, capn;
	bool live;	   /* fs_relayout(): the slot joins the view */
	struct snap *fill; /* fs_relayout(): ...with this tree */
	FILE *lines;	   /* .dagfs/changes/<source> (meta.c), or NULL */
	char *text;
	size_t tlen;
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

static void on_diff(const struct snap *a, int ai, const struct snap *b, int bi,
		    void *payload)
{
	struct swap *sw = payload;
	const struct snap_entry *ea = ai >= 0 ? &a->e[ai] : NULL;
	const struct snap_entry *eb = bi >= 0 ? &b->e[bi] : NULL;
	const char *rel;
	struct change *c;
	size_t len;
	void *v;

	if (sw->err || (!ea && !eb))
		return;
	rel = (ea ? ea : eb)->path;
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
	c->dirish = (ea && ea->type == SNAP_DIR) ||
		    (eb && eb->type == SNAP_DIR);
	c->named = !ea || !eb || ea->type != eb->type || ea->type != SNAP_DIR;
	sw->nc++;
	/* a directory whose children changed is not a change of its own */
	if (sw->lines && *rel && c->named)
		fprintf(sw->lines, "%c %s\n",
			!ea ? 'A' :
			!eb ? 'D' :
			      'M',
			c->path);
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

/* Phase A: the listing of @dir will change; one inval_inode. */
static void dir_stale(struct swap *sw, struct fs_inode *dir)
{
	if (dir->inval_gen == sw->fs->swap_gen)
		return;
	dir->inval_gen = sw->fs->swap_gen;
	queue(sw, 0, fs_nodeid(sw->fs, dir), NULL);
}

/* Record that the listing of @dir changed in view @gen. */
static void dir_lgen(struct fs_inode *dir, uint64_t gen)
{
	if (dir->nlgen == FS_LGEN) {
		dir->lfloor = dir->lgen[0];
		memmove(dir->lgen, dir->lgen + 1,
			(FS_LGEN - 1) * sizeof(*dir->lgen));
		dir->nlgen--;
	}
	dir->lgen[dir->nlgen++] = gen;
}

/* Phase B: the listing of @dir changed: new mtime and lgen (see above),
 * one inval_inode. */
static void dir_changed(struct swap *sw, struct fs_inode *dir)
{
	const char *at = sw->slot->at, *rel = dir->path;
	int64_t t = now_ns(), m;

	if (dir->inval_gen == sw->fs->swap_gen)
		return;
	dir->inval_gen = sw->fs->swap_gen;
	dir_lgen(dir, sw->fs->gen);
	if (sw->slot->atlen && !strncmp(rel, at, sw->slot->atlen))
		rel += sw->slot->atlen + (rel[sw->slot->atlen] == '/');
	m = dir->mtime_floor;
	if (t <= m)
		t = m + 1;
	m = dir_mtime(sw->old, rel);
	if (t <= m)
		t = m + 1;
	m = dir_mtime(sw->new, rel);
	if (t <= m)
		t = m + 1;
	if (t <= sw->fs->start_ns) /* made-up and empty directories */
		t = sw->fs->start_ns + 1;
	__atomic_store_n(&dir->mtime_floor, t, __ATOMIC_RELEASE);
	queue(sw, 0, fs_nodeid(sw->fs, dir), NULL);
}

/* The directory holding change @c, if the kernel knows it; fs->lock held.
 * NULL for a slot's root, which keeps its inode whatever happens. */
static struct fs_inode *parent_of(struct swap *sw, struct change *c,
				  const char **name)
{
	char *slash = strrchr(c->path, '/');
	struct fs_inode *dir;

	if (strlen(c->path) == sw->slot->atlen)
		return NULL;
	if (slash)
		*slash = '\0';
	dir = fs_dir_find(sw->fs, slash ? c->path : "");
	if (slash)
		*slash = '/';
	*name = slash ? slash + 1 : c->path;
	return dir;
}

/* Call @fn on each directory the kernel knows whose listing the changes
 * alter: a changed directory, the parent of a changed name. */
static void each_listing(struct swap *sw,
			 void (*fn)(struct swap *sw, struct fs_inode *dir))
{
	sw->fs->swap_gen++;
	for (size_t i = 0; i < sw->nc && !sw->err; i++) {
		struct change *c = &sw->c[i];
		struct fs_inode *dir;
		const char *name;

		if (c->dirish) {
			dir = fs_dir_find(sw->fs, c->path);
			if (dir)
				fn(sw, dir);
		}
		if (c->named) {
			dir = parent_of(sw, c, &name);
			if (dir)
				fn(sw, dir);
		}
	}
}

/* Phase A: the names and the listings to forget; fs->lock held. */
static void plan_names(struct swap *sw)
{
	for (size_t i = 0; i < sw->nc && !sw->err; i++) {
		struct change *c = &sw->c[i];
		struct fs_inode *dir;
		const char *name;

		if (!c->named)
			continue;
		dir = parent_of(sw, c, &name);
		if (dir)
			queue(sw, fs_nodeid(sw->fs, dir), 0, name);
	}
	each_listing(sw, dir_stale);
}

/* Phase B: the listings and directory attributes; fs->lock held. */
static void plan_dirs(struct swap *sw)
{
	each_listing(sw, dir_changed);
}

/*
 * Drop directory @node's attributes and cached listing. A getdents() that
 * read the old tree may still be filling the kernel's listing cache: it
 * holds the directory's lock (shared) until done, and inval_entry takes
 * it (exclusive), so one for a name that is never cached (".") waits for
 * such fills to land before inval_inode drops them. Without it a late
 * fill could outlive the inval_inode under a cache stamp taken after it,
 * and listings would show the old tree until the next swap.
 */
static int dir_inval(struct fs *fs, fuse_ino_t node)
{
	int rc = fuse_lowlevel_notify_inval_entry(fs->se, node, ".", 1);

	if (rc && rc != -ENOENT)
		return rc;
	return fuse_lowlevel_notify_inval_inode(fs->se, node, 0, 0);
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
			rc = fuse_lowlevel_notify_inval_entry(fs->se, n->parent,
							      n->name,
							      strlen(n->name));
		else
			rc = dir_inval(fs, n->node);
		/* -ENOENT: the kernel forgot it meanwhile */
		if (rc && rc != -ENOENT)
			log_debug("fs", "invalidation: %s", strerror(-rc));
	}
	pthread_rwlock_unlock(&fs->notify_lock);
}

/* Hand the lines of .dagfs/changes/<source> to meta.c: unknown after an
 * error, and kept as they were if the same revision came again (the
 * cached one at a restart). */
static void record_changes(struct swap *sw, int slot)
{
	bool same = sw->old && sw->new && !strcmp(sw->old->id, sw->new->id);
	bool lost = !sw->lines || fclose(sw->lines) || sw->err;

	if (lost || same) {
		free(sw->text);
		sw->text = NULL;
	}
	if (!same)
		fs_meta_swapped(sw->fs, slot, sw->text);
}

/* Say once that the root slot's own .dagfs is hidden by the metadata. */
static void shadowed(struct fs *fs, const struct fs_slot *slot,
		     const struct snap *snap)
{
	if (slot->atlen || !snap || snap_lookup(snap, FS_META) < 0 ||
	    __atomic_exchange_n(&fs->meta_shadowed, 1, __ATOMIC_RELAXED))
		return;
	log_warn("fs",
		 "source %s: its /%s is hidden by dagfs' metadata "
		 "directory of that name",
		 slot->source, FS_META);
}

/*
 * The two phases around @flip, which makes the change under fs->lock;
 * @sw->c lists the paths that change.
 */
static void swap_run(struct swap *sw, void (*flip)(struct swap *sw, int slot),
		     int slot)
{
	struct fs *fs = sw->fs;

	__atomic_add_fetch(&fs->seq, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_lock(&fs->lock);
	plan_names(sw);
	pthread_mutex_unlock(&fs->lock);
	notify(sw);
	sw->nn = 0;

	pthread_mutex_lock(&fs->lock);
	flip(sw, slot);
	plan_dirs(sw);
	pthread_mutex_unlock(&fs->lock);
	__atomic_add_fetch(&fs->seq, 1, __ATOMIC_ACQ_REL);
	notify(sw);
	fs_past_expire(fs);
}

static void swap_end(struct swap *sw)
{
	if (sw->err)
		log_warn("fs",
			 "source %s: cannot list changes (%s); the kernel "
			 "may serve old names until they expire",
			 sw->slot->source, strerror(-sw->err));
	log_debug("fs", "source %s: %zu paths changed", sw->slot->source,
		  sw->nc);
	for (size_t i = 0; i < sw->nc; i++)
		free(sw->c[i].path);
	free(sw->c);
	free(sw->n);
	snap_unref(sw->gone);
}

/* The new snapshot in place, and the unchanged inodes moved to it. */
static void flip_snap(struct swap *sw, int slot)
{
	struct fs *fs = sw->fs;

	pthread_mutex_lock(&fs->slot_lock);
	sw->gone = fs_past_keep(fs, slot, true, snap_ref(sw->old));
	__atomic_store_n(&fs->slots[slot].snap, sw->new, __ATOMIC_RELEASE);
	__atomic_store_n(&fs->gen, fs->gen + 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&fs->slot_lock);
	fs_inodes_move(fs, slot, sw->new);
}

void fs_swap_locked(struct fs *fs, int slot, struct snap *snap)
{
	struct swap sw = { .fs = fs, .slot = &fs->slots[slot], .new = snap };

	if (!fs->slots[slot].live) {
		log_debug("fs", "source %s: no longer in the view",
			  sw.slot->source);
		return;
	}
	snap_ref(snap);
	sw.old = fs->slots[slot].snap; /* only a swap writes it */
	sw.lines = open_memstream(&sw.text, &sw.tlen);
	snap_diff(sw.old, snap, on_diff, &sw);
	shadowed(fs, sw.slot, snap);
	swap_run(&sw, flip_snap, slot);
	record_changes(&sw, slot);
	swap_end(&sw);
	snap_unref(sw.old);
}

void fs_swap(struct fs *fs, int slot, struct snap *snap)
{
	pthread_mutex_lock(&fs->swap_lock);
	fs_tree_update(fs, slot, true, snap); /* trees.c: its new version */
	fs_swap_locked(fs, slot, snap);
	pthread_mutex_unlock(&fs->swap_lock);
}

/* The slot joins or leaves: readers see it whole or not at all. */
static void flip_layout(struct swap *sw, int slot)
{
	struct fs *fs = sw->fs;

	pthread_mutex_lock(&fs->slot_lock);
	sw->old = fs->slots[slot].snap;
	sw->gone = fs_past_keep(fs, slot, fs->slots[slot].live,
				snap_ref(sw->old));
	__atomic_store_n(&fs->slots[slot].snap, snap_ref(sw->fill),
			 __ATOMIC_RELEASE);
	__atomic_store_n(&fs->slots[slot].live, sw->live, __ATOMIC_RELEASE);
	if (slot == fs->nslots)
		__atomic_store_n(&fs->nslots, slot + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&fs->gen, fs->gen + 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&fs->slot_lock);
}

/* Path @path changes: it appears or vanishes as a directory. */
static void change_add(struct swap *sw, const char *path, size_t len)
{
	void *v = grow(sw->c, &sw->capc, sw->nc, sizeof(*sw->c), &sw->err);
	struct change *c;

	if (!v)
		return;
	sw->c = v;
	c = &sw->c[sw->nc];
	c->path = strndup(path, len);
	if (!c->path) {
		sw->err = -ENOMEM;
		return;
	}
	c->named = c->dirish = true;
	sw->nc++;
}

/*
 * Every directory from the top down to the slot's root may appear or
 * vanish, and with it a name in its parent's listing. The swap is planned
 * as if by a slot at the root ("" keeps its inode), with no snapshots:
 * forgetting the slot root's name makes the kernel forget all it cached
 * below it. The tree comes or goes with the slot, in one flip.
 */
void fs_relayout(struct fs *fs, int slot, bool live, struct snap *snap)
{
	const struct fs_slot *s = &fs->slots[slot];
	struct fs_slot top = { .at = (char *)"", .source = s->source };
	struct swap sw = { .fs = fs, .slot = &top, .live = live, .fill = snap };
	const char *p = s->at;

	change_add(&sw, "", 0);
	while (*p) {
		p = strchrnul(p + 1, '/');
		change_add(&sw, s->at, p - s->at);
	}
	shadowed(fs, s, snap);
	swap_run(&sw, flip_layout, slot);
	log_debug("fs", "source %s %s /%s", s->source,
		  live ? "added at" : "removed from", s->at);
	swap_end(&sw);
	snap_unref(sw.old);
}
