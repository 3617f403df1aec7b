/* SPDX-License-Identifier: Apache-2.0 */
/*
 * serve_i.h - private to sidecar/: the served store (serve.c) on the
 * http= listener, and `dagfs export` (export.c), which writes the same
 * layout as files for a static server or a bucket.
 */
#ifndef DAGFS_SERVE_I_H
#define DAGFS_SERVE_I_H

#include <microhttpd.h>
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

#endif
