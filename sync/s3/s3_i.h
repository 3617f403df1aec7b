/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3_i.h - private to the s3 source: key sanitising, XML responses,
 * credentials and signed requests. Split so each parser can be fuzzed
 * alone.
 */
#ifndef DAGFS_S3_I_H
#define DAGFS_S3_I_H

#include <curl/curl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync.h"

/* ------------------------------------------------------------ s3_key.c */

/**
 * Map object @key (@klen bytes, may hold NUL) under @prefix to a snapshot
 * path in @out. Returns 0 (a file), 1 (a directory: the key ended in
 * '/'), 2 (the prefix itself: nothing to serve) or -EINVAL for a hostile
 * key ("..", ".", empty segments, leading '/', control characters, NUL,
 * over NAME_MAX or PATH_MAX) with the reason in @why.
 */
int s3_key_to_path(const char *key, size_t klen, const char *prefix, char *out,
		   size_t outlen, const char **why) WUR;

/** Percent-encode @s (RFC 3986 unreserved kept; '/' kept if @keep_slash). */
int s3_uri_encode(char *out, size_t outlen, const char *s, bool keep_slash) WUR;

/* ------------------------------------------------------------ s3_xml.c */

/* The longest ETag kept, quotes excluded (an MD5 is 32, a multipart
 * one 32 + "-N"): a longer one makes the listing malformed. */
#define S3_ETAG_MAX 79

/* One listed object. Its key and ETag live in the listing's strings:
 * 10,000 objects are about 40 bytes each here plus their text, not one
 * allocation per key and a fixed-size ETag field. */
struct s3_object {
	char *key; /* NUL-terminated; klen counts a NUL the key may hold */
	const char *etag; /* without quotes; "" if the listing gave none */
	size_t klen;
	uint64_t size;
	int64_t mtime_ns;
};

struct s3_strings; /* s3_xml.c: blocks that keys and ETags are cut from */

/* The next capacity of an array of objects or map entries: an eighth
 * more and at least a page of 1,000, so what is allocated stays close to
 * what is used (doubling left up to half of it empty). */
static inline size_t s3_grown(size_t cap)
{
	return cap + cap / 8 + 1024;
}

/* A listing: every page parsed so far, appended in order. */
struct s3_page {
	struct s3_object *v;
	size_t n, cap;
	struct s3_strings *strings;
	bool truncated;
	bool url_encoded; /* the page's keys came with encoding-type=url */
	char *next_token;
};

/** Parse one ListObjectsV2 response; appends to @out. -EBADMSG if bad. */
int s3_list_parse(struct s3_page *out, const char *xml, size_t len) WUR;

/*
 * The same, fed as the response arrives: the body is never held whole.
 * s3_list_begin() starts a page (0 or -ENOMEM), s3_list_feed() takes the
 * next bytes (with @final, the end: the page is then complete) and
 * returns 0 or -EBADMSG/-ENOMEM; s3_list_end() frees the parser. A page
 * that failed leaves @out's objects as they were before it began.
 */
struct s3_list_parser;
int s3_list_begin(struct s3_list_parser **lp, struct s3_page *out) WUR;
int s3_list_feed(struct s3_list_parser *lp, const char *data, size_t len,
		 bool final) WUR;
void s3_list_end(struct s3_list_parser *lp);
/** Forget the objects parsed so far (not the continuation state). */
void s3_page_drop_objects(struct s3_page *p);
void s3_page_free(struct s3_page *p);

/** Code and Message of an S3 <Error> body (empty strings if none). */
void s3_error_parse(const char *xml, size_t len, char *code, size_t clen,
		    char *msg, size_t mlen);

/** "2026-11-24T09:57:34.147Z" to nanoseconds; -EINVAL if malformed. */
int s3_time_parse(const char *s, int64_t *out) WUR;

struct s3_creds {
	char access_key[128];
	char secret_key[256];
	char token[4096];
	int64_t expires_ns; /* 0: never */
	char origin[64];    /* "environment", "credentials file", ... */
};

/** Credentials from an STS AssumeRoleWithWebIdentity response. */
int s3_sts_parse(struct s3_creds *out, const char *xml, size_t len) WUR;

/* ---------------------------------------------------------- s3_creds.c */

struct s3_cred_opts {
	const char *credentials_file; /* credentials-file=, else env/home */
	const char *profile;	      /* profile=, else AWS_PROFILE/default */
	const char *sts_endpoint;     /* stand-ins in tests; else AWS */
	const char *imds_endpoint;
	const char *region;
	const char *ca_file;
};

/**
 * Resolve credentials in the usual AWS order: environment, shared
 * credentials file, web identity (STS), instance metadata (IMDSv2).
 * -ENOENT with a reason in @err if none is found. Never logs secrets.
 */
int s3_creds_get(struct s3_creds *out, const struct s3_cred_opts *o, char *err,
		 size_t errlen) WUR;

/** Credentials from the instance metadata service's JSON. */
int s3_imds_parse(struct s3_creds *out, const char *json) WUR;

/** Parse a shared credentials file's @profile from @text. */
int s3_creds_parse_file(struct s3_creds *out, const char *text,
			const char *profile) WUR;

/* ----------------------------------------------------------- s3_http.c */

struct source;
struct s3_entry;

/* SHA-256 of an empty request body: what a listing's signature covers. */
#define S3_EMPTY_SHA256                                                        \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* A source's settings and state; used by its thread only. */
struct s3_src {
	struct source *src; /* its source, for stop */
	char *bucket, *prefix, *endpoint, *region, *marker, *ca_file;
	bool virtual_host;
	long parallel;
	struct s3_cred_opts co;
	struct s3_creds creds; /* source thread only */
	char sigv4[96];
	/* the persistent map, in memory only while a round whose listing
	 * changed needs it: an unchanged poll never reads it */
	struct s3_entry *map;
	size_t nmap;
	char map_path[PATH_MAX];
	/* kept across polls so connections stay alive (source thread) */
	CURL *e;  /* listings, the marker */
	CURLM *m; /* downloads */
};

/* A response body kept in memory (listings, error bodies); grown by
 * half again, so a listing page is not copied at every chunk. */
struct membody {
	char *p;
	size_t len, cap;
};

/** curl write callback appending to a struct membody (at most 64 MiB). */
size_t s3_body_write(char *data, size_t sz, size_t n, void *ud);

/* Response headers we read. */
struct hdrs {
	char etag[80];
};

/* One object to fetch; on success @hash names its blob. */
struct job {
	const struct s3_object *o;
	struct dhash hash;
	int attempt;
	int64_t not_before; /* monotonic ns */
};

/**
 * Translate a curl result @cc, HTTP @status and S3 error body into one
 * line in @err naming the source and the cause (never a secret or a
 * signed URL). Returns -EACCES, -ENOENT, -EPERM (TLS) or -EIO.
 */
int s3_fail(struct source *src, char *err, size_t errlen, const char *what,
	    CURLcode cc, long status, const char *body, size_t blen) WUR;

/**
 * URL of @key (NULL: the bucket) with @query (may be NULL) for the
 * source's endpoint and addressing. -ENAMETOOLONG if it does not fit.
 */
int s3_make_url(struct s3_src *s, char *out, size_t cap, const char *key,
		const char *query) WUR;

/* Where a GET's 200 body goes, as it arrives. */
struct s3_sink {
	/* 0, or -errno to abort the transfer (not retried) */
	int (*write)(void *ud, const char *data, size_t len);
	/* an attempt begins: forget what an earlier one wrote */
	int (*reset)(void *ud);
	void *ud;
};

/**
 * A signed GET of @url, retried with backoff, its body streamed to
 * @sink; @payload is the x-amz-content-sha256 value. 0, the sink's
 * -errno, or -errno with @err from s3_fail.
 */
int s3_get_stream(struct source *src, const char *url, const char *what,
		  const char *payload, const struct s3_sink *sink,
		  struct hdrs *h, char *err, size_t errlen) WUR;

/**
 * s3_get_stream() into memory. The caller frees out->p whatever the
 * result.
 */
int s3_get_small(struct source *src, const char *url, const char *what,
		 const char *payload, struct membody *out, struct hdrs *h,
		 char *err, size_t errlen) WUR;

/**
 * Fetch @n objects, up to s->parallel at once on one curl multi handle,
 * into the store; each job's hash is set when its object arrived intact
 * (zero otherwise). 0 when all arrived, else -errno with @err.
 */
int s3_download(struct source *src, struct job *jobs, size_t n, char *err,
		size_t errlen) WUR;

#endif
