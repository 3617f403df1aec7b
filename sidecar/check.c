/* SPDX-License-Identifier: Apache-2.0 */
/*
 * check.c - `dagfs check-config`: load the configuration as `dagfs mount`
 * would, build every source against a scratch cache (so type-specific
 * keys, paths and key files are checked by the sources themselves, and
 * the real cache is not touched), and list every error with its file and
 * line, or print what the daemon would run with.
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sidecar_i.h"

struct checked {
	char *name, *at; /* NULL when the source failed */
};

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void check_layout(const struct dagfs_config *c, const struct checked *ok,
			 struct cfg_errors *errs)
{
	const char **names = calloc(c->nsources, sizeof(*names));
	const char **ats = calloc(c->nsources, sizeof(*ats));
	char err[1024];
	size_t n = 0;

	for (size_t i = 0; names && ats && i < c->nsources; i++) {
		if (ok[i].name) {
			names[n] = ok[i].name;
			ats[n++] = ok[i].at;
		}
	}
	if (names && ats && cfg_check_layout(names, ats, n, err, sizeof(err)))
		cfg_error(errs, "%s", err);
	free(names);
	free(ats);
}

/* source_new() every source against a throw-away cache. */
static void dry_run(const struct dagfs_config *c, struct checked *ok,
		    struct cfg_errors *errs)
{
	const char *tmp = getenv("TMPDIR");
	char dir[PATH_MAX], err[1024];
	struct store *st;
	int rc;

	snprintf(dir, sizeof(dir), "%s/dagfs-check-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		cfg_error(errs, "scratch cache %s: %s", dir, strerror(errno));
		return;
	}
	rc = store_open(&st, dir, false);
	if (rc) {
		cfg_error(errs, "scratch cache %s: %s", dir, strerror(-rc));
	} else {
		for (size_t i = 0; i < c->nsources; i++) {
			const struct cfg_source *cs = &c->sources[i];
			struct source *src;

			if (source_new(&src, &cs->spec, st, err, sizeof(err))) {
				cfg_error(errs, "%s: %s", cs->origin, err);
				continue;
			}
			ok[i].name = strdup(source_name(src));
			ok[i].at = strdup(source_at(src));
			source_free(src);
		}
		store_close(st);
	}
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *origin_name(unsigned char o)
{
	static const char *const names[] = { "default", "file", "env", "flag" };

	return o < 4 ? names[o] : "?";
}

static void print_summary(const struct dagfs_config *c,
			  const struct checked *ok)
{
	const struct cfg_option *opts;
	char value[512], loc[4096];
	size_t n;

	printf("configuration OK%s%s%s\n", c->config ? " (" : "",
	       c->config ? c->config : "", c->config ? ")" : "");
	opts = cfg_options(&n);
	for (size_t i = 0; i < n; i++) {
		if (!(opts[i].cmds & CMD_MOUNT) || opts[i].type == CFG_SOURCE)
			continue;
		cfg_format(c, &opts[i], value, sizeof(value));
		printf("  %-20s = %-30s (%s)\n", opts[i].name, value,
		       origin_name(c->origin[i]));
	}
	printf("%zu source%s:\n", c->nsources, c->nsources == 1 ? "" : "s");
	for (size_t i = 0; i < c->nsources; i++) {
		const struct source_spec *sp = &c->sources[i].spec;

		cfg_redact(loc, sizeof(loc), sp->location);
		printf("  %s at /%s: %s:%s (%s)\n", ok[i].name, ok[i].at,
		       sp->type, loc, c->sources[i].origin);
		for (size_t k = 0; k < sp->nkeys; k++)
			printf("      %s = %s\n", sp->keys[k], sp->values[k]);
	}
}

int cmd_check_config(const struct dagfs_config *c, struct cfg_errors *errs)
{
	struct checked *ok = calloc(c->nsources + 1, sizeof(*ok));
	int status = 0;

	if (!ok) {
		fprintf(stderr, "dagfs: %s\n", strerror(ENOMEM));
		return 1;
	}
	dry_run(c, ok, errs);
	check_layout(c, ok, errs);
	if (errs->n) {
		for (size_t i = 0; i < errs->n; i++)
			fprintf(stderr, "%s\n", errs->msg[i]);
		fprintf(stderr, "dagfs: check-config: %zu error%s\n", errs->n,
			errs->n == 1 ? "" : "s");
		status = 1;
	} else {
		print_summary(c, ok);
	}
	for (size_t i = 0; i < c->nsources; i++) {
		free(ok[i].name);
		free(ok[i].at);
	}
	free(ok);
	return status;
}
