/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dagfs_demand.c - the dagfs source's on-demand fetches: a revision the
 * upstream retains (revs/REV, checked and taken as a round takes the
 * current one, never made current) and a tree manifest (trees/ID).
 *
 * It must not touch the round's state but through dg_take(): the tree
 * fetch runs on fs/'s threads, with an easy handle of its own.
 */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "dagfs_i.h"

/* @rev percent-encoded (all but unreserved characters) into @out. */
static int rev_encode(char *out, size_t cap, const char *rev)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)rev; *p; p++) {
		if (n + 4 > cap)
			return -ENAMETOOLONG;
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
			out[n++] = (char)*p;
		} else {
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = '\0';
	return 0;
}

/*
 * Revision @rev on demand: the upstream's statement of it (revs/REV),
 * checked as a current one is (but an old revision may be old), its
 * snapshot and missing blobs. Kept by the loop, never made current.
 */
int dg_fetch_rev(struct source *src, const char *rev, struct snap **out,
		 char *err, size_t errlen)
{
	struct dg *g = src->priv;
	struct body b = { .max = SDOC_MAX };
	char url[PATH_MAX], enc[768];
	struct sdoc d;
	int rc;

	if (rev_encode(enc, sizeof(enc), rev) ||
	    path_fmt(url, sizeof(url), "%s/sources/%s/revs/%s", g->base,
		     g->upstream, enc))
		return -ENAMETOOLONG;
	rc = dg_get_retry(src, url, "revision statement", &b, err, errlen);
	if (!rc)
		rc = dg_check_statement(src, b.p, b.len, &d, err, errlen);
	if (!rc && strcmp(d.rev, rev)) {
		snprintf(err, errlen,
			 "%s: statement for revision %s names %s; "
			 "refused",
			 src->tag, rev, d.rev);
		rc = -EBADMSG;
	}
	if (!rc)
		rc = dg_take(src, &d, b.p, b.len, out, err, errlen);
	free(b.p);
	return rc;
}

/*
 * Tree manifest @id from the upstream (trees/ID), stored by tree_put(),
 * which checks it hashes to @id. Called from fs/'s fetch threads while
 * ->sync may run: an easy handle of its own, and only what init set.
 */
int dg_fetch_tree(struct source *src, const char *id, int timeout_ms, char *err,
		  size_t errlen)
{
	struct dg *g = src->priv;
	struct body b = { .max = 1 << 20 };
	char url[PATH_MAX];
	CURL *e;
	CURLcode cc;
	long status = 0;
	int rc;

	if (path_fmt(url, sizeof(url), "%s/trees/%s", g->base, id))
		return -ENAMETOOLONG;
	e = curl_easy_init();
	if (!e)
		return -ENOMEM;
	dg_easy_setup(g, e, url, timeout_ms / 1000 + 1);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, dg_body_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	cc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(e);
	if (cc != CURLE_OK || status != 200 || b.too_big)
		rc = dg_fail(src, err, errlen, "tree manifest", cc, status);
	else if ((rc = tree_put(src->store, id, b.p, b.len, TREES_KEEP)))
		snprintf(err, errlen, "%s: tree manifest %s: %s", src->tag, id,
			 rc == -EBADMSG ? "does not match its name; refused" :
					  strerror(-rc));
	free(b.p);
	return rc;
}
