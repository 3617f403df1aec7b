/* SPDX-License-Identifier: Apache-2.0 */
/*
 * serve.c - the served store (serve=true): the daemon's http= listener
 * also answers, read-only, under /store/:
 *
 *   /store/sources.json                  every source, its revision and snapshot
 *   /store/sources/NAME/current          statement of NAME's current snapshot
 *   /store/sources/NAME/current?after=ID&wait=S
 *                                        the same once it is no longer ID
 *                                        (a snapshot id or a revision;
 *                                        long-poll, at most S seconds)
 *   /store/sources/NAME/revs/REV         statement of a retained revision
 *   /store/snapshots/ID                  a snapshot's bytes (immutable)
 *   /store/objects/AB/CDEF...            a blob's bytes (immutable)
 *   /store/trees/ID                      a tree manifest (immutable)
 *
 * The same names as files are a complete static copy (`dagfs export`):
 * objects/ and snapshots/ are the cache's own layout, and a static server
 * ignores the query, so a mirror just polls it. A statement (sdoc.c) is
 * signed when serve-key-file is set; without one, a mirror forwards the
 * statement its upstream signed.
 *
 * Nothing outside those shapes is answered: names and ids are checked
 * character by character before they touch a path, so no request reaches
 * a file outside objects/, snapshots/ and trees/, and nothing of a source's
 * configuration or credentials is ever named. Every blob and snapshot is
 * verified against its name before it is sent.
 *
 * Long-polls cost no thread: a waiting request is suspended
 * (MHD_suspend_connection) on a list; a publication or its deadline (one
 * timer thread for all) resumes it, and libmicrohttpd calls the handler
 * again to answer.
 *
 * This file: the routing of /store/ URLs (every name checked before it
 * is used), the bearer token, the life of the served store and its
 * counters. It answers no request itself: serve_object.c (immutable
 * bytes), serve_doc.c (statements) and serve_wait.c (long-polls and
 * on-demand revisions) do.
 */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve_i.h"
#include "sidecar_i.h"

/* ------------------------------------------------------- name checks */

static bool name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (!n || n > max || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("-_.", *s)))
			return false;
	return true;
}

/* ------------------------------------------------------------ routing */

static bool authorised(struct serve *sv, struct MHD_Connection *c)
{
	const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    "Authorization");
	size_t n;

	if (!sv->tlen)
		return true;
	if (!a || strncmp(a, "Bearer ", 7))
		return false;
	a += 7;
	n = strlen(a);
	return n == sv->tlen && !CRYPTO_memcmp(a, sv->token, n);
}

enum MHD_Result serve_handle(struct serve *sv, struct MHD_Connection *c,
			     const char *url, void **con_cls)
{
	char part[4][256];
	int n = 0;
	const char *p = url + strlen("/store/");

	atomic_fetch_add(&sv->n_req, 1);
	if (!authorised(sv, c)) {
		struct MHD_Response *r =
			MHD_create_response_from_buffer(14,
							(void *)"unauthorised\n\n",
							MHD_RESPMEM_PERSISTENT);
		enum MHD_Result ret;

		if (!r)
			return MHD_NO;
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
		ret = MHD_queue_response(c, MHD_HTTP_UNAUTHORIZED, r);
		MHD_destroy_response(r);
		return ret;
	}
	/* split into at most 4 non-empty parts of at most 255 bytes */
	while (*p && n < 4) {
		const char *slash = strchr(p, '/');
		size_t l = slash ? (size_t)(slash - p) : strlen(p);

		if (!l || l >= sizeof(part[0]))
			return serve_send_text(c, 404, "not found\n");
		memcpy(part[n], p, l);
		part[n++][l] = '\0';
		p += l + (slash ? 1 : 0);
		if (slash && !*p)
			return serve_send_text(c, 404, "not found\n");
	}
	if (*p)
		return serve_send_text(c, 404, "not found\n");
	if (n == 1 && !strcmp(part[0], "sources.json"))
		return serve_get_list(sv, c);
	if (n == 2 && !strcmp(part[0], "snapshots"))
		return serve_get_snapshot(sv, c, part[1]);
	if (n == 2 && !strcmp(part[0], "trees"))
		return serve_get_tree(sv, c, part[1]);
	if (n == 3 && !strcmp(part[0], "objects") && hex_ok(part[1], 2) &&
	    hex_ok(part[2], 30)) {
		char hex[DHASH_HEX];

		snprintf(hex, sizeof(hex), "%.2s%.30s", part[1], part[2]);
		return serve_get_blob(sv, c, hex);
	}
	if (n >= 3 && !strcmp(part[0], "sources") && name_ok(part[1], 64)) {
		if (n == 3 && !strcmp(part[2], "current"))
			return serve_get_current(sv, c, part[1], con_cls);
		if (n == 4 && !strcmp(part[2], "revs"))
			return serve_get_rev(sv, c, part[1], part[3], con_cls);
	}
	return serve_send_text(c, 404, "not found\n");
}

/* ------------------------------------------------------ life and stats */

/* serve-token-file: the bearer token (read_secret, the one reader of
 * secret files). */
static int read_token(struct serve *sv, const char *path, char *err,
		      size_t errlen)
{
	int n = read_secret(sv->token, sizeof(sv->token), path);

	if (n < 0) {
		snprintf(err, errlen, "serve token file %s: %s", path,
			 strerror(-n));
		return n;
	}
	if (!n) {
		snprintf(err, errlen, "serve token file %s is empty", path);
		return -EINVAL;
	}
	sv->tlen = (size_t)n;
	return 0;
}

int serve_new(struct serve **out, struct dagfs_ctx *ctx, char *err,
	      size_t errlen)
{
	const struct dagfs_config *c = ctx->cfg;
	struct serve *sv = calloc(1, sizeof(*sv));
	int rc = 0;

	if (!sv)
		return -ENOMEM;
	sv->ctx = ctx;
	pthread_mutex_init(&sv->lock, NULL);
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sv->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (c->serve_token_file && *c->serve_token_file)
		rc = read_token(sv, c->serve_token_file, err, errlen);
	if (!rc && c->serve_key_file && *c->serve_key_file)
		rc = sdoc_key_load(&sv->key, c->serve_key_file, true, err,
				   errlen);
	if (!rc) {
		rc = -pthread_create(&sv->timer, NULL, serve_timer_main, sv);
		if (rc)
			snprintf(err, errlen, "serve: timer thread: %s",
				 strerror(-rc));
		else
			sv->timer_started = true;
	}
	if (rc) {
		serve_free(sv);
		return rc;
	}
	*out = sv;
	return 0;
}

void serve_free(struct serve *sv)
{
	if (!sv)
		return;
	serve_quiesce(sv);
	for (size_t i = 0; i < sv->ndocs; i++)
		free(sv->docs[i].text);
	free(sv->docs);
	sdoc_key_free(sv->key);
	OPENSSL_cleanse(sv->token, sizeof(sv->token));
	pthread_cond_destroy(&sv->cond);
	pthread_mutex_destroy(&sv->lock);
	free(sv);
}

void serve_metrics(struct serve *sv, FILE *f)
{
	size_t waiting;

	if (!sv)
		return;
	pthread_mutex_lock(&sv->lock);
	waiting = sv->nwaiters;
	pthread_mutex_unlock(&sv->lock);
	fputs("# HELP dagfs_serve_requests_total Requests to /store/.\n"
	      "# TYPE dagfs_serve_requests_total counter\n",
	      f);
	fprintf(f, "dagfs_serve_requests_total %llu\n",
		(unsigned long long)atomic_load(&sv->n_req));
	fputs("# HELP dagfs_serve_objects_total Blobs and snapshots served.\n"
	      "# TYPE dagfs_serve_objects_total counter\n",
	      f);
	fprintf(f,
		"dagfs_serve_objects_total{kind=\"blob\"} %llu\n"
		"dagfs_serve_objects_total{kind=\"snapshot\"} %llu\n",
		(unsigned long long)atomic_load(&sv->n_blobs),
		(unsigned long long)atomic_load(&sv->n_snaps));
	fputs("# HELP dagfs_serve_bytes_total Bytes of blobs and snapshots "
	      "served.\n# TYPE dagfs_serve_bytes_total counter\n",
	      f);
	fprintf(f, "dagfs_serve_bytes_total %llu\n",
		(unsigned long long)atomic_load(&sv->n_bytes));
	fputs("# HELP dagfs_serve_long_polls_total Long-polls that waited.\n"
	      "# TYPE dagfs_serve_long_polls_total counter\n",
	      f);
	fprintf(f, "dagfs_serve_long_polls_total %llu\n",
		(unsigned long long)atomic_load(&sv->n_polls));
	fputs("# HELP dagfs_serve_waiting Long-polls waiting now.\n"
	      "# TYPE dagfs_serve_waiting gauge\n",
	      f);
	fprintf(f, "dagfs_serve_waiting %zu\n", waiting);
}
