/* SPDX-License-Identifier: Apache-2.0 */
/*
 * view.c - the composed tree: slots (one per source, at disjoint
 * sub-paths), the made-up directories above them, and the resolution of
 * a mount path against the slots' current snapshots.
 *
 * It holds snapshots only by reference and never touches the kernel; the
 * swap and its invalidations live in swap.c, the inode table in inode.c.
 *
 * Views are numbered by fs->gen, one more at every flip. The slot states
 * that flips replaced are kept a grace period (struct fs_past), so a path
 * can be resolved in a recent past view too: a directory listing that
 * began in one view finishes in it (ops.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

int fs_new(struct fs **out, struct store *st, const struct fs_opts *o)
{
	struct fs *fs = calloc(1, sizeof(*fs));
	int rc;

	if (!fs)
		return -ENOMEM;
	fs->st = st;
	fs->o = *o;
	fs->start_ns = now_ns();
	fs->root.key = FUSE_ROOT_ID;
	fs->root.type = SNAP_DIR;
	fs->root.path = (char *)"";
	fs->slots = calloc(FS_SLOTS_MAX, sizeof(*fs->slots));
	rc = fs->slots ? fs_table_init(fs) : -ENOMEM;
	if (rc) {
		free(fs->slots);
		free(fs);
		return rc;
	}
	pthread_mutex_init(&fs->slot_lock, NULL);
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->swap_lock, NULL);
	pthread_mutex_init(&fs->rev_lock, NULL);
	pthread_rwlock_init(&fs->notify_lock, NULL);
	if (o->prefetch && fs_prefetch_init(fs))
		log_warn("fs", "prefetch is off: %s", strerror(ENOMEM));
	*out = fs;
	return 0;
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	fs_unmount(fs);
	fs_fetch_free(fs);
	fs_prefetch_free(fs);
	if (fs->se)
		fuse_session_destroy(fs->se);
	free(fs->mountpoint);
	fs_table_free(fs);
	for (unsigned k = 0; k < fs->npast; k++)
		snap_unref(fs->past[(fs->past_first + k) % FS_PAST_MAX].snap);
	fs_meta_free(fs);
	fs_trees_free(fs);
	for (int i = 0; i < fs->nslots; i++) {
		snap_unref(fs->slots[i].snap);
		free(fs->slots[i].changes);
		free(fs->slots[i].type);
		free(fs->slots[i].url);
		free(fs->slots[i].ref);
		free(fs->slots[i].at);
		free(fs->slots[i].source);
	}
	free(fs->slots);
	pthread_rwlock_destroy(&fs->notify_lock);
	pthread_mutex_destroy(&fs->rev_lock);
	pthread_mutex_destroy(&fs->swap_lock);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->slot_lock);
	free(fs);
}

/* A slot for @at named @source: the removed one of that name and place,
 * or a new one. -ENOSPC when every slot has been used. */
static int slot_find(struct fs *fs, const char *at, const char *source)
{
	int n = fs->nslots;
	struct fs_slot *s;

	for (int i = 0; i < n; i++) {
		s = &fs->slots[i];
		if (!s->live && !strcmp(s->at, at) &&
		    !strcmp(s->source, source))
			return i;
	}
	if (n == FS_SLOTS_MAX)
		return -ENOSPC;
	s = &fs->slots[n];
	s->at = strdup(at);
	s->source = strdup(source);
	if (!s->at || !s->source) {
		free(s->at);
		free(s->source);
		s->at = s->source = NULL;
		return -ENOMEM;
	}
	s->atlen = strlen(at);
	return n;
}

int fs_add_slot(struct fs *fs, const char *at, const char *source,
		struct snap *snap)
{
	size_t len = strlen(at);
	int slot = -EEXIST;

	if ((len && snap_path_check(at, len)) || fs_is_meta(at))
		return -EINVAL;
	pthread_mutex_lock(&fs->swap_lock);
	for (int i = 0; i < fs->nslots; i++) {
		const struct fs_slot *s = &fs->slots[i];

		if (s->live && (fs_path_covers(s->at, s->atlen, at, len) ||
				fs_path_covers(at, len, s->at, s->atlen)))
			goto out;
	}
	slot = slot_find(fs, at, source ? source : "");
	if (slot >= 0) {
		fs_tree_update(fs, slot, true, snap);
		fs_relayout(fs, slot, true, snap);
	}
out:
	pthread_mutex_unlock(&fs->swap_lock);
	return slot;
}

int fs_remove_slot(struct fs *fs, int slot)
{
	pthread_mutex_lock(&fs->swap_lock);
	if (slot < 0 || slot >= fs->nslots || !fs->slots[slot].live) {
		pthread_mutex_unlock(&fs->swap_lock);
		return -ENOENT;
	}
	/* the root's names have no parent to forget them by: empty it */
	if (!fs->slots[slot].atlen)
		fs_swap_locked(fs, slot, NULL);
	fs_tree_update(fs, slot, false, NULL);
	fs_relayout(fs, slot, false, NULL);
	pthread_mutex_unlock(&fs->swap_lock);
	return 0;
}

int fs_path_join(char *buf, size_t len, const char *dir, const char *name)
{
	int n = *dir && *name ? snprintf(buf, len, "%s/%s", dir, name) :
				snprintf(buf, len, "%s%s", dir, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

struct snap *fs_slot_snap(struct fs *fs, int slot, uint64_t *gen)
{
	struct snap *s;

	pthread_mutex_lock(&fs->slot_lock);
	s = snap_ref(fs->slots[slot].snap);
	if (gen)
		*gen = fs->gen;
	pthread_mutex_unlock(&fs->slot_lock);
	return s;
}

struct snap *fs_past_keep(struct fs *fs, int slot, bool live, struct snap *snap)
{
	struct fs_past *p;
	struct snap *gone = NULL;

	if (fs->npast == FS_PAST_MAX) {
		p = &fs->past[fs->past_first];
		fs->past_floor = p->gen;
		gone = p->snap;
		fs->past_first = (fs->past_first + 1) % FS_PAST_MAX;
		fs->npast--;
	}
	p = &fs->past[(fs->past_first + fs->npast++) % FS_PAST_MAX];
	*p = (struct fs_past){ .gen = fs->gen + 1,
			       .slot = slot,
			       .live = live,
			       .snap = snap,
			       .until_ns = now_ns() };
	return gone;
}

void fs_past_expire(struct fs *fs)
{
	struct snap *gone[FS_PAST_MAX];
	int64_t limit = now_ns() - FS_GRACE_NS;
	unsigned n = 0;

	if (!__atomic_load_n(&fs->npast, __ATOMIC_RELAXED))
		return; /* a hint: nothing kept */
	pthread_mutex_lock(&fs->slot_lock);
	while (fs->npast && fs->past[fs->past_first].until_ns < limit) {
		struct fs_past *p = &fs->past[fs->past_first];

		fs->past_floor = p->gen;
		gone[n++] = p->snap;
		fs->past_first = (fs->past_first + 1) % FS_PAST_MAX;
		__atomic_store_n(&fs->npast, fs->npast - 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&fs->slot_lock);
	while (n)
		snap_unref(gone[--n]);
}

/*
 * Whether slot @i was part of view @gen, and its snapshot then (borrowed);
 * slot_lock held. The oldest state replaced after that view is the one it
 * had; without one, its state has not changed since.
 */
static bool slot_at(struct fs *fs, int i, uint64_t gen, struct snap **snap)
{
	for (unsigned k = 0; gen != FS_NOW && k < fs->npast; k++) {
		const struct fs_past *p =
			&fs->past[(fs->past_first + k) % FS_PAST_MAX];

		if (p->slot == i && p->gen > gen) {
			*snap = p->snap;
			return p->live;
		}
	}
	*snap = fs->slots[i].snap;
	return fs->slots[i].live;
}

/* View @gen as slot_at() takes it (FS_NOW for the current one), or
 * -ESTALE; slot_lock held. */
static int view_at(struct fs *fs, uint64_t gen, uint64_t *out)
{
	if (gen >= fs->gen) {
		*out = FS_NOW;
		return 0;
	}
	if (gen < fs->past_floor)
		return -ESTALE;
	*out = gen;
	return 0;
}

bool fs_slot_current(struct fs *fs, int slot, const struct snap *snap)
{
	/* A pointer comparison only: @snap is referenced by the caller, so
	 * its address cannot be reused by a newer snapshot. A pinned
	 * revision never changes: always current. */
	if (slot < 0)
		return true;
	return __atomic_load_n(&fs->slots[slot].snap, __ATOMIC_ACQUIRE) == snap;
}

void fs_res_drop(struct fs_res *r)
{
	snap_unref(r->snap);
	r->snap = NULL;
	free(r->data);
	r->data = NULL;
	r->kind = FS_NONE;
}

const struct snap_entry *fs_res_entry(const struct fs_res *r)
{
	return &r->snap->e[r->idx];
}

bool fs_res_is_dir(const struct fs_res *r)
{
	if (r->kind == FS_ENTRY)
		return fs_res_entry(r)->type == SNAP_DIR;
	return r->kind != FS_NONE && r->kind != FS_META_FILE;
}

int fs_resolve_at(struct fs *fs, const char *path, uint64_t gen,
		  struct fs_res *out)
{
	size_t len = strlen(path);
	const char *rel = NULL;
	struct snap *s = NULL;
	bool synth = false;
	int rc, idx;

	memset(out, 0, sizeof(*out));
	if (fs_is_meta(path)) {
		out->gen = __atomic_load_n(&fs->gen, __ATOMIC_ACQUIRE);
		fs_meta_resolve(fs, path, out);
		return 0;
	}
	pthread_mutex_lock(&fs->slot_lock);
	rc = view_at(fs, gen, &gen);
	out->gen = gen == FS_NOW ? fs->gen : gen;
	/* slots never overlap within one view: one covers @path, or some
	 * lie below it, or neither */
	for (int i = 0, n = rc ? 0 : fs->nslots; i < n && !rel; i++) {
		const struct fs_slot *sl = &fs->slots[i];
		struct snap *si;

		if (!slot_at(fs, i, gen, &si))
			continue;
		if (fs_path_covers(sl->at, sl->atlen, path, len)) {
			rel = path + sl->atlen;
			rel += sl->atlen && *rel == '/';
			out->slot = i;
			s = snap_ref(si);
		} else if (sl->atlen > len &&
			   fs_path_covers(path, len, sl->at, sl->atlen)) {
			synth = true;
		}
	}
	pthread_mutex_unlock(&fs->slot_lock);
	if (rc)
		return rc;
	if (!rel) {
		out->kind = synth ? FS_SYNTH : FS_NONE;
		return 0;
	}
	if (!s) {
		out->kind = *rel ? FS_NONE : FS_EMPTY;
		return 0;
	}
	idx = snap_lookup(s, rel);
	if (idx < 0) {
		snap_unref(s);
		return 0;
	}
	out->kind = FS_ENTRY;
	out->snap = s;
	out->idx = (uint32_t)idx;
	return 0;
}

void fs_resolve(struct fs *fs, const char *path, struct fs_res *out)
{
	/* the current view is always there */
	if (fs_resolve_at(fs, path, FS_NOW, out))
		out->kind = FS_NONE;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int fs_synth_children(struct fs *fs, const char *path, uint64_t gen,
		      char ***out)
{
	size_t len = strlen(path), skip = len ? len + 1 : 0;
	char **v = calloc(FS_SLOTS_MAX, sizeof(*v));
	int n = 0, rc;

	if (!v)
		return -ENOMEM;
	pthread_mutex_lock(&fs->slot_lock);
	rc = view_at(fs, gen, &gen);
	for (int i = 0, nslots = rc ? 0 : fs->nslots; i < nslots; i++) {
		const struct fs_slot *s = &fs->slots[i];
		const char *c = s->at + skip, *end;
		struct snap *unused;
		bool dup = false;

		if (s->atlen <= len || !slot_at(fs, i, gen, &unused) ||
		    !fs_path_covers(path, len, s->at, s->atlen))
			continue;
		end = strchrnul(c, '/');
		for (int j = 0; j < n && !dup; j++)
			dup = !strncmp(v[j], c, end - c) && !v[j][end - c];
		if (dup)
			continue;
		v[n] = strndup(c, end - c);
		if (!v[n]) {
			rc = -ENOMEM;
			break;
		}
		n++;
	}
	pthread_mutex_unlock(&fs->slot_lock);
	if (rc) {
		while (n--)
			free(v[n]);
		free(v);
		return rc;
	}
	qsort(v, n, sizeof(*v), name_cmp);
	*out = v;
	return n;
}
