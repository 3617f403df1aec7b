/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trees.c - whole-view versions: .dagfs/trees/<id>/ serves the tree the
 * live root showed when <id> was current.
 *
 * After every swap and layout change (fs->swap_lock held) the live slots
 * and their snapshots are recorded as a tree manifest in the cache
 * (tree_record: written and fsynced before the id is shown), then made
 * the current tree, from which .dagfs/status.json is generated, so the
 * tree id and the revisions it lists always agree. An old tree is loaded
 * from its manifest on lookup, each member's snapshot from the store (or,
 * from a fetch thread, fetched on demand), and kept loaded, a few at a
 * time. A tree holds its snapshots by reference, so its files keep their
 * bytes while it is loaded; it retains nothing in the cache.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

/* Old trees kept loaded. */
#define TREES_MAX 8

static struct fs_tree *tree_alloc(size_t n)
{
	struct fs_tree *t = calloc(1, sizeof(*t) + n * sizeof(t->m[0]));

	if (t)
		t->refs = 1;
	return t;
}

void fs_tree_unref(struct fs_tree *t)
{
	if (!t || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL))
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->m[i].source);
		free(t->m[i].at);
		snap_unref(t->m[i].snap);
	}
	free(t);
}

static struct fs_tree *tree_ref(struct fs_tree *t)
{
	if (t)
		__atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
	return t;
}

/* Add member @i of @t; 0 or -ENOMEM. @snap: a new reference is taken. */
static int member_set(struct fs_tree *t, const char *source, const char *at,
		      int slot, struct snap *snap)
{
	struct fs_tree_member *m = &t->m[t->n];

	m->source = strdup(source);
	m->at = strdup(at);
	if (!m->source || !m->at) {
		free(m->source);
		free(m->at);
		return -ENOMEM;
	}
	m->atlen = strlen(at);
	m->slot = slot;
	m->snap = snap_ref(snap);
	t->n++;
	return 0;
}

struct fs_tree *fs_tree_get_current(struct fs *fs)
{
	struct fs_tree *t;

	pthread_mutex_lock(&fs->slot_lock);
	t = tree_ref(fs->tree);
	pthread_mutex_unlock(&fs->slot_lock);
	return t;
}

int fs_tree_current(struct fs *fs, char out[DHASH_HEX])
{
	struct fs_tree *t = fs_tree_get_current(fs);

	if (!t)
		return -ENOENT;
	memcpy(out, t->id, DHASH_HEX);
	fs_tree_unref(t);
	return 0;
}

/* True if @t is what @fs->tree already is (same slots, same snapshots). */
static bool tree_same(struct fs *fs, const struct fs_tree *t)
{
	const struct fs_tree *c = fs->tree; /* swap_lock: only we write it */

	if (!c || c->n != t->n)
		return false;
	for (size_t i = 0; i < t->n; i++)
		if (c->m[i].slot != t->m[i].slot ||
		    c->m[i].snap != t->m[i].snap)
			return false;
	return true;
}

void fs_tree_update(struct fs *fs, int slot, bool live, struct snap *snap)
{
	int n = fs_nslots(fs);
	struct fs_tree *t = tree_alloc((size_t)n + 1), *old;
	struct tree_member *mm = calloc(n + 1, sizeof(*mm));
	int rc = t && mm ? 0 : -ENOMEM;

	if (slot == n)
		n++; /* being added */
	for (int i = 0; !rc && i < n; i++) {
		struct snap *s;

		if (i == slot ? !live : !fs_slot_live(fs, i))
			continue;
		s = i == slot ? snap_ref(snap) : fs_slot_snap(fs, i, NULL);
		rc = member_set(t, fs->slots[i].source, fs->slots[i].at, i, s);
		snap_unref(s);
		if (!rc)
			mm[t->n - 1] = (struct tree_member){
				.source = fs->slots[i].source,
				.at = fs->slots[i].at,
				.rev = s ? s->rev : "",
				.snap_id = s ? s->id : "",
			};
	}
	if (rc || tree_same(fs, t)) {
		if (rc)
			log_err("fs", "composing the tree: %s", strerror(-rc));
		fs_tree_unref(t);
		free(mm);
		return;
	}
	/* durable before anyone can see (and record) the id */
	rc = tree_record(fs->st, mm, t->n, fs->o.keep_trees, t->id);
	if (rc) {
		log_err("fs",
			"recording the tree in %s/trees: %s; its id will "
			"not survive a restart",
			store_dir(fs->st), strerror(-rc));
		if (tree_id(t->id, mm, t->n))
			t->id[0] = '\0';
	}
	free(mm);
	pthread_mutex_lock(&fs->slot_lock);
	old = fs->tree;
	fs->tree = t;
	pthread_mutex_unlock(&fs->slot_lock);
	log_debug("fs", "tree %s (%zu sources)", t->id, t->n);
	fs_tree_unref(old);
}

/* ------------------------------------------------------- loaded trees */

/* True if every file @s names is in the store. */
static bool blobs_here(struct fs *fs, const struct snap *s)
{
	for (uint32_t i = 0; i < s->n; i++)
		if (s->e[i].type == SNAP_FILE &&
		    !store_has(fs->st, &s->e[i].hash))
			return false;
	return true;
}

/*
 * The snapshot of member @m: the very one composed (its hint) if still
 * in the store, else any retained one of that revision, else fetched
 * on demand until @fetch_until (if not 0). 0, or -ENOENT (*@out NULL for an empty member).
 */
static int member_snap(struct fs *fs, const struct tree_member *m,
		       int64_t fetch_until, struct snap **out)
{
	struct snap *s;
	int rc;

	*out = NULL;
	if (!*m->rev)
		return 0;
	if (*m->snap_id && !pub_load(fs->st, m->snap_id, &s)) {
		if (!strcmp(s->source, m->source) && !strcmp(s->rev, m->rev) &&
		    blobs_here(fs, s)) {
			*out = s;
			return 0;
		}
		snap_unref(s);
	}
	if (!pub_find_rev(fs->st, m->source, m->rev, out))
		return 0;
	if (!fetch_until)
		return -ENOENT;
	rc = fs_fetch_rev(fs, m->source, m->rev, fetch_until);
	if (rc)
		return rc;
	return pub_find_rev(fs->st, m->source, m->rev, out);
}

/* Load tree @id from its manifest (not kept). */
static struct fs_tree *tree_load_from(struct fs *fs, const char *id,
				      int64_t fetch_until)
{
	struct fs_tree *t = NULL;
	struct tree *mf;
	int rc = tree_load(fs->st, id, &mf);

	/* never composed here: perhaps the upstream has its manifest */
	if (rc == -ENOENT && fetch_until && !fs_fetch_tree(fs, id, fetch_until))
		rc = tree_load(fs->st, id, &mf);
	if (rc) {
		if (fetch_until)
			log_warn("fs", "tree %s: %s", id,
				 rc == -ENOENT ?
					 "unknown here (no manifest in the cache)" :
					 strerror(-rc));
		return NULL;
	}
	t = tree_alloc(mf->n);
	if (t)
		memcpy(t->id, id, DHASH_HEX);
	for (size_t i = 0; t && i < mf->n; i++) {
		struct snap *s;

		rc = member_snap(fs, &mf->m[i], fetch_until, &s);
		if (!rc)
			rc = member_set(t, mf->m[i].source, mf->m[i].at, -1, s);
		snap_unref(s);
		if (rc) {
			if (fetch_until)
				log_warn("fs",
					 "tree %s: source %s revision %s "
					 "cannot be served: %s",
					 id, mf->m[i].source, mf->m[i].rev,
					 strerror(-rc));
			fs_tree_unref(t);
			t = NULL;
		}
	}
	tree_free(mf);
	return t;
}

struct fs_tree *fs_tree_open(struct fs *fs, const char *id, int64_t fetch_until)
{
	struct fs_tree *t = fs_tree_get_current(fs), **pp, *gone = NULL;
	int n = 0;

	if (t && !strcmp(t->id, id))
		return t;
	fs_tree_unref(t);
	t = NULL;
	pthread_mutex_lock(&fs->rev_lock);
	for (pp = &fs->trees; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->id, id)) {
			t = tree_ref(*pp);
			*pp = t->next; /* to the front, the list's hold kept */
			t->next = fs->trees;
			fs->trees = t;
			break;
		}
	}
	pthread_mutex_unlock(&fs->rev_lock);
	if (t)
		return t;
	t = tree_load_from(fs, id, fetch_until);
	if (!t)
		return NULL;
	pthread_mutex_lock(&fs->rev_lock);
	t->next = fs->trees;
	fs->trees = tree_ref(t);
	/* room is made, and a racing load of the same id goes */
	for (pp = &t->next; *pp;) {
		struct fs_tree *x = *pp;

		if (++n >= TREES_MAX || !strcmp(x->id, id)) {
			*pp = x->next;
			x->next = gone;
			gone = x;
		} else {
			pp = &x->next;
		}
	}
	pthread_mutex_unlock(&fs->rev_lock);
	while (gone) {
		struct fs_tree *next = gone->next;

		fs_tree_unref(gone);
		gone = next;
	}
	return t;
}

void fs_trees_free(struct fs *fs)
{
	while (fs->trees) {
		struct fs_tree *next = fs->trees->next;

		fs_tree_unref(fs->trees);
		fs->trees = next;
	}
	fs_tree_unref(fs->tree);
	fs->tree = NULL;
}

/* ------------------------------------------------------------ resolution */

static bool id_valid(const char *s, size_t len)
{
	return len == DHASH_HEX - 1 &&
	       strspn(s, "0123456789abcdef") >= DHASH_HEX - 1;
}

bool fs_tree_root(const char *path)
{
	const char *p = path + FS_META_LEN;

	if (strncmp(p, "/trees/", 7))
		return false;
	p += 7;
	return id_valid(p, strlen(p));
}

/* Resolve @p (a path inside the tree) against @t. */
static void resolve_in(const struct fs_tree *t, const char *p,
		       struct fs_res *out)
{
	size_t len = strlen(p);
	int idx;

	for (size_t i = 0; i < t->n; i++) {
		const struct fs_tree_member *m = &t->m[i];
		const char *rel = p + m->atlen;

		if (!fs_path_covers(m->at, m->atlen, p, len))
			continue;
		if (m->atlen && *rel == '/')
			rel++;
		/* as in the live root, a root source's own .dagfs is hidden */
		if (!m->atlen && fs_is_meta(rel))
			return;
		if (!m->snap) {
			out->kind = *rel ? FS_NONE : FS_META_DIR;
			return;
		}
		idx = snap_lookup(m->snap, rel);
		if (idx < 0)
			return;
		out->kind = FS_ENTRY;
		out->slot = FS_SLOT_REV;
		out->snap = snap_ref(m->snap);
		out->idx = (uint32_t)idx;
		return;
	}
	for (size_t i = 0; i < t->n; i++)
		if (t->m[i].atlen > len &&
		    fs_path_covers(p, len, t->m[i].at, t->m[i].atlen)) {
			out->kind = FS_META_DIR; /* made up above a sub-path */
			return;
		}
}

void fs_tree_resolve(struct fs *fs, const char *rel, struct fs_res *out)
{
	const char *end = strchrnul(rel, '/');
	char id[DHASH_HEX];
	struct fs_tree *t;

	if (!*rel) {
		out->kind = FS_META_DIR;
		return;
	}
	if (!id_valid(rel, (size_t)(end - rel)))
		return;
	memcpy(id, rel, DHASH_HEX - 1);
	id[DHASH_HEX - 1] = '\0';
	t = fs_tree_open(fs, id, 0);
	if (!t)
		return;
	resolve_in(t, *end ? end + 1 : "", out);
	fs_tree_unref(t);
}

/* ------------------------------------------------------------- listings */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void strv_free(char **v, int n)
{
	while (n-- > 0)
		free(v[n]);
	free(v);
}

/* Retained revisions of each source asked about, looked up once. */
struct revsets {
	size_t n;
	struct revset {
		char *source;
		char **revs;
		int nrevs;
	} v[64];
};

static bool retained(struct fs *fs, struct revsets *rs, const char *source,
		     const char *rev)
{
	struct revset *r = NULL;

	for (size_t i = 0; i < rs->n && !r; i++)
		if (!strcmp(rs->v[i].source, source))
			r = &rs->v[i];
	if (!r && rs->n < 64 && (rs->v[rs->n].source = strdup(source))) {
		r = &rs->v[rs->n++];
		r->nrevs = pub_list_revs(fs->st, source, &r->revs);
		if (r->nrevs < 0) {
			r->revs = NULL;
			r->nrevs = 0;
		}
	}
	for (int i = 0; r && i < r->nrevs; i++)
		if (!strcmp(r->revs[i], rev))
			return true;
	return false;
}

/* True if every member of manifest @id is retained now. */
static bool servable(struct fs *fs, struct revsets *rs, const char *id)
{
	struct tree *mf;
	bool ok;

	if (tree_load(fs->st, id, &mf))
		return false;
	ok = true;
	for (size_t i = 0; ok && i < mf->n; i++)
		ok = !*mf->m[i].rev ||
		     retained(fs, rs, mf->m[i].source, mf->m[i].rev);
	tree_free(mf);
	return ok;
}

/* trees/: the recorded trees whose revisions are all retained. */
static int list_ids(struct fs *fs, char ***out)
{
	struct revsets *rs = calloc(1, sizeof(*rs));
	char **v = NULL;
	int n = rs ? tree_list(fs->st, &v) : -ENOMEM, k = 0;

	for (int i = 0; i < n; i++) {
		if (servable(fs, rs, v[i]))
			v[k++] = v[i];
		else
			free(v[i]);
	}
	for (size_t i = 0; rs && i < rs->n; i++) {
		strv_free(rs->v[i].revs, rs->v[i].nrevs);
		free(rs->v[i].source);
	}
	free(rs);
	if (n < 0)
		return n;
	qsort(v, k, sizeof(*v), name_cmp);
	*out = v;
	return k;
}

/* Children of made-up directory @p of @t: the next part of each at. */
static int synth_children(const struct fs_tree *t, const char *p, char ***out)
{
	size_t len = strlen(p), skip = len ? len + 1 : 0;
	char **v = calloc(t->n ? t->n : 1, sizeof(*v));
	int n = 0;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		const struct fs_tree_member *m = &t->m[i];
		const char *c = m->at + skip, *end;
		bool dup = false;

		if (m->atlen <= len || !fs_path_covers(p, len, m->at, m->atlen))
			continue;
		end = strchrnul(c, '/');
		for (int j = 0; j < n && !dup; j++)
			dup = !strncmp(v[j], c, end - c) && !v[j][end - c];
		if (dup)
			continue;
		if (!(v[n] = strndup(c, end - c))) {
			strv_free(v, n);
			return -ENOMEM;
		}
		n++;
	}
	qsort(v, n, sizeof(*v), name_cmp);
	*out = v;
	return n;
}

int fs_tree_children(struct fs *fs, const char *rel, char ***out)
{
	const char *end = strchrnul(rel, '/');
	char id[DHASH_HEX];
	struct fs_tree *t;
	int n;

	if (!*rel)
		return list_ids(fs, out);
	if (!id_valid(rel, (size_t)(end - rel)))
		return -ENOENT;
	memcpy(id, rel, DHASH_HEX - 1);
	id[DHASH_HEX - 1] = '\0';
	t = fs_tree_open(fs, id, 0);
	if (!t)
		return -ENOENT;
	n = synth_children(t, *end ? end + 1 : "", out);
	fs_tree_unref(t);
	return n;
}
