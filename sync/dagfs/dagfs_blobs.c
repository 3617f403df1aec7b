/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dagfs_blobs.c - the dagfs source's blob transfers: the blobs a snapshot
 * names that the store lacks, many in flight on one curl multi handle,
 * each streamed into a store transaction that commits only if the bytes
 * hash to their name and are as long as the snapshot says.
 *
 * It must not store anything under a name it has not verified, and
 * fetches no statement or snapshot (dagfs_verify.c).
 */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "dagfs_i.h"

/* ----------------------------------------------------------- blobs */

struct xfer {
	CURL *e;
	struct store_txn *txn;
	const struct snap_entry *ent; /* NULL: idle */
	uint64_t got;
	int werr;
	int tries;
};

static size_t xfer_write(char *data, size_t sz, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = sz * n;
	long status = 0;

	curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200)
		return len; /* an error body: dropped */
	if (x->got + len > x->ent->size) {
		x->werr = -EBADMSG; /* longer than the snapshot says */
		return 0;
	}
	x->werr = store_txn_write(x->txn, data, len);
	if (x->werr)
		return 0;
	x->got += len;
	return len;
}

static int xfer_start(struct source *src, struct xfer *x,
		      const struct snap_entry *ent)
{
	struct dg *g = src->priv;
	char url[PATH_MAX], hex[DHASH_HEX];
	int rc;

	dhash_hex(hex, &ent->hash);
	if (path_fmt(url, sizeof(url), "%s/objects/%.2s/%s", g->base, hex,
		     hex + 2))
		return -ENAMETOOLONG;
	rc = store_txn_begin(src->store, &x->txn);
	if (rc)
		return rc;
	x->ent = ent;
	x->got = 0;
	x->werr = 0;
	curl_easy_reset(x->e);
	dg_easy_setup(g, x->e, url, 300);
	curl_easy_setopt(x->e, CURLOPT_WRITEFUNCTION, xfer_write);
	curl_easy_setopt(x->e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->e, CURLOPT_PRIVATE, x);
	return curl_multi_add_handle(g->m, x->e) == CURLM_OK ? 0 : -ENOMEM;
}

/* A finished transfer: 0 stored, 1 to try again, or -errno (fatal). */
static int xfer_done(struct source *src, struct xfer *x, CURLcode cc, char *err,
		     size_t errlen)
{
	struct dg *g = src->priv;
	char hex[DHASH_HEX];
	long status = 0;
	int rc;

	curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(g->m, x->e);
	dhash_hex(hex, &x->ent->hash);
	if (cc == CURLE_OK && status == 200 && x->got == x->ent->size) {
		rc = store_txn_commit(x->txn, NULL, NULL, &x->ent->hash);
		x->txn = NULL;
		if (!rc) {
			source_count_fetch(src, x->got, 1);
			return 0;
		}
		if (rc != -EBADMSG) {
			snprintf(err, errlen, "%s: storing blob %s: %s",
				 src->tag, hex, strerror(-rc));
			return rc;
		}
	}
	store_txn_abort(x->txn);
	x->txn = NULL;
	if (x->werr && x->werr != -EBADMSG) {
		snprintf(err, errlen, "%s: storing blob %s: %s", src->tag, hex,
			 strerror(-x->werr));
		return x->werr;
	}
	if ((cc == CURLE_OK && status == 200) || x->werr == -EBADMSG ||
	    cc == CURLE_WRITE_ERROR) {
		if (++x->tries < TRIES) {
			log_warn(src->tag,
				 "blob %s failed verification (its "
				 "bytes are not the ones named); fetching it "
				 "again",
				 hex);
			return 1;
		}
		snprintf(err, errlen,
			 "%s: blob %s failed verification %d "
			 "times; refused",
			 src->tag, hex, TRIES);
		return -EBADMSG;
	}
	if (dg_retryable(cc, status) && ++x->tries < TRIES) {
		usleep(100000u << x->tries);
		return 1;
	}
	return dg_fail(src, err, errlen, hex, cc, status);
}

/* The distinct blobs of @s the store lacks, into *@out (borrowed entries). */
static int missing(struct source *src, const struct snap *s,
		   const struct snap_entry ***out, size_t *n)
{
	const struct snap_entry **v = calloc(s->n + 1, sizeof(*v));
	size_t k = 0;

	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->n; i++) {
		const struct snap_entry *e = &s->e[i];
		bool dup = false;

		if (e->type != SNAP_FILE || store_has(src->store, &e->hash))
			continue;
		/* duplicates are rare (copies of a file); k is small */
		for (size_t j = k; j-- > 0 && !dup && k - j < 64;)
			dup = dhash_eq(&v[j]->hash, &e->hash);
		if (!dup)
			v[k++] = e;
	}
	*out = v;
	*n = k;
	return 0;
}

int dg_fetch_blobs(struct source *src, const struct snap *s, char *err,
		   size_t errlen)
{
	struct dg *g = src->priv;
	const struct snap_entry **todo = NULL;
	size_t n = 0, next = 0, active = 0, nx;
	int bad = 0; /* -EBADMSG once a blob was refused; @err says which */
	struct xfer *xs;
	int rc = missing(src, s, &todo, &n);

	if (rc || !n) {
		free(todo);
		return rc;
	}
	nx = n < g->parallel ? n : g->parallel;
	xs = calloc(nx, sizeof(*xs));
	for (size_t i = 0; xs && i < nx; i++)
		if (!(xs[i].e = curl_easy_init()))
			rc = -ENOMEM;
	if (!xs)
		rc = -ENOMEM;
	while (!rc && (next < n || active)) {
		CURLMsg *msg;
		int running, q;

		for (size_t i = 0; i < nx && !rc && next < n; i++) {
			if (xs[i].ent)
				continue;
			xs[i].tries = 0;
			rc = xfer_start(src, &xs[i], todo[next++]);
			active += !rc;
		}
		curl_multi_perform(g->m, &running);
		while (!rc && (msg = curl_multi_info_read(g->m, &q))) {
			struct xfer *x;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
					  (char **)&x);
			rc = xfer_done(src, x, msg->data.result, err, errlen);
			if (rc == -EBADMSG) {
				/* one blob damaged on every try: the round
				 * fails, but the others still land in the
				 * store, so the next round fetches only what
				 * is still missing (a path damaging a share
				 * of all requests cannot starve the mirror) */
				bad = rc;
				rc = 0;
			}
			if (rc == 1) /* again, same slot */
				rc = xfer_start(src, x, x->ent);
			else {
				x->ent = NULL;
				active--;
			}
		}
		if (!rc && active)
			curl_multi_poll(g->m, NULL, 0, 1000, NULL);
	}
	for (size_t i = 0; xs && i < nx; i++) {
		if (xs[i].ent)
			curl_multi_remove_handle(g->m, xs[i].e);
		store_txn_abort(xs[i].txn);
		curl_easy_cleanup(xs[i].e);
	}
	free(xs);
	free(todo);
	return rc ? rc : bad;
}
