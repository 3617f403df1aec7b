/* SPDX-License-Identifier: Apache-2.0 */
/*
 * json.h - the one JSON reader of dagfs (json.c): the status file the
 * daemon writes, and the instance metadata service's credentials. Small
 * and bounded, not a general-purpose library. Writing JSON is util.h's
 * json_put_str/json_quote.
 */
#ifndef DAGFS_JSON_H
#define DAGFS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/** A parsed JSON value (a tree owned by its root). */
enum json_type {
	JSON_NULL,
	JSON_BOOL,
	JSON_NUM,
	JSON_STR,
	JSON_ARR,
	JSON_OBJ,
};

struct json {
	enum json_type type;
	bool b;
	double num;
	int64_t i; /* num as an integer when it was written as one */
	char *str;
	size_t n;	    /* arrays and objects */
	struct json *items; /* arrays and object values */
	char **keys;	    /* objects */
};

/** Parse @len bytes of JSON text. -EINVAL if malformed. Free with json_free. */
int json_parse(struct json **out, const char *text, size_t len) WUR;
void json_free(struct json *j);
/** Member @key of object @j, or NULL. Borrowed. */
const struct json *json_get(const struct json *j, const char *key);
/** Member as a string, integer or bool with a fallback. */
const char *json_str(const struct json *j, const char *key, const char *def);
int64_t json_int(const struct json *j, const char *key, int64_t def);
bool json_bool(const struct json *j, const char *key, bool def);

#endif
