/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gc_live.c - garbage collection rounds over a live-blob index, so that a
 * round reads what changed since the last one instead of decoding every
 * retained snapshot.
 *
 * Two kinds of derived file live in gc/:
 *
 *   gc/<id>   the blob list of snapshot <id>: its distinct file hashes,
 *             written when the snapshot is stored (gc_live_note) or the
 *             first time a round decodes it. "dagfsL01", the 16-byte id,
 *             a u32 count, the hashes, then an XXH3-128 of all before.
 *   gc/live   the index: the set of snapshots it covers and, for every
 *             blob they name, how many of them name it. "dagfsG01", u32
 *             snapshots, u32 blobs, the ids, the (hash, u32 count) pairs,
 *             then an XXH3-128 of all before.
 *
 * A round: the retained set R is every snapshot file some link names or a
 * reader pins (readdirs, no decoding). The index's counts are moved from
 * its covered set C to R: minus the list of each snapshot in C but not R,
 * plus the list of each in R but not C. A list missing or damaged is made
 * again by decoding its snapshot; so after one publication a round
 * decodes nothing (the publisher wrote the list) and reads one or two
 * lists. Then the index for R is written (fsync, rename), and only then
 * are unretained snapshot files, their lists and blobs with no count
 * removed.
 *
 * Why a crash or a damaged file never loses a retained blob: the index's
 * counts are a function of its covered set alone, so any intact index
 * plus correct lists gives R's exact counts, whatever was or was not
 * deleted after it was written. A checksum that fails, a count that would
 * go below zero, or a snapshot of C whose list cannot be had (both its
 * list and its file gone) is a stale index: it is dropped and the counts
 * are rebuilt from the lists of R, never trusted. Lists are checked the
 * same way and are written without fsync: a torn one is only remade.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pub_i.h"
#include "snap_i.h"

#define LIST_MAGIC "dagfsL01"
#define LIVE_MAGIC "dagfsG01"
#define SUM_LEN 16

/* ------------------------------------------------------- a hash table */

/* Hash -> count, open addressing; the zero hash never occurs in use.
 * Entries are never removed: a count may drop to 0. */
struct hmap {
	struct dhash *k;
	uint32_t *c;
	size_t cap, n;
};

static const struct dhash zero_hash;

static size_t hslot(const struct dhash *h, size_t cap)
{
	uint64_t v;

	memcpy(&v, h->b, sizeof(v));
	return v & (cap - 1);
}

static void hmap_free(struct hmap *m)
{
	free(m->k);
	free(m->c);
	memset(m, 0, sizeof(*m));
}

static size_t hmap_find(const struct hmap *m, const struct dhash *h)
{
	size_t i = hslot(h, m->cap);

	while (!dhash_eq(&m->k[i], h) && !dhash_eq(&m->k[i], &zero_hash))
		i = (i + 1) & (m->cap - 1);
	return i;
}

static int hmap_grow(struct hmap *m)
{
	struct hmap g = { .cap = m->cap ? 2 * m->cap : 1024 };

	g.k = calloc(g.cap, sizeof(*g.k));
	g.c = calloc(g.cap, sizeof(*g.c));
	if (!g.k || !g.c) {
		hmap_free(&g);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;

		if (dhash_eq(&m->k[i], &zero_hash))
			continue;
		j = hmap_find(&g, &m->k[i]);
		g.k[j] = m->k[i];
		g.c[j] = m->c[i];
		g.n++;
	}
	hmap_free(m);
	*m = g;
	return 0;
}

/* The count slot of @h, added with count 0 if absent; NULL if no memory. */
static uint32_t *hmap_slot(struct hmap *m, const struct dhash *h)
{
	size_t i;

	if (2 * (m->n + 1) > m->cap && hmap_grow(m))
		return NULL;
	i = hmap_find(m, h);
	if (dhash_eq(&m->k[i], &zero_hash)) {
		m->k[i] = *h;
		m->n++;
	}
	return &m->c[i];
}

static uint32_t hmap_get(const struct hmap *m, const struct dhash *h)
{
	size_t i;

	if (!m->cap)
		return 0;
	i = hmap_find(m, h);
	return dhash_eq(&m->k[i], h) ? m->c[i] : 0;
}

static bool hmap_has(const struct hmap *m, const struct dhash *h)
{
	size_t i;

	if (!m->cap)
		return false;
	i = hmap_find(m, h);
	return dhash_eq(&m->k[i], h);
}

/* -------------------------------------------------------- blob lists */

/* XXH3-128 of @len bytes, as the 16 bytes a file ends with. */
static void sum_of(uint8_t out[SUM_LEN], const void *buf, size_t len)
{
	struct dhash h;

	dhash_buf(&h, buf, len);
	memcpy(out, h.b, SUM_LEN);
}

static bool sum_ok(const uint8_t *buf, size_t len)
{
	uint8_t sum[SUM_LEN];

	if (len < SUM_LEN)
		return false;
	sum_of(sum, buf, len - SUM_LEN);
	return !memcmp(sum, buf + len - SUM_LEN, SUM_LEN);
}

/* Distinct file hashes of @s: a malloc'd array in *@out, the count. */
static int snap_blobs(const struct snap *s, struct dhash **out)
{
	struct hmap seen = { 0 };
	struct dhash *v = malloc((s->n ? s->n : 1) * sizeof(*v));
	int n = 0;

	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->n; i++) {
		uint32_t *c;

		if (s->e[i].type != SNAP_FILE)
			continue;
		c = hmap_slot(&seen, &s->e[i].hash);
		if (!c) {
			free(v);
			hmap_free(&seen);
			return -ENOMEM;
		}
		if (!(*c)++)
			v[n++] = s->e[i].hash;
	}
	hmap_free(&seen);
	*out = v;
	return n;
}

/* Write gc/@name: lists are rebuilt when lost, so without the fsyncs of a
 * publish. */
static int write_quick(struct store *st, const char *name, const void *buf,
		       size_t len)
{
	char dir[PATH_MAX], tmp[PATH_MAX];

	if (path_fmt(dir, sizeof(dir), "%s/gc", store_dir(st)) ||
	    path_fmt(tmp, sizeof(tmp), "%s/tmp", store_dir(st)))
		return -ENAMETOOLONG;
	return pub_write_file_lazy(dir, tmp, name, buf, len);
}

static int list_write(struct store *st, const char *id, const struct dhash *v,
		      int n)
{
	size_t len = 8 + 16 + 4 + (size_t)n * 16 + SUM_LEN;
	uint8_t *buf = malloc(len), *p = buf;
	uint32_t cnt = (uint32_t)n;
	struct dhash idh;
	int rc;

	if (!buf)
		return -ENOMEM;
	if (dhash_parse(&idh, id)) {
		free(buf);
		return -EINVAL;
	}
	memcpy(p, LIST_MAGIC, 8);
	memcpy(p + 8, idh.b, 16);
	memcpy(p + 24, &cnt, 4);
	memcpy(p + 28, v, (size_t)n * 16);
	sum_of(buf + len - SUM_LEN, buf, len - SUM_LEN);
	rc = write_quick(st, id, buf, len);
	free(buf);
	return rc;
}

void gc_live_note(struct store *st, const struct snap *s)
{
	struct dhash *v;
	int n = snap_blobs(s, &v);

	if (n >= 0) {
		n = list_write(st, s->id, v, n);
		free(v);
	}
	if (n < 0)
		log_debug(s->source,
			  "blob list of %s not written (%s); the "
			  "collector decodes the snapshot instead",
			  s->id, strerror(-n));
}

/* Parse list @buf of snapshot @idh: the count and a malloc'd array. */
static int list_parse(const struct dhash *idh, const uint8_t *buf, size_t len,
		      struct dhash **out)
{
	uint32_t n;

	if (len < 28 + SUM_LEN || !sum_ok(buf, len) ||
	    memcmp(buf, LIST_MAGIC, 8) || memcmp(buf + 8, idh->b, 16))
		return -EBADMSG;
	memcpy(&n, buf + 24, 4);
	if ((len - 28 - SUM_LEN) % 16 || (len - 28 - SUM_LEN) / 16 != n)
		return -EBADMSG;
	*out = malloc((n ? n : 1) * sizeof(**out));
	if (!*out)
		return -ENOMEM;
	memcpy(*out, buf + 28, (size_t)n * 16);
	return (int)n;
}

/* Read list gc/<@id>: the count and a malloc'd array, or -errno. */
static int list_read(struct store *st, const char *id, struct dhash **out)
{
	char path[PATH_MAX];
	struct dhash idh;
	size_t len;
	void *buf;
	int rc;

	if (dhash_parse(&idh, id) ||
	    path_fmt(path, sizeof(path), "%s/gc/%s", store_dir(st), id))
		return -EINVAL;
	rc = pub_read_all(path, &buf, &len);
	if (rc)
		return rc;
	rc = list_parse(&idh, buf, len, out);
	free(buf);
	return rc;
}

/* The blob list of snapshot @id: from gc/<id>, else decoded from the
 * snapshot (and the list written). The count, or -errno. */
static int list_get(struct store *st, const char *id, struct dhash **out)
{
	struct snap *s;
	int n = list_read(st, id, out);

	if (n >= 0)
		return n;
	if (pub_load(st, id, &s))
		return n;
	n = snap_blobs(s, out);
	snap_unref(s);
	if (n >= 0 && list_write(st, id, *out, n))
		log_debug("gc", "blob list of %s not written", id);
	return n;
}

/* ------------------------------------------------------------ the index */

struct live {
	struct hmap snaps; /* covered snapshot ids (count 1) */
	struct hmap blobs; /* blob -> retained snapshots naming it */
};

static void live_free(struct live *l)
{
	hmap_free(&l->snaps);
	hmap_free(&l->blobs);
}

/* Parse index @buf into @l (empty); -EBADMSG if damaged. */
static int live_parse(struct live *l, const uint8_t *buf, size_t len)
{
	uint32_t ns, nb;
	int rc = 0;

	if (len < 16 + SUM_LEN || !sum_ok(buf, len) ||
	    memcmp(buf, LIVE_MAGIC, 8))
		return -EBADMSG;
	memcpy(&ns, buf + 8, 4);
	memcpy(&nb, buf + 12, 4);
	if ((uint64_t)ns * 16 + (uint64_t)nb * 20 != len - 16 - SUM_LEN)
		return -EBADMSG;
	for (uint32_t i = 0; i < ns && !rc; i++) {
		struct dhash h;
		uint32_t *c;

		memcpy(h.b, buf + 16 + (size_t)i * 16, 16);
		c = dhash_eq(&h, &zero_hash) ? NULL : hmap_slot(&l->snaps, &h);
		rc = !c ? -EBADMSG : *c ? -EBADMSG : 0;
		if (c)
			*c = 1;
	}
	for (uint32_t i = 0; i < nb && !rc; i++) {
		const uint8_t *p = buf + 16 + (size_t)ns * 16 + (size_t)i * 20;
		struct dhash h;
		uint32_t *c;

		memcpy(h.b, p, 16);
		c = dhash_eq(&h, &zero_hash) ? NULL : hmap_slot(&l->blobs, &h);
		rc = !c ? -EBADMSG : *c ? -EBADMSG : 0;
		if (c)
			memcpy(c, p + 16, 4);
	}
	return rc;
}

/* Read gc/live into @l; -ENOENT if absent, -EBADMSG if damaged. */
static int live_read(struct store *st, struct live *l)
{
	char path[PATH_MAX];
	size_t len;
	void *buf;
	int rc;

	if (path_fmt(path, sizeof(path), "%s/gc/live", store_dir(st)))
		return -ENAMETOOLONG;
	rc = pub_read_all(path, &buf, &len);
	if (rc)
		return rc;
	rc = live_parse(l, buf, len);
	free(buf);
	return rc;
}

int gc_live_parse_check(const void *buf, size_t len)
{
	struct live l = { 0 };
	int rc = live_parse(&l, buf, len);

	if (!rc)
		rc = (int)l.snaps.n;
	live_free(&l);
	return rc;
}

int gc_list_parse_check(const void *buf, size_t len)
{
	struct dhash *v, idh;
	int rc;

	if (len < 24)
		return -EBADMSG;
	memcpy(idh.b, (const uint8_t *)buf + 8, 16);
	rc = list_parse(&idh, buf, len, &v);
	if (rc >= 0)
		free(v);
	return rc;
}

/* Write @l as gc/live (fsync, rename, fsync gc/). */
static int live_write(struct store *st, const struct live *l)
{
	size_t ns = 0, nb = 0, len, off = 16;
	char gcdir[PATH_MAX], tmpdir[PATH_MAX];
	uint8_t *buf;
	uint32_t v;
	int rc;

	for (size_t i = 0; i < l->snaps.cap; i++)
		ns += l->snaps.c[i] != 0;
	for (size_t i = 0; i < l->blobs.cap; i++)
		nb += l->blobs.c[i] != 0;
	len = 16 + ns * 16 + nb * 20 + SUM_LEN;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, LIVE_MAGIC, 8);
	v = (uint32_t)ns;
	memcpy(buf + 8, &v, 4);
	v = (uint32_t)nb;
	memcpy(buf + 12, &v, 4);
	for (size_t i = 0; i < l->snaps.cap; i++) {
		if (!l->snaps.c[i])
			continue;
		memcpy(buf + off, l->snaps.k[i].b, 16);
		off += 16;
	}
	for (size_t i = 0; i < l->blobs.cap; i++) {
		if (!l->blobs.c[i])
			continue;
		memcpy(buf + off, l->blobs.k[i].b, 16);
		memcpy(buf + off + 16, &l->blobs.c[i], 4);
		off += 20;
	}
	sum_of(buf + off, buf, off);
	if (path_fmt(gcdir, sizeof(gcdir), "%s/gc", store_dir(st)) ||
	    path_fmt(tmpdir, sizeof(tmpdir), "%s/tmp", store_dir(st)))
		rc = -ENAMETOOLONG;
	else
		rc = pub_write_file(gcdir, tmpdir, "live", buf, len);
	free(buf);
	return rc;
}

/* Add @sign times the list of snapshot @id to @l's counts. -ERANGE if a
 * count would drop below zero (the index was not what it claimed). */
static int live_apply(struct store *st, struct live *l, const char *id,
		      int sign, unsigned *lists)
{
	struct dhash *v;
	int n = list_get(st, id, &v), rc = 0;

	if (n < 0)
		return n;
	++*lists;
	for (int i = 0; i < n && !rc; i++) {
		uint32_t *c = hmap_slot(&l->blobs, &v[i]);

		if (!c)
			rc = -ENOMEM;
		else if (sign < 0 && !*c)
			rc = -ERANGE;
		else
			*c += (uint32_t)sign;
	}
	free(v);
	return rc;
}

/* ------------------------------------------------------------- a round */

struct round {
	struct store *st;
	struct hmap linked; /* ids some source links to */
	struct hmap now;    /* R: retained or pinned snapshot files */
	struct live live;   /* the index, moved to R */
	unsigned lists;	    /* lists read or made */
	bool rebuilt;
};

/* Add every snapshot id that some source links to (current, history). */
static int collect_linked(struct round *r)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/sources", store_dir(r->st));
	d = opendir(path);
	if (!d)
		return -errno;
	while (!rc && (de = readdir(d))) {
		int fd = -1;
		DIR *sd;
		struct dirent *le;

		if (de->d_name[0] == '.')
			continue;
		fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY);
		sd = fd >= 0 ? fdopendir(fd) : NULL;
		if (!sd) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		while (!rc && (le = readdir(sd))) {
			char id[DHASH_HEX];
			struct dhash h;
			uint32_t *c;

			if (le->d_name[0] == '.' ||
			    pub_read_id_link(fd, le->d_name, id) ||
			    dhash_parse(&h, id))
				continue;
			c = hmap_slot(&r->linked, &h);
			if (c)
				*c = 1;
			else
				rc = -ENOMEM;
		}
		closedir(sd);
	}
	closedir(d);
	return rc;
}

/* R: the snapshot files linked or pinned (the others are removed later). */
static int collect_now(struct round *r)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/snapshots", store_dir(r->st));
	d = opendir(path);
	if (!d)
		return -errno;
	while (!rc && (de = readdir(d))) {
		struct dhash h;
		uint32_t *c;

		if (dhash_parse(&h, de->d_name) ||
		    (!hmap_has(&r->linked, &h) &&
		     !store_pinned(r->st, de->d_name)))
			continue;
		c = hmap_slot(&r->now, &h);
		if (c)
			*c = 1;
		else
			rc = -ENOMEM;
	}
	closedir(d);
	return rc;
}

/* Apply to the index every snapshot of @from not in @other, with @sign. */
static int live_move(struct round *r, const struct hmap *from,
		     const struct hmap *other, int sign)
{
	for (size_t i = 0; i < from->cap; i++) {
		char id[DHASH_HEX];
		int rc;

		if (!from->c[i] || hmap_get(other, &from->k[i]))
			continue;
		dhash_hex(id, &from->k[i]);
		uint32_t *covered;

		rc = live_apply(r->st, &r->live, id, sign, &r->lists);
		if (rc == -ENOMEM || (rc && sign < 0))
			return rc;
		/* a retained snapshot with neither list nor readable file
		 * stays uncovered, its blobs unmarked (as when it was
		 * decoded every round); the next round tries again */
		if (rc)
			continue;
		covered = hmap_slot(&r->live.snaps, &from->k[i]);
		if (!covered)
			return -ENOMEM;
		*covered = sign > 0;
	}
	return 0;
}

/* Bring the index from its covered set to R, rebuilding if it is stale. */
static int live_update(struct round *r)
{
	struct hmap old;
	int rc = live_read(r->st, &r->live);

	if (rc && rc != -ENOENT && rc != -ENOMEM)
		log_notice("gc", "live-blob index unreadable (%s); rebuilt",
			   strerror(-rc));
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		live_free(&r->live);
		r->rebuilt = rc != -ENOENT;
	}
	/* copy: live_move edits live.snaps while walking the old cover */
	old = r->live.snaps;
	old.k = malloc((old.cap ? old.cap : 1) * sizeof(*old.k));
	old.c = malloc((old.cap ? old.cap : 1) * sizeof(*old.c));
	if (!old.k || !old.c) {
		hmap_free(&old);
		return -ENOMEM;
	}
	if (old.cap) {
		memcpy(old.k, r->live.snaps.k, old.cap * sizeof(*old.k));
		memcpy(old.c, r->live.snaps.c, old.cap * sizeof(*old.c));
	}
	rc = live_move(r, &old, &r->now, -1);
	hmap_free(&old);
	if (rc && rc != -ENOMEM) {
		log_notice("gc",
			   "live-blob index names a snapshot it cannot "
			   "account for (%s); rebuilt",
			   strerror(-rc));
		live_free(&r->live);
		r->rebuilt = true;
		rc = 0;
	}
	if (!rc)
		rc = live_move(r, &r->now, &r->live.snaps, +1);
	return rc;
}

/* Remove snapshot files not in R and the lists of snapshots not covered. */
static void sweep_files(struct round *r, const char *sub,
			const struct hmap *keep)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", store_dir(r->st), sub);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		struct dhash h;

		if (!dhash_parse(&h, de->d_name) && !hmap_get(keep, &h))
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

struct sweep {
	const struct hmap *live;
	int removed;
};

static int sweep_blob(int dirfd, const char *name, const char *hex, void *arg)
{
	struct sweep *w = arg;
	struct dhash h;

	/* only what is named like a blob is ever removed */
	if (strlen(name) == 30 && !dhash_parse(&h, hex) &&
	    !hmap_get(w->live, &h) && !unlinkat(dirfd, name, 0))
		w->removed++;
	return 0;
}

static int sweep_blobs(struct round *r)
{
	struct sweep w = { &r->live.blobs, 0 };

	(void)store_each_blob(r->st, sweep_blob, &w);
	return w.removed;
}

/* Collect; the exclusive store lock is held. */
static int gc_locked(struct store *st)
{
	struct round r = { .st = st };
	unsigned long d0 = snap_decodes();
	int rc;

	rc = collect_linked(&r);
	if (!rc)
		rc = collect_now(&r);
	if (!rc)
		rc = live_update(&r);
	if (!rc && live_write(st, &r.live)) {
		/* the old index stays valid whatever is removed now: its
		 * counts depend only on what it covers */
		log_warn("gc", "live-blob index not written; the next round "
			       "moves the old one");
	}
	if (!rc) {
		sweep_files(&r, "snapshots", &r.now);
		sweep_files(&r, "gc", &r.live.snaps);
		rc = sweep_blobs(&r);
		log_debug("gc",
			  "round: %zu snapshots retained, %u blob lists "
			  "read, %lu decoded%s",
			  r.now.n, r.lists, snap_decodes() - d0,
			  r.rebuilt ? ", index rebuilt" : "");
	}
	hmap_free(&r.linked);
	hmap_free(&r.now);
	live_free(&r.live);
	return rc;
}

int pub_gc(struct store *st)
{
	int rc;

	store_gc_begin(st);
	rc = gc_locked(st);
	store_gc_end(st);
	return rc;
}

int pub_gc_try(struct store *st)
{
	int rc;

	if (!store_gc_trybegin(st))
		return -EBUSY;
	rc = gc_locked(st);
	store_gc_end(st);
	return rc;
}
