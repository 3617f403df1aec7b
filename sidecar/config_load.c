/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config_load.c - one configuration from the places an option can be
 * set, in increasing precedence: defaults, the config file (--config or
 * DAGFS_CONFIG), DAGFS_* environment variables, command-line flags;
 * sources from all three are combined. Then the checks that span
 * options (a daemon needs a source, serve= needs http=) and the global
 * defaults every source inherits. What a value may be is the option
 * table's (config.c); nothing here starts threads or touches the cache.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sidecar_i.h"

#define OFF(f) offsetof(struct dagfs_config, f)

/*
 * Global period, max-failures and keep are defaults for every source
 * that does not set its own; they are passed down as spec keys so the
 * sources see one way of being configured.
 */
static int inject_defaults(struct dagfs_config *c)
{
	char buf[32];
	int rc = 0;

	for (size_t i = 0; i < c->nsources; i++) {
		struct source_spec *s = &c->sources[i].spec;

		snprintf(buf, sizeof(buf), "%u", c->keep);
		if (!source_spec_get(s, "keep"))
			rc = rc ? rc : source_spec_set(s, "keep", buf);
		snprintf(buf, sizeof(buf), "%dms", c->period_ms);
		if (c->period_ms && !source_spec_get(s, "period"))
			rc = rc ? rc : source_spec_set(s, "period", buf);
		snprintf(buf, sizeof(buf), "%u", c->max_failures);
		if (c->max_failures && !source_spec_get(s, "max-failures"))
			rc = rc ? rc : source_spec_set(s, "max-failures", buf);
	}
	return rc;
}

/* ----------------------------------------------------- environment */

static const char *env_get(char **envp, const char *name)
{
	size_t len = strlen(name);

	for (; envp && *envp; envp++)
		if (!strncmp(*envp, name, len) && (*envp)[len] == '=')
			return *envp + len + 1;
	return NULL;
}

/* DAGFS_SOURCE holds one spec per line; blank lines are skipped. */
static void env_sources(struct dagfs_config *c, const struct cfg_option *o,
			const char *value, struct cfg_errors *errs)
{
	char *copy = strdup(value), *save = NULL, err[512];

	if (!copy) {
		cfg_error(errs, "DAGFS_SOURCE: %s", strerror(ENOMEM));
		return;
	}
	for (char *l = strtok_r(copy, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		l += strspn(l, " \t\r");
		for (char *e = l + strlen(l); e > l && strchr(" \t\r", e[-1]);)
			*--e = '\0';
		if (*l &&
		    cfg_set(c, o, l, CFG_ENV, "DAGFS_SOURCE", err, sizeof(err)))
			cfg_error(errs, "DAGFS_SOURCE: %s", err);
	}
	free(copy);
}

/*
 * Unknown DAGFS_* variables are ignored, not refused: Kubernetes adds
 * DAGFS_SERVICE_HOST, DAGFS_PORT... to every pod when a Service is named
 * dagfs, and that must not stop the daemon.
 */
static void env_apply(struct dagfs_config *c, char **envp,
		      struct cfg_errors *errs)
{
	char name[64], err[512];

	size_t n;
	const struct cfg_option *options = cfg_options(&n);

	for (size_t i = 0; i < n; i++) {
		const struct cfg_option *o = &options[i];
		const char *v;

		cfg_env_name(name, sizeof(name), o);
		v = env_get(envp, name);
		if (!v || !*v || o->offset == OFF(config))
			continue;
		if (o->type == CFG_SOURCE)
			env_sources(c, o, v, errs);
		else if (cfg_set(c, o, v, CFG_ENV, name, err, sizeof(err)))
			cfg_error(errs, "%s: %s", name, err);
	}
}

/* ------------------------------------------------------------ flags */

struct flag {
	const struct cfg_option *o;
	const char *value;
};

static const char *cmd_name(unsigned cmd)
{
	return cmd == CMD_MOUNT	  ? "mount" :
	       cmd == CMD_CHECK	  ? "check-config" :
	       cmd == CMD_SYNC	  ? "sync" :
	       cmd == CMD_FSCK	  ? "fsck" :
	       cmd == CMD_BUNDLES ? "airflow-bundles" :
				    "status";
}

/* One argument starting with "--"; may consume the next. */
static void parse_flag(struct flag *f, unsigned cmd, int argc, char **argv,
		       int *i, struct cfg_errors *errs)
{
	const char *name = argv[*i] + 2, *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name);

	f->o = cfg_option_find_n(name, len);
	if (!f->o) {
		cfg_error(errs, "unknown option --%.*s (see dagfs %s --help)",
			  (int)len, name, cmd_name(cmd));
		return;
	}
	if (!(f->o->cmds & cmd)) {
		cfg_error(errs, "option --%s does not apply to dagfs %s",
			  f->o->name, cmd_name(cmd));
		f->o = NULL;
		return;
	}
	if (eq) {
		f->value = eq + 1;
	} else if (f->o->type == CFG_BOOL) {
		f->value = "true";
	} else if (*i + 1 < argc) {
		f->value = argv[++*i];
	} else {
		cfg_error(errs, "option --%s needs a value", f->o->name);
		f->o = NULL;
	}
}

/* Split @argv into flags (@flags, argc slots) and positionals. */
static void parse_args(struct dagfs_config *c, unsigned cmd, int argc,
		       char **argv, struct flag *flags, struct cfg_errors *errs)
{
	bool only_pos = false;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (only_pos || a[0] != '-' || !a[1]) {
			c->pos[c->npos++] = argv[i];
		} else if (!strcmp(a, "--")) {
			only_pos = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			c->help = true;
		} else if (!strcmp(a, "--version")) {
			c->version = true;
		} else if (a[1] != '-') {
			cfg_error(errs,
				  "unknown option %s (see dagfs %s --help)", a,
				  cmd_name(cmd));
		} else {
			parse_flag(&flags[i], cmd, argc, argv, &i, errs);
		}
	}
}

static void flags_apply(struct dagfs_config *c, const struct flag *flags,
			int argc, struct cfg_errors *errs)
{
	char err[512];

	for (int i = 0; i < argc; i++) {
		const struct cfg_option *o = flags[i].o;

		if (o && o->offset != OFF(config) &&
		    cfg_set(c, o, flags[i].value, CFG_FLAG, "--source", err,
			    sizeof(err)))
			cfg_error(errs, "--%s: %s", o->name, err);
	}
}

/* The config file: the last --config, else DAGFS_CONFIG. */
static void load_file(struct dagfs_config *c, const struct flag *flags,
		      int argc, char **envp, struct cfg_errors *errs)
{
	const char *path = env_get(envp, "DAGFS_CONFIG");
	enum cfg_origin origin = CFG_ENV;
	char err[256];

	for (int i = 0; i < argc; i++) {
		if (flags[i].o && flags[i].o->offset == OFF(config)) {
			path = flags[i].value;
			origin = CFG_FLAG;
		}
	}
	if (!path || !*path)
		return;
	if (cfg_set(c, cfg_option_find("config"), path, origin, NULL, err,
		    sizeof(err))) {
		cfg_error(errs, "config: %s", err);
		return;
	}
	if (config_file_load(c, path, errs))
		return; /* the errors are in @errs */
}

int config_load(struct dagfs_config *c, unsigned cmd, int argc, char **argv,
		char **envp, struct cfg_errors *errs)
{
	struct flag *flags;
	size_t before = errs->n;

	if (config_init(c) ||
	    !(c->pos = calloc((size_t)argc + 1, sizeof(*c->pos))) ||
	    !(flags = calloc((size_t)argc + 1, sizeof(*flags)))) {
		cfg_error(errs, "%s", strerror(ENOMEM));
		return -ENOMEM;
	}
	c->argc = argc;
	c->argv = argv;
	parse_args(c, cmd, argc, argv, flags, errs);
	if (!c->help && !c->version) {
		load_file(c, flags, argc, envp, errs);
		env_apply(c, envp, errs);
		flags_apply(c, flags, argc, errs);
		if ((cmd & CFG_CMDS_DAEMON) && !c->nsources &&
		    errs->n == before)
			cfg_error(errs, "no sources: give --source SPEC, "
					"DAGFS_SOURCE or a [source NAME] "
					"section");
		if ((cmd & CFG_CMDS_DAEMON) && c->serve &&
		    (!c->http || !*c->http))
			cfg_error(errs, "serve=true needs http=ADDR:PORT (the "
					"store is served on that listener)");
		if (inject_defaults(c))
			cfg_error(errs, "%s", strerror(ENOMEM));
	}
	free(flags);
	return errs->n > before ? -EINVAL : 0;
}
