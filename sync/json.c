/* SPDX-License-Identifier: Apache-2.0 */
/*
 * json.c - the little JSON dagfs reads: the status file the daemon wrote
 * itself (with json_put_str), and the instance metadata service's
 * credentials (s3/), parsed by a small recursive-descent parser into a
 * tree. Not a general-purpose library: \u escapes outside
 * the BMP pass through as two code units, and nesting is capped so
 * hostile input cannot exhaust the stack.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define JSON_MAX_DEPTH 64

struct jp {
	const char *p, *end;
	int depth;
};

static void skip_ws(struct jp *jp)
{
	while (jp->p < jp->end && strchr(" \t\r\n", *jp->p) && *jp->p)
		jp->p++;
}

static bool eat(struct jp *jp, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(jp->end - jp->p) < n || memcmp(jp->p, word, n))
		return false;
	jp->p += n;
	return true;
}

static int hex4(const char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/* Append code point @cp (< 0x10000) to @o as UTF-8. */
static size_t put_utf8(char *o, int cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	o[0] = (char)(0xe0 | cp >> 12);
	o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[2] = (char)(0x80 | (cp & 0x3f));
	return 3;
}

static int parse_string(struct jp *jp, char **out)
{
	static const char esc_in[] = "\"\\/bfnrt",
			  esc_out[] = "\"\\/\b\f\n\r\t";
	const char *p = ++jp->p; /* past the quote */
	char *o, *s = malloc((size_t)(jp->end - p) + 1);
	int cp;

	if (!s)
		return -ENOMEM;
	for (o = s; p < jp->end && *p != '"'; p++) {
		if ((unsigned char)*p < 0x20)
			goto bad;
		if (*p != '\\') {
			*o++ = *p;
		} else if (++p < jp->end && *p && strchr(esc_in, *p)) {
			*o++ = esc_out[strchr(esc_in, *p) - esc_in];
		} else if (p < jp->end && *p == 'u' && jp->end - p > 4 &&
			   (cp = hex4(p + 1)) > 0) {
			o += put_utf8(o, cp);
			p += 4;
		} else {
			goto bad;
		}
	}
	if (p >= jp->end)
		goto bad;
	*o = '\0';
	jp->p = p + 1;
	*out = s;
	return 0;
bad:
	free(s);
	return -EINVAL;
}

static int parse_number(struct jp *jp, struct json *j)
{
	char buf[64], *end;
	size_t n = 0;

	while (jp->p + n < jp->end && jp->p[n] &&
	       strchr("-+0123456789.eE", jp->p[n]))
		n++;
	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, jp->p, n);
	buf[n] = '\0';
	j->num = strtod(buf, &end);
	if (*end)
		return -EINVAL;
	/* a double past int64_t's range has no integer value: clamp it */
	if (!strpbrk(buf, ".eE"))
		j->i = strtoll(buf, NULL, 10);
	else if (j->num >= (double)INT64_MAX)
		j->i = INT64_MAX;
	else if (j->num <= (double)INT64_MIN)
		j->i = INT64_MIN;
	else
		j->i = (int64_t)j->num;
	j->type = JSON_NUM;
	jp->p += n;
	return 0;
}

static int parse_value(struct jp *jp, struct json *j);

/* Elements of an array (@obj false) or members of an object. */
static int parse_items(struct jp *jp, struct json *j, bool obj)
{
	char close = obj ? '}' : ']';
	int rc;

	jp->p++;
	j->type = obj ? JSON_OBJ : JSON_ARR;
	skip_ws(jp);
	if (jp->p < jp->end && *jp->p == close) {
		jp->p++;
		return 0;
	}
	for (;;) {
		struct json *items = realloc(j->items,
					     (j->n + 1) * sizeof(*items));
		char **keys = obj ? realloc(j->keys,
					    (j->n + 1) * sizeof(*keys)) :
				    NULL;

		if (!items || (obj && !keys)) {
			if (items)
				j->items = items;
			return -ENOMEM;
		}
		j->items = items;
		j->keys = obj ? keys : NULL;
		memset(&items[j->n], 0, sizeof(*items));
		if (obj) {
			keys[j->n] = NULL;
			skip_ws(jp);
			if (jp->p >= jp->end || *jp->p != '"')
				return -EINVAL;
			rc = parse_string(jp, &keys[j->n]);
			if (rc)
				return rc;
			skip_ws(jp);
			if (!eat(jp, ":")) {
				j->n++;
				return -EINVAL;
			}
		}
		rc = parse_value(jp, &items[j->n++]);
		if (rc)
			return rc;
		skip_ws(jp);
		if (eat(jp, ","))
			continue;
		return eat(jp, obj ? "}" : "]") ? 0 : -EINVAL;
	}
}

static int parse_value(struct jp *jp, struct json *j)
{
	int rc;

	skip_ws(jp);
	if (jp->p >= jp->end)
		return -EINVAL;
	if (*jp->p == '{' || *jp->p == '[') {
		if (++jp->depth > JSON_MAX_DEPTH)
			return -EINVAL;
		rc = parse_items(jp, j, *jp->p == '{');
		jp->depth--;
		return rc;
	}
	if (*jp->p == '"') {
		j->type = JSON_STR;
		return parse_string(jp, &j->str);
	}
	if (eat(jp, "true") || eat(jp, "false") || eat(jp, "null")) {
		j->type = jp->p[-1] == 'l' ? JSON_NULL : JSON_BOOL;
		j->b = jp->p[-3] == 'r'; /* t(r)ue */
		return 0;
	}
	return parse_number(jp, j);
}

static void json_clear(struct json *j)
{
	for (size_t i = 0; i < j->n; i++) {
		json_clear(&j->items[i]);
		if (j->keys)
			free(j->keys[i]);
	}
	free(j->items);
	free(j->keys);
	free(j->str);
}

void json_free(struct json *j)
{
	if (!j)
		return;
	json_clear(j);
	free(j);
}

int json_parse(struct json **out, const char *text, size_t len)
{
	struct jp jp = { .p = text, .end = text + len };
	struct json *j = calloc(1, sizeof(*j));
	int rc;

	if (!j)
		return -ENOMEM;
	rc = parse_value(&jp, j);
	skip_ws(&jp);
	if (!rc && jp.p != jp.end)
		rc = -EINVAL;
	if (rc) {
		json_free(j);
		return rc;
	}
	*out = j;
	return 0;
}

const struct json *json_get(const struct json *j, const char *key)
{
	if (!j || j->type != JSON_OBJ)
		return NULL;
	for (size_t i = 0; i < j->n; i++)
		if (!strcmp(j->keys[i], key))
			return &j->items[i];
	return NULL;
}

const char *json_str(const struct json *j, const char *key, const char *def)
{
	const struct json *v = json_get(j, key);

	return v && v->type == JSON_STR ? v->str : def;
}

int64_t json_int(const struct json *j, const char *key, int64_t def)
{
	const struct json *v = json_get(j, key);

	return v && v->type == JSON_NUM ? v->i : def;
}

bool json_bool(const struct json *j, const char *key, bool def)
{
	const struct json *v = json_get(j, key);

	return v && v->type == JSON_BOOL ? v->b : def;
}
