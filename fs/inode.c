/* SPDX-License-Identifier: Apache-2.0 */
/*
 * inode.c - the inode table: inode numbers that name a (path, content)
 * pair, the hash table that finds the inode the kernel already holds for
 * one, lookup counting, and the attributes the kernel caches.
 *
 * Inodes live by the kernel's lookup count, as in libfuse's
 * passthrough_ll.c: created at lookup or readdirplus, freed at forget.
 * Nothing here resolves paths (view.c) or talks to the kernel (ops.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

#define TABLE_MIN 1024

int fs_table_init(struct fs *fs)
{
	fs->buckets = calloc(TABLE_MIN, sizeof(*fs->buckets));
	if (!fs->buckets)
		return -ENOMEM;
	fs->nbuckets = TABLE_MIN;
	return 0;
}

static void inode_free(struct fs_inode *ino)
{
	snap_unref(ino->snap);
	if (fs_inode_has_tail(ino)) {
		free(ino->path);
		free(ino->data);
	}
	free(ino);
}

void fs_table_free(struct fs *fs)
{
	for (size_t b = 0; b < fs->nbuckets; b++) {
		struct fs_inode *ino = fs->buckets[b], *next;

		for (; ino; ino = next) {
			next = ino->next;
			inode_free(ino);
		}
	}
	free(fs->buckets);
	fs->buckets = NULL;
}

struct fs_inode *fs_inode_of(struct fs *fs, fuse_ino_t nodeid)
{
	if (nodeid == FUSE_ROOT_ID)
		return &fs->root;
	return (struct fs_inode *)(uintptr_t)nodeid;
}

fuse_ino_t fs_nodeid(struct fs *fs, const struct fs_inode *ino)
{
	return ino == &fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)ino;
}

static uint64_t hash64(const void *buf, size_t len)
{
	struct dhash h;
	uint64_t v;

	dhash_buf(&h, buf, len);
	memcpy(&v, h.b, sizeof(v));
	/* 0 means "no inode" to the kernel and 1 is the root */
	return v > FUSE_ROOT_ID ? v : v + 2;
}

uint64_t fs_key(const char *path, const struct fs_res *r)
{
	const struct snap_entry *e;
	struct {
		uint64_t path, size;
		int64_t mtime;
		uint32_t mode, type;
		struct dhash content;
	} k;

	if (!*path)
		return FUSE_ROOT_ID;
	if (fs_res_is_dir(r))
		return hash64(path, strlen(path));
	memset(&k, 0, sizeof(k));
	k.path = hash64(path, strlen(path));
	if (r->kind == FS_META_FILE) {
		k.size = r->len;
		dhash_buf(&k.content, r->data, r->len);
		return hash64(&k, sizeof(k));
	}
	e = fs_res_entry(r);
	k.size = e->size;
	k.mtime = e->mtime_ns;
	k.mode = e->mode;
	k.type = e->type;
	if (e->type == SNAP_LINK)
		dhash_buf(&k.content, e->target, strlen(e->target));
	else
		k.content = e->hash;
	return hash64(&k, sizeof(k));
}

/* Same path and same content: the snapshot entries are interchangeable. */
static bool entry_same(const struct snap_entry *a, const struct snap_entry *b)
{
	if (a->type != b->type || a->mode != b->mode || a->size != b->size ||
	    a->mtime_ns != b->mtime_ns || strcmp(a->path, b->path))
		return false;
	if (a->type == SNAP_LINK)
		return !strcmp(a->target, b->target);
	return dhash_eq(&a->hash, &b->hash);
}

static bool inode_is(const struct fs_inode *ino, uint64_t key, const char *path,
		     const struct fs_res *r)
{
	if (ino->key != key)
		return false;
	if (fs_res_is_dir(r))
		return ino->type == SNAP_DIR && !strcmp(ino->path, path);
	if (ino->type == SNAP_DIR || ino->slot != r->slot)
		return false;
	if (r->kind == FS_META_FILE)
		return ino->len == r->len &&
		       !memcmp(ino->data, r->data, r->len);
	return entry_same(&ino->snap->e[ino->idx], fs_res_entry(r));
}

static void table_grow(struct fs *fs)
{
	size_t n = fs->nbuckets * 2;
	struct fs_inode **v = calloc(n, sizeof(*v));

	if (!v)
		return; /* longer chains, still correct */
	for (size_t b = 0; b < fs->nbuckets; b++) {
		struct fs_inode *ino = fs->buckets[b], *next;

		for (; ino; ino = next) {
			next = ino->next;
			ino->next = v[ino->key & (n - 1)];
			v[ino->key & (n - 1)] = ino;
		}
	}
	free(fs->buckets);
	fs->buckets = v;
	fs->nbuckets = n;
}

static struct fs_inode *inode_new(struct fs *fs, uint64_t key, const char *path,
				  const struct fs_res *r)
{
	bool tail = fs_res_is_dir(r) || r->kind == FS_META_FILE;
	struct fs_inode *ino = calloc(1, tail ? sizeof(*ino) : FS_INODE_SNAP);

	if (!ino)
		return NULL;
	ino->key = key;
	if (fs_res_is_dir(r)) {
		ino->type = SNAP_DIR;
		/* flips take fs->lock: the view cannot move meanwhile */
		ino->lfloor = __atomic_load_n(&fs->gen, __ATOMIC_ACQUIRE);
		ino->path = strdup(path);
		if (!ino->path) {
			free(ino);
			return NULL;
		}
	} else if (r->kind == FS_META_FILE) {
		ino->type = SNAP_FILE;
		ino->slot = FS_SLOT_META;
		ino->data = malloc(r->len ? r->len : 1);
		if (!ino->data) {
			free(ino);
			return NULL;
		}
		memcpy(ino->data, r->data, r->len);
		ino->len = r->len;
		ino->mtime_floor = r->mtime_ns;
	} else {
		ino->type = fs_res_entry(r)->type;
		ino->slot = r->slot;
		ino->snap = snap_ref(r->snap);
		ino->idx = r->idx;
	}
	return ino;
}

struct fs_inode *fs_inode_get(struct fs *fs, const char *path,
			      const struct fs_res *r)
{
	uint64_t key = fs_key(path, r);
	struct fs_inode *ino;
	size_t b;

	if (key == FUSE_ROOT_ID)
		return &fs->root;
	pthread_mutex_lock(&fs->lock);
	b = key & (fs->nbuckets - 1);
	for (ino = fs->buckets[b]; ino; ino = ino->next)
		if (inode_is(ino, key, path, r))
			break;
	if (!ino) {
		ino = inode_new(fs, key, path, r);
		if (ino) {
			ino->next = fs->buckets[b];
			fs->buckets[b] = ino;
			if (++fs->ninodes > fs->nbuckets)
				table_grow(fs);
		}
	}
	if (ino && r->kind == FS_ENTRY && ino->type != SNAP_DIR &&
	    ino->snap != r->snap && fs_slot_current(fs, r->slot, r->snap)) {
		/* made from a tree that was current then: catch up (swap.c) */
		snap_unref(ino->snap);
		ino->snap = snap_ref(r->snap);
		ino->idx = r->idx;
	}
	if (ino)
		ino->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	return ino;
}

void fs_inode_forget(struct fs *fs, struct fs_inode *ino, uint64_t n)
{
	struct fs_inode **pp;

	if (ino == &fs->root)
		return;
	pthread_mutex_lock(&fs->lock);
	ino->nlookup = ino->nlookup > n ? ino->nlookup - n : 0;
	if (ino->nlookup) {
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	pp = &fs->buckets[ino->key & (fs->nbuckets - 1)];
	while (*pp != ino)
		pp = &(*pp)->next;
	*pp = ino->next;
	fs->ninodes--;
	pthread_mutex_unlock(&fs->lock);
	inode_free(ino);
}

struct fs_inode *fs_dir_find(struct fs *fs, const char *path)
{
	struct fs_res dir = { .kind = FS_SYNTH };
	uint64_t key = fs_key(path, &dir);
	struct fs_inode *ino;

	if (key == FUSE_ROOT_ID)
		return &fs->root;
	ino = fs->buckets[key & (fs->nbuckets - 1)];
	for (; ino; ino = ino->next)
		if (inode_is(ino, key, path, &dir))
			return ino;
	return NULL;
}

void fs_inodes_move(struct fs *fs, int slot, struct snap *to)
{
	for (size_t b = 0; to && b < fs->nbuckets; b++) {
		struct fs_inode *ino = fs->buckets[b];

		for (; ino; ino = ino->next) {
			const struct snap_entry *e;
			int i;

			if (ino->type == SNAP_DIR || ino->slot != slot ||
			    ino->snap == to)
				continue;
			e = &ino->snap->e[ino->idx];
			i = snap_lookup(to, e->path);
			if (i < 0 || !entry_same(e, &to->e[i]))
				continue;
			/* the caller holds the old snapshot: no free here */
			snap_unref(ino->snap);
			ino->snap = snap_ref(to);
			ino->idx = (uint32_t)i;
		}
	}
}

static void attr_times(struct stat *st, int64_t ns)
{
	st->st_mtim.tv_sec = ns / 1000000000;
	st->st_mtim.tv_nsec = ns % 1000000000;
	if (st->st_mtim.tv_nsec < 0) {
		st->st_mtim.tv_sec--;
		st->st_mtim.tv_nsec += 1000000000;
	}
	st->st_ctim = st->st_mtim;
	st->st_atim = st->st_mtim;
}

void fs_attr_entry(struct fs *fs, uint64_t key, const struct snap_entry *e,
		   struct stat *st)
{
	mode_t perm = e->mode & 07777 & ~fs->o.umask;

	memset(st, 0, sizeof(*st));
	st->st_ino = key;
	st->st_uid = fs->o.uid;
	st->st_gid = fs->o.gid;
	st->st_blksize = 4096;
	st->st_size = (off_t)e->size;
	st->st_nlink = 1;
	if (e->type == SNAP_FILE) {
		st->st_mode = S_IFREG | perm;
		st->st_blocks = (blkcnt_t)((e->size + 511) / 512);
	} else if (e->type == SNAP_LINK) {
		st->st_mode = S_IFLNK | perm;
	} else {
		st->st_mode = S_IFDIR | perm;
		st->st_nlink = 2;
		st->st_size = 4096;
		st->st_blocks = 8;
	}
	attr_times(st, e->mtime_ns);
}

/* A new mtime at every call, later than any before (a .dagfs directory). */
static int64_t meta_tick(struct fs *fs)
{
	int64_t t = now_ns(),
		last = __atomic_load_n(&fs->meta_clock, __ATOMIC_RELAXED);

	do {
		if (t <= last)
			t = last + 1;
	} while (!__atomic_compare_exchange_n(&fs->meta_clock, &last, t, false,
					      __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	return t;
}

void fs_attr_dir(struct fs *fs, const struct fs_inode *dir,
		 const struct fs_res *r, struct stat *st)
{
	struct snap_entry made = {
		.type = SNAP_DIR,
		.mode = 0555,
		.mtime_ns = fs->start_ns,
	};
	int64_t floor = __atomic_load_n(&dir->mtime_floor, __ATOMIC_ACQUIRE);

	fs_attr_entry(fs, dir->key,
		      r->kind == FS_ENTRY ? fs_res_entry(r) : &made, st);
	if (r->kind == FS_META_DIR)
		attr_times(st, meta_tick(fs));
	else if (floor >
		 (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec)
		attr_times(st, floor);
}

void fs_attr_meta(struct fs *fs, uint64_t key, size_t len, int64_t mtime_ns,
		  struct stat *st)
{
	struct snap_entry made = {
		.type = SNAP_FILE,
		.mode = 0444,
		.size = len,
		.mtime_ns = mtime_ns,
	};

	fs_attr_entry(fs, key, &made, st);
}

int fs_getattr(struct fs *fs, const struct fs_inode *ino, struct stat *st)
{
	struct fs_res r;
	int rc;

	if (ino->slot == FS_SLOT_META) {
		fs_attr_meta(fs, ino->key, ino->len, ino->mtime_floor, st);
		return 0;
	}
	if (ino->type != SNAP_DIR) {
		pthread_mutex_lock(&fs->lock);
		fs_attr_entry(fs, ino->key, &ino->snap->e[ino->idx], st);
		pthread_mutex_unlock(&fs->lock);
		return 0;
	}
	fs_resolve(fs, ino->path, &r);
	if (!fs_res_is_dir(&r)) {
		fs_res_drop(&r);
		return -ENOENT;
	}
	fs_attr_dir(fs, ino, &r, st);
	rc = r.kind == FS_META_DIR;
	fs_res_drop(&r);
	return rc;
}
