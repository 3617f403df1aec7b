/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3_http.c - the s3 source's HTTP: Signature V4 requests through libcurl,
 * the one translation of curl results, statuses and S3 error bodies into
 * a message, retries with backoff and jitter, and the curl-multi download
 * of many objects at once, each streamed into the store and checked
 * (Content-Length, MD5 when the ETag is one, the GET's ETag against the
 * listing's), then renamed into the store by a committer thread. It
 * decides nothing about what to fetch or publish.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "s3_i.h"
#include "source_i.h"

#define S3_TRIES 6
#define S3_BACKOFF_MS 200
#define S3_BACKOFF_MAX_MS 10000
#define ERRBODY_MAX 4096

/* ------------------------------------------------------------- errors */

/*
 * The one place that turns curl results, HTTP statuses and S3 error
 * bodies into a message: names the source and the cause, never a secret
 * or a signed URL.
 */
int s3_fail(struct source *src, char *err, size_t errlen, const char *what,
	    CURLcode cc, long status, const char *body, size_t blen)
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
		s3_error_parse(body, blen, code, sizeof(code), msg,
			       sizeof(msg));
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
	       status == 404		      ? -ENOENT :
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
			snprintf(t, n, "x-amz-security-token: %s",
				 s->creds.token);
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

/* curl's progress callback: a nonzero answer aborts the transfer. */
static int stop_check(void *payload, curl_off_t dltotal, curl_off_t dlnow,
		      curl_off_t ultotal, curl_off_t ulnow)
{
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return source_stopping(payload);
}

static void easy_setup(struct s3_src *s, CURL *e, const char *url,
		       struct curl_slist *h)
{
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, stop_check);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, s->src);
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
int s3_make_url(struct s3_src *s, char *out, size_t cap, const char *key,
		const char *query)
{
	char *ekey = NULL;
	const char *sep = strstr(s->endpoint, "://");
	int rc, n;

	if (key) {
		ekey = malloc(3 * strlen(key) + 1);
		if (!ekey ||
		    s3_uri_encode(ekey, 3 * strlen(key) + 1, key, true)) {
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

size_t s3_body_write(char *data, size_t sz, size_t n, void *ud)
{
	struct membody *m = ud;

	if (m->len + sz * n > (64u << 20))
		return 0;
	if (m->len + sz * n + 1 > m->cap) {
		size_t cap = m->len + sz * n + 1;
		char *p;

		cap += cap / 2;
		p = realloc(m->p, cap);
		if (!p)
			return 0;
		m->p = p;
		m->cap = cap;
	}
	memcpy(m->p + m->len, data, sz * n);
	m->len += sz * n;
	m->p[m->len] = '\0';
	return sz * n;
}

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

/* One GET's state: the 200 body goes to the sink, any other is kept
 * (bounded) for the error message. */
struct get_ctx {
	CURL *e;
	const struct s3_sink *sink;
	struct membody errbody;
	int sink_rc; /* what the sink refused the body with */
};

/* Keep the start of an error body (ERRBODY_MAX): all s3_fail reads. */
static void errbody_keep(struct membody *m, char *data, size_t len)
{
	size_t room = ERRBODY_MAX - m->len;

	s3_body_write(data, 1, len < room ? len : room, m);
}

static size_t get_write(char *data, size_t sz, size_t n, void *ud)
{
	struct get_ctx *g = ud;
	long status = 0;

	curl_easy_getinfo(g->e, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		errbody_keep(&g->errbody, data, sz * n);
		return sz * n;
	}
	g->sink_rc = g->sink->write(g->sink->ud, data, sz * n);
	return g->sink_rc ? 0 : sz * n;
}

int s3_get_stream(struct source *src, const char *url, const char *what,
		  const char *payload, const struct s3_sink *sink,
		  struct hdrs *h, char *err, size_t errlen)
{
	struct s3_src *s = src->priv;
	struct curl_slist *hl = sign_headers(s, payload);
	struct get_ctx g = { .e = s->e, .sink = sink };
	int rc = -EIO;

	if (!hl)
		return -ENOMEM;
	curl_easy_reset(s->e);
	for (int attempt = 1;; attempt++) {
		long status = 0;
		CURLcode cc;

		g.errbody.len = 0;
		g.sink_rc = 0;
		memset(h, 0, sizeof(*h));
		rc = sink->reset(sink->ud);
		if (rc)
			break;
		easy_setup(s, s->e, url, hl);
		curl_easy_setopt(s->e, CURLOPT_WRITEFUNCTION, get_write);
		curl_easy_setopt(s->e, CURLOPT_WRITEDATA, &g);
		curl_easy_setopt(s->e, CURLOPT_HEADERFUNCTION, header_cb);
		curl_easy_setopt(s->e, CURLOPT_HEADERDATA, h);
		cc = curl_easy_perform(s->e);
		curl_easy_getinfo(s->e, CURLINFO_RESPONSE_CODE, &status);
		if (cc == CURLE_OK && status == 200) {
			rc = 0;
			break;
		}
		if (g.sink_rc) {
			rc = g.sink_rc; /* a body the sink refused: no retry */
			break;
		}
		if (cc == CURLE_ABORTED_BY_CALLBACK) {
			rc = -ECANCELED; /* stopped */
			break;
		}
		if (!retryable(cc, status) || attempt >= S3_TRIES) {
			rc = s3_fail(src, err, errlen, what, cc, status,
				     g.errbody.p, g.errbody.len);
			break;
		}
		rc = source_sleep(src, backoff_ms(attempt));
		if (rc)
			break;
	}
	free(g.errbody.p);
	curl_slist_free_all(hl);
	return rc;
}

static int membody_write(void *ud, const char *data, size_t len)
{
	return s3_body_write((char *)data, 1, len, ud) == len ? 0 : -EFBIG;
}

static int membody_reset(void *ud)
{
	struct membody *m = ud;

	m->len = 0; /* the buffer is kept for the next attempt */
	if (m->p)
		m->p[0] = '\0';
	return 0;
}

int s3_get_small(struct source *src, const char *url, const char *what,
		 const char *payload, struct membody *out, struct hdrs *h,
		 char *err, size_t errlen)
{
	const struct s3_sink sink = { membody_write, membody_reset, out };

	return s3_get_stream(src, url, what, payload, &sink, h, err, errlen);
}

/* ---------------------------------------------------------- downloads */

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

/*
 * The committer: a checked download's rename into the store (and the
 * close of its file) happens on its own thread, and so does the creation
 * of the temporary files the next downloads write (a few kept ready), so
 * the transfer loop goes straight on to the next request. The loop is one
 * thread driving every transfer, and under load a rename costs about
 * 0.35 ms and a create 0.15 ms: paid in the loop for every object, they
 * kept the free slots idle, which is what made an initial sync slower
 * than rclone's at the same parallelism. A commit is counted (d->left)
 * only once it is done, and a failed one fails the round as before.
 */
#define SPARE_MAX 16
struct commit {
	struct store_txn *txn;
	struct job *job;
	uint64_t got;
	int rc;
};

struct committer {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	CURLM *m; /* woken after each commit */
	struct store *st;
	struct store_txn *spare[SPARE_MAX]; /* lock: begun, ready to use */
	size_t nspare;			    /* lock */
	bool spare_err;	  /* lock: one failed; the loop opens its own */
	struct commit *c; /* one per job at most; lock */
	size_t queued;	  /* lock */
	size_t done;	  /* lock: c[0..done) committed */
	size_t seen;	  /* loop only: c[0..seen) accounted */
	bool closing;	  /* lock */
	bool running;	  /* loop only: the thread was started */
};

static void *committer_main(void *arg)
{
	struct committer *k = arg;

	pthread_mutex_lock(&k->lock);
	for (;;) {
		struct store_txn *t;
		struct commit *c;

		while (k->done == k->queued && !k->closing &&
		       (k->nspare == SPARE_MAX || k->spare_err))
			pthread_cond_wait(&k->cond, &k->lock);
		if (k->done == k->queued && k->closing)
			break;
		if (k->done == k->queued) { /* room for a spare */
			pthread_mutex_unlock(&k->lock);
			if (store_txn_begin(k->st, &t))
				t = NULL;
			pthread_mutex_lock(&k->lock);
			if (t)
				k->spare[k->nspare++] = t;
			else
				k->spare_err = true;
			continue;
		}
		c = &k->c[k->done];
		pthread_mutex_unlock(&k->lock);
		c->rc = store_txn_commit(c->txn, &c->job->hash, NULL, NULL);
		pthread_mutex_lock(&k->lock);
		k->done++;
		curl_multi_wakeup(k->m);
	}
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

struct dl {
	struct source *src;
	CURLM *m;
	struct committer *k;
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
	if (x->status != 200) {
		errbody_keep(&x->errbody, data, len);
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

/* A begun transaction for the next download: a spare, or a new one. */
static int txn_take(struct dl *d, struct store_txn **out)
{
	struct committer *k = d->k;

	*out = NULL;
	pthread_mutex_lock(&k->lock);
	if (k->nspare) {
		*out = k->spare[--k->nspare];
		pthread_cond_signal(&k->cond); /* make another */
	}
	pthread_mutex_unlock(&k->lock);
	return *out ? 0 : store_txn_begin(d->src->store, out);
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
	rc = s3_make_url(s, url, sizeof(url), j->o->key, NULL);
	if (!rc)
		rc = txn_take(d, &x->txn);
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
		snprintf(d->err, d->errlen,
			 "%s: %s changed during the sync; "
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
		log_warn(d->src->tag,
			 "%s: MD5 does not match its ETag; "
			 "retrying",
			 o->key);
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
	if (cc == CURLE_ABORTED_BY_CALLBACK) { /* stopped */
		store_txn_abort(x->txn);
		x->txn = NULL;
		x->job = NULL;
		d->fatal = -ECANCELED;
		return;
	}
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
			snprintf(d->err, d->errlen,
				 "%s: %s changed during the "
				 "sync; nothing published",
				 d->src->tag, j->o->key);
		if (!rc) { /* to the committer: counted once renamed */
			pthread_mutex_lock(&d->k->lock);
			d->k->c[d->k->queued++] = (struct commit){
				.txn = x->txn, .job = j, .got = x->got
			};
			pthread_cond_signal(&d->k->cond);
			pthread_mutex_unlock(&d->k->lock);
			x->txn = NULL;
			x->job = NULL;
			return;
		}
	}
	store_txn_abort(x->txn);
	x->txn = NULL;
	x->job = NULL;
	if (d->fatal)
		return;
	if (rc == -EAGAIN || (cc == CURLE_OK && x->status == 404)) {
		if (rc != -EAGAIN)
			snprintf(d->err, d->errlen,
				 "%s: %s was deleted during "
				 "the sync; nothing published",
				 d->src->tag, j->o->key);
		d->fatal = -EAGAIN;
	} else if ((rc == -EIO && cc == CURLE_OK && x->status == 200) ||
		   retryable(cc, x->status)) {
		if (++j->attempt >= S3_TRIES) {
			d->fatal = s3_fail(d->src, d->err, d->errlen, j->o->key,
					   cc, x->status, x->errbody.p,
					   x->errbody.len);
			return;
		}
		j->not_before = mono_ns() +
				(int64_t)backoff_ms(j->attempt) * 1000000;
		d->retry[d->nretry++] = j;
	} else {
		d->fatal = s3_fail(d->src, d->err, d->errlen, j->o->key, cc,
				   x->status, x->errbody.p, x->errbody.len);
	}
}

/* Account for the commits done since last time. */
static void commits_seen(struct dl *d)
{
	struct committer *k = d->k;
	size_t done;

	pthread_mutex_lock(&k->lock);
	done = k->done;
	pthread_mutex_unlock(&k->lock);
	for (; k->seen < done; k->seen++) {
		const struct commit *c = &k->c[k->seen];

		if (c->rc) {
			if (!d->fatal) {
				snprintf(d->err, d->errlen,
					 "%s: storing %s: %s", d->src->tag,
					 c->job->o->key, strerror(-c->rc));
				d->fatal = c->rc;
			}
			continue;
		}
		source_count_fetch(d->src, c->got, 1);
		d->left--;
	}
}

/* Let the committer finish what it holds, and stop it. */
static void committer_stop(struct dl *d)
{
	struct committer *k = d->k;

	pthread_mutex_lock(&k->lock);
	k->closing = true;
	pthread_cond_signal(&k->cond);
	pthread_mutex_unlock(&k->lock);
	pthread_join(k->thread, NULL);
	commits_seen(d);
	while (k->nspare)
		store_txn_abort(k->spare[--k->nspare]);
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

int s3_download(struct source *src, struct job *jobs, size_t n, char *err,
		size_t errlen)
{
	struct s3_src *s = src->priv;
	size_t nx = (size_t)s->parallel < n ? (size_t)s->parallel : n;
	struct dl d = { .src = src,
			.jobs = jobs,
			.njobs = n,
			.left = n,
			.err = err,
			.errlen = errlen };
	struct xfer *xs = calloc(nx ? nx : 1, sizeof(*xs));
	struct committer k = { .m = s->m,
			       .st = src->store,
			       .c = calloc(n ? n : 1, sizeof(*k.c)) };
	int rc = 0;

	d.m = s->m; /* its connection cache outlives the round */
	d.k = &k;
	d.hl = sign_headers(s, "UNSIGNED-PAYLOAD");
	d.retry = calloc(n ? n : 1, sizeof(*d.retry));
	if (!xs || !d.m || !d.hl || !d.retry || !k.c)
		rc = -ENOMEM;
	pthread_mutex_init(&k.lock, NULL);
	pthread_cond_init(&k.cond, NULL);
	if (!rc && pthread_create(&k.thread, NULL, committer_main, &k))
		rc = -EAGAIN;
	k.running = !rc;
	for (size_t i = 0; !rc && i < nx; i++) {
		xs[i].src = src;
		xs[i].e = curl_easy_init();
		xs[i].md5 = EVP_MD_CTX_new();
		if (!xs[i].e || !xs[i].md5)
			rc = -ENOMEM;
	}
	curl_multi_setopt(d.m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)nx);
	curl_multi_setopt(d.m, CURLMOPT_MAXCONNECTS, s->parallel);
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
		commits_seen(&d);
		if (source_stopping(src))
			d.fatal = -ECANCELED;
		else if (d.left && !d.fatal)
			curl_multi_poll(d.m, NULL, 0, 50, NULL);
	}
	if (k.running)
		committer_stop(&d);
	pthread_cond_destroy(&k.cond);
	pthread_mutex_destroy(&k.lock);
	free(k.c);
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
	return rc ? rc : d.fatal;
}
