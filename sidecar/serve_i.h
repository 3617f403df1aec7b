/* SPDX-License-Identifier: Apache-2.0 */
/*
 * serve_i.h - private to sidecar/: the served store (serve.c) on the
 * http= listener, and `dagfs export` (export.c), which writes the same
 * layout as files for a static server or a bucket.
 */
#ifndef DAGFS_SERVE_I_H
#define DAGFS_SERVE_I_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sync.h"

struct dagfs_ctx;
struct serve;

/**
 * Read the token and signing key the configuration names; start the
 * long-poll timer. One-line reason in @err on failure.
 */
int serve_new(struct serve **out, struct dagfs_ctx *ctx, char *err,
	      size_t errlen) WUR;
/** Answer every waiter and stop the timer (before the listener stops). */
void serve_quiesce(struct serve *sv);
/** After serve_quiesce and once no source publishes; NULL is a no-op. */
void serve_free(struct serve *sv);

/**
 * Answer GET/HEAD @url (which starts with "/store/"). A long-poll keeps
 * its state in *@con_cls (freed by serve_conn_done). Called on the
 * listener's thread.
 */
enum MHD_Result serve_handle(struct serve *sv, struct MHD_Connection *c,
			     const char *url, void **con_cls);
/** The request that owned @con_cls ended. */
void serve_conn_done(struct serve *sv, void *con_cls);

/** @source published: answer its long-polls. NULL @sv is a no-op. */
void serve_published(struct serve *sv, const char *source);

/** Counters in the Prometheus text format; NULL @sv writes nothing. */
void serve_metrics(struct serve *sv, FILE *f);

/**
 * A Range header @h ("bytes=A-B", "bytes=A-", "bytes=-N") against a body
 * of @size bytes: 1 with the one range in *@off and *@len, 0 for the whole
 * body (no header, several ranges, junk), -1 if unsatisfiable (416).
 */
int serve_range_parse(const char *h, uint64_t size, uint64_t *off,
		      uint64_t *len);

/**
 * The statement (sdoc) of retained snapshot @s, signed with @key when
 * it is not NULL. *@out is malloc'd.
 */
int serve_statement(struct store *st, const struct sdoc_key *key,
		    const struct snap *s, char **out, size_t *len) WUR;

/* ------------------------------------------------------------------
 * Internal to serve*.c (the served store split by job): its state and
 * the calls between its files. export.c uses none of this.
 */

#define WAIT_MAX_S 25 /* under the 30 s connection timeout */
#define TOKEN_MAX 4096
#define FETCH_MAX 16	    /* on-demand fetches at once */
#define FETCH_WAIT_MS 20000 /* at most, each (shutdown waits for them) */
#define IMMUTABLE "public, max-age=31536000, immutable"

struct waiter {
	int kind; /* HTTP_CONN_STORE */
	struct waiter *prev, *next;
	struct MHD_Connection *c;
	char source[65];
	char after[256];  /* a snapshot id or a revision */
	int64_t deadline; /* mono_ns */
	bool listed;	  /* on sv->waiters */
	bool resumed;	  /* answer now */
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

/* serve_object.c: replies and the immutable objects. */
/** Queue @buf (@len bytes) with @status, Content-Type @type and the
 * optional Cache-Control @cache and ETag @etag; @mode as libmicrohttpd's. */
enum MHD_Result serve_send_buf(struct MHD_Connection *c, unsigned status,
			       const void *buf, size_t len, const char *type,
			       const char *cache, const char *etag,
			       enum MHD_ResponseMemoryMode mode);
/** A one-line text/plain reply @msg (a literal) with @status. */
enum MHD_Result serve_send_text(struct MHD_Connection *c, unsigned status,
				const char *msg);
/** If-None-Match equal to @etag: 304 (with @cache) queued, *@ret set,
 * true. */
bool serve_not_modified_as(struct MHD_Connection *c, const char *etag,
			   const char *cache, enum MHD_Result *ret);
/** GET objects/AB/CDEF... (@hex: 32 hex digits, checked), with Range. */
enum MHD_Result serve_get_blob(struct serve *sv, struct MHD_Connection *c,
			       const char *hex);
/** GET snapshots/ID: the snapshot's bytes; @id is checked here. */
enum MHD_Result serve_get_snapshot(struct serve *sv, struct MHD_Connection *c,
				   const char *id);
/** GET trees/ID: a tree manifest, checked against its name. */
enum MHD_Result serve_get_tree(struct serve *sv, struct MHD_Connection *c,
			       const char *id);
/** GET sources.json: every source, its revision and snapshot. */
enum MHD_Result serve_get_list(struct serve *sv, struct MHD_Connection *c);

/* serve_doc.c: statements. */
/**
 * The running source named @name, with a new reference to its current
 * snapshot in *@snap (NULL before its first); NULL if no such source.
 * The returned pointer is only to be tested against NULL or handed to
 * source_fetch_rev while the request lives.
 */
struct source *serve_find_source(struct serve *sv, const char *name,
				 struct snap **snap);
/** The statement of @s (ours, forwarded or unsigned); *@out malloc'd. */
int serve_statement_of(struct serve *sv, const struct snap *s, char **out,
		       size_t *len) WUR;
/** Reply with the current statement of @s (ETag its id; 304 when
 * revalidated unless @waited, which marks a long-poll's answer). */
enum MHD_Result serve_send_doc(struct serve *sv, struct MHD_Connection *c,
			       const struct snap *s, bool waited);
/** Reply with the statement of retained snapshot @snap. */
enum MHD_Result serve_send_rev(struct serve *sv, struct MHD_Connection *c,
			       struct snap *snap);

/* serve_wait.c: long-polls and on-demand revisions. */
/** The one timer thread (@arg: the struct serve): wakes waiters at their
 * deadline until sv->stopping. */
void *serve_timer_main(void *arg);
/** GET sources/NAME/current[?after=ID&wait=S]; state in *@con_cls. */
enum MHD_Result serve_get_current(struct serve *sv, struct MHD_Connection *c,
				  const char *name, void **con_cls);
/** GET sources/NAME/revs/REV, fetched on demand when not retained. */
enum MHD_Result serve_get_rev(struct serve *sv, struct MHD_Connection *c,
			      const char *name, const char *rev,
			      void **con_cls);

#endif
