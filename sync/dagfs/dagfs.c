/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dagfs.c - the `dagfs` source: mirror one source of a served store
 * (another daemon's /store/, or a static copy of it) over HTTP.
 *
 * A round: take the upstream's statement of its current snapshot (from
 * the long-poll, or a plain GET), check it (format, source, signature
 * when public-key= is set, never older than the one already served),
 * take the snapshot (from the local cache when it is there, else GET),
 * check its bytes against the statement's id and SHA-256, then fetch the
 * blobs the store lacks, many in flight on one curl multi handle, each
 * streamed into a store transaction that commits only if the bytes hash
 * to the name the snapshot gives (and are as long as it says). Only then
 * is the snapshot handed to the loop. A blob or snapshot damaged in
 * transit is refused and fetched again (three tries); nothing that
 * failed a check is ever stored under a name.
 *
 * When the mirror's name is the upstream's, the snapshot is published
 * byte for byte (same id as upstream) and a signed statement is kept in
 * sources/NAME/sdoc-ID, so a mirror that serves forwards it and a mirror
 * of a mirror can check the original signature.
 *
 * Waiting is the long-poll: GET current?after=ID&wait=S answers when the
 * upstream publishes. A static server ignores the query and answers at
 * once (no X-Dagfs-Long-Poll header): then the mirror polls every
 * period=. Kicks and stop interrupt the wait (wakefd is polled with the
 * transfer).
 *
 * This file: the round (take a checked statement, its snapshot and blobs,
 * under this source's name), the options and the ops table. It must not
 * talk curl itself (dagfs_http.c) nor check bytes (dagfs_verify.c,
 * dagfs_blobs.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "dagfs_i.h"

#define TOKEN_MAX 4096

static const char *const dagfs_keys[] = { "source",	"token-file",
					  "public-key", "parallel",
					  "wait",	"ca-file",
					  NULL };

/* ------------------------------------------------------------ sync */

static int own_name(struct source *src, struct snap *snap);

/*
 * What checked statement @d (text @doc) names: the snapshot and the blobs
 * the store lacks, under this source's name. The statement is kept for
 * re-serving when the snapshot keeps the upstream's id.
 */
int dg_take(struct source *src, const struct sdoc *d, const char *doc,
	    size_t len, struct snap **out, char *err, size_t errlen)
{
	struct dg *g = src->priv;
	struct snap *snap = NULL;
	int rc = dg_fetch_snapshot(src, d, &snap, err, errlen);

	if (!rc)
		rc = dg_fetch_blobs(src, snap, err, errlen);
	if (!rc)
		rc = own_name(src, snap);
	if (rc) {
		snap_unref(snap);
		return rc;
	}
	if (!strcmp(src->name, g->upstream))
		dg_keep_statement(src, d, doc, len);
	*out = snap;
	return 0;
}

/* Under another name here than upstream: our own encoding, our own id. */
static int own_name(struct source *src, struct snap *snap)
{
	char *name;

	if (!strcmp(src->name, snap->source))
		return 0;
	name = strdup(src->name);
	if (!name)
		return -ENOMEM;
	free(snap->source);
	snap->source = name;
	snap_set_raw(snap, NULL, 0);
	return 0;
}

static int dg_sync(struct source *src, const char *prev_rev, struct snap **out,
		   char *err, size_t errlen)
{
	struct dg *g = src->priv;
	struct body b = { .max = SDOC_MAX };
	struct snap *snap = NULL;
	char url[PATH_MAX];
	struct sdoc d;
	int rc = 0;

	if (g->stash) {
		b.p = g->stash;
		b.len = g->stashlen;
		g->stash = NULL;
	} else if (path_fmt(url, sizeof(url), "%s/sources/%s/current", g->base,
			    g->upstream)) {
		return -ENAMETOOLONG;
	} else {
		rc = dg_get_retry(src, url, "current statement", &b, err,
				  errlen);
	}
	if (!rc)
		rc = dg_check_statement(src, b.p, b.len, &d, err, errlen);
	if (rc)
		goto out;
	if (prev_rev[0] && !strcmp(d.snapshot, g->up_id))
		goto out; /* rc 0: unchanged */
	if (d.published_ns < g->up_published_ns) {
		snprintf(err, errlen,
			 "%s: statement of snapshot %s is older "
			 "than the one served (a stale cache or a replay?); "
			 "refused",
			 src->tag, d.snapshot);
		rc = -ESTALE;
		goto out;
	}
	dg_prune_statements(src); /* before dg_take() keeps the new one */
	rc = dg_take(src, &d, b.p, b.len, &snap, err, errlen);
	if (rc)
		goto out;
	snprintf(g->up_id, sizeof(g->up_id), "%s", d.snapshot);
	g->up_published_ns = d.published_ns;
	*out = snap;
	rc = 1;
out:
	free(b.p);
	return rc;
}

/* ------------------------------------------------------------ setup */

/* token-file=: one line, sent as "Authorization: Bearer TOKEN" (read by
 * read_secret, the one reader of secret files). */
static int read_token(struct dg *g, struct source *src, const char *path,
		      char *err, size_t errlen)
{
	static const char hdr[] = "Authorization: Bearer ";
	char buf[sizeof(hdr) - 1 + TOKEN_MAX + 1];
	int n;

	memcpy(buf, hdr, sizeof(hdr) - 1);
	n = read_secret(buf + sizeof(hdr) - 1, TOKEN_MAX + 1, path);
	if (n < 0) {
		snprintf(err, errlen, "%s: token-file %s: %s", src->tag, path,
			 strerror(-n));
		return n;
	}
	if (!n || memchr(buf + sizeof(hdr) - 1, '\n', (size_t)n)) {
		snprintf(err, errlen,
			 "%s: token-file %s is empty or has more "
			 "than one line",
			 src->tag, path);
		explicit_bzero(buf, sizeof(buf));
		return -EINVAL;
	}
	g->auth = curl_slist_append(NULL, buf);
	explicit_bzero(buf, sizeof(buf));
	return g->auth ? 0 : -ENOMEM;
}

/* With no name=, the mirror takes the upstream's name (same ids). */
static int take_name(struct source *src, const char *upstream)
{
	char *n;

	if (source_spec_get(src->spec, "name"))
		return 0;
	n = strdup(upstream);
	if (!n)
		return -ENOMEM;
	free(src->name);
	src->name = n;
	snprintf(src->tag, sizeof(src->tag), "dagfs source %s", src->name);
	return 0;
}

static void dg_fini(struct source *src)
{
	struct dg *g = src->priv;

	if (!g)
		return;
	curl_easy_cleanup(g->poll_e);
	curl_multi_cleanup(g->m);
	curl_slist_free_all(g->auth);
	sdoc_key_free(g->pub);
	free(g->stash);
	free(g->base);
	free(g->upstream);
	free(g->ca_file);
	free(g);
	src->priv = NULL;
}

static int parse_opts(struct source *src, struct dg *g, char *err,
		      size_t errlen)
{
	const struct source_spec *sp = src->spec;
	const char *v;
	unsigned u;
	int ms;

	g->parallel = 16;
	g->wait_s = 20;
	if ((v = source_spec_get(sp, "parallel")) &&
	    (sscanf(v, "%u", &u) != 1 || !u || u > 256)) {
		snprintf(err, errlen, "%s: bad parallel '%s' (1-256)", src->tag,
			 v);
		return -EINVAL;
	}
	if (v)
		g->parallel = u;
	if ((v = source_spec_get(sp, "wait"))) {
		if (parse_duration_ms(v, &ms) || ms < 1000 || ms > 25000) {
			snprintf(err, errlen,
				 "%s: bad wait '%s' (long-poll, "
				 "1s-25s)",
				 src->tag, v);
			return -EINVAL;
		}
		g->wait_s = ms / 1000;
	}
	if ((v = source_spec_get(sp, "ca-file")) && !(g->ca_file = strdup(v)))
		return -ENOMEM;
	if ((v = source_spec_get(sp, "token-file")) &&
	    read_token(g, src, v, err, errlen))
		return -EINVAL;
	if ((v = source_spec_get(sp, "public-key"))) {
		char why[384];

		if (sdoc_key_load(&g->pub, v, false, why, sizeof(why))) {
			snprintf(err, errlen, "%s: %s", src->tag, why);
			return -EINVAL;
		}
	}
	return 0;
}

static int dg_init(struct source *src, char *err, size_t errlen)
{
	const struct source_spec *sp = src->spec;
	const char *up = source_spec_get(sp, "source");
	struct dg *g;
	size_t n;
	int rc;

	if (strncmp(sp->location, "http://", 7) &&
	    strncmp(sp->location, "https://", 8)) {
		snprintf(err, errlen,
			 "%s: location must be an http:// or "
			 "https:// URL of a served store",
			 src->tag);
		return -EINVAL;
	}
	if (!up || !*up || strlen(up) > 64 ||
	    strspn(up, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		       "0123456789-_.") != strlen(up) ||
	    !strcmp(up, ".") || !strcmp(up, "..")) {
		snprintf(err, errlen,
			 "%s: source=NAME (the upstream's source: "
			 "letters, digits, '-', '_', '.') is required",
			 src->tag);
		return -EINVAL;
	}
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	src->priv = g;
	g->base = strdup(sp->location);
	g->upstream = strdup(up);
	g->m = curl_multi_init();
	g->poll_e = curl_easy_init();
	rc = !g->base || !g->upstream || !g->m || !g->poll_e ? -ENOMEM : 0;
	if (!rc)
		rc = take_name(src, up);
	if (!rc)
		rc = parse_opts(src, g, err, errlen);
	if (rc) {
		if (rc == -ENOMEM)
			snprintf(err, errlen, "%s: %s", src->tag,
				 strerror(ENOMEM));
		dg_fini(src);
		return rc;
	}
	n = strlen(g->base);
	while (n > 8 && g->base[n - 1] == '/')
		g->base[--n] = '\0';
	curl_multi_setopt(g->m, CURLMOPT_MAX_HOST_CONNECTIONS,
			  (long)g->parallel + 1);
	return 0;
}

/* Start from what is served: the upstream id a raw snapshot kept. */
static void dg_resume(struct source *src)
{
	struct dg *g = src->priv;
	struct snap *cur = source_current(src);

	if (cur && !strcmp(cur->source, g->upstream)) {
		snprintf(g->up_id, sizeof(g->up_id), "%s", cur->id);
		g->up_published_ns = cur->published_ns;
	}
	snap_unref(cur);
}

static int dg_sync_entry(struct source *src, const char *prev_rev,
			 struct snap **out, char *err, size_t errlen)
{
	struct dg *g = src->priv;

	if (!g->up_id[0] && prev_rev[0])
		dg_resume(src);
	return dg_sync(src, prev_rev, out, err, errlen);
}

const struct source_ops source_dagfs_ops = {
	.type = "dagfs",
	.init = dg_init,
	.sync = dg_sync_entry,
	.wait = dg_wait,
	.fini = dg_fini,
	.fetch_rev = dg_fetch_rev,
	.fetch_tree = dg_fetch_tree,
	.keys = dagfs_keys,
};
