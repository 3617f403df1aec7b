/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dagfs_i.h - private to sync/dagfs/: the dagfs source's state and the
 * calls between its files (dagfs.c the round and setup, dagfs_http.c,
 * dagfs_blobs.c, dagfs_verify.c, dagfs_demand.c, dagfs_wait.c).
 * Nothing outside sync/dagfs/ includes it.
 */
#ifndef DAGFS_DAGFS_I_H
#define DAGFS_DAGFS_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "snap_i.h"
#include "source_i.h"

#define TRIES 3
#define SNAP_MAX (256u << 20)
/* tree_put() trims to this; the view's own keep-trees trims at its next
 * composition, so this only has to be at least as large */
#define TREES_KEEP 1000000

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

/* dagfs_http.c */
/**
 * The one translation of curl result @cc and HTTP @status of request
 * @what into -errno, with a one-line reason in @err. No URL with a
 * secret ever reaches it (the token travels in a header).
 */
int dg_fail(struct source *src, char *err, size_t errlen, const char *what,
	    CURLcode cc, long status);
/** Whether a failure (@cc, @status) is worth another try. */
bool dg_retryable(CURLcode cc, long status);
/** CURLOPT_WRITEFUNCTION into a struct body @ud (bounded by ->max). */
size_t dg_body_write(char *data, size_t sz, size_t n, void *ud);
/** Common options of handle @e for @url: timeouts, protocols, token, CA. */
void dg_easy_setup(struct dg *g, CURL *e, const char *url, long timeout_s);
/**
 * One GET of @url into @b on the multi handle. With @intr, src->wakefd
 * ends it early: returns 1 (the event is drained). Else 0 for a 200, or
 * -errno with the reason in @err. *@waited (if not NULL) says whether the
 * upstream long-polled.
 */
int dg_get(struct source *src, CURL *e, const char *url, const char *what,
	   struct body *b, long timeout_s, bool intr, bool *waited, char *err,
	   size_t errlen) WUR;
/** dg_get with TRIES tries on -EIO, for what is not the long-poll. */
int dg_get_retry(struct source *src, const char *url, const char *what,
		 struct body *b, char *err, size_t errlen) WUR;

/* dagfs_blobs.c */
/** Fetch and store every blob of @s the store lacks; 0 or -errno. */
int dg_fetch_blobs(struct source *src, const struct snap *s, char *err,
		   size_t errlen) WUR;

/* dagfs_verify.c */
/** Parse and check statement @doc into *@d; one-line reason on error. */
int dg_check_statement(struct source *src, const char *doc, size_t len,
		       struct sdoc *d, char *err, size_t errlen) WUR;
/** The snapshot checked statement @d names, verified, into *@out
 * (caller owns). */
int dg_fetch_snapshot(struct source *src, const struct sdoc *d,
		      struct snap **out, char *err, size_t errlen) WUR;
/** Keep signed statement @doc as sources/NAME/sdoc-ID for re-serving. */
void dg_keep_statement(struct source *src, const struct sdoc *d,
		       const char *doc, size_t len);
/** Remove kept statements of snapshots no longer retained. */
void dg_prune_statements(struct source *src);

/* dagfs.c */
/**
 * What checked statement @d (text @doc) names: the snapshot and the
 * blobs the store lacks, under this source's name, into *@out (caller
 * owns). The source's thread only.
 */
int dg_take(struct source *src, const struct sdoc *d, const char *doc,
	    size_t len, struct snap **out, char *err, size_t errlen) WUR;

/* dagfs_demand.c: the ops ->fetch_rev and ->fetch_tree */
int dg_fetch_rev(struct source *src, const char *rev, struct snap **out,
		 char *err, size_t errlen);
int dg_fetch_tree(struct source *src, const char *id, int timeout_ms, char *err,
		  size_t errlen);

/* dagfs_wait.c: the op ->wait */
void dg_wait(struct source *src, int timeout_ms);

#endif
