/* SPDX-License-Identifier: Apache-2.0 */
/*
 * source_spec.c - the TYPE:LOCATION[,key=value]... specification of a
 * source: parsing, copying, freeing, and the name a source gets from it.
 *
 * Pure text handling: no I/O, no threads, no knowledge of source types.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source_i.h"

void source_spec_free(struct source_spec *spec)
{
	if (!spec)
		return;
	for (size_t i = 0; i < spec->nkeys; i++) {
		free(spec->keys[i]);
		free(spec->values[i]);
	}
	free(spec->keys);
	free(spec->values);
	free(spec->type);
	free(spec->location);
	free(spec);
}

const char *source_spec_get(const struct source_spec *spec, const char *key)
{
	for (size_t i = 0; i < spec->nkeys; i++)
		if (!strcmp(spec->keys[i], key))
			return spec->values[i];
	return NULL;
}

/* Next comma-separated field of *@p with "\," and "\\" unescaped. */
static char *next_field(const char **p)
{
	const char *s = *p;
	char *out = malloc(strlen(s) + 1), *w = out;

	if (!out)
		return NULL;
	for (; *s && *s != ','; s++) {
		if (*s == '\\' && (s[1] == ',' || s[1] == '\\'))
			s++;
		*w++ = *s;
	}
	*w = '\0';
	*p = *s ? s + 1 : NULL;
	return out;
}

static int spec_add_key(struct source_spec *sp, char *field, char *err,
			size_t errlen)
{
	char *eq = strchr(field, '='), **k, **v;

	if (!eq || eq == field) {
		snprintf(err, errlen, "expected key=value, got '%s'", field);
		return -EINVAL;
	}
	*eq = '\0';
	for (const char *c = field; *c; c++) {
		if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) &&
		    *c != '-') {
			snprintf(err, errlen, "bad key '%s'", field);
			return -EINVAL;
		}
	}
	if (source_spec_get(sp, field)) {
		snprintf(err, errlen, "key '%s' given twice", field);
		return -EINVAL;
	}
	k = realloc(sp->keys, (sp->nkeys + 1) * sizeof(*k));
	if (k)
		sp->keys = k;
	v = realloc(sp->values, (sp->nkeys + 1) * sizeof(*v));
	if (v)
		sp->values = v;
	if (!k || !v || !(sp->keys[sp->nkeys] = strdup(field)))
		return -ENOMEM;
	if (!(sp->values[sp->nkeys] = strdup(eq + 1))) {
		free(sp->keys[sp->nkeys]);
		return -ENOMEM;
	}
	sp->nkeys++;
	return 0;
}

int source_spec_parse(struct source_spec **out, const char *text, char *err,
		      size_t errlen)
{
	struct source_spec *sp = calloc(1, sizeof(*sp));
	const char *colon = strchr(text, ':'), *p;
	int rc = -EINVAL;

	if (!sp)
		return -ENOMEM;
	if (!colon || colon == text) {
		snprintf(err, errlen, "malformed source '%.200s': expected "
			 "TYPE:LOCATION[,key=value]...", text);
		goto err;
	}
	sp->type = strndup(text, (size_t)(colon - text));
	for (const char *c = sp->type; c && *c; c++) {
		if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c)) {
			snprintf(err, errlen, "malformed source '%.200s': bad "
				 "type", text);
			goto err;
		}
	}
	p = colon + 1;
	sp->location = next_field(&p);
	if (!sp->type || !sp->location) {
		rc = -ENOMEM;
		goto err;
	}
	if (!*sp->location) {
		snprintf(err, errlen, "malformed source '%.200s': empty "
			 "location", text);
		goto err;
	}
	while (p) {
		char *field = next_field(&p);
		char why[160];

		if (!field) {
			rc = -ENOMEM;
			goto err;
		}
		rc = spec_add_key(sp, field, why, sizeof(why));
		free(field);
		if (rc) {
			snprintf(err, errlen, "malformed source '%.200s': %s",
				 text, why);
			goto err;
		}
	}
	*out = sp;
	return 0;
err:
	source_spec_free(sp);
	return rc;
}

struct source_spec *source_spec_copy(const struct source_spec *s)
{
	struct source_spec *c = calloc(1, sizeof(*c));
	bool ok = c && (c->type = strdup(s->type)) &&
		  (c->location = strdup(s->location)) &&
		  (c->keys = calloc(s->nkeys + 1, sizeof(char *))) &&
		  (c->values = calloc(s->nkeys + 1, sizeof(char *)));

	for (size_t i = 0; ok && i < s->nkeys; i++, c->nkeys++)
		ok = (c->keys[i] = strdup(s->keys[i])) &&
		     (c->values[i] = strdup(s->values[i]));
	if (!ok) {
		source_spec_free(c);
		return NULL;
	}
	return c;
}

/* A default name from the location's last meaningful part. */
char *source_name_derive(const char *location)
{
	char buf[65], *copy = strdup(location), *base, *dot;
	size_t n = 0;

	if (!copy)
		return NULL;
	while (strlen(copy) > 1 && (copy[strlen(copy) - 1] == '/'))
		copy[strlen(copy) - 1] = '\0';
	base = strrchr(copy, '/');
	base = base ? base + 1 : copy;
	if (strrchr(base, ':'))
		base = strrchr(base, ':') + 1;
	dot = strstr(base, ".git");
	if (dot && dot[4] == '\0')
		*dot = '\0';
	for (const char *c = base; *c && n < 64; c++)
		buf[n++] = isalnum((unsigned char)*c) || *c == '-' ||
					   *c == '_' || *c == '.' ?
				   *c :
				   '-';
	buf[n] = '\0';
	free(copy);
	return strdup(n && strcmp(buf, ".") && strcmp(buf, "..") ? buf : "root");
}

bool source_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (!n || n > 64 || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (; *name; name++)
		if (!isalnum((unsigned char)*name) && !strchr("-_.", *name))
			return false;
	return true;
}

int source_spec_name(const struct source_spec *spec, char *out, size_t len)
{
	const char *name = source_spec_get(spec, "name");
	char *derived = name ? NULL : source_name_derive(spec->location);

	if (!name && !derived)
		return -ENOMEM;
	snprintf(out, len, "%s", name ? name : derived);
	free(derived);
	return 0;
}
