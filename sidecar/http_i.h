/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http_i.h - private to sidecar/: the HTTP endpoints (libmicrohttpd):
 * /healthz, /readyz, /metrics and the POST /sync webhook with optional
 * GitHub-style X-Hub-Signature-256 verification.
 */
#ifndef DAGFS_HTTP_I_H
#define DAGFS_HTTP_I_H

#include <microhttpd.h>
#include <stddef.h>

#include "log.h"
#include "sync.h"

/** What a connection's con_cls holds: its first member says which. */
enum http_conn_kind {
	HTTP_CONN_UPLOAD = 1, /* POST /sync body (http.c) */
	HTTP_CONN_STORE = 2,  /* a /store/ long-poll (serve.c) */
};

/**
 * What the daemon answers. Each callback sets *@body to a malloc'd text
 * (or NULL) and returns the HTTP status. Called from the server's thread.
 */
struct http_handlers {
	int (*healthz)(void *payload, char **body);
	int (*readyz)(void *payload, char **body);
	int (*metrics)(void *payload, char **body);
	/** Poll @source now (NULL: every source); 202, or 404 if unknown. */
	int (*sync)(void *payload, const char *source, char **body);
	/**
	 * Optional (NULL: 404): GET/HEAD under /store/. May suspend the
	 * connection and keep state in *@con_cls (a struct whose first
	 * member is HTTP_CONN_STORE), released by @store_done.
	 */
	enum MHD_Result (*store)(void *payload, struct MHD_Connection *c,
				 const char *url, void **con_cls);
	void (*store_done)(void *payload, void *con_cls);
	/** Optional: resume every suspended connection (before stopping). */
	void (*quiesce)(void *payload);
	void *payload;
};

struct http;

/**
 * Serve on @addr ("127.0.0.1:8080", "[::1]:8080", ":8080" for every
 * address). With @secret_file, POST /sync must carry a valid
 * X-Hub-Signature-256 of its body. One-line reason in @err on failure.
 */
int http_start(struct http **out, const char *addr, const char *secret_file,
	       const struct http_handlers *h, char *err, size_t errlen) WUR;
/** Stop serving; NULL is a no-op. */
void http_stop(struct http *http);

/**
 * Check a "sha256=<64 hex>" @header against the HMAC-SHA256 of @body
 * under @secret, in constant time. 0 if valid, -EINVAL if malformed,
 * -EPERM if it does not match.
 */
int http_verify_signature(const void *secret, size_t slen, const void *body,
			  size_t blen, const char *header) WUR;

#endif
