/* SPDX-License-Identifier: Apache-2.0 */
/*
 * util.h - small helpers every folder uses: formatted paths, mkdir -p,
 * the parsers of durations and booleans, clocks, a periodic thread
 * (ticker.c) and JSON string quoting.
 *
 * Nothing here knows of stores, snapshots or sources.
 */
#ifndef DAGFS_UTIL_H
#define DAGFS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define WUR __attribute__((warn_unused_result))

/**
 * snprintf for paths: 0, or -ENAMETOOLONG if @fmt did not fit in @len
 * (the buffer then holds a truncated, never-used string).
 */
int path_fmt(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4))) WUR;

/**
 * mkdir -p: create @path and its missing parents with @mode (less the
 * umask); directories that exist are left as they are. 0 or -errno.
 */
int mkdir_p(const char *path, mode_t mode) WUR;

/**
 * Read the secret file @path (one line; trailing newlines cut) into @out
 * of @len bytes, NUL-terminated. Returns its length (0: empty), or -errno;
 * -EFBIG if it does not fit. The one reader of secret files: never log
 * what it read; @out is wiped on failure.
 */
int read_secret(char *out, size_t len, const char *path) WUR;

/** @s is exactly @n lowercase hex digits (a name's shape, before it
 * touches a path). */
bool hex_ok(const char *s, size_t n);

/** Parse durations "250ms", "10s", "2m", "1h" or a bare number of seconds. */
int parse_duration_ms(const char *text, int *out) WUR;
/** Parse a boolean: 1/0, true/false, yes/no, on/off. */
int parse_bool(const char *text, bool *out) WUR;

/** Nanoseconds of CLOCK_REALTIME / CLOCK_MONOTONIC. */
int64_t now_ns(void);
int64_t mono_ns(void);

struct ticker;
/** A ticker's call: does one round, returns the ms to wait before the next. */
typedef int (*ticker_fn)(void *payload);

/**
 * Call @fn(@payload) in a thread of its own @first_ms from now, then each
 * time after the wait it returns, until ticker_stop() (ticker.c).
 */
int ticker_start(struct ticker **out, int first_ms, ticker_fn fn,
		 void *payload) WUR;
/** Stop (waits for a call in progress) and free; NULL: no-op. */
void ticker_stop(struct ticker *t);

/**
 * Write @s to @f as a quoted JSON string: '"' and '\\' escaped, control
 * characters as \u00XX, well-formed UTF-8 copied, and each ill-formed
 * sequence replaced by \ufffd so the output is always valid JSON. NULL
 * writes "".
 */
void json_put_str(FILE *f, const char *s);

/**
 * json_put_str into @out of @cap (at least 3) bytes, NUL-terminated.
 * What does not fit is dropped a whole character at a time, so @out
 * always holds a complete quoted string. Returns its length.
 */
size_t json_quote(char *out, size_t cap, const char *s);

#endif
