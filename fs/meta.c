/* SPDX-License-Identifier: Apache-2.0 */
/*
 * meta.c - the read-only .dagfs directory in the root:
 *
 *   .dagfs/status.json                 current revision of every source
 *   .dagfs/changes/<source>            "A|M|D path" lines of its last swap
 *   .dagfs/revs/<source>/<revision>/   any retained snapshot of a source
 *   .dagfs/trees/<id>/                 a whole tree as it was (trees.c)
 *
 * Generated files are resolved with their bytes, so their inodes are
 * (path, content) pairs like snapshot files. Pinned revisions are loaded
 * from the store on lookup (pub_find_rev) and kept loaded, a few at a
 * time, until their source swaps again; their files and links are
 * ordinary entries of slot FS_SLOT_REV.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_i.h"

/* Pinned revisions kept loaded when no swap of their source drops them. */
#define REVS_MAX 8

/** A loaded pinned revision. */
struct fs_rev {
	struct fs_rev *next;
	int slot;	   /* whose source */
	char *name;	   /* as looked up (a revision or a prefix) */
	struct snap *snap; /* a reference */
};

static void rev_free(struct fs_rev *r)
{
	snap_unref(r->snap);
	free(r->name);
	free(r);
}

void fs_meta_free(struct fs *fs)
{
	struct fs_rev *r, *next;

	for (r = fs->revs; r; r = next) {
		next = r->next;
		rev_free(r);
	}
	fs->revs = NULL;
}

/* Remove the loaded revisions that match (@slot, @name), or all of @slot
 * when @name is NULL, and those past the first @max; rev_lock held.
 * Returns the list of removed ones to free unlocked. */
static struct fs_rev *revs_trim(struct fs *fs, int slot, const char *name,
				int max)
{
	struct fs_rev **pp = &fs->revs, *gone = NULL, *r;
	int n = 0;

	while ((r = *pp)) {
		if ((r->slot == slot && (!name || !strcmp(r->name, name))) ||
		    n >= max) {
			*pp = r->next;
			r->next = gone;
			gone = r;
		} else {
			pp = &r->next;
			n++;
		}
	}
	return gone;
}

static void revs_free_list(struct fs_rev *r)
{
	struct fs_rev *next;

	for (; r; r = next) {
		next = r->next;
		rev_free(r);
	}
}

struct snap *fs_meta_rev_get(struct fs *fs, int slot, const char *name)
{
	struct fs_rev *r, **pp, *gone;
	struct snap *s = NULL;

	pthread_mutex_lock(&fs->rev_lock);
	for (pp = &fs->revs; (r = *pp); pp = &r->next) {
		if (r->slot == slot && !strcmp(r->name, name)) {
			*pp = r->next; /* to the front */
			r->next = fs->revs;
			fs->revs = r;
			s = snap_ref(r->snap);
			break;
		}
	}
	pthread_mutex_unlock(&fs->rev_lock);
	if (s)
		return s;
	if (pub_find_rev(fs->st, fs->slots[slot].source, name, &s))
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r || !(r->name = strdup(name))) {
		free(r);
		return s; /* served, not kept */
	}
	r->slot = slot;
	r->snap = snap_ref(s);
	pthread_mutex_lock(&fs->rev_lock);
	/* a racing load of the same revision goes, and room is made */
	gone = revs_trim(fs, slot, name, REVS_MAX - 1);
	r->next = fs->revs;
	fs->revs = r;
	pthread_mutex_unlock(&fs->rev_lock);
	revs_free_list(gone);
	return s;
}

void fs_meta_swapped(struct fs *fs, int slot, char *changes)
{
	struct fs_slot *s = &fs->slots[slot];
	struct fs_rev *gone;

	pthread_mutex_lock(&fs->slot_lock);
	free(s->changes);
	s->changes = changes;
	s->swapped_ns = now_ns();
	pthread_mutex_unlock(&fs->slot_lock);
	/* the retained set moved: look the revisions up again */
	pthread_mutex_lock(&fs->rev_lock);
	gone = revs_trim(fs, slot, NULL, REVS_MAX);
	pthread_mutex_unlock(&fs->rev_lock);
	revs_free_list(gone);
}

int fs_meta_slot_named(struct fs *fs, const char *name, size_t len)
{
	for (int i = 0, n = fs_nslots(fs); i < n; i++)
		if (fs_slot_live(fs, i) && strlen(fs->slots[i].source) == len &&
		    !memcmp(fs->slots[i].source, name, len))
			return i;
	return -1;
}

/* ------------------------------------------------------ generated files */

/* Put @b into @a and the old @a into @b (to free after unlocking). */
#define SWAP_FREE(a, b)                                                        \
	do {                                                                   \
		char *old_ = (a);                                              \
		(a) = (b);                                                     \
		(b) = old_;                                                    \
	} while (0)

/* status.json: the current tree and the revision of every source in it
 * (one composition, so they agree); newest swap in @mtime. */
static void status_json(struct fs *fs, FILE *f, int64_t *mtime)
{
	struct fs_tree *t = fs_tree_get_current(fs);
	size_t n = t ? t->n : 0;
	struct tree_json_src *v = calloc(n ? n : 1, sizeof(*v));

	pthread_mutex_lock(&fs->slot_lock);
	for (size_t i = 0; v && i < n; i++) {
		const struct fs_tree_member *m = &t->m[i];
		const struct fs_slot *sl = &fs->slots[m->slot];

		if (sl->swapped_ns > *mtime)
			*mtime = sl->swapped_ns;
		v[i] = (struct tree_json_src){ .source = m->source,
					       .at = m->at,
					       .type = sl->type,
					       .keep = sl->keep,
					       .url = sl->url,
					       .ref = sl->ref,
					       .snap = m->snap };
	}
	/* under the lock: fs_slot_describe() frees what it replaces */
	if (v)
		tree_json_put(f, t ? t->id : NULL, v, n);
	pthread_mutex_unlock(&fs->slot_lock);
	free(v);
	fs_tree_unref(t);
}

static char *strdup_or_null(const char *s, bool *ok)
{
	char *c = s ? strdup(s) : NULL;

	*ok &= !s || c;
	return c;
}

int fs_slot_describe(struct fs *fs, int slot, const struct fs_slot_info *info)
{
	bool ok = true;
	char *type = strdup_or_null(info->type, &ok);
	char *url = strdup_or_null(info->url, &ok);
	char *ref = strdup_or_null(info->ref, &ok);
	struct fs_slot *sl;

	if (!ok || slot < 0 || slot >= fs_nslots(fs)) {
		free(type);
		free(url);
		free(ref);
		return ok ? -ENOENT : -ENOMEM;
	}
	sl = &fs->slots[slot];
	pthread_mutex_lock(&fs->slot_lock);
	SWAP_FREE(sl->type, type);
	SWAP_FREE(sl->url, url);
	SWAP_FREE(sl->ref, ref);
	sl->keep = info->keep;
	pthread_mutex_unlock(&fs->slot_lock);
	free(type);
	free(url);
	free(ref);
	return 0;
}

/* changes/<source> of @slot. */
static void changes_text(struct fs *fs, int slot, FILE *f, int64_t *mtime)
{
	const struct fs_slot *sl = &fs->slots[slot];

	pthread_mutex_lock(&fs->slot_lock);
	if (sl->changes)
		fputs(sl->changes, f);
	*mtime = sl->swapped_ns;
	pthread_mutex_unlock(&fs->slot_lock);
}

/* Make @out the generated file of @slot (-1: status.json). */
static void gen_file(struct fs *fs, int slot, struct fs_res *out)
{
	int64_t mtime = fs->start_ns;
	FILE *f = open_memstream(&out->data, &out->len);

	if (!f)
		return; /* FS_NONE: the lookup fails */
	if (slot < 0)
		status_json(fs, f, &mtime);
	else
		changes_text(fs, slot, f, &mtime);
	if (fclose(f)) {
		free(out->data);
		out->data = NULL;
		return;
	}
	out->kind = FS_META_FILE;
	out->slot = FS_SLOT_META;
	out->mtime_ns = mtime > fs->start_ns ? mtime : fs->start_ns;
}

/* ------------------------------------------------------------ resolution */

/* revs/<source>/<revision>[/path]: @rel is what follows "revs/". */
static void resolve_rev(struct fs *fs, const char *rel, struct fs_res *out)
{
	const char *name = strchr(rel, '/'), *end;
	char rev[NAME_MAX + 1];
	int slot = fs_meta_slot_named(fs, rel,
				      name ? (size_t)(name - rel) :
					     strlen(rel));
	struct snap *s;
	int idx;

	if (slot < 0)
		return;
	if (!name) {
		out->kind = FS_META_DIR;
		return;
	}
	name++;
	end = strchrnul(name, '/');
	if (end == name || end - name > NAME_MAX)
		return;
	memcpy(rev, name, end - name);
	rev[end - name] = '\0';
	s = fs_meta_rev_get(fs, slot, rev);
	if (!s)
		return;
	idx = snap_lookup(s, *end ? end + 1 : "");
	if (idx < 0) {
		snap_unref(s);
		return;
	}
	out->kind = FS_ENTRY;
	out->slot = FS_SLOT_REV;
	out->snap = s;
	out->idx = (uint32_t)idx;
}

bool fs_meta_rev_root(const char *path)
{
	const char *p = path + FS_META_LEN;

	if (fs_tree_root(path))
		return true;
	if (strncmp(p, "/revs/", 6))
		return false;
	p = strchr(p + 6, '/');
	return p && p[1] && !strchr(p + 1, '/');
}

void fs_meta_resolve(struct fs *fs, const char *path, struct fs_res *out)
{
	const char *rel = path + FS_META_LEN;
	int slot;

	memset(out, 0, sizeof(*out));
	if (*rel == '/')
		rel++;
	if (!*rel || !strcmp(rel, "revs") || !strcmp(rel, "changes")) {
		out->kind = FS_META_DIR;
	} else if (!strcmp(rel, "trees")) {
		fs_tree_resolve(fs, "", out);
	} else if (!strncmp(rel, "trees/", 6)) {
		fs_tree_resolve(fs, rel + 6, out);
	} else if (!strcmp(rel, "status.json")) {
		gen_file(fs, -1, out);
	} else if (!strncmp(rel, "changes/", 8)) {
		slot = fs_meta_slot_named(fs, rel + 8, strlen(rel + 8));
		if (slot >= 0)
			gen_file(fs, slot, out);
	} else if (!strncmp(rel, "revs/", 5)) {
		resolve_rev(fs, rel + 5, out);
	}
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The source names (one per slot), for revs/ and changes/. */
static int source_names(struct fs *fs, char ***out)
{
	int nslots = fs_nslots(fs), n = 0;
	char **v = calloc(nslots ? nslots : 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (int i = 0; i < nslots; i++) {
		if (!fs_slot_live(fs, i))
			continue;
		v[n] = strdup(fs->slots[i].source);
		if (!v[n]) {
			while (n--)
				free(v[n]);
			free(v);
			return -ENOMEM;
		}
		n++;
	}
	*out = v;
	return n;
}

/* Keep only the names that can be directory entries. */
static int names_clean(char **v, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++) {
		if (!*v[i] || strchr(v[i], '/') || !strcmp(v[i], ".") ||
		    !strcmp(v[i], "..") || strlen(v[i]) > NAME_MAX)
			free(v[i]);
		else
			v[k++] = v[i];
	}
	qsort(v, k, sizeof(*v), name_cmp);
	return k;
}

int fs_meta_children(struct fs *fs, const char *path, char ***out)
{
	static const char *const top[] = { "changes", "revs", "status.json",
					   "trees" };
	const int ntop = sizeof(top) / sizeof(*top);
	const char *rel = path + FS_META_LEN;
	int n, slot;

	if (*rel == '/')
		rel++;
	if (!*rel) {
		char **v = calloc(ntop, sizeof(*v));

		for (n = 0; v && n < ntop; n++)
			if (!(v[n] = strdup(top[n])))
				break;
		if (!v || n < ntop) {
			while (v && n--)
				free(v[n]);
			free(v);
			return -ENOMEM;
		}
		*out = v;
		return ntop;
	}
	if (!strcmp(rel, "trees"))
		return fs_tree_children(fs, "", out);
	if (!strncmp(rel, "trees/", 6))
		return fs_tree_children(fs, rel + 6, out);
	if (!strcmp(rel, "revs") || !strcmp(rel, "changes"))
		n = source_names(fs, out);
	else if (!strncmp(rel, "revs/", 5) &&
		 (slot = fs_meta_slot_named(fs, rel + 5, strlen(rel + 5))) >= 0)
		n = pub_list_revs(fs->st, fs->slots[slot].source, out);
	else
		return -ENOENT;
	return n < 0 ? n : names_clean(*out, n);
}
