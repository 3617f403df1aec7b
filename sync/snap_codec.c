/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snap_codec.c - a snapshot's bytes on disk: snap_encode() and
 * snap_decode() (magic, version, entries, XXH3-64 of the whole), split
 * from snap.c. Decoding rebuilds through the public builder, so a decoded
 * snapshot is checked exactly as a built one; nothing here touches
 * snap_impl.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "log.h"
#include "snap_i.h"

#define SNAP_MAGIC "DAGFSNP1"
#define SNAP_VERSION 1u

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void wput(struct wbuf *w, const void *src, size_t n)
{
	if (w->err)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		uint8_t *p;

		while (cap < w->len + n)
			cap *= 2;
		p = realloc(w->p, cap);
		if (!p) {
			w->err = -ENOMEM;
			return;
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->len, src, n);
	w->len += n;
}

#define WPUT(w, v)                                                             \
	do {                                                                   \
		__typeof__(v) v_ = (v);                                        \
		wput((w), &v_, sizeof(v_));                                    \
	} while (0)

static void wstr(struct wbuf *w, const char *s)
{
	size_t n = strlen(s);

	WPUT(w, (uint16_t)n);
	wput(w, s, n);
}

int snap_encode(const struct snap *s, void **out, size_t *len)
{
	struct wbuf w = { 0 };
	uint64_t sum;

	wput(&w, SNAP_MAGIC, 8);
	WPUT(&w, (uint32_t)SNAP_VERSION);
	WPUT(&w, (uint32_t)s->n);
	wstr(&w, s->source);
	wstr(&w, s->rev);
	WPUT(&w, (int64_t)s->published_ns);
	for (uint32_t i = 0; i < s->n; i++) {
		const struct snap_entry *e = &s->e[i];

		WPUT(&w, (uint8_t)e->type);
		WPUT(&w, (uint32_t)e->mode);
		WPUT(&w, (uint64_t)e->size);
		WPUT(&w, (int64_t)e->mtime_ns);
		wstr(&w, e->path);
		if (e->type == SNAP_FILE)
			wput(&w, e->hash.b, 16);
		else if (e->type == SNAP_LINK)
			wstr(&w, e->target);
	}
	sum = w.err ? 0 : XXH3_64bits(w.p, w.len);
	WPUT(&w, sum);
	if (w.err) {
		free(w.p);
		return w.err;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

struct rbuf {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

static void rget(struct rbuf *r, void *dst, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = true;
		memset(dst, 0, n);
		return;
	}
	memcpy(dst, r->p + r->off, n);
	r->off += n;
}

/* A length-prefixed string into @dst (PATH_MAX bytes); never overflows. */
static void rstr(struct rbuf *r, char *dst)
{
	uint16_t n;

	rget(r, &n, sizeof(n));
	if (n >= PATH_MAX)
		r->bad = true;
	rget(r, dst, r->bad ? 0 : n);
	dst[r->bad ? 0 : n] = '\0';
	if (!r->bad && strlen(dst) != n)
		r->bad = true; /* embedded NUL */
}

static int decode_entry(struct rbuf *r, struct snap_builder *b, char *path,
			char *target)
{
	uint8_t type;
	uint32_t mode;
	uint64_t size;
	int64_t mtime;
	struct dhash h;

	rget(r, &type, 1);
	rget(r, &mode, 4);
	rget(r, &size, 8);
	rget(r, &mtime, 8);
	rstr(r, path);
	if (r->bad)
		return -EBADMSG;
	switch (type) {
	case SNAP_FILE:
		rget(r, h.b, 16);
		return r->bad ? -EBADMSG :
				snap_builder_add_file(b, path, mode, size,
						      mtime, &h);
	case SNAP_LINK:
		rstr(r, target);
		return r->bad ? -EBADMSG :
				snap_builder_add_link(b, path, target, mtime);
	case SNAP_DIR:
		return snap_builder_add_dir(b, path, mode, mtime);
	}
	return -EBADMSG;
}

/* Snapshots decoded by this process (snap_decodes()); atomic. */
static unsigned long decodes;

unsigned long snap_decodes(void)
{
	return __atomic_load_n(&decodes, __ATOMIC_RELAXED);
}

int snap_decode(struct snap **out, const void *buf, size_t len)
{
	struct rbuf r = { .p = buf, .len = len };
	char magic[8], *source = NULL, *rev = NULL, *path = NULL, *target;
	struct snap_builder *b = NULL;
	uint32_t version, n;
	uint64_t sum;
	int64_t published;
	struct dhash id;
	int rc = -EBADMSG;

	__atomic_add_fetch(&decodes, 1, __ATOMIC_RELAXED);
	if (len < 8 + 8 + 8)
		return -EBADMSG;
	memcpy(&sum, (const uint8_t *)buf + len - 8, 8);
	if (XXH3_64bits(buf, len - 8) != sum)
		return -EBADMSG;
	r.len = len - 8;
	rget(&r, magic, 8);
	rget(&r, &version, 4);
	rget(&r, &n, 4);
	if (r.bad || memcmp(magic, SNAP_MAGIC, 8) || version != SNAP_VERSION ||
	    n > r.len / 23)
		return -EBADMSG;
	source = malloc(PATH_MAX);
	rev = malloc(PATH_MAX);
	path = malloc(2 * PATH_MAX);
	if (!source || !rev || !path) {
		rc = -ENOMEM;
		goto out;
	}
	target = path + PATH_MAX;
	rstr(&r, source);
	rstr(&r, rev);
	rget(&r, &published, 8);
	if (r.bad || !*source || snap_builder_new(&b, source))
		goto out;
	for (uint32_t i = 0; i < n; i++) {
		rc = decode_entry(&r, b, path, target);
		if (rc)
			goto out;
	}
	rc = -EBADMSG;
	if (r.off != r.len)
		goto out;
	rc = snap_builder_finish(b, rev, out);
	b = NULL;
	if (rc)
		goto out;
	(*out)->published_ns = published;
	dhash_buf(&id, buf, len);
	dhash_hex((*out)->id, &id);
out:
	snap_builder_free(b);
	free(source);
	free(rev);
	free(path);
	return rc == -EINVAL ? -EBADMSG : rc;
}
