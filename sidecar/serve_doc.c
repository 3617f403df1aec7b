/* SPDX-License-Identifier: Apache-2.0 */
/*
 * serve_doc.c - the served store's statements (sdoc.c): ours when we
 * sign, a forwarded signed one a mirror kept, else an unsigned one; the
 * current one of each source cached until the source publishes again.
 *
 * It must not wait or fetch (serve_wait.c) and never reads outside
 * sources/NAME/sdoc-ID and the store's own snapshots.
 */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve_i.h"
#include "sidecar_i.h"

#define TAG "serve"

/* -------------------------------------------------------- statements */

/* The running source named @name, with a new reference to its current
 * snapshot in *@snap (NULL before its first); NULL if no such source. */
struct source *serve_find_source(struct serve *sv, const char *name,
				 struct snap **snap)
{
	struct sc_set *set = sc_set_acquire(sv->ctx);
	struct source *found = NULL;

	for (size_t i = 0; set && i < set->n && !found; i++) {
		if (strcmp(source_name(set->v[i]->src), name))
			continue;
		*snap = source_current(set->v[i]->src);
		found = set->v[i]->src; /* only tested against NULL */
	}
	sc_set_release(set);
	return found;
}

/* A statement an upstream signed for snapshot @id, kept by a mirror
 * (sources/NAME/sdoc-ID): malloc'd into *@out, or -ENOENT. */
static int forwarded(struct serve *sv, const struct snap *s, char **out,
		     size_t *len)
{
	char path[4096];
	struct sdoc d;
	ssize_t n;
	int fd;

	if (path_fmt(path, sizeof(path), "%s/sources/%s/sdoc-%s",
		     store_dir(sv->ctx->store), s->source, s->id))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	*out = malloc(SDOC_MAX + 1);
	n = *out ? read(fd, *out, SDOC_MAX + 1) : -1;
	close(fd);
	if (n <= 0 || n > SDOC_MAX || sdoc_parse(&d, *out, (size_t)n) ||
	    strcmp(d.snapshot, s->id) || !d.is_signed) {
		free(*out);
		return -ENOENT;
	}
	*len = (size_t)n;
	return 0;
}

int serve_statement(struct store *st, const struct sdoc_key *key,
		    const struct snap *s, char **out, size_t *len)
{
	void *raw;
	size_t rawlen;
	int rc = pub_read_raw(st, s->id, &raw, &rawlen);

	if (rc)
		return rc;
	rc = sdoc_format(out, len, s, raw, rawlen, key);
	free(raw);
	return rc;
}

/* The statement of @s: ours when we sign, else a forwarded signed one,
 * else an unsigned one. */
int serve_statement_of(struct serve *sv, const struct snap *s, char **out,
		       size_t *len)
{
	if (!sv->key && !forwarded(sv, s, out, len))
		return 0;
	return serve_statement(sv->ctx->store, sv->key, s, out, len);
}

/* The current statement of @s (cached per source), copied into *@out. */
static int current_doc(struct serve *sv, const struct snap *s, char **out,
		       size_t *len)
{
	struct doc *d = NULL;
	char *text;
	size_t n;
	int rc;

	pthread_mutex_lock(&sv->lock);
	for (size_t i = 0; i < sv->ndocs && !d; i++)
		if (!strcmp(sv->docs[i].source, s->source))
			d = &sv->docs[i];
	if (d && !strcmp(d->id, s->id))
		goto copy;
	pthread_mutex_unlock(&sv->lock);
	rc = serve_statement_of(sv, s, &text, &n);
	if (rc)
		return rc;
	pthread_mutex_lock(&sv->lock);
	d = NULL;
	for (size_t i = 0; i < sv->ndocs && !d; i++)
		if (!strcmp(sv->docs[i].source, s->source))
			d = &sv->docs[i];
	if (!d) {
		struct doc *v = realloc(sv->docs, (sv->ndocs + 1) * sizeof(*v));

		if (!v) {
			pthread_mutex_unlock(&sv->lock);
			free(text);
			return -ENOMEM;
		}
		sv->docs = v;
		d = &v[sv->ndocs++];
		snprintf(d->source, sizeof(d->source), "%s", s->source);
		d->text = NULL;
	}
	free(d->text);
	d->text = text;
	d->len = n;
	snprintf(d->id, sizeof(d->id), "%s", s->id);
copy:
	*out = malloc(d->len);
	if (*out)
		memcpy(*out, d->text, d->len);
	*len = d->len;
	pthread_mutex_unlock(&sv->lock);
	return *out ? 0 : -ENOMEM;
}

enum MHD_Result serve_send_doc(struct serve *sv, struct MHD_Connection *c,
			       const struct snap *s, bool waited)
{
	char *text, etag[DHASH_HEX + 2];
	size_t len;
	struct MHD_Response *r;
	enum MHD_Result ret;
	int rc;

	snprintf(etag, sizeof(etag), "\"%s\"", s->id);
	if (!waited && serve_not_modified_as(c, etag, "no-cache", &ret))
		return ret; /* an HTTP cache revalidating */
	rc = current_doc(sv, s, &text, &len);
	if (rc) {
		log_err(TAG, "statement of %s snapshot %s: %s", s->source,
			s->id, strerror(-rc));
		return serve_send_text(c, 500, "snapshot unreadable\n");
	}
	r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "text/plain");
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	MHD_add_response_header(r, "ETag", etag);
	if (waited)
		MHD_add_response_header(r, "X-Dagfs-Long-Poll", "1");
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result serve_send_rev(struct serve *sv, struct MHD_Connection *c,
			       struct snap *snap)
{
	char *text;
	size_t len;
	int rc = serve_statement_of(sv, snap, &text, &len);

	if (rc)
		return serve_send_text(c, 500, "snapshot unreadable\n");
	return serve_send_buf(c, 200, text, len, "text/plain", "no-cache", NULL,
			      MHD_RESPMEM_MUST_FREE);
}
