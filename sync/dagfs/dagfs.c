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
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "snap_i.h"
#include "source_i.h"

#define TRIES 3
#define SNAP_MAX (256u << 20)
#define TOKEN_MAX 4096
/* tree_put() trims to this; the view's own keep-trees trims at its next
 * composition, so this only has to be at least as large */
#define TREES_KEEP 1000000

static const char *const dagfs_keys[] = { "source", "token-file",
					  "public-key", "parallel", "wait",
					  "ca-file", NULL };

struct dg {
	char *base;	/* URL of the store, no trailing '/' */
	char *upstream; /* source= */
	char *ca_file;
	struct curl_slist *auth; /* Authorization header, or NULL */
	struct sdoc_key *pub;	 /* NULL: statements not checked */
	unsigned parallel;
	int wait_s;
	CURLM *m;
	CURL *poll_e; /* the long-poll's handle (keeps its connection) */
	char *stash;  /* a statement the long-poll brought, for sync */
	size_t stashlen;
	char up_id[DHASH_HEX];	 /* upstream snapshot last published */
	int64_t up_published_ns; /* its statement's time */
	bool unreachable; /* the last request found no upstream to talk to */
};

struct body {
	char *p;
	size_t len, max;
	bool too_big;
};

/* -------------------------------------------------------------- errors */

/* The one translation of curl results and HTTP statuses; no URL with a
 * secret ever reaches it (the token travels in a header). */
static int dg_fail(struct source *src, char *err, size_t errlen,
		   const char *what, CURLcode cc, long status)
{
	if (cc != CURLE_OK) {
		snprintf(err, errlen, "%s: %s: %s", src->tag, what,
			 curl_easy_strerror(cc));
		return cc == CURLE_PEER_FAILED_VERIFICATION ? -EPERM : -EIO;
	}
	snprintf(err, errlen, "%s: %s: HTTP %ld%s", src->tag, what, status,
		 status == 401 || status == 403 ? " (check token-file=)" :
		 status == 404			? " (not on the upstream)" :
						  "");
	return status == 401 || status == 403 ? -EACCES :
	       status == 404			? -ENOENT :
						  -EIO;
}

static bool retryable(CURLcode cc, long status)
{
	if (cc == CURLE_OK)
		return status >= 500 || status == 429 || status == 408;
	return cc != CURLE_PEER_FAILED_VERIFICATION && cc != CURLE_URL_MALFORMAT &&
	       cc != CURLE_UNSUPPORTED_PROTOCOL;
}

/* ------------------------------------------------------------- curl */

static size_t body_write(char *data, size_t sz, size_t n, void *ud)
{
	struct body *b = ud;
	size_t len = sz * n;
	char *p;

	if (b->len + len > b->max) {
		b->too_big = true;
		return 0;
	}
	p = realloc(b->p, b->len + len + 1);
	if (!p)
		return 0;
	b->p = p;
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return len;
}

static size_t poll_header(char *line, size_t sz, size_t n, void *ud)
{
	bool *waited = ud;

	if (sz * n >= 17 && !strncasecmp(line, "X-Dagfs-Long-Poll:", 17))
		*waited = true;
	return sz * n;
}

static void easy_setup(struct dg *g, CURL *e, const char *url, long timeout_s)
{
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, timeout_s);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	if (g->auth)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, g->auth);
	if (g->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, g->ca_file);
}

/*
 * One GET into @b on the multi handle. With @intr, src->wakefd ends it
 * early: returns 1 (the event is drained). Else 0 for a 200, or -errno
 * with the reason in @err. *@waited says whether the upstream long-polled.
 */
static int get(struct source *src, CURL *e, const char *url, const char *what,
	       struct body *b, long timeout_s, bool intr, bool *waited,
	       char *err, size_t errlen)
{
	struct dg *g = src->priv;
	struct curl_waitfd wfd = { .fd = src->wakefd, .events = CURL_WAIT_POLLIN };
	CURLcode cc = CURLE_OK;
	long status = 0;
	bool done = false, interrupted = false, w = false;
	int running;

	curl_easy_reset(e);
	easy_setup(g, e, url, timeout_s);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, poll_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &w);
	if (curl_multi_add_handle(g->m, e) != CURLM_OK)
		return -ENOMEM;
	while (!done) {
		CURLMsg *msg;
		int q, nfd = 0;

		curl_multi_perform(g->m, &running);
		while ((msg = curl_multi_info_read(g->m, &q))) {
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == e) {
				cc = msg->data.result;
				done = true;
			}
		}
		if (done)
			break;
		curl_multi_poll(g->m, intr ? &wfd : NULL, intr ? 1 : 0, 1000,
				&nfd);
		if (intr && (wfd.revents & CURL_WAIT_POLLIN)) {
			interrupted = true;
			break;
		}
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(g->m, e);
	if (!interrupted)
		g->unreachable = cc == CURLE_COULDNT_CONNECT ||
				 cc == CURLE_COULDNT_RESOLVE_HOST ||
				 cc == CURLE_GOT_NOTHING || cc == CURLE_RECV_ERROR;
	if (waited)
		*waited = w;
	if (interrupted) {
		source_poll_wake(src, -1, 0); /* drain */
		return 1;
	}
	if (b->too_big) {
		snprintf(err, errlen, "%s: %s: larger than %zu bytes", src->tag,
			 what, b->max);
		return -EFBIG;
	}
	if (cc != CURLE_OK || status != 200)
		return dg_fail(src, err, errlen, what, cc, status);
	return 0;
}

/* GET with retries for what is not the long-poll. */
static int get_retry(struct source *src, const char *url, const char *what,
		     struct body *b, char *err, size_t errlen)
{
	CURL *e = curl_easy_init();
	int rc = -ENOMEM;

	for (int i = 0; e && i < TRIES; i++) {
		b->len = 0;
		b->too_big = false;
		rc = get(src, e, url, what, b, 60, false, NULL, err, errlen);
		if (rc != -EIO)
			break;
		usleep(100000u << i);
	}
	curl_easy_cleanup(e);
	return rc;
}

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
	easy_setup(g, x->e, url, 300);
	curl_easy_setopt(x->e, CURLOPT_WRITEFUNCTION, xfer_write);
	curl_easy_setopt(x->e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->e, CURLOPT_PRIVATE, x);
	return curl_multi_add_handle(g->m, x->e) == CURLM_OK ? 0 : -ENOMEM;
}

/* A finished transfer: 0 stored, 1 to try again, or -errno (fatal). */
static int xfer_done(struct source *src, struct xfer *x, CURLcode cc,
		     char *err, size_t errlen)
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
			log_warn(src->tag, "blob %s failed verification (its "
				 "bytes are not the ones named); fetching it "
				 "again", hex);
			return 1;
		}
		snprintf(err, errlen, "%s: blob %s failed verification %d "
			 "times; refused", src->tag, hex, TRIES);
		return -EBADMSG;
	}
	if (retryable(cc, status) && ++x->tries < TRIES) {
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

static int fetch_blobs(struct source *src, const struct snap *s, char *err,
		       size_t errlen)
{
	struct dg *g = src->priv;
	const struct snap_entry **todo = NULL;
	size_t n = 0, next = 0, active = 0, nx;
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
	return rc;
}

/* ------------------------------------------------------- statements */

/* Parse and check a statement of the upstream; one-line reason on error. */
static int check_statement(struct source *src, const char *doc, size_t len,
			   struct sdoc *d, char *err, size_t errlen)
{
	struct dg *g = src->priv;

	if (sdoc_parse(d, doc, len)) {
		snprintf(err, errlen, "%s: the upstream's statement of %s is "
			 "malformed; refused", src->tag, g->upstream);
		return -EBADMSG;
	}
	if (strcmp(d->source, g->upstream)) {
		snprintf(err, errlen, "%s: statement names source '%s', not "
			 "'%s'; refused", src->tag, d->source, g->upstream);
		return -EBADMSG;
	}
	if (g->pub && sdoc_verify(d, doc, g->pub)) {
		snprintf(err, errlen, "%s: statement of snapshot %s is %s; "
			 "refused", src->tag, d->snapshot,
			 d->is_signed ? "not signed by public-key=" :
					"unsigned");
		return -EPERM;
	}
	return 0;
}

/* The snapshot a statement names, its bytes checked, with raw bytes kept. */
static int fetch_snapshot(struct source *src, const struct sdoc *d,
			  struct snap **out, char *err, size_t errlen)
{
	struct dg *g = src->priv;
	struct body b = { .max = SNAP_MAX };
	char url[PATH_MAX];
	void *raw = NULL;
	size_t len = 0;
	int rc = -EBADMSG;

	if (!pub_read_raw(src->store, d->snapshot, &raw, &len) &&
	    !sdoc_check_snapshot(d, raw, len)) {
		b.p = raw;
		b.len = len;
		rc = 0;
	} else {
		free(raw);
	}
	if (rc && path_fmt(url, sizeof(url), "%s/snapshots/%s", g->base,
			   d->snapshot))
		return -ENAMETOOLONG;
	for (int i = 0; rc == -EBADMSG && i < TRIES; i++) {
		rc = get_retry(src, url, "snapshot", &b, err, errlen);
		if (!rc && sdoc_check_snapshot(d, b.p, b.len)) {
			log_warn(src->tag, "snapshot %s does not match its "
				 "statement (damaged in transit?); fetching it "
				 "again", d->snapshot);
			snprintf(err, errlen, "%s: snapshot %s does not match "
				 "its statement %d times; refused", src->tag,
				 d->snapshot, TRIES);
			rc = -EBADMSG;
		}
	}
	if (!rc && snap_decode(out, b.p, b.len)) {
		snprintf(err, errlen, "%s: snapshot %s does not decode; refused",
			 src->tag, d->snapshot);
		rc = -EBADMSG;
	}
	if (!rc && (strcmp((*out)->rev, d->rev) ||
		    strcmp((*out)->source, d->source))) {
		snprintf(err, errlen, "%s: snapshot %s is not revision %s of "
			 "%s; refused", src->tag, d->snapshot, d->rev,
			 d->source);
		snap_unref(*out);
		rc = -EBADMSG;
	}
	if (!rc) {
		snap_set_raw(*out, b.p, b.len);
		return 0;
	}
	free(b.p);
	return rc;
}

/* Keep a signed statement for re-serving: sources/NAME/sdoc-ID. */
static void keep_statement(struct source *src, const struct sdoc *d,
			   const char *doc, size_t len)
{
	char dir[PATH_MAX], tmp[PATH_MAX], dst[PATH_MAX];
	int fd;

	if (!d->is_signed ||
	    path_fmt(dir, sizeof(dir), "%s/sources/%s", store_dir(src->store),
		     src->name) ||
	    path_fmt(tmp, sizeof(tmp), "%s/.sdoc.tmp", dir) ||
	    path_fmt(dst, sizeof(dst), "%s/sdoc-%s", dir, d->snapshot))
		return;
	if (mkdir_p(dir, 0755))
		return;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, doc, len) != (ssize_t)len || rename(tmp, dst))
		unlink(tmp);
	close(fd);
}

/* Drop kept statements whose snapshot is gone. */
static void prune_statements(struct source *src)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (path_fmt(dir, sizeof(dir), "%s/sources/%s", store_dir(src->store),
		     src->name) ||
	    !(d = opendir(dir)))
		return;
	while ((de = readdir(d))) {
		struct stat st;

		if (strncmp(de->d_name, "sdoc-", 5) ||
		    path_fmt(path, sizeof(path), "%s/snapshots/%s",
			     store_dir(src->store), de->d_name + 5))
			continue;
		if (stat(path, &st) && errno == ENOENT)
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

/* ------------------------------------------------------------ sync */

static int own_name(struct source *src, struct snap *snap);

/*
 * What checked statement @d (text @doc) names: the snapshot and the blobs
 * the store lacks, under this source's name. The statement is kept for
 * re-serving when the snapshot keeps the upstream's id.
 */
static int take(struct source *src, const struct sdoc *d, const char *doc,
		size_t len, struct snap **out, char *err, size_t errlen)
{
	struct dg *g = src->priv;
	struct snap *snap = NULL;
	int rc = fetch_snapshot(src, d, &snap, err, errlen);

	if (!rc)
		rc = fetch_blobs(src, snap, err, errlen);
	if (!rc)
		rc = own_name(src, snap);
	if (rc) {
		snap_unref(snap);
		return rc;
	}
	if (!strcmp(src->name, g->upstream))
		keep_statement(src, d, doc, len);
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
	} else if (path_fmt(url, sizeof(url), "%s/sources/%s/current",
			    g->base, g->upstream)) {
		return -ENAMETOOLONG;
	} else {
		rc = get_retry(src, url, "current statement", &b, err, errlen);
	}
	if (!rc)
		rc = check_statement(src, b.p, b.len, &d, err, errlen);
	if (rc)
		goto out;
	if (prev_rev[0] && !strcmp(d.snapshot, g->up_id))
		goto out; /* rc 0: unchanged */
	if (d.published_ns < g->up_published_ns) {
		snprintf(err, errlen, "%s: statement of snapshot %s is older "
			 "than the one served (a stale cache or a replay?); "
			 "refused", src->tag, d.snapshot);
		rc = -ESTALE;
		goto out;
	}
	prune_statements(src); /* before take() keeps the new one */
	rc = take(src, &d, b.p, b.len, &snap, err, errlen);
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
static int dg_fetch_rev(struct source *src, const char *rev, struct snap **out,
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
	rc = get_retry(src, url, "revision statement", &b, err, errlen);
	if (!rc)
		rc = check_statement(src, b.p, b.len, &d, err, errlen);
	if (!rc && strcmp(d.rev, rev)) {
		snprintf(err, errlen, "%s: statement for revision %s names %s; "
			 "refused", src->tag, rev, d.rev);
		rc = -EBADMSG;
	}
	if (!rc)
		rc = take(src, &d, b.p, b.len, out, err, errlen);
	free(b.p);
	return rc;
}

/*
 * The upstream was not there (down, restarting): rather than sleep the
 * whole backoff, knock about once a second (jittered) with a plain GET of
 * the statement, and end the wait as soon as one answers, so mirrors
 * catch up within a second or two of the publisher's return. Only for
 * "nobody answered": any other failure waits the loop's backoff.
 */
static void probe(struct source *src, int timeout_ms)
{
	struct dg *g = src->priv;
	int64_t until = mono_ns() + (int64_t)timeout_ms * 1000000;
	char url[PATH_MAX], err[256];

	if (path_fmt(url, sizeof(url), "%s/sources/%s/current", g->base,
		     g->upstream))
		return;
	for (;;) {
		int64_t left = (until - mono_ns()) / 1000000;
		int step = 700 + (int)(random() % 600);
		struct body b = { .max = SDOC_MAX };
		bool go;

		if (left <= 0)
			return;
		source_poll_wake(src, -1, step < left ? step : (int)left);
		pthread_mutex_lock(&src->lock);
		go = src->stop || src->kicked;
		pthread_mutex_unlock(&src->lock);
		if (go || source_demands_pending(src))
			return;
		if (!get(src, g->poll_e, url, "probe", &b, 5, true, NULL, err,
			 sizeof(err))) {
			free(g->stash);
			g->stash = b.p; /* the round checks it */
			g->stashlen = b.len;
			return;
		}
		free(b.p);
		if (!g->unreachable)
			return; /* it answers, with an error: the loop's turn */
	}
}

/*
 * Tree manifest @id from the upstream (trees/ID), stored by tree_put(),
 * which checks it hashes to @id. Called from fs/'s fetch threads while
 * ->sync may run: an easy handle of its own, and only what init set.
 */
static int dg_fetch_tree(struct source *src, const char *id, int timeout_ms,
			 char *err, size_t errlen)
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
	easy_setup(g, e, url, timeout_ms / 1000 + 1);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, body_write);
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

/*
 * Wait for the next round: the long-poll when the last round went well
 * (it answers when the upstream publishes), else the loop's backoff. A
 * server that did not long-poll (a static copy) is polled every period.
 */
static void dg_wait(struct source *src, int timeout_ms)
{
	struct dg *g = src->priv;
	struct body b = { .max = SDOC_MAX };
	char url[PATH_MAX], err[256];
	int64_t t0 = mono_ns();
	struct sdoc d;
	bool waited = false, failing, kicked, changed;
	int rc;

	pthread_mutex_lock(&src->lock);
	failing = src->st.failures > 0;
	kicked = src->kicked || src->stop;
	pthread_mutex_unlock(&src->lock);
	if (kicked)
		return;
	if (failing && g->unreachable) {
		probe(src, timeout_ms);
		return;
	}
	if (failing || !g->up_id[0] ||
	    path_fmt(url, sizeof(url), "%s/sources/%s/current?after=%s&wait=%d",
		     g->base, g->upstream, g->up_id, g->wait_s)) {
		source_poll_wake(src, -1, timeout_ms);
		return;
	}
	rc = get(src, g->poll_e, url, "long-poll", &b, g->wait_s + 15, true,
		 &waited, err, sizeof(err));
	if (rc == 1)
		return; /* kicked or stopping */
	if (rc) {
		log_debug(src->tag, "long-poll: %s", err);
		free(b.p);
		if (g->unreachable)
			probe(src, timeout_ms);
		else
			source_poll_wake(src, -1, timeout_ms);
		return;
	}
	changed = !sdoc_parse(&d, b.p, b.len) && strcmp(d.snapshot, g->up_id);
	free(g->stash);
	g->stash = b.p; /* the next round checks it: no second GET */
	g->stashlen = b.len;
	if (!changed && !waited) { /* a static copy: poll it every period */
		int left = timeout_ms - (int)((mono_ns() - t0) / 1000000);

		if (left > 0)
			source_poll_wake(src, -1, left);
	}
}

/* ------------------------------------------------------------ setup */

static int read_token(struct dg *g, struct source *src, const char *path,
		      char *err, size_t errlen)
{
	char buf[TOKEN_MAX + 32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0) {
		snprintf(err, errlen, "%s: token-file %s: %s", src->tag, path,
			 strerror(errno));
		return -errno;
	}
	memcpy(buf, "Authorization: Bearer ", 22);
	n = read(fd, buf + 22, TOKEN_MAX);
	close(fd);
	while (n > 0 && (buf[22 + n - 1] == '\n' || buf[22 + n - 1] == '\r'))
		n--;
	if (n <= 0 || memchr(buf + 22, '\n', (size_t)n)) {
		snprintf(err, errlen, "%s: token-file %s is empty or has more "
			 "than one line", src->tag, path);
		memset(buf, 0, sizeof(buf));
		return -EINVAL;
	}
	buf[22 + n] = '\0';
	g->auth = curl_slist_append(NULL, buf);
	memset(buf, 0, sizeof(buf));
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
			snprintf(err, errlen, "%s: bad wait '%s' (long-poll, "
				 "1s-25s)", src->tag, v);
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
		snprintf(err, errlen, "%s: location must be an http:// or "
			 "https:// URL of a served store", src->tag);
		return -EINVAL;
	}
	if (!up || !*up || strlen(up) > 64 ||
	    strspn(up, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		       "0123456789-_.") != strlen(up) || !strcmp(up, ".") ||
	    !strcmp(up, "..")) {
		snprintf(err, errlen, "%s: source=NAME (the upstream's source: "
			 "letters, digits, '-', '_', '.') is required", src->tag);
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
			snprintf(err, errlen, "%s: %s", src->tag, strerror(ENOMEM));
		dg_fini(src);
		return rc;
	}
	n = strlen(g->base);
	while (n > 8 && g->base[n - 1] == '/')
		g->base[--n] = '\0';
	curl_multi_setopt(g->m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)g->parallel + 1);
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
