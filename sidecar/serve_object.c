/* SPDX-License-Identifier: Apache-2.0 */
/*
 * serve_object.c - the served store's replies and its immutable bytes:
 * blobs (with Range), snapshots, tree manifests, and sources.json.
 *
 * Each is checked against its name before it is sent (store_open_blob
 * verifies, tree_decode parses) and carries its id as ETag. It must not
 * route or check URL shapes (serve.c does, before calling here) nor
 * build statements (serve_doc.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve_i.h"
#include "sidecar_i.h"

/* ------------------------------------------------------------ replies */

enum MHD_Result serve_send_buf(struct MHD_Connection *c, unsigned status,
			       const void *buf, size_t len, const char *type,
			       const char *cache, const char *etag,
			       enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len,
								 (void *)buf,
								 mode);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	if (cache)
		MHD_add_response_header(r, "Cache-Control", cache);
	if (etag)
		MHD_add_response_header(r, "ETag", etag);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result serve_send_text(struct MHD_Connection *c, unsigned status,
				const char *msg)
{
	return serve_send_buf(c, status, msg, strlen(msg), "text/plain",
			      "no-store", NULL, MHD_RESPMEM_PERSISTENT);
}

/* If-None-Match equal to @etag: 304 (with @cache), and true. */
bool serve_not_modified_as(struct MHD_Connection *c, const char *etag,
			   const char *cache, enum MHD_Result *ret)
{
	const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						      "If-None-Match");
	struct MHD_Response *r;

	if (!inm || strcmp(inm, etag))
		return false;
	r = MHD_create_response_from_buffer(0, (void *)"",
					    MHD_RESPMEM_PERSISTENT);
	if (!r) {
		*ret = MHD_NO;
		return true;
	}
	MHD_add_response_header(r, "ETag", etag);
	MHD_add_response_header(r, "Cache-Control", cache);
	*ret = MHD_queue_response(c, MHD_HTTP_NOT_MODIFIED, r);
	MHD_destroy_response(r);
	return true;
}

static bool not_modified(struct MHD_Connection *c, const char *etag,
			 enum MHD_Result *ret)
{
	return serve_not_modified_as(c, etag, IMMUTABLE, ret);
}

/* -------------------------------------------------- immutable objects */

int serve_range_parse(const char *h, uint64_t size, uint64_t *off,
		      uint64_t *len)
{
	uint64_t a = 0, b = 0;
	bool ha = false, hb = false;
	const char *p;

	if (!h || strncmp(h, "bytes=", 6))
		return 0;
	for (p = h + 6; *p >= '0' && *p <= '9'; p++, ha = true) {
		if (a > (UINT64_MAX - 9) / 10)
			return 0;
		a = a * 10 + (uint64_t)(*p - '0');
	}
	if (*p++ != '-')
		return 0;
	for (; *p >= '0' && *p <= '9'; p++, hb = true) {
		if (b > (UINT64_MAX - 9) / 10)
			return 0;
		b = b * 10 + (uint64_t)(*p - '0');
	}
	if (*p || (!ha && !hb))
		return 0; /* several ranges or junk: the whole body */
	if (!ha) {	  /* the last b bytes */
		if (!b || !size)
			return -1;
		*off = b >= size ? 0 : size - b;
		*len = size - *off;
		return 1;
	}
	if (a >= size || (hb && b < a))
		return -1;
	*off = a;
	*len = (hb && b < size - 1 ? b : size - 1) - a + 1;
	return 1;
}

enum MHD_Result serve_get_blob(struct serve *sv, struct MHD_Connection *c,
			       const char *hex)
{
	const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
							"Range");
	uint64_t off = 0, len = 0;
	char cr[80];
	int rr;
	char etag[DHASH_HEX + 2];
	struct MHD_Response *r;
	enum MHD_Result ret;
	struct dhash h;
	struct stat st;
	int fd;

	if (dhash_parse(&h, hex))
		return serve_send_text(c, 404, "not found\n");
	snprintf(etag, sizeof(etag), "\"%s\"", hex);
	if (not_modified(c, etag, &ret))
		return ret;
	fd = store_open_blob(sv->ctx->store, &h); /* verified, or removed */
	if (fd < 0)
		return serve_send_text(c, 404, "no such blob\n");
	if (fstat(fd, &st)) {
		close(fd);
		return serve_send_text(c, 500, "blob unreadable\n");
	}
	rr = serve_range_parse(range, (uint64_t)st.st_size, &off, &len);
	if (rr < 0) {
		close(fd);
		snprintf(cr, sizeof(cr), "bytes */%llu",
			 (unsigned long long)st.st_size);
		r = MHD_create_response_from_buffer(0, (void *)"",
						    MHD_RESPMEM_PERSISTENT);
		if (!r)
			return MHD_NO;
		MHD_add_response_header(r, "Content-Range", cr);
		ret = MHD_queue_response(c, 416, r);
		MHD_destroy_response(r);
		return ret;
	}
	if (rr == 0)
		len = (uint64_t)st.st_size;
	r = MHD_create_response_from_fd_at_offset64(len, fd, off);
	if (!r) {
		close(fd);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "application/octet-stream");
	MHD_add_response_header(r, "Cache-Control", IMMUTABLE);
	MHD_add_response_header(r, "ETag", etag);
	MHD_add_response_header(r, "Accept-Ranges", "bytes");
	if (rr > 0) {
		snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu",
			 (unsigned long long)off,
			 (unsigned long long)(off + len - 1),
			 (unsigned long long)st.st_size);
		MHD_add_response_header(r, "Content-Range", cr);
	}
	atomic_fetch_add(&sv->n_blobs, 1);
	atomic_fetch_add(&sv->n_bytes, (unsigned long long)len);
	ret = MHD_queue_response(c, rr > 0 ? 206 : MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result serve_get_snapshot(struct serve *sv, struct MHD_Connection *c,
				   const char *id)
{
	char etag[DHASH_HEX + 2];
	enum MHD_Result ret;
	void *raw;
	size_t len;

	if (!hex_ok(id, 32))
		return serve_send_text(c, 404, "not found\n");
	snprintf(etag, sizeof(etag), "\"%s\"", id);
	if (not_modified(c, etag, &ret))
		return ret;
	if (pub_read_raw(sv->ctx->store, id, &raw, &len))
		return serve_send_text(c, 404, "no such snapshot\n");
	atomic_fetch_add(&sv->n_snaps, 1);
	atomic_fetch_add(&sv->n_bytes, (unsigned long long)len);
	ret = serve_send_buf(c, 200, raw, len, "application/octet-stream",
			     IMMUTABLE, etag, MHD_RESPMEM_MUST_FREE);
	if (ret != MHD_YES)
		free(raw);
	return ret;
}

/* trees/ID: a tree manifest, checked against its name (immutable). */
enum MHD_Result serve_get_tree(struct serve *sv, struct MHD_Connection *c,
			       const char *id)
{
	char path[4096], etag[DHASH_HEX + 2];
	enum MHD_Result ret;
	struct tree *t;
	struct stat st;
	char *buf;
	ssize_t n;
	int fd;

	if (!hex_ok(id, 32) || path_fmt(path, sizeof(path), "%s/trees/%s",
					store_dir(sv->ctx->store), id))
		return serve_send_text(c, 404, "not found\n");
	snprintf(etag, sizeof(etag), "\"%s\"", id);
	if (not_modified(c, etag, &ret))
		return ret;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return serve_send_text(c, 404, "no such tree\n");
	buf = !fstat(fd, &st) && st.st_size <= (1 << 20) ?
		      malloc((size_t)st.st_size + 1) :
		      NULL;
	n = buf ? pread(fd, buf, (size_t)st.st_size, 0) : -1;
	close(fd);
	if (n != st.st_size || tree_decode(&t, id, buf, (size_t)n)) {
		free(buf);
		return serve_send_text(c, 404, "no such tree\n");
	}
	tree_free(t);
	ret = serve_send_buf(c, 200, buf, (size_t)n, "text/plain", IMMUTABLE,
			     etag, MHD_RESPMEM_MUST_FREE);
	if (ret != MHD_YES)
		free(buf);
	return ret;
}

enum MHD_Result serve_get_list(struct serve *sv, struct MHD_Connection *c)
{
	struct sc_set *set;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return MHD_NO;
	set = sc_set_acquire(sv->ctx);
	fputs("{\"sources\":[", f);
	for (size_t i = 0; i < set->n; i++) {
		struct snap *s = source_current(set->v[i]->src);

		fputs(i ? ",{\"name\":" : "{\"name\":", f);
		json_put_str(f, source_name(set->v[i]->src));
		fputs(",\"revision\":", f);
		json_put_str(f, s ? s->rev : NULL);
		fprintf(f, ",\"snapshot\":\"%s\",\"published_ns\":%lld}",
			s ? s->id : "", s ? (long long)s->published_ns : 0LL);
		snap_unref(s);
	}
	sc_set_release(set);
	fputs("]}\n", f);
	if (fclose(f))
		return MHD_NO;
	return serve_send_buf(c, 200, text, len, "application/json", "no-cache",
			      NULL, MHD_RESPMEM_MUST_FREE);
}
