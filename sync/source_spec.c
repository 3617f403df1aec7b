/* SPDX-License-Identifier: Apache-2.0 */
/*
 * source_spec.c - the TYPE:LOCATION[,key=value]... specification of a
 * source: parsing, copying, freeing, the name and sub-path a source gets
 * from it, and the rule that sources neither share a name nor overlap.
 * The daemon, the config file reader and the provisioner all use these,
 * so a rendered configuration names sources as the daemon does.
 *
 * Pure text handling: no I/O, no threads, no knowledge of source types.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source_i.h"

void source_spec_clear(struct source_spec *spec)
{
	for (size_t i = 0; i < spec->nkeys; i++) {
		free(spec->keys[i]);
		free(spec->values[i]);
	}
	free(spec->keys);
	free(spec->values);
	free(spec->type);
	free(spec->location);
	memset(spec, 0, sizeof(*spec));
}

void source_spec_free(struct source_spec *spec)
{
	if (!spec)
		return;
	source_spec_clear(spec);
	free(spec);
}

const char *source_spec_get(const struct source_spec *spec, const char *key)
{
	for (size_t i = 0; i < spec->nkeys; i++)
		if (!strcmp(spec->keys[i], key))
			return spec->values[i];
	return NULL;
}

int source_spec_set(struct source_spec *spec, const char *key,
		    const char *value)
{
	char **keys, **values, *k, *v;

	if (source_spec_get(spec, key))
		return -EEXIST;
	keys = realloc(spec->keys, (spec->nkeys + 1) * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	spec->keys = keys;
	values = realloc(spec->values, (spec->nkeys + 1) * sizeof(*values));
	if (!values)
		return -ENOMEM;
	spec->values = values;
	k = strdup(key);
	v = strdup(value);
	if (!k || !v) {
		free(k);
		free(v);
		return -ENOMEM;
	}
	keys[spec->nkeys] = k;
	values[spec->nkeys++] = v;
	return 0;
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
	char *eq = strchr(field, '=');
	int rc;

	if (!eq || eq == field) {
		snprintf(err, errlen, "expected key=value, got '%s'", field);
		return -EINVAL;
	}
	*eq = '\0';
	for (const char *c = field; *c; c++) {
		if (!islower((unsigned char)*c) &&
		    !isdigit((unsigned char)*c) && *c != '-') {
			snprintf(err, errlen, "bad key '%s'", field);
			return -EINVAL;
		}
	}
	rc = source_spec_set(sp, field, eq + 1);
	if (rc == -EEXIST) {
		snprintf(err, errlen, "key '%s' given twice", field);
		return -EINVAL;
	}
	return rc;
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
		snprintf(err, errlen,
			 "malformed source '%.200s': expected "
			 "TYPE:LOCATION[,key=value]...",
			 text);
		goto err;
	}
	sp->type = strndup(text, (size_t)(colon - text));
	for (const char *c = sp->type; c && *c; c++) {
		if (!islower((unsigned char)*c) &&
		    !isdigit((unsigned char)*c)) {
			snprintf(err, errlen,
				 "malformed source '%.200s': bad "
				 "type",
				 text);
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
		snprintf(err, errlen,
			 "malformed source '%.200s': empty "
			 "location",
			 text);
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

/* The default name of a source at @location: its last meaningful part. */
static void name_derive(char out[SOURCE_NAME_MAX + 1], const char *location)
{
	size_t len = strlen(location), n = 0;
	const char *base, *end, *dot;

	while (len > 1 && location[len - 1] == '/')
		len--;
	end = location + len;
	for (base = end; base > location && base[-1] != '/'; base--)
		;
	for (const char *c = base; c < end; c++)
		if (*c == ':')
			base = c + 1;
	dot = end - base >= 4 ? strstr(base, ".git") : NULL;
	if (dot && dot + 4 == end) /* the first ".git" ends the name */
		end = dot;
	for (const char *c = base; c < end && n < SOURCE_NAME_MAX; c++)
		out[n++] = isalnum((unsigned char)*c) || *c == '-' ||
					   *c == '_' || *c == '.' ?
				   *c :
				   '-';
	out[n] = '\0';
	if (!n || !strcmp(out, ".") || !strcmp(out, ".."))
		strcpy(out, "root");
}

bool source_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (!n || n > SOURCE_NAME_MAX || !strcmp(name, ".") ||
	    !strcmp(name, ".."))
		return false;
	for (; *name; name++)
		if (!isalnum((unsigned char)*name) && !strchr("-_.", *name))
			return false;
	return true;
}

int source_spec_name(char out[SOURCE_NAME_MAX + 1],
		     const struct source_spec *spec)
{
	const char *name = source_spec_get(spec, "name");

	if (!name) {
		name_derive(out, spec->location);
		return 0;
	}
	snprintf(out, SOURCE_NAME_MAX + 1, "%s", name);
	return source_name_ok(name) ? 0 : -EINVAL;
}

int source_spec_at(char **out, const struct source_spec *spec)
{
	const char *at = source_spec_get(spec, "at");
	char *s;
	size_t n;

	for (at = at ? at : ""; *at == '/'; at++)
		;
	s = strdup(at);
	if (!s)
		return -ENOMEM;
	n = strlen(s);
	while (n && s[n - 1] == '/')
		s[--n] = '\0';
	if (n && snap_path_check(s, n)) {
		free(s);
		return -EINVAL;
	}
	*out = s;
	return 0;
}

/* Sub-paths @a and @b ("" is the root) overlap: one contains the other. */
static bool at_overlap(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), l = la < lb ? la : lb;
	const char *longer = la < lb ? b : a;

	return l == 0 ||
	       (!strncmp(a, b, l) && (longer[l] == '/' || !longer[l]));
}

int source_layout_conflict(size_t *first, size_t *second,
			   const char *const *names, const char *const *ats,
			   size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = i + 1; j < n; j++) {
			*first = i;
			*second = j;
			if (!strcmp(names[i], names[j]))
				return SOURCE_SAME_NAME;
			if (at_overlap(ats[i], ats[j]))
				return SOURCE_OVERLAP;
		}
	}
	return 0;
}
