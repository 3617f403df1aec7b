/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3.c - the `s3` source: ListObjectsV2 (all pages) signed with libcurl's
 * AWS Signature V4, many GETs in flight on one curl multi handle, each
 * body streamed into the store and checked (length, MD5 when the ETag is
 * one, the GET's ETag against the listing's). A key whose listing entry
 * is unchanged is never fetched again: a map key -> (ETag, size, hash)
 * persists in <cache>/s3/<name>/map.
 *
 * Publication is all or nothing: one failed or changed object fails the
 * round and the last good revision stays. With marker=KEY, a revision is
 * taken only when the marker's ETag moves, and the listing is read after
 * the marker, so a pipeline that uploads everything and then the marker
 * switches every reader at once.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "s3_i.h"
#include "source_i.h"

#define S3_TRIES 6
#define S3_BACKOFF_MS 200
#define S3_BACKOFF_MAX_MS 10000
#define ERRBODY_MAX 4096

struct s3_entry { /* one known key: the persistent map */
	char *key;
	char etag[80];
	uint64_t size;
	int64_t mtime_ns;
	struct dhash hash;
};

struct s3_src {
	char *bucket, *prefix, *endpoint, *region, *marker, *ca_file;
	bool virtual_host;
	long parallel;
	struct s3_cred_opts co;
	struct s3_creds creds; /* source thread only */
	char sigv4[96];
	char marker_etag[80]; /* of the published revision */
	struct s3_entry *map;
	size_t nmap;
	char map_path[PATH_MAX];
};

static const char *const s3_keys[] = {
	"endpoint", "region", "addressing", "ca-file", "marker", "profile",
	"parallel", "credentials-file", "sts-endpoint", "imds-endpoint", NULL
};

/* ------------------------------------------------------------- errors */

/*
 * The one place that turns curl results, HTTP statuses and S3 error
 * bodies into a message: names the source and the cause, never a secret
 * or a signed URL.
 */
static int s3_fail(struct source *src, char *err, size_t errlen,
		   const char *what, CURLcode cc, long status,
		   const char *body, size_t blen)
{
	char code[128] = "", msg[256] = "";
	const char *hint = "";

	if (cc != CURLE_OK) {
		snprintf(err, errlen, "%s: %s: %s", src->tag, what,
			 curl_easy_strerror(cc));
		return cc == CURLE_PEER_FAILED_VERIFICATION ||
				       cc == CURLE_SSL_CACERT_BADFILE ?
			       -EPERM :
			       -EIO;
	}
	if (body && blen)
		s3_error_parse(body, blen, code, sizeof(code), msg, sizeof(msg));
	if (!strcmp(code, "SignatureDoesNotMatch"))
		hint = " (check the secret key)";
	else if (!strcmp(code, "InvalidAccessKeyId"))
		hint = " (check the access key)";
	else if (!strcmp(code, "NoSuchBucket"))
		hint = " (the bucket does not exist)";
	else if (!strcmp(code, "AccessDenied"))
		hint = " (the credentials may not read this bucket)";
	snprintf(err, errlen, "%s: %s: HTTP %ld%s%s%s%s%s", src->tag, what,
		 status, code[0] ? " " : "", code, msg[0] ? ": " : "", msg,
		 hint);
	return status == 403 || status == 401 ? -EACCES :
	       status == 404			? -ENOENT :
						  -EIO;
}

static bool retryable(CURLcode cc, long status)
{
	if (cc == CURLE_OK)
		return status >= 500 || status == 429 || status == 408;
	return cc == CURLE_COULDNT_CONNECT || cc == CURLE_RECV_ERROR ||
	       cc == CURLE_SEND_ERROR || cc == CURLE_PARTIAL_FILE ||
	       cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_GOT_NOTHING ||
	       cc == CURLE_HTTP2 || cc == CURLE_HTTP2_STREAM ||
	       cc == CURLE_COULDNT_RESOLVE_HOST;
}

static int backoff_ms(int attempt)
{
	long d = S3_BACKOFF_MS;

	for (int i = 1; i < attempt && d < S3_BACKOFF_MAX_MS; i++)
		d *= 2;
	if (d > S3_BACKOFF_MAX_MS)
		d = S3_BACKOFF_MAX_MS;
	return (int)(d / 2 + random() % (d / 2 + 1)); /* jitter */
}

/* --------------------------------------------------------- requests */

/* SHA-256 of an empty request body: what a listing's signature covers. */
#define S3_EMPTY_SHA256                                                        \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/*
 * curl 7.88 signs x-amz-content-sha256 but does not add it, and S3 (AWS
 * and RGW) answers 403 without it: @payload is UNSIGNED-PAYLOAD for
 * object GETs, S3_EMPTY_SHA256 for listings.
 */
static struct curl_slist *sign_headers(struct s3_src *s, const char *payload)
{
	char line[128];
	struct curl_slist *h;

	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", payload);
	h = curl_slist_append(NULL, line);

	if (h && s->creds.token[0]) {
		size_t n = strlen(s->creds.token) + 32;
		char *t = malloc(n);
		struct curl_slist *h2 = NULL;

		if (t) {
			snprintf(t, n, "x-amz-security-token: %s", s->creds.token);
			h2 = curl_slist_append(h, t);
			memset(t, 0, n);
			free(t);
		}
		if (!h2) {
			curl_slist_free_all(h);
			return NULL;
		}
	}
	return h;
}

static void easy_setup(struct s3_src *s, CURL *e, const char *url,
		       struct curl_slist *h)
{
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_AWS_SIGV4, s->sigv4);
	curl_easy_setopt(e, CURLOPT_USERNAME, s->creds.access_key);
	curl_easy_setopt(e, CURLOPT_PASSWORD, s->creds.secret_key);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	if (s->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
}

/* "https://host:port/base" + bucket (+ "/" + encoded key, or "?" query). */
static int make_url(struct s3_src *s, char *out, size_t cap, const char *key,
		    const char *query)
{
	char *ekey = NULL;
	const char *sep = strstr(s->endpoint, "://");
	int rc, n;

	if (key) {
		ekey = malloc(3 * strlen(key) + 1);
		if (!ekey || s3_uri_encode(ekey, 3 * strlen(key) + 1, key, true)) {
			free(ekey);
			return -ENAMETOOLONG;
		}
	}
	if (s->virtual_host && sep)
		n = snprintf(out, cap, "%.*s%s.%s/%s%s%s",
			     (int)(sep + 3 - s->endpoint), s->endpoint,
			     s->bucket, sep + 3, ekey ? ekey : "",
			     query ? "?" : "", query ? query : "");
	else
		n = snprintf(out, cap, "%s/%s%s%s%s%s", s->endpoint, s->bucket,
			     ekey ? "/" : "", ekey ? ekey : "",
			     query ? "?" : "", query ? query : "");
	rc = n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
	free(ekey);
	return rc;
}

struct membody {
	char *p;
	size_t len;
};

static size_t body_write(char *data, size_t sz, size_t n, void *ud)
{
	struct membody *m = ud;
	char *p;

	if (m->len + sz * n > (64u << 20))
		return 0;
	p = realloc(m->p, m->len + sz * n + 1);
	if (!p)
		return 0;
	memcpy(p + m->len, data, sz * n);
	m->p = p;
	m->len += sz * n;
	m->p[m->len] = '\0';
	return sz * n;
}

struct hdrs {
	char etag[80];
};

static size_t header_cb(char *line, size_t sz, size_t n, void *ud)
{
	struct hdrs *h = ud;
	size_t len = sz * n;

	if (len > 5 && !strncasecmp(line, "etag:", 5)) {
		const char *v = line + 5;
		size_t k;

		while (*v == ' ' || *v == '"')
			v++;
		k = strcspn(v, "\"\r\n");
		if (k < sizeof(h->etag)) {
			memcpy(h->etag, v, k);
			h->etag[k] = '\0';
		}
	}
	return len;
}

/* A small signed GET into memory, retried; returns 0 or -errno + @err. */
static int get_small(struct source *src, const char *url, const char *what,
		     const char *payload, struct membody *out, struct hdrs *h,
		     char *err, size_t errlen)
{
	struct s3_src *s = src->priv;
	struct curl_slist *hl = sign_headers(s, payload);
	CURL *e = curl_easy_init();
	int rc = -EIO;

	if (!e || !hl) {
		curl_easy_cleanup(e);
		curl_slist_free_all(hl);
		return -ENOMEM;
	}
	for (int attempt = 1;; attempt++) {
		long status = 0;
		CURLcode cc;

		free(out->p);
		out->p = NULL;
		out->len = 0;
		memset(h, 0, sizeof(*h));
		easy_setup(s, e, url, hl);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, body_write);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
		curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
		curl_easy_setopt(e, CURLOPT_HEADERDATA, h);
		cc = curl_easy_perform(e);
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
		if (cc == CURLE_OK && status == 200) {
			rc = 0;
			break;
		}
		if (!retryable(cc, status) || attempt >= S3_TRIES) {
			rc = s3_fail(src, err, errlen, what, cc, status, out->p,
				     out->len);
			break;
		}
		usleep((useconds_t)backoff_ms(attempt) * 1000);
	}
	curl_easy_cleanup(e);
	curl_slist_free_all(hl);
	return rc;
}

/* ------------------------------------------------------------ listing */

static int list_all(struct source *src, struct s3_page *pg, char *err,
		    size_t errlen)
{
	struct s3_src *s = src->priv;
	char *url = malloc(8192), *query = malloc(8192);
	char etok[3072], epre[3072];
	int rc = 0;

	if (!url || !query) {
		rc = -ENOMEM;
		goto out;
	}
	if (s3_uri_encode(epre, sizeof(epre), s->prefix, false)) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	do {
		struct membody body = { 0 };
		struct hdrs h;

		/* canonical order: curl 7.88 signs the query as given */
		if (pg->next_token &&
		    s3_uri_encode(etok, sizeof(etok), pg->next_token, false)) {
			rc = -ENAMETOOLONG;
			break;
		}
		/* encoding-type=url: keys with control characters would
		 * otherwise make the XML itself invalid */
		rc = path_fmt(query, 8192,
			      "%s%s%sencoding-type=url&list-type=2&prefix=%s",
			      pg->next_token ? "continuation-token=" : "",
			      pg->next_token ? etok : "",
			      pg->next_token ? "&" : "", epre);
		if (!rc)
			rc = make_url(s, url, 8192, NULL, query);
		if (!rc)
			rc = get_small(src, url, "listing", S3_EMPTY_SHA256,
				       &body, &h, err, errlen);
		if (!rc) {
			rc = s3_list_parse(pg, body.p, body.len);
			if (rc)
				snprintf(err, errlen, "%s: listing: malformed "
					 "ListObjectsV2 response", src->tag);
		}
		free(body.p);
	} while (!rc && pg->truncated);
out:
	free(url);
	free(query);
	return rc;
}

/* ---------------------------------------------------------------- map */

static int map_cmp(const void *a, const void *b)
{
	return strcmp(((const struct s3_entry *)a)->key,
		      ((const struct s3_entry *)b)->key);
}

/* Entry of @key among the first @n (sorted) entries of @m, or NULL. */
static struct s3_entry *map_find_in(struct s3_entry *m, size_t n,
				    const char *key)
{
	struct s3_entry k = { .key = (char *)key };

	return n ? bsearch(&k, m, n, sizeof(k), map_cmp) : NULL;
}

static const struct s3_entry *map_find(const struct s3_src *s, const char *key)
{
	return map_find_in(s->map, s->nmap, key);
}

static void map_free(struct s3_entry *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i].key);
	free(m);
}

/* Lines "etag \t size \t mtime \t hash \t key"; bad lines are skipped:
 * the map only saves work, the store decides what is present. */
static void map_load(struct s3_src *s)
{
	FILE *f = fopen(s->map_path, "re");
	char *line = NULL;
	size_t cap = 0;

	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		struct s3_entry e = { 0 }, *v;
		char hex[DHASH_HEX + 1], *key;
		unsigned long long size;
		long long mt;
		int off = 0;

		if (sscanf(line, "%79[^\t]\t%llu\t%lld\t%32s\t%n", e.etag, &size,
			   &mt, hex, &off) != 4 || !off ||
		    dhash_parse(&e.hash, hex))
			continue;
		key = line + off;
		key[strcspn(key, "\n")] = '\0';
		if (!*key || !(e.key = strdup(key)))
			continue;
		e.size = size;
		e.mtime_ns = mt;
		v = realloc(s->map, (s->nmap + 1) * sizeof(*v));
		if (!v) {
			free(e.key);
			break;
		}
		s->map = v;
		s->map[s->nmap++] = e;
	}
	free(line);
	fclose(f);
	qsort(s->map, s->nmap, sizeof(*s->map), map_cmp);
}

static int map_save(struct s3_src *s)
{
	char tmp[PATH_MAX + 8];
	FILE *f;
	int rc = 0;

	if (path_fmt(tmp, sizeof(tmp), "%s.tmp", s->map_path))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	for (size_t i = 0; i < s->nmap; i++) {
		char hex[DHASH_HEX];

		dhash_hex(hex, &s->map[i].hash);
		fprintf(f, "%s\t%llu\t%lld\t%s\t%s\n", s->map[i].etag,
			(unsigned long long)s->map[i].size,
			(long long)s->map[i].mtime_ns, hex, s->map[i].key);
	}
	if (ferror(f))
		rc = -EIO;
	if (fclose(f) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, s->map_path))
		rc = -errno;
	return rc;
}

/* ---------------------------------------------------------- downloads */

struct job {
	const struct s3_object *o;
	struct dhash hash;
	int attempt;
	int64_t not_before; /* monotonic ns */
};

struct xfer {
	struct source *src;
	CURL *e;
	struct job *job;
	struct store_txn *txn;
	EVP_MD_CTX *md5;
	uint64_t got;
	long status;
	int werr;
	struct hdrs h;
	struct membody errbody;
};

struct dl {
	struct source *src;
	CURLM *m;
	struct curl_slist *hl;
	struct job *jobs;
	size_t njobs, next;
	struct job **retry; /* due at job->not_before */
	size_t nretry;
	size_t left;
	int fatal;
	char *err;
	size_t errlen;
};

static size_t xfer_write(char *data, size_t sz, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = sz * n;

	if (!x->status)
		curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &x->status);
	if (x->status != 200) { /* an error body: keep its start */
		size_t room = ERRBODY_MAX - x->errbody.len;

		body_write(data, 1, len < room ? len : room, &x->errbody);
		return len;
	}
	if (x->got + len > x->job->o->size) {
		x->werr = -EFBIG; /* longer than listed: it changed */
		return 0;
	}
	x->werr = store_txn_write(x->txn, data, len);
	if (x->werr)
		return 0;
	EVP_DigestUpdate(x->md5, data, len);
	x->got += len;
	return len;
}

static bool etag_is_md5(const char *etag)
{
	size_t n = 0;

	for (; etag[n]; n++)
		if (!isxdigit((unsigned char)etag[n]))
			return false;
	return n == 32;
}

static int xfer_start(struct dl *d, struct xfer *x, struct job *j)
{
	struct s3_src *s = d->src->priv;
	char url[8192];
	int rc;

	x->job = j;
	x->got = 0;
	x->status = 0;
	x->werr = 0;
	memset(&x->h, 0, sizeof(x->h));
	free(x->errbody.p);
	memset(&x->errbody, 0, sizeof(x->errbody));
	rc = make_url(s, url, sizeof(url), j->o->key, NULL);
	if (!rc)
		rc = store_txn_begin(d->src->store, &x->txn);
	if (rc)
		return rc;
	EVP_DigestInit_ex(x->md5, EVP_md5(), NULL);
	curl_easy_reset(x->e);
	easy_setup(s, x->e, url, d->hl);
	curl_easy_setopt(x->e, CURLOPT_WRITEFUNCTION, xfer_write);
	curl_easy_setopt(x->e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(x->e, CURLOPT_HEADERDATA, &x->h);
	curl_easy_setopt(x->e, CURLOPT_PRIVATE, x);
	return curl_multi_add_handle(d->m, x->e) == CURLM_OK ? 0 : -ENOMEM;
}

/* Verify a finished 200 body; 0, -EAGAIN (changed: fail the round) or
 * -EIO (damaged in transit: retry). */
static int xfer_check(struct dl *d, struct xfer *x)
{
	const struct s3_object *o = x->job->o;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 1];

	if (x->h.etag[0] && strcmp(x->h.etag, o->etag)) {
		snprintf(d->err, d->errlen, "%s: %s changed during the sync; "
			 "nothing published, it is fetched next round",
			 d->src->tag, o->key);
		return -EAGAIN;
	}
	if (x->got != o->size) {
		log_warn(d->src->tag, "%s: %llu bytes, listed %llu; retrying",
			 o->key, (unsigned long long)x->got,
			 (unsigned long long)o->size);
		return -EIO;
	}
	EVP_DigestFinal_ex(x->md5, md, &mdlen);
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (etag_is_md5(o->etag) && strcasecmp(hex, o->etag)) {
		log_warn(d->src->tag, "%s: MD5 does not match its ETag; "
			 "retrying", o->key);
		return -EIO;
	}
	return 0;
}

static void xfer_done(struct dl *d, struct xfer *x, CURLcode cc)
{
	struct job *j = x->job;
	int rc = -EIO;

	curl_multi_remove_handle(d->m, x->e);
	curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &x->status);
	if (cc == CURLE_WRITE_ERROR && x->werr && x->werr != -EFBIG) {
		snprintf(d->err, d->errlen, "%s: storing %s: %s", d->src->tag,
			 j->o->key, strerror(-x->werr));
		d->fatal = x->werr; /* the cache, not the network: no retry */
	}
	if (cc == CURLE_WRITE_ERROR && x->werr == -EFBIG)
		cc = CURLE_OK, x->status = 200; /* judged by xfer_check */
	if (cc == CURLE_OK && x->status == 200) {
		rc = x->werr == -EFBIG ? -EAGAIN : xfer_check(d, x);
		if (rc == -EAGAIN && x->werr == -EFBIG)
			snprintf(d->err, d->errlen, "%s: %s changed during the "
				 "sync; nothing published", d->src->tag,
				 j->o->key);
		if (!rc) {
			rc = store_txn_commit(x->txn, &j->hash, NULL, NULL);
			x->txn = NULL;
			if (!rc) {
				source_count_fetch(d->src, x->got, 1);
				d->left--;
				x->job = NULL;
				return;
			}
			snprintf(d->err, d->errlen, "%s: storing %s: %s",
				 d->src->tag, j->o->key, strerror(-rc));
			d->fatal = rc;
		}
	}
	store_txn_abort(x->txn);
	x->txn = NULL;
	x->job = NULL;
	if (d->fatal)
		return;
	if (rc == -EAGAIN || (cc == CURLE_OK && x->status == 404)) {
		if (rc != -EAGAIN)
			snprintf(d->err, d->errlen, "%s: %s was deleted during "
				 "the sync; nothing published", d->src->tag,
				 j->o->key);
		d->fatal = -EAGAIN;
	} else if ((rc == -EIO && cc == CURLE_OK && x->status == 200) ||
		   retryable(cc, x->status)) {
		if (++j->attempt >= S3_TRIES) {
			d->fatal = s3_fail(d->src, d->err, d->errlen, j->o->key,
					   cc, x->status, x->errbody.p,
					   x->errbody.len);
			return;
		}
		j->not_before = mono_ns() + (int64_t)backoff_ms(j->attempt) *
						    1000000;
		d->retry[d->nretry++] = j;
	} else {
		d->fatal = s3_fail(d->src, d->err, d->errlen, j->o->key, cc,
				   x->status, x->errbody.p, x->errbody.len);
	}
}

/* The next job that may start now, or NULL. */
static struct job *next_job(struct dl *d)
{
	int64_t now = mono_ns();

	for (size_t i = 0; i < d->nretry; i++) {
		if (d->retry[i]->not_before <= now) {
			struct job *j = d->retry[i];

			d->retry[i] = d->retry[--d->nretry];
			return j;
		}
	}
	return d->next < d->njobs ? &d->jobs[d->next++] : NULL;
}

static int download(struct source *src, struct job *jobs, size_t n, char *err,
		    size_t errlen)
{
	struct s3_src *s = src->priv;
	size_t nx = (size_t)s->parallel < n ? (size_t)s->parallel : n;
	struct dl d = { .src = src, .jobs = jobs, .njobs = n, .left = n,
			.err = err, .errlen = errlen };
	struct xfer *xs = calloc(nx ? nx : 1, sizeof(*xs));
	int rc = 0;

	d.m = curl_multi_init();
	d.hl = sign_headers(s, "UNSIGNED-PAYLOAD");
	d.retry = calloc(n ? n : 1, sizeof(*d.retry));
	if (!xs || !d.m || !d.hl || !d.retry)
		rc = -ENOMEM;
	for (size_t i = 0; !rc && i < nx; i++) {
		xs[i].src = src;
		xs[i].e = curl_easy_init();
		xs[i].md5 = EVP_MD_CTX_new();
		if (!xs[i].e || !xs[i].md5)
			rc = -ENOMEM;
	}
	curl_multi_setopt(d.m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)nx);
	while (!rc && d.left && !d.fatal) {
		CURLMsg *msg;
		int running, q;

		for (size_t i = 0; i < nx && !rc; i++) {
			struct job *j;

			if (xs[i].job || !(j = next_job(&d)))
				continue;
			rc = xfer_start(&d, &xs[i], j);
		}
		curl_multi_perform(d.m, &running);
		while ((msg = curl_multi_info_read(d.m, &q))) {
			struct xfer *x;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
					  (char **)&x);
			xfer_done(&d, x, msg->data.result);
		}
		if (d.left && !d.fatal)
			curl_multi_poll(d.m, NULL, 0, 50, NULL);
	}
	for (size_t i = 0; xs && i < nx; i++) {
		if (xs[i].job)
			curl_multi_remove_handle(d.m, xs[i].e);
		store_txn_abort(xs[i].txn);
		curl_easy_cleanup(xs[i].e);
		EVP_MD_CTX_free(xs[i].md5);
		free(xs[i].errbody.p);
	}
	free(xs);
	free(d.retry);
	curl_slist_free_all(d.hl);
	curl_multi_cleanup(d.m);
	return rc ? rc : d.fatal;
}

/* ------------------------------------------------------------- source */

static int creds_fresh(struct source *src, char *err, size_t errlen)
{
	struct s3_src *s = src->priv;
	char why[384];
	int rc;

	if (s->creds.access_key[0] &&
	    (!s->creds.expires_ns ||
	     now_ns() < s->creds.expires_ns - 300 * 1000000000LL))
		return 0;
	rc = s3_creds_get(&s->creds, &s->co, why, sizeof(why));
	if (rc) {
		snprintf(err, errlen, "%s: %s", src->tag, why);
		return rc;
	}
	log_info(src->tag, "credentials from the %s%s", s->creds.origin,
		 s->creds.expires_ns ? " (temporary)" : "");
	return 0;
}

static void listing_rev(char *out, size_t len, const struct s3_page *pg)
{
	XXH3_state_t *xs = XXH3_createState();
	XXH128_canonical_t c;
	struct dhash h;
	char hex[DHASH_HEX];

	XXH3_128bits_reset(xs);
	for (size_t i = 0; i < pg->n; i++) {
		XXH3_128bits_update(xs, pg->v[i].key, pg->v[i].klen + 1);
		XXH3_128bits_update(xs, pg->v[i].etag, strlen(pg->v[i].etag) + 1);
		XXH3_128bits_update(xs, &pg->v[i].size, sizeof(pg->v[i].size));
	}
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(xs));
	XXH3_freeState(xs);
	memcpy(h.b, c.digest, 16);
	dhash_hex(hex, &h);
	snprintf(out, len, "s3-%s", hex);
}

/* Read the marker; 0 and the revision it names, or -errno. */
static int marker_rev(struct source *src, char *rev, size_t len, char *err,
		      size_t errlen)
{
	struct s3_src *s = src->priv;
	struct membody body = { 0 };
	char url[8192], key[2048];
	struct hdrs h;
	int rc;

	snprintf(key, sizeof(key), "%s%s", s->prefix, s->marker);
	rc = make_url(s, url, sizeof(url), key, NULL);
	if (!rc)
		rc = get_small(src, url, "marker", "UNSIGNED-PAYLOAD", &body,
			       &h, err, errlen);
	free(body.p);
	if (rc == -ENOENT)
		snprintf(err, errlen, "%s: marker s3://%s/%s not found: nothing "
			 "is published until the upload writes it", src->tag,
			 s->bucket, key);
	if (!rc)
		snprintf(rev, len, "marker-%s", h.etag[0] ? h.etag : "none");
	return rc;
}

/* Sort the listing into files to fetch or reuse, and directories. */
static int plan(struct source *src, struct s3_page *pg, struct snap_builder *b,
		struct job **jobs, size_t *njobs, struct s3_entry **keep)
{
	struct s3_src *s = src->priv;
	char *path = malloc(PATH_MAX), mkey[2048];
	size_t nj = 0;

	*jobs = calloc(pg->n ? pg->n : 1, sizeof(**jobs));
	*keep = calloc(pg->n ? pg->n : 1, sizeof(**keep));
	if (!path || !*jobs || !*keep) {
		free(path);
		return -ENOMEM;
	}
	snprintf(mkey, sizeof(mkey), "%s%s", s->prefix, s->marker ? s->marker : "");
	for (size_t i = 0; i < pg->n; i++) {
		const struct s3_object *o = &pg->v[i];
		const struct s3_entry *known;
		const char *why;
		int kind = s3_key_to_path(o->key, o->klen, s->prefix, path,
					  PATH_MAX, &why);

		if (kind < 0) {
			log_err(src->tag, "object key '%.200s' refused: %s; "
				"left out", o->key, why);
			continue;
		}
		if (kind == 2 || (s->marker && !strcmp(o->key, mkey)))
			continue;
		if (kind == 1) {
			if (snap_builder_add_dir(b, path, 0755, o->mtime_ns))
				return -ENOMEM;
			continue;
		}
		known = map_find(s, o->key);
		(*jobs)[nj].o = o;
		if (known && !strcmp(known->etag, o->etag) &&
		    known->size == o->size && store_has(src->store, &known->hash))
			(*jobs)[nj].hash = known->hash, (*jobs)[nj].attempt = -1;
		nj++;
	}
	free(path);
	*njobs = nj;
	return 0;
}

/* Fetch what plan() could not reuse; hashes land back in @jobs. */
static int fetch_missing(struct source *src, struct job *jobs, size_t n,
			 char *err, size_t errlen)
{
	struct job *f = calloc(n ? n : 1, sizeof(*f));
	size_t *idx = calloc(n ? n : 1, sizeof(*idx)), nf = 0;
	int rc = 0;

	if (!f || !idx) {
		free(f);
		free(idx);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (jobs[i].attempt == -1)
			continue;
		idx[nf] = i;
		f[nf++].o = jobs[i].o;
	}
	if (nf) {
		log_info(src->tag, "fetching %zu of %zu objects", nf, n);
		rc = download(src, f, nf, err, errlen);
	}
	/* Hashes of what arrived, even when the round failed: the caller
	 * remembers them so the next round fetches only the rest. */
	for (size_t i = 0; i < nf; i++) {
		jobs[idx[i]].hash = f[i].hash;
		jobs[idx[i]].attempt = dhash_eq(&f[i].hash, &(struct dhash){ 0 }) ?
					       0 : -1;
	}
	free(f);
	free(idx);
	return rc;
}

/* After a failed round: add what did arrive to the map (and save it). */
static void map_remember(struct s3_src *s, const struct job *jobs, size_t n)
{
	size_t add = 0;
	struct s3_entry *v;

	for (size_t i = 0; i < n; i++)
		add += jobs[i].attempt == -1 && !map_find(s, jobs[i].o->key);
	v = realloc(s->map, (s->nmap + add + 1) * sizeof(*v));
	if (!v)
		return;
	s->map = v;
	/* New entries go past the sorted part that map_find searches (a
	 * listing names each key once); one sort at the end. */
	for (size_t i = 0, sorted = s->nmap; i < n; i++) {
		const struct s3_object *o = jobs[i].o;
		struct s3_entry *e;

		if (jobs[i].attempt != -1)
			continue;
		e = map_find_in(s->map, sorted, o->key);
		if (!e) {
			e = &s->map[s->nmap];
			*e = (struct s3_entry){ .key = strdup(o->key) };
			if (!e->key)
				continue;
			s->nmap++;
		}
		snprintf(e->etag, sizeof(e->etag), "%s", o->etag);
		e->size = o->size;
		e->mtime_ns = o->mtime_ns;
		e->hash = jobs[i].hash;
	}
	qsort(s->map, s->nmap, sizeof(*s->map), map_cmp);
	if (map_save(s))
		log_warn("s3", "could not save %s", s->map_path);
}

static int s3_sync(struct source *src, const char *prev_rev, struct snap **out,
		   char *err, size_t errlen)
{
	struct s3_src *s = src->priv;
	struct s3_page pg = { 0 };
	struct snap_builder *b = NULL;
	struct s3_entry *keep = NULL;
	struct job *jobs = NULL;
	size_t njobs = 0, nkeep = 0;
	char rev[160];
	int rc;

	rc = creds_fresh(src, err, errlen);
	if (!rc && s->marker) {
		rc = marker_rev(src, rev, sizeof(rev), err, errlen);
		if (!rc && !strcmp(rev, prev_rev))
			return 0; /* the marker did not move: nothing to do */
	}
	if (!rc)
		rc = list_all(src, &pg, err, errlen);
	if (rc)
		goto out;
	if (!s->marker) {
		listing_rev(rev, sizeof(rev), &pg);
		if (!strcmp(rev, prev_rev))
			goto out; /* rc 0: unchanged, nothing downloaded */
	}
	rc = snap_builder_new(&b, src->name);
	if (!rc)
		rc = plan(src, &pg, b, &jobs, &njobs, &keep);
	if (!rc) {
		rc = fetch_missing(src, jobs, njobs, err, errlen);
		if (rc)
			map_remember(s, jobs, njobs);
	}
	for (size_t i = 0; !rc && i < njobs; i++) {
		char path[PATH_MAX];
		const char *why;
		const struct s3_object *o = jobs[i].o;

		if (s3_key_to_path(o->key, o->klen, s->prefix, path,
				   sizeof(path), &why) != 0)
			continue;
		rc = snap_builder_add_file(b, path, 0644, o->size, o->mtime_ns,
					   &jobs[i].hash);
		keep[nkeep] = (struct s3_entry){ .key = strdup(o->key),
						 .size = o->size,
						 .mtime_ns = o->mtime_ns,
						 .hash = jobs[i].hash };
		snprintf(keep[nkeep].etag, sizeof(keep[nkeep].etag), "%s",
			 o->etag);
		if (!keep[nkeep++].key)
			rc = -ENOMEM;
	}
	if (rc)
		goto out;
	rc = snap_builder_finish(b, rev, out);
	b = NULL;
	if (rc) {
		snprintf(err, errlen, "%s: building snapshot: %s", src->tag,
			 strerror(-rc));
		goto out;
	}
	map_free(s->map, s->nmap);
	s->map = keep;
	s->nmap = nkeep;
	keep = NULL;
	nkeep = 0;
	qsort(s->map, s->nmap, sizeof(*s->map), map_cmp);
	if (map_save(s))
		log_warn(src->tag, "could not save %s; unchanged objects may be "
			 "fetched again after a restart", s->map_path);
	rc = 1;
out:
	map_free(keep, nkeep);
	free(jobs);
	snap_builder_free(b);
	s3_page_free(&pg);
	return rc;
}

static int mkdirs_for(const char *path)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s", path);
	for (char *c = p + 1; *c; c++) {
		if (*c != '/')
			continue;
		*c = '\0';
		if (mkdir(p, 0755) && errno != EEXIST)
			return -errno;
		*c = '/';
	}
	return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int s3_parse_location(struct s3_src *s, const char *loc)
{
	const char *slash = strchr(loc, '/');
	size_t bl = slash ? (size_t)(slash - loc) : strlen(loc);
	const char *prefix = slash ? slash + 1 : "";
	size_t pl = strlen(prefix);

	if (bl < 3 || bl > 63)
		return -EINVAL;
	for (size_t i = 0; i < bl; i++)
		if (!isalnum((unsigned char)loc[i]) && !strchr(".-_", loc[i]))
			return -EINVAL;
	s->bucket = strndup(loc, bl);
	s->prefix = malloc(pl + 2);
	if (!s->bucket || !s->prefix)
		return -ENOMEM;
	snprintf(s->prefix, pl + 2, "%s%s", prefix,
		 pl && prefix[pl - 1] != '/' ? "/" : "");
	return 0;
}

static int s3_opts(struct source *src, struct s3_src *s, char *err,
		   size_t errlen)
{
	const struct source_spec *sp = src->spec;
	const char *v, *env;

	v = source_spec_get(sp, "region");
	env = getenv("AWS_REGION") ? getenv("AWS_REGION") :
				     getenv("AWS_DEFAULT_REGION");
	s->region = strdup(v ? v : env ? env : "us-east-1");
	v = source_spec_get(sp, "endpoint");
	if (v) {
		s->endpoint = strdup(v);
	} else if (s->region) {
		s->endpoint = malloc(128);
		if (s->endpoint)
			snprintf(s->endpoint, 128, "https://s3.%.64s.amazonaws.com",
				 s->region);
	}
	if (!s->region || !s->endpoint)
		return -ENOMEM;
	if (strncmp(s->endpoint, "https://", 8) &&
	    strncmp(s->endpoint, "http://", 7)) {
		snprintf(err, errlen, "%s: endpoint '%s' must start with "
			 "http:// or https://", src->tag, s->endpoint);
		return -EINVAL;
	}
	while (strlen(s->endpoint) > 8 && s->endpoint[strlen(s->endpoint) - 1] == '/')
		s->endpoint[strlen(s->endpoint) - 1] = '\0';
	v = source_spec_get(sp, "addressing");
	s->virtual_host = v ? !strcmp(v, "virtual") : !source_spec_get(sp, "endpoint");
	if (v && strcmp(v, "virtual") && strcmp(v, "path")) {
		snprintf(err, errlen, "%s: addressing must be path or virtual",
			 src->tag);
		return -EINVAL;
	}
	v = source_spec_get(sp, "parallel");
	s->parallel = v ? strtol(v, NULL, 10) : 16;
	if (s->parallel < 1 || s->parallel > 256) {
		snprintf(err, errlen, "%s: parallel must be 1-256", src->tag);
		return -EINVAL;
	}
	if ((v = source_spec_get(sp, "marker")) && !(s->marker = strdup(v)))
		return -ENOMEM;
	if ((v = source_spec_get(sp, "ca-file"))) {
		if (access(v, R_OK)) {
			snprintf(err, errlen, "%s: ca-file %s: %s", src->tag, v,
				 strerror(errno));
			return -errno;
		}
		s->ca_file = strdup(v);
	}
	s->co.credentials_file = source_spec_get(sp, "credentials-file");
	if (s->co.credentials_file && access(s->co.credentials_file, R_OK)) {
		snprintf(err, errlen, "%s: credentials-file %s: %s", src->tag,
			 s->co.credentials_file, strerror(errno));
		return -errno;
	}
	s->co.profile = source_spec_get(sp, "profile");
	s->co.sts_endpoint = source_spec_get(sp, "sts-endpoint");
	s->co.imds_endpoint = source_spec_get(sp, "imds-endpoint");
	s->co.region = s->region;
	s->co.ca_file = s->ca_file;
	snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%.60s:s3", s->region);
	return 0;
}

static void s3_fini(struct source *src)
{
	struct s3_src *s = src->priv;

	if (!s)
		return;
	map_free(s->map, s->nmap);
	free(s->bucket);
	free(s->prefix);
	free(s->endpoint);
	free(s->region);
	free(s->marker);
	free(s->ca_file);
	memset(&s->creds, 0, sizeof(s->creds));
	free(s);
	src->priv = NULL;
}

static int s3_init(struct source *src, char *err, size_t errlen)
{
	struct s3_src *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	pthread_once(&curl_once, curl_init_once);
	src->priv = s;
	rc = s3_parse_location(s, src->spec->location);
	if (rc == -EINVAL)
		snprintf(err, errlen, "%s: location '%s' is not BUCKET[/PREFIX]",
			 src->tag, src->spec->location);
	if (!rc)
		rc = s3_opts(src, s, err, errlen);
	if (!rc && path_fmt(s->map_path, sizeof(s->map_path), "%s/s3/%s/map",
			    store_dir(src->store), src->name))
		rc = -ENAMETOOLONG;
	if (!rc)
		rc = mkdirs_for(s->map_path);
	if (rc) {
		if (rc != -EINVAL && !err[0])
			snprintf(err, errlen, "%s: %s", src->tag, strerror(-rc));
		s3_fini(src);
		return rc;
	}
	map_load(s);
	return 0;
}

const struct source_ops source_s3_ops = {
	.type = "s3",
	.init = s3_init,
	.sync = s3_sync,
	.fini = s3_fini,
	.keys = s3_keys,
};
