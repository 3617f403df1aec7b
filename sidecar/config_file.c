/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config_file.c - read the INI config file with inih: global options in
 * [dagfs] (or before any section), one [source NAME] section per source.
 *
 * inih splits lines into names and values and strips comments; this file
 * feeds it through its own line reader so that every error, including a
 * syntax error inih would only count, is reported as "path:line: reason",
 * and so that parsing goes on after the first error (check-config lists
 * them all). It only fills struct dagfs_config; it validates values
 * through the option table and leaves source keys to the sources.
 */
#include <errno.h>
#include <ini.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sidecar_i.h"

#define LINE_MAX_BYTES 16384

enum sec_kind {
	SEC_GLOBAL,
	SEC_SOURCE,
	SEC_SKIP, /* a bad section header: its keys are not reported */
};

/* A [source NAME] section while its keys are being read. */
struct section {
	char *name;
	int line;
	char *type, *location;
	struct source_spec keys; /* type and location unused */
};

struct ini_state {
	struct dagfs_config *c;
	struct cfg_errors *errs;
	const char *path;
	FILE *f;
	int line; /* of the line inih is handling */
	bool at_bol;
	enum sec_kind kind;
	struct section *sec; /* the current [source] section, or NULL */
	int *seen;	     /* line where each global option was set */
	char **names;	     /* source sections already read */
	int *name_lines;
	size_t nnames;
};

/*
 * inih's line buffer is fixed at 200 bytes on the stack unless told
 * otherwise; a long git URL must fit. These are library-wide settings
 * with one right value for this program, set once.
 */
static void ini_settings(void)
{
	ini_use_stack = false;
	ini_allow_realloc = false;
	ini_initial_alloc = LINE_MAX_BYTES;
	ini_max_line = LINE_MAX_BYTES;
	ini_allow_multiline = false;
	ini_stop_on_first_error = false;
}

static char *trim(char *s)
{
	char *e;

	s += strspn(s, " \t\r\n");
	e = s + strlen(s);
	while (e > s && strchr(" \t\r\n", e[-1]))
		*--e = '\0';
	return s;
}

static bool name_ok(const char *n)
{
	if (!*n || *n == '.' || *n == '-')
		return false;
	for (; *n; n++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789._-",
			    *n))
			return false;
	return true;
}

static void section_free(struct section *s)
{
	if (!s)
		return;
	free(s->name);
	free(s->type);
	free(s->location);
	source_spec_clear(&s->keys);
	free(s);
}

/* The section ended: turn it into a configured source. */
static void section_finish(struct ini_state *st)
{
	struct section *s = st->sec;
	struct cfg_source *src;
	char where[4200];

	st->sec = NULL;
	if (!s)
		return;
	snprintf(where, sizeof(where), "%s:%d", st->path, s->line);
	if (!s->type || !s->location) {
		cfg_error(st->errs, "%s: [source %s] has no %s", where, s->name,
			  s->type ? "location" : "type");
	} else if (cfg_source_add(st->c, s->type, s->location, where, &src) ||
		   source_spec_set(&src->spec, "name", s->name)) {
		cfg_error(st->errs, "%s: %s", where, strerror(ENOMEM));
	} else {
		for (size_t i = 0; i < s->keys.nkeys; i++)
			if (source_spec_set(&src->spec, s->keys.keys[i],
					    s->keys.values[i]))
				cfg_error(st->errs, "%s: %s", where,
					  strerror(ENOMEM));
	}
	section_free(s);
}

static void section_begin(struct ini_state *st, const char *name)
{
	char **names;
	int *lines;

	for (size_t i = 0; i < st->nnames; i++) {
		if (!strcmp(st->names[i], name)) {
			cfg_error(st->errs,
				  "%s:%d: [source %s] given twice (first on "
				  "line %d)",
				  st->path, st->line, name, st->name_lines[i]);
			st->kind = SEC_SKIP;
			return;
		}
	}
	names = realloc(st->names, (st->nnames + 1) * sizeof(*names));
	if (names)
		st->names = names;
	lines = realloc(st->name_lines, (st->nnames + 1) * sizeof(*lines));
	if (lines)
		st->name_lines = lines;
	st->sec = calloc(1, sizeof(*st->sec));
	if (!names || !lines || !st->sec ||
	    !(names[st->nnames] = strdup(name))) {
		cfg_error(st->errs, "%s:%d: %s", st->path, st->line,
			  strerror(ENOMEM));
		st->kind = SEC_SKIP;
		return;
	}
	lines[st->nnames++] = st->line;
	st->sec->name = strdup(name);
	st->sec->line = st->line;
	st->kind = st->sec->name ? SEC_SOURCE : SEC_SKIP;
}

/* A "[...]" line; @s is trimmed and starts with '['. */
static void section_line(struct ini_state *st, char *s)
{
	char *end = strchr(s, ']'), *rest, *name;

	section_finish(st);
	st->kind = SEC_SKIP;
	if (!end) {
		cfg_error(st->errs, "%s:%d: section header without ']'",
			  st->path, st->line);
		return;
	}
	*end = '\0';
	rest = trim(end + 1);
	if (*rest && *rest != ';' && *rest != '#') {
		cfg_error(st->errs, "%s:%d: text after the section header",
			  st->path, st->line);
		return;
	}
	s = trim(s + 1);
	if (!strcmp(s, "dagfs")) {
		st->kind = SEC_GLOBAL;
		return;
	}
	if (strncmp(s, "source", 6) || !strchr(" \t", s[6])) {
		cfg_error(st->errs,
			  "%s:%d: unknown section [%s] (expected [dagfs] or "
			  "[source NAME])",
			  st->path, st->line, s);
		return;
	}
	name = trim(s + 6);
	if (!name_ok(name)) {
		cfg_error(st->errs,
			  "%s:%d: bad source name '%s' (letters, digits, "
			  "'.', '_' and '-')",
			  st->path, st->line, name);
		return;
	}
	section_begin(st, name);
}

/*
 * inih's line reader: counts lines, so the handler knows where it is,
 * and checks each line's shape. A line inih would reject is reported
 * here and handed to inih as a blank line, so parsing continues.
 */
static char *reader(char *buf, int num, void *stream)
{
	struct ini_state *st = stream;
	size_t len;
	char *s;
	int ch;

	if (!fgets(buf, num, st->f))
		return NULL;
	st->line++;
	len = strlen(buf);
	if (len && buf[len - 1] != '\n' && !feof(st->f)) {
		while ((ch = fgetc(st->f)) != EOF && ch != '\n')
			;
		cfg_error(st->errs, "%s:%d: line longer than %d bytes",
			  st->path, st->line, LINE_MAX_BYTES - 3);
		buf[0] = '\0';
		return buf;
	}
	if (st->line == 1 && !strncmp(buf, "\xef\xbb\xbf", 3))
		memmove(buf, buf + 3, len - 2); /* a UTF-8 byte order mark */
	s = trim(buf);
	if (!*s || *s == ';' || *s == '#')
		return buf;
	if (*s == '[') {
		section_line(st, s);
		buf[0] = '\0';
	} else if (!strpbrk(s, "=:")) {
		cfg_error(st->errs,
			  "%s:%d: expected 'name = value' or a "
			  "[section]",
			  st->path, st->line);
		buf[0] = '\0';
	}
	return buf;
}

static void global_key(struct ini_state *st, const char *name,
		       const char *value)
{
	const struct cfg_option *o = cfg_option_find(name);
	char where[4200], err[512];
	size_t idx, n;

	if (!o) {
		cfg_error(st->errs, "%s:%d: unknown option '%s'", st->path,
			  st->line, name);
		return;
	}
	idx = (size_t)(o - cfg_options(&n));
	if (!strcmp(name, "config")) {
		cfg_error(st->errs,
			  "%s:%d: config cannot be set in a config "
			  "file",
			  st->path, st->line);
	} else if (o->type != CFG_SOURCE && st->seen[idx]) {
		cfg_error(st->errs, "%s:%d: %s set twice (first on line %d)",
			  st->path, st->line, name, st->seen[idx]);
	} else {
		snprintf(where, sizeof(where), "%s:%d", st->path, st->line);
		st->seen[idx] = st->line;
		if (cfg_set(st->c, o, value, CFG_FILE, where, err, sizeof(err)))
			cfg_error(st->errs, "%s: %s: %s", where, name, err);
	}
}

static void source_key(struct ini_state *st, const char *name,
		       const char *value)
{
	struct section *s = st->sec;
	char **field = !strcmp(name, "type")	 ? &s->type :
		       !strcmp(name, "location") ? &s->location :
						   NULL;
	int rc;

	if (!strcmp(name, "name")) {
		cfg_error(st->errs,
			  "%s:%d: name is given by the header "
			  "[source %s]",
			  st->path, st->line, s->name);
		return;
	}
	if (field && *field) {
		rc = -EEXIST;
	} else if (field) {
		*field = strdup(value);
		rc = *field ? 0 : -ENOMEM;
	} else {
		rc = source_spec_set(&s->keys, name, value);
	}
	if (rc == -EEXIST)
		cfg_error(st->errs, "%s:%d: %s set twice in [source %s]",
			  st->path, st->line, name, s->name);
	else if (rc)
		cfg_error(st->errs, "%s:%d: %s", st->path, st->line,
			  strerror(-rc));
}

static int handler(void *user, const char *section, const char *name,
		   const char *value)
{
	struct ini_state *st = user;

	(void)section; /* st->kind follows the headers, checked by reader() */
	if (!*name)
		cfg_error(st->errs, "%s:%d: a value without a name", st->path,
			  st->line);
	else if (st->kind == SEC_GLOBAL)
		global_key(st, name, value);
	else if (st->kind == SEC_SOURCE)
		source_key(st, name, value);
	return 1;
}

int config_file_read(struct dagfs_config *c, FILE *f, const char *path,
		     struct cfg_errors *errs)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct ini_state st = { .c = c, .errs = errs, .path = path, .f = f };
	size_t nopt, before = errs->n;
	int rc;

	pthread_once(&once, ini_settings);
	cfg_options(&nopt);
	st.seen = calloc(nopt, sizeof(*st.seen));
	if (!st.seen) {
		cfg_error(errs, "config %s: %s", path, strerror(ENOMEM));
		return -ENOMEM;
	}
	rc = ini_parse_stream(reader, &st, handler, &st);
	if (ferror(f))
		cfg_error(errs, "config %s: %s", path, strerror(errno));
	else if (rc < 0)
		cfg_error(errs, "config %s: %s", path, strerror(ENOMEM));
	section_finish(&st);
	for (size_t i = 0; i < st.nnames; i++)
		free(st.names[i]);
	free(st.names);
	free(st.name_lines);
	free(st.seen);
	return errs->n > before ? -EINVAL : 0;
}

int config_file_load(struct dagfs_config *c, const char *path,
		     struct cfg_errors *errs)
{
	FILE *f = fopen(path, "r");
	int rc;

	if (!f) {
		rc = errno;
		cfg_error(errs, "config %s: %s", path, strerror(rc));
		return -rc;
	}
	rc = config_file_read(c, f, path, errs);
	fclose(f);
	return rc;
}
