/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snap.c - immutable snapshots in memory: the builder that seals a
 * listing, lookups by path and by (directory, name), the diff between two
 * revisions. The on-disk encoding is snap_codec.c.
 *
 * Entries are sorted by (directory, name), so every directory's children
 * are contiguous and sorted: readdir is a slice, lookup a binary search.
 * Entry 0 is the root. Nothing here touches the network or the store's
 * blobs; publication lives in pub.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "log.h"
#include "snap_i.h"

#define LINK_HOPS 40

struct raw {
	char *path;
	char *target;
	struct dhash hash;
	uint64_t size;
	int64_t mtime_ns;
	uint32_t mode;
	uint8_t type;
	bool drop;
};

struct snap_builder {
	char *source;
	struct raw *v;
	size_t n, cap;
};

/* ------------------------------------------------------------ helpers */

int snap_path_check(const char *path, size_t len)
{
	size_t part = 0;

	if (len == 0 || len >= PATH_MAX || path[0] == '/' ||
	    path[len - 1] == '/')
		return -EINVAL;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || path[i] == '/') {
			const char *c = path + i - part;

			if (part == 0 || part > NAME_MAX ||
			    (part == 1 && c[0] == '.') ||
			    (part == 2 && c[0] == '.' && c[1] == '.'))
				return -EINVAL;
			part = 0;
			continue;
		}
		if (path[i] == '\0')
			return -EINVAL;
		part++;
	}
	return 0;
}

static size_t dirname_len(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? (size_t)(slash - path) : 0;
}

static const char *basename_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* Order of entries: by directory, then by name; the root ("") first. */
static int path_cmp(const char *a, const char *b)
{
	size_t da = dirname_len(a), db = dirname_len(b);
	size_t m = da < db ? da : db;
	int c;

	if (!*a || !*b)
		return !!*a - !!*b;
	c = memcmp(a, b, m);
	if (c)
		return c;
	if (da != db)
		return da < db ? -1 : 1;
	return strcmp(basename_of(a), basename_of(b));
}

static uint64_t path_hash(const char *p, size_t len)
{
	return XXH3_64bits(p, len);
}

/* --------------------------------------------------------- refcounts */

static struct snap_impl *impl(struct snap *s)
{
	return (struct snap_impl *)s;
}

static const struct snap_impl *cimpl(const struct snap *s)
{
	return (const struct snap_impl *)s;
}

struct snap *snap_ref(struct snap *s)
{
	if (s)
		__atomic_add_fetch(&impl(s)->refs, 1, __ATOMIC_RELAXED);
	return s;
}

void snap_unref(struct snap *s)
{
	struct snap_impl *si = impl(s);

	if (!s || __atomic_sub_fetch(&si->refs, 1, __ATOMIC_ACQ_REL))
		return;
	if (si->pinned_in)
		store_unpin(si->pinned_in, s->id);
	free(s->source);
	free(s->rev);
	free(s->e);
	free(si->slots);
	free(si->strings);
	free(si->raw);
	free(si);
}

void snap_set_raw(struct snap *s, void *buf, size_t len)
{
	free(impl(s)->raw);
	impl(s)->raw = buf;
	impl(s)->rawlen = len;
}

void *snap_take_raw(struct snap *s, size_t *len)
{
	void *buf = impl(s)->raw;

	*len = impl(s)->rawlen;
	impl(s)->raw = NULL;
	return buf;
}

int snap_refs(const struct snap *s)
{
	return __atomic_load_n(&cimpl(s)->refs, __ATOMIC_RELAXED);
}

void snap_pin(struct snap *s, struct store *st)
{
	if (impl(s)->pinned_in)
		return;
	store_pin(st, s->id);
	impl(s)->pinned_in = st;
}

/* ----------------------------------------------------------- lookups */

static int lookup_len(const struct snap *s, const char *path, size_t len)
{
	const struct snap_impl *si = cimpl(s);
	uint32_t mask = si->nslots - 1;
	uint32_t i = (uint32_t)path_hash(path, len) & mask;

	for (;; i = (i + 1) & mask) {
		uint32_t v = si->slots[i];
		const char *p;

		if (!v)
			return -ENOENT;
		p = s->e[v - 1].path;
		if (!strncmp(p, path, len) && p[len] == '\0')
			return (int)(v - 1);
	}
}

int snap_lookup(const struct snap *s, const char *path)
{
	return lookup_len(s, path, strlen(path));
}

int snap_child(const struct snap *s, uint32_t dir, const char *name)
{
	const struct snap_entry *d = &s->e[dir];
	uint32_t lo = d->child_first, hi = d->child_first + d->child_count;

	if (d->type != SNAP_DIR)
		return -ENOTDIR;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, s->e[mid].name);

		if (!c)
			return (int)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -ENOENT;
}

/* ----------------------------------------------------------- builder */

int snap_builder_new(struct snap_builder **out, const char *source)
{
	struct snap_builder *b = calloc(1, sizeof(*b));

	if (!b || !(b->source = strdup(source))) {
		free(b);
		return -ENOMEM;
	}
	*out = b;
	return 0;
}

void snap_builder_free(struct snap_builder *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++) {
		free(b->v[i].path);
		free(b->v[i].target);
	}
	free(b->v);
	free(b->source);
	free(b);
}

static int builder_add(struct snap_builder *b, const struct raw *r,
		       const char *path, const char *target)
{
	struct raw *v;

	if (*path && snap_path_check(path, strlen(path)))
		return -EINVAL;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;

		v = realloc(b->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		b->v = v;
		b->cap = cap;
	}
	v = &b->v[b->n];
	*v = *r;
	v->path = strdup(path);
	v->target = target ? strdup(target) : NULL;
	if (!v->path || (target && !v->target)) {
		free(v->path);
		free(v->target);
		return -ENOMEM;
	}
	b->n++;
	return 0;
}

int snap_builder_add_file(struct snap_builder *b, const char *path,
			  uint32_t mode, uint64_t size, int64_t mtime_ns,
			  const struct dhash *h)
{
	struct raw r = { .hash = *h,
			 .size = size,
			 .mtime_ns = mtime_ns,
			 .mode = mode & 07777,
			 .type = SNAP_FILE };

	return builder_add(b, &r, path, NULL);
}

int snap_builder_add_dir(struct snap_builder *b, const char *path,
			 uint32_t mode, int64_t mtime_ns)
{
	struct raw r = { .mtime_ns = mtime_ns,
			 .mode = mode & 07777,
			 .type = SNAP_DIR };

	return builder_add(b, &r, path, NULL);
}

int snap_builder_add_link(struct snap_builder *b, const char *path,
			  const char *target, int64_t mtime_ns)
{
	size_t tl = strlen(target);
	struct raw r = { .size = tl,
			 .mtime_ns = mtime_ns,
			 .mode = 0777,
			 .type = SNAP_LINK };

	if (tl == 0 || tl >= PATH_MAX)
		return -EINVAL;
	return builder_add(b, &r, path, target);
}

static int raw_cmp(const void *a, const void *b)
{
	return path_cmp(((const struct raw *)a)->path,
			((const struct raw *)b)->path);
}

/* Append every missing ancestor of the entries as a synthesized directory. */
static int builder_add_parents(struct snap_builder *b)
{
	size_t n = b->n, lastlen = (size_t)-1;
	const char *last = "";
	struct raw root = { .mode = 0755, .type = SNAP_DIR, .drop = true };
	int rc = builder_add(b, &root, "", NULL);

	for (size_t i = 0; i < n && !rc; i++) {
		char *path = b->v[i].path;
		size_t dl = dirname_len(path);

		if (dl == lastlen && !memcmp(path, last, dl))
			continue;
		last = path;
		lastlen = dl;
		for (size_t j = 0; j < dl && !rc; j++) {
			char save;

			if (path[j + 1] != '/' && j + 1 != dl)
				continue;
			save = path[j + 1];
			path[j + 1] = '\0';
			/* .drop marks synthesized entries until dedupe */
			rc = builder_add(b, &root, path, NULL);
			path[j + 1] = save;
			last = b->v[i].path; /* b->v may have moved */
			path = b->v[i].path;
		}
	}
	return rc;
}

/* Which of two entries with one path to keep: @a (true) or @b (false). */
static bool keep_first(const char *source, const struct raw *a,
		       const struct raw *b)
{
	if (a->type != b->type &&
	    (a->type == SNAP_DIR || b->type == SNAP_DIR)) {
		const struct raw *f = a->type == SNAP_DIR ? b : a;

		if (!f->drop)
			log_err(source,
				"%s is both a file and a directory; "
				"the directory wins",
				f->path);
		return a->type == SNAP_DIR;
	}
	if (a->drop != b->drop)
		return !a->drop; /* explicit over synthesized */
	return true;
}

/*
 * After sorting, equal paths are adjacent: keep one of each. Synthesized
 * directories (marked .drop until here) take the newest mtime seen.
 */
static void builder_dedupe(struct snap_builder *b, int64_t newest)
{
	size_t w = 0;

	for (size_t r = 0; r < b->n; r++) {
		struct raw *cur = &b->v[r], *keep = w ? &b->v[w - 1] : NULL;

		if (!keep || strcmp(keep->path, cur->path)) {
			b->v[w++] = *cur;
			continue;
		}
		if (!keep_first(b->source, keep, cur)) {
			struct raw tmp = *keep;

			*keep = *cur;
			*cur = tmp;
		}
		free(cur->path);
		free(cur->target);
	}
	b->n = w;
	for (size_t i = 0; i < w; i++) {
		if (b->v[i].drop) {
			b->v[i].drop = false;
			b->v[i].mtime_ns = newest;
		}
	}
}

/* Seal the sorted, deduplicated raw entries into a snapshot. */
static int snap_seal(struct snap **out, struct raw *v, size_t n,
		     const char *source, const char *rev)
{
	struct snap_impl *si = calloc(1, sizeof(*si));
	size_t bytes = 0, off = 0;
	struct snap *s;

	if (!si)
		return -ENOMEM;
	s = &si->pub;
	si->refs = 1;
	s->n = (uint32_t)n;
	for (size_t i = 0; i < n; i++)
		bytes += strlen(v[i].path) + 1 +
			 (v[i].target ? strlen(v[i].target) + 1 : 0);
	for (si->nslots = 16; si->nslots < 2 * n; si->nslots *= 2)
		;
	s->e = calloc(n, sizeof(*s->e));
	si->strings = malloc(bytes ? bytes : 1);
	si->slots = calloc(si->nslots, sizeof(*si->slots));
	s->source = strdup(source);
	s->rev = strdup(rev);
	if (!s->e || !si->strings || !si->slots || !s->source || !s->rev) {
		snap_unref(s);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct snap_entry *e = &s->e[i];
		size_t pl = strlen(v[i].path) + 1;
		uint32_t mask = si->nslots - 1, slot;

		memcpy(si->strings + off, v[i].path, pl);
		e->path = si->strings + off;
		e->name = basename_of(e->path);
		off += pl;
		if (v[i].target) {
			size_t tl = strlen(v[i].target) + 1;

			memcpy(si->strings + off, v[i].target, tl);
			e->target = si->strings + off;
			off += tl;
		}
		e->hash = v[i].hash;
		e->size = v[i].size;
		e->mtime_ns = v[i].mtime_ns;
		e->mode = v[i].mode;
		e->type = v[i].type;
		slot = (uint32_t)path_hash(e->path, pl - 1) & mask;
		while (si->slots[slot])
			slot = (slot + 1) & mask;
		si->slots[slot] = (uint32_t)i + 1;
	}
	for (size_t i = 1; i < n; i++) {
		struct snap_entry *e = &s->e[i];
		int p = lookup_len(s, e->path, dirname_len(e->path));

		if (p < 0 || s->e[p].type != SNAP_DIR) {
			snap_unref(s);
			return -EINVAL;
		}
		e->parent = (uint32_t)p;
		if (!s->e[p].child_count)
			s->e[p].child_first = (uint32_t)i;
		s->e[p].child_count++;
	}
	*out = s;
	return 0;
}

static int depth_of(const struct snap *s, uint32_t i)
{
	int d = 0;

	for (; i; i = s->e[i].parent)
		d++;
	return d;
}

/*
 * Resolve link @li as the kernel would, following links inside the
 * snapshot; 1 if it ever climbs above the root. Components that do not
 * exist are followed lexically.
 */
static int link_escapes(const struct snap *s, uint32_t li)
{
	char *rest = malloc(2 * PATH_MAX + 2), *p, *next;
	uint32_t cur = s->e[li].parent;
	int hops = 0, vdepth = -1, esc = 0;

	if (!rest)
		return 1;
	snprintf(rest, 2 * PATH_MAX + 2, "%s", s->e[li].target);
	if (rest[0] == '/')
		goto out_escape;
	for (p = rest; p && *p; p = next) {
		char *slash = strchr(p, '/');
		int c;

		next = slash ? slash + 1 : NULL;
		if (slash)
			*slash = '\0';
		if (!*p || !strcmp(p, "."))
			continue;
		if (vdepth >= 0) { /* past a missing component */
			vdepth += strcmp(p, "..") ? 1 : -1;
			if (vdepth < 0)
				goto out_escape;
			continue;
		}
		if (!strcmp(p, "..")) {
			if (cur == 0)
				goto out_escape;
			cur = s->e[cur].parent;
			continue;
		}
		c = snap_child(s, cur, p);
		if (c < 0) {
			vdepth = depth_of(s, cur) + 1;
			continue;
		}
		if (s->e[c].type == SNAP_DIR) {
			cur = (uint32_t)c;
		} else if (s->e[c].type == SNAP_LINK) {
			char *tmp;

			if (++hops > LINK_HOPS || s->e[c].target[0] == '/')
				goto out_escape;
			tmp = malloc(2 * PATH_MAX + 2);
			if (!tmp)
				goto out_escape;
			snprintf(tmp, 2 * PATH_MAX + 2, "%s/%s", s->e[c].target,
				 next ? next : "");
			free(rest);
			rest = tmp;
			next = rest;
		} else {
			break; /* a file: the kernel stops with ENOTDIR */
		}
	}
	free(rest);
	return esc;
out_escape:
	free(rest);
	return 1;
}

int snap_builder_finish(struct snap_builder *b, const char *rev,
			struct snap **out)
{
	struct snap *s = NULL;
	int64_t newest = 0;
	int rc;

	for (size_t i = 0; i < b->n; i++)
		if (b->v[i].mtime_ns > newest)
			newest = b->v[i].mtime_ns;
	rc = builder_add_parents(b);
	if (rc)
		goto out;
	qsort(b->v, b->n, sizeof(*b->v), raw_cmp);
	builder_dedupe(b, newest);
	for (;;) {
		size_t dropped = 0, w = 0;

		rc = snap_seal(&s, b->v, b->n, b->source, rev);
		if (rc)
			goto out;
		for (uint32_t i = 0; i < s->n; i++) {
			if (s->e[i].type != SNAP_LINK || !link_escapes(s, i))
				continue;
			log_err(b->source,
				"symlink %s -> %s resolves outside "
				"the source; left out",
				s->e[i].path, s->e[i].target);
			b->v[i].drop = true;
			dropped++;
		}
		if (!dropped)
			break;
		snap_unref(s);
		s = NULL;
		for (size_t i = 0; i < b->n; i++) {
			if (b->v[i].drop) {
				free(b->v[i].path);
				free(b->v[i].target);
			} else {
				b->v[w++] = b->v[i];
			}
		}
		b->n = w;
	}
	*out = s;
out:
	snap_builder_free(b);
	return rc;
}

/* A digest of the entries: equal listings are the same revision. */
static void entries_digest(struct dhash *out, const struct snap *s)
{
	XXH3_state_t *xs = XXH3_createState();
	XXH128_canonical_t c;

	XXH3_128bits_reset(xs);
	for (uint32_t i = 0; i < s->n; i++) {
		const struct snap_entry *e = &s->e[i];

		XXH3_128bits_update(xs, e->path, strlen(e->path) + 1);
		XXH3_128bits_update(xs, &e->type, 1);
		XXH3_128bits_update(xs, &e->mode, sizeof(e->mode));
		XXH3_128bits_update(xs, &e->size, sizeof(e->size));
		XXH3_128bits_update(xs, &e->mtime_ns, sizeof(e->mtime_ns));
		XXH3_128bits_update(xs, e->hash.b, 16);
		if (e->target)
			XXH3_128bits_update(xs, e->target, strlen(e->target));
	}
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(xs));
	XXH3_freeState(xs);
	memcpy(out->b, c.digest, 16);
}

int snap_builder_finish_digest(struct snap_builder *b, const char *prefix,
			       struct snap **out)
{
	size_t pl = strlen(prefix);
	struct snap *s;
	struct dhash h;
	char *rev;
	int rc = snap_builder_finish(b, "", &s);

	if (rc)
		return rc;
	rev = malloc(pl + DHASH_HEX);
	if (!rev) {
		snap_unref(s);
		return -ENOMEM;
	}
	/* still sealing: nobody else holds @s, its id is not yet computed */
	entries_digest(&h, s);
	memcpy(rev, prefix, pl);
	dhash_hex(rev + pl, &h);
	free(s->rev);
	s->rev = rev;
	*out = s;
	return 0;
}

/* ---------------------------------------------------------------- diff */

static bool entry_same(const struct snap_entry *a, const struct snap_entry *b)
{
	if (a->type != b->type || a->mode != b->mode ||
	    a->mtime_ns != b->mtime_ns)
		return false;
	if (a->type == SNAP_FILE)
		return a->size == b->size && dhash_eq(&a->hash, &b->hash);
	if (a->type == SNAP_LINK)
		return !strcmp(a->target, b->target);
	return true;
}

void snap_diff(const struct snap *a, const struct snap *b, snap_diff_fn fn,
	       void *payload)
{
	uint32_t i = 0, j = 0, na = a ? a->n : 0, nb = b ? b->n : 0;

	while (i < na || j < nb) {
		int c = i >= na ? 1 :
			j >= nb ? -1 :
				  path_cmp(a->e[i].path, b->e[j].path);

		if (c < 0) {
			fn(a, (int)i++, b, -1, payload);
		} else if (c > 0) {
			fn(a, -1, b, (int)j++, payload);
		} else {
			if (!entry_same(&a->e[i], &b->e[j]))
				fn(a, (int)i, b, (int)j, payload);
			i++;
			j++;
		}
	}
}
