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
 */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve_i.h"
#include "sidecar_i.h"

#define TAG "serve"
#define WAIT_MAX_S 25 /* under the 30 s connection timeout */
#define TOKEN_MAX 4096
#define FETCH_MAX 16	   /* on-demand fetches at once */
#define FETCH_WAIT_MS 20000 /* at most, each (shutdown waits for them) */
#define IMMUTABLE "public, max-age=31536000, immutable"

struct waiter {
	int kind; /* HTTP_CONN_STORE */
	struct waiter *prev, *next;
	struct MHD_Connection *c;
	char source[65];
	char after[256]; /* a snapshot id or a revision */
	int64_t deadline; /* mono_ns */
	bool listed;  /* on sv->waiters */
	bool resumed; /* answer now */
	/* a revision fetched on demand (revs/REV not retained) */
	struct serve *sv;
	struct source *src;
	char rev[256];
	bool fetching, fetched;
	int rc;
	struct snap *snap;
};

struct doc {
	char source[65];
	char id[DHASH_HEX];
	char *text;
	size_t len;
};

struct serve {
	struct dagfs_ctx *ctx;
	struct sdoc_key *key; /* NULL: statements unsigned (or forwarded) */
	char token[TOKEN_MAX];
	size_t tlen; /* 0: no token required */

	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t cond;  /* the timer: a new waiter or stopping */
	pthread_t timer;
	bool timer_started;
	bool stopping;
	struct waiter *waiters;
	size_t nwaiters;
	struct doc *docs; /* the current statement of each source */
	size_t ndocs;
	unsigned nfetching; /* on-demand fetch threads running */

	atomic_ullong n_req, n_blobs, n_bytes, n_snaps, n_polls;
};

/* ------------------------------------------------------------ replies */

static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned status,
				const void *buf, size_t len, const char *type,
				const char *cache, const char *etag,
				enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)buf, mode);
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

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status,
				 const char *msg)
{
	return send_buf(c, status, msg, strlen(msg), "text/plain", "no-store",
			NULL, MHD_RESPMEM_PERSISTENT);
}

/* If-None-Match equal to @etag: 304 (with @cache), and true. */
static bool not_modified_as(struct MHD_Connection *c, const char *etag,
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
	return not_modified_as(c, etag, IMMUTABLE, ret);
}

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

static bool hex_ok(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* -------------------------------------------------------- statements */

/* The running source named @name, with a new reference to its current
 * snapshot in *@snap (NULL before its first); NULL if no such source. */
static struct source *find_source(struct serve *sv, const char *name,
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
static int statement(struct serve *sv, const struct snap *s, char **out,
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
	rc = statement(sv, s, &text, &n);
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

static enum MHD_Result send_doc(struct serve *sv, struct MHD_Connection *c,
				const struct snap *s, bool waited)
{
	char *text, etag[DHASH_HEX + 2];
	size_t len;
	struct MHD_Response *r;
	enum MHD_Result ret;
	int rc;

	snprintf(etag, sizeof(etag), "\"%s\"", s->id);
	if (!waited && not_modified_as(c, etag, "no-cache", &ret))
		return ret; /* an HTTP cache revalidating */
	rc = current_doc(sv, s, &text, &len);
	if (rc) {
		log_err(TAG, "statement of %s snapshot %s: %s", s->source,
			s->id, strerror(-rc));
		return send_text(c, 500, "snapshot unreadable\n");
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

/* ----------------------------------------------------------- waiters */

static void unlist(struct serve *sv, struct waiter *w)
{
	if (!w->listed)
		return;
	if (w->prev)
		w->prev->next = w->next;
	else
		sv->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
	w->listed = false;
	sv->nwaiters--;
}

/* Take @w off the list and let libmicrohttpd call the handler again;
 * sv->lock held. */
static void wake_one(struct serve *sv, struct waiter *w)
{
	unlist(sv, w);
	w->resumed = true;
	MHD_resume_connection(w->c);
}

void serve_published(struct serve *sv, const char *source)
{
	struct waiter *w, *next;

	if (!sv)
		return;
	pthread_mutex_lock(&sv->lock);
	for (w = sv->waiters; w; w = next) {
		next = w->next;
		if (!strcmp(w->source, source))
			wake_one(sv, w);
	}
	pthread_mutex_unlock(&sv->lock);
}

static void *timer_main(void *arg)
{
	struct serve *sv = arg;

	pthread_mutex_lock(&sv->lock);
	while (!sv->stopping) {
		int64_t now = mono_ns(), next = now + 1000000000LL;
		struct waiter *w, *nw;
		struct timespec ts;

		for (w = sv->waiters; w; w = nw) {
			nw = w->next;
			if (w->deadline <= now)
				wake_one(sv, w);
			else if (w->deadline < next)
				next = w->deadline;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (next - now) / 1000000000LL;
		ts.tv_nsec += (next - now) % 1000000000LL;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&sv->cond, &sv->lock, &ts);
	}
	pthread_mutex_unlock(&sv->lock);
	return NULL;
}

void serve_quiesce(struct serve *sv)
{
	if (!sv)
		return;
	pthread_mutex_lock(&sv->lock);
	sv->stopping = true;
	while (sv->waiters)
		wake_one(sv, sv->waiters);
	pthread_cond_broadcast(&sv->cond);
	while (sv->nfetching) /* each ends within FETCH_WAIT_MS */
		pthread_cond_wait(&sv->cond, &sv->lock);
	pthread_mutex_unlock(&sv->lock);
	if (sv->timer_started)
		pthread_join(sv->timer, NULL);
	sv->timer_started = false;
}

void serve_conn_done(struct serve *sv, void *con_cls)
{
	struct waiter *w = con_cls;

	pthread_mutex_lock(&sv->lock);
	unlist(sv, w);
	pthread_mutex_unlock(&sv->lock);
	snap_unref(w->snap);
	free(w);
}

/* GET sources/NAME/current[?after=ID&wait=S] */
static enum MHD_Result get_current(struct serve *sv, struct MHD_Connection *c,
				   const char *name, void **con_cls)
{
	struct waiter *w = *con_cls;
	const char *after = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
							"after");
	const char *ws = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
						     "wait");
	struct snap *snap = NULL;
	enum MHD_Result ret;
	long wait_s = ws ? strtol(ws, NULL, 10) : 0;

	if (!find_source(sv, name, &snap))
		return send_text(c, 404, "no such source\n");
	if (!snap)
		return send_text(c, 503, "no revision published yet\n");
	if (w || !after || strlen(after) >= sizeof(w->after) || wait_s <= 0 ||
	    (strcmp(after, snap->id) && strcmp(after, snap->rev))) {
		ret = send_doc(sv, c, snap, w != NULL);
		snap_unref(snap);
		return ret;
	}
	snap_unref(snap);
	w = calloc(1, sizeof(*w));
	if (!w)
		return MHD_NO;
	w->kind = HTTP_CONN_STORE;
	w->c = c;
	snprintf(w->source, sizeof(w->source), "%s", name);
	snprintf(w->after, sizeof(w->after), "%s", after);
	w->deadline = mono_ns() +
		      (wait_s > WAIT_MAX_S ? WAIT_MAX_S : wait_s) * 1000000000LL;
	*con_cls = w;
	pthread_mutex_lock(&sv->lock);
	/* a publication between the check above and here must not be lost */
	if (!sv->stopping && find_source(sv, name, &snap) && snap &&
	    (!strcmp(snap->id, after) || !strcmp(snap->rev, after))) {
		w->next = sv->waiters;
		if (w->next)
			w->next->prev = w;
		sv->waiters = w;
		w->listed = true;
		sv->nwaiters++;
		atomic_fetch_add(&sv->n_polls, 1);
		MHD_suspend_connection(c);
		pthread_cond_signal(&sv->cond);
		pthread_mutex_unlock(&sv->lock);
		snap_unref(snap);
		return MHD_YES;
	}
	pthread_mutex_unlock(&sv->lock);
	if (!snap)
		return send_text(c, 404, "no such source\n");
	ret = send_doc(sv, c, snap, true);
	snap_unref(snap);
	return ret;
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
	if (!ha) { /* the last b bytes */
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

static enum MHD_Result get_blob(struct serve *sv, struct MHD_Connection *c,
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
		return send_text(c, 404, "not found\n");
	snprintf(etag, sizeof(etag), "\"%s\"", hex);
	if (not_modified(c, etag, &ret))
		return ret;
	fd = store_open_blob(sv->ctx->store, &h); /* verified, or removed */
	if (fd < 0)
		return send_text(c, 404, "no such blob\n");
	if (fstat(fd, &st)) {
		close(fd);
		return send_text(c, 500, "blob unreadable\n");
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

static enum MHD_Result get_snapshot(struct serve *sv, struct MHD_Connection *c,
				    const char *id)
{
	char etag[DHASH_HEX + 2];
	enum MHD_Result ret;
	void *raw;
	size_t len;

	if (!hex_ok(id, 32))
		return send_text(c, 404, "not found\n");
	snprintf(etag, sizeof(etag), "\"%s\"", id);
	if (not_modified(c, etag, &ret))
		return ret;
	if (pub_read_raw(sv->ctx->store, id, &raw, &len))
		return send_text(c, 404, "no such snapshot\n");
	atomic_fetch_add(&sv->n_snaps, 1);
	atomic_fetch_add(&sv->n_bytes, (unsigned long long)len);
	ret = send_buf(c, 200, raw, len, "application/octet-stream", IMMUTABLE,
		       etag, MHD_RESPMEM_MUST_FREE);
	if (ret != MHD_YES)
		free(raw);
	return ret;
}

static enum MHD_Result send_rev(struct serve *sv, struct MHD_Connection *c,
				struct snap *snap)
{
	char *text;
	size_t len;
	int rc = statement(sv, snap, &text, &len);

	if (rc)
		return send_text(c, 500, "snapshot unreadable\n");
	return send_buf(c, 200, text, len, "text/plain", "no-cache", NULL,
			MHD_RESPMEM_MUST_FREE);
}

/* A thread per on-demand fetch (rare: a revision nobody here retains):
 * source_fetch_rev() waits on the source's own thread, the connection
 * stays suspended meanwhile. Touches nothing of @w after the resume. */
static void *fetch_main(void *arg)
{
	struct waiter *w = arg;
	struct serve *sv = w->sv;
	struct snap *snap = NULL;
	char err[512];
	int rc = source_fetch_rev(w->src, w->rev, FETCH_WAIT_MS, &snap, err,
				  sizeof(err));

	if (rc)
		log_info(TAG, "revision %s of %s asked for and not served: %s",
			 w->rev, w->source, err);
	pthread_mutex_lock(&sv->lock);
	w->rc = rc;
	w->snap = rc ? NULL : snap;
	w->fetched = true;
	w->resumed = true;
	MHD_resume_connection(w->c);
	sv->nfetching--;
	pthread_cond_broadcast(&sv->cond);
	pthread_mutex_unlock(&sv->lock);
	return NULL;
}

/* revs/REV not retained: fetch it from the source's upstream (a git
 * source by commit, a dagfs mirror from its publisher), suspended. */
static enum MHD_Result fetch_rev(struct serve *sv, struct MHD_Connection *c,
				 struct source *src, const char *name,
				 const char *rev, void **con_cls)
{
	struct waiter *w = calloc(1, sizeof(*w));
	pthread_attr_t a;
	pthread_t t;
	int rc;

	if (!w || strlen(rev) >= sizeof(w->rev)) {
		free(w);
		return send_text(c, 404, "revision not retained\n");
	}
	w->kind = HTTP_CONN_STORE;
	w->c = c;
	w->sv = sv;
	w->src = src;
	w->fetching = true;
	snprintf(w->source, sizeof(w->source), "%s", name);
	snprintf(w->rev, sizeof(w->rev), "%s", rev);
	*con_cls = w;
	pthread_mutex_lock(&sv->lock);
	if (sv->stopping || sv->nfetching >= FETCH_MAX) {
		pthread_mutex_unlock(&sv->lock);
		return send_text(c, 503, "busy fetching other revisions\n");
	}
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	MHD_suspend_connection(c);
	rc = pthread_create(&t, &a, fetch_main, w);
	pthread_attr_destroy(&a);
	if (rc) {
		MHD_resume_connection(c);
		w->fetched = true;
		w->rc = -rc;
	} else {
		sv->nfetching++;
	}
	pthread_mutex_unlock(&sv->lock);
	return MHD_YES;
}

/* trees/ID: a tree manifest, checked against its name (immutable). */
static enum MHD_Result get_tree(struct serve *sv, struct MHD_Connection *c,
				const char *id)
{
	char path[4096], etag[DHASH_HEX + 2];
	enum MHD_Result ret;
	struct tree *t;
	struct stat st;
	char *buf;
	ssize_t n;
	int fd;

	if (!hex_ok(id, 32) ||
	    path_fmt(path, sizeof(path), "%s/trees/%s",
		     store_dir(sv->ctx->store), id))
		return send_text(c, 404, "not found\n");
	snprintf(etag, sizeof(etag), "\"%s\"", id);
	if (not_modified(c, etag, &ret))
		return ret;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return send_text(c, 404, "no such tree\n");
	buf = !fstat(fd, &st) && st.st_size <= (1 << 20) ?
		      malloc((size_t)st.st_size + 1) :
		      NULL;
	n = buf ? pread(fd, buf, (size_t)st.st_size, 0) : -1;
	close(fd);
	if (n != st.st_size || tree_decode(&t, id, buf, (size_t)n)) {
		free(buf);
		return send_text(c, 404, "no such tree\n");
	}
	tree_free(t);
	ret = send_buf(c, 200, buf, (size_t)n, "text/plain", IMMUTABLE, etag,
		       MHD_RESPMEM_MUST_FREE);
	if (ret != MHD_YES)
		free(buf);
	return ret;
}

static enum MHD_Result get_rev(struct serve *sv, struct MHD_Connection *c,
			       const char *name, const char *rev,
			       void **con_cls)
{
	struct waiter *w = *con_cls;
	struct snap *snap = NULL, *cur = NULL;
	struct source *src;
	enum MHD_Result ret;

	if (w && w->fetching) { /* resumed: the fetch is over */
		if (!w->fetched)
			return MHD_YES;
		if (w->rc)
			return send_text(c, 404, "revision not retained and "
					 "not fetchable\n");
		return send_rev(sv, c, w->snap);
	}
	src = find_source(sv, name, &cur);
	if (!src)
		return send_text(c, 404, "no such source\n");
	snap_unref(cur);
	for (const char *p = rev; *p; p++)
		if (*p <= ' ' || *p > '~')
			return send_text(c, 404, "not found\n");
	if (pub_find_rev(sv->ctx->store, name, rev, &snap))
		return fetch_rev(sv, c, src, name, rev, con_cls);
	ret = send_rev(sv, c, snap);
	snap_unref(snap);
	return ret;
}

static enum MHD_Result get_list(struct serve *sv, struct MHD_Connection *c)
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
	return send_buf(c, 200, text, len, "application/json", "no-cache", NULL,
			MHD_RESPMEM_MUST_FREE);
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
		struct MHD_Response *r = MHD_create_response_from_buffer(
			14, (void *)"unauthorised\n\n", MHD_RESPMEM_PERSISTENT);
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
			return send_text(c, 404, "not found\n");
		memcpy(part[n], p, l);
		part[n++][l] = '\0';
		p += l + (slash ? 1 : 0);
		if (slash && !*p)
			return send_text(c, 404, "not found\n");
	}
	if (*p)
		return send_text(c, 404, "not found\n");
	if (n == 1 && !strcmp(part[0], "sources.json"))
		return get_list(sv, c);
	if (n == 2 && !strcmp(part[0], "snapshots"))
		return get_snapshot(sv, c, part[1]);
	if (n == 2 && !strcmp(part[0], "trees"))
		return get_tree(sv, c, part[1]);
	if (n == 3 && !strcmp(part[0], "objects") && hex_ok(part[1], 2) &&
	    hex_ok(part[2], 30)) {
		char hex[DHASH_HEX];

		snprintf(hex, sizeof(hex), "%s%s", part[1], part[2]);
		return get_blob(sv, c, hex);
	}
	if (n >= 3 && !strcmp(part[0], "sources") && name_ok(part[1], 64)) {
		if (n == 3 && !strcmp(part[2], "current"))
			return get_current(sv, c, part[1], con_cls);
		if (n == 4 && !strcmp(part[2], "revs"))
			return get_rev(sv, c, part[1], part[3], con_cls);
	}
	return send_text(c, 404, "not found\n");
}

/* ------------------------------------------------------ life and stats */

static int read_token(struct serve *sv, const char *path, char *err,
		      size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0) {
		snprintf(err, errlen, "serve token file %s: %s", path,
			 strerror(errno));
		return -errno;
	}
	n = read(fd, sv->token, sizeof(sv->token) - 1);
	close(fd);
	while (n > 0 && (sv->token[n - 1] == '\n' || sv->token[n - 1] == '\r'))
		n--;
	if (n <= 0) {
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
		rc = -pthread_create(&sv->timer, NULL, timer_main, sv);
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
	      "# TYPE dagfs_serve_requests_total counter\n", f);
	fprintf(f, "dagfs_serve_requests_total %llu\n",
		(unsigned long long)atomic_load(&sv->n_req));
	fputs("# HELP dagfs_serve_objects_total Blobs and snapshots served.\n"
	      "# TYPE dagfs_serve_objects_total counter\n", f);
	fprintf(f, "dagfs_serve_objects_total{kind=\"blob\"} %llu\n"
		"dagfs_serve_objects_total{kind=\"snapshot\"} %llu\n",
		(unsigned long long)atomic_load(&sv->n_blobs),
		(unsigned long long)atomic_load(&sv->n_snaps));
	fputs("# HELP dagfs_serve_bytes_total Bytes of blobs and snapshots "
	      "served.\n# TYPE dagfs_serve_bytes_total counter\n", f);
	fprintf(f, "dagfs_serve_bytes_total %llu\n",
		(unsigned long long)atomic_load(&sv->n_bytes));
	fputs("# HELP dagfs_serve_long_polls_total Long-polls that waited.\n"
	      "# TYPE dagfs_serve_long_polls_total counter\n", f);
	fprintf(f, "dagfs_serve_long_polls_total %llu\n",
		(unsigned long long)atomic_load(&sv->n_polls));
	fputs("# HELP dagfs_serve_waiting Long-polls waiting now.\n"
	      "# TYPE dagfs_serve_waiting gauge\n", f);
	fprintf(f, "dagfs_serve_waiting %zu\n", waiting);
}
