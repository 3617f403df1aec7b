/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config.c - the option table and the values it holds: defaults, one
 * parser per value type, the sources list, and the text of a value for
 * summaries. Where values come from and in which order is config_load.c;
 * --help and the man page are config_help.c; the config file is read by
 * config_file.c. Nothing here starts threads or touches the cache.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sidecar_i.h"

#define OFF(f) offsetof(struct dagfs_config, f)
#define DAEMON CFG_CMDS_DAEMON
#define ALL                                                                    \
	(CMD_MOUNT | CMD_CHECK | CMD_STATUS | CMD_SYNC | CMD_FSCK |            \
	 CMD_BUNDLES | CMD_EXPORT)

/*
 * One row per option: name, type, field, default, commands, placeholder,
 * help (and a range for numbers). Nothing else lists the options.
 */
#define OPT(n, t, f, d, c, a, h)                                               \
	{                                                                      \
		.name = n, .type = t, .offset = OFF(f), .def = d, .cmds = c,   \
		.arg = a, .help = h                                            \
	}
#define OPT_N(n, f, d, lo, hi, h)                                              \
	{                                                                      \
		.name = n, .type = CFG_UINT, .offset = OFF(f), .def = d,       \
		.cmds = DAEMON, .arg = "N", .help = h, .min = lo, .max = hi    \
	}

static const struct cfg_option options[] = {
	OPT("config", CFG_STR, config, NULL, ALL, "FILE",
	    "read options and [source NAME] sections from FILE"),
	OPT("cache", CFG_STR, cache, "/var/cache/dagfs", ALL, "DIR",
	    "content store, snapshots and status.json"),
	OPT("source", CFG_SOURCE, sources, NULL, DAEMON, "SPEC",
	    "add a source TYPE:LOCATION[,key=value]...; repeatable"),
	OPT("uid", CFG_ID, uid, NULL, DAEMON, "N",
	    "owner of every entry in the mount, by default the daemon's"),
	OPT("gid", CFG_ID, gid, NULL, DAEMON, "N",
	    "group of every entry in the mount, by default the daemon's"),
	OPT("umask", CFG_UMASK, umask, "022", DAEMON, "OCTAL",
	    "permission bits removed from every mode"),
	OPT("allow-other", CFG_BOOL, allow_other, "false", DAEMON, NULL,
	    "let other users read the mount (FUSE allow_other)"),
	OPT_N("keep", keep, "5", 1, 100000, "snapshots retained per source"),
	OPT("period", CFG_DURATION, period_ms, NULL, DAEMON, "DURATION",
	    "poll period of sources without their own period="),
	OPT_N("max-failures", max_failures, NULL, 1, 1000000,
	      "failures in a row that make a source unhealthy, for "
	      "sources without their own max-failures="),
	OPT("log-level", CFG_LEVEL, log_level, "info", ALL, "LEVEL",
	    "error, warn, notice, info or debug"),
	OPT("log-format", CFG_FORMAT, log_json, "text", ALL, "FORMAT",
	    "text, or json for one object per line"),
	OPT("http", CFG_ADDR, http, "", DAEMON, "ADDR:PORT",
	    "address of /healthz, /readyz, /metrics, POST /sync (empty: off)"),
	OPT("webhook-secret-file", CFG_STR, webhook_secret_file, NULL, DAEMON,
	    "FILE", "secret that signs POST /sync (X-Hub-Signature-256)"),
	OPT("serve", CFG_BOOL, serve, "false", DAEMON, NULL,
	    "also serve the store read-only under /store/ on http= (for "
	    "dagfs: mirror sources)"),
	OPT("serve-token-file", CFG_STR, serve_token_file, NULL, DAEMON, "FILE",
	    "bearer token that /store/ requests must carry"),
	OPT("serve-key-file", CFG_STR, serve_key_file, NULL,
	    DAEMON | CMD_EXPORT, "FILE",
	    "PEM Ed25519 private key that signs the served statements"),
	OPT("show-meta", CFG_BOOL, show_meta, "false", DAEMON, NULL,
	    "list the .dagfs directory in the root of the mount"),
	OPT("status-interval", CFG_DURATION, status_interval_ms, "5s", DAEMON,
	    "DURATION", "how often <cache>/status.json is rewritten"),
	OPT_N("threads", threads, "10", 1, 1000,
	      "most idle FUSE worker threads"),
	OPT_N("fuse-spin", fuse_spin_us, "0", 0, 10000,
	      "µs one FUSE worker polls for the next request without "
	      "sleeping, while requests arrive that closely (0: off)"),
	OPT_N("fuse-awake", fuse_awake_us, "5000", 0, 100000,
	      "µs after the last FUSE request the CPUs are kept from "
	      "halting (zero /dev/cpu_dma_latency), while requests arrive "
	      "that closely (0: off)"),
	OPT("fuse-prefetch", CFG_BOOL, fuse_prefetch, "true", DAEMON, NULL,
	    "when the kernel first lists a directory, read its files' "
	    "bytes ahead from the cache (one thread, page cache only)"),
	OPT("fuse-debug", CFG_BOOL, fuse_debug, "false", DAEMON, NULL,
	    "log every FUSE request (very verbose)"),
	OPT("materialize", CFG_STR, materialize, NULL, DAEMON, "DIR",
	    "no FUSE: publish each revision as DIR/current -> .revs/<id>, "
	    "hard links into the cache"),
	OPT("grace", CFG_DURATION, grace_ms, "60s", DAEMON, "DURATION",
	    "materialise mode: how long a replaced revision stays on disk"),
	OPT("once", CFG_BOOL, once, "false", CMD_SYNC, NULL,
	    "sync: materialise once and exit"),
	OPT("revision", CFG_LIST, revision, NULL, CMD_SYNC, "NAME=REV",
	    "sync: serve this retained or fetchable revision of source NAME; "
	    "repeatable"),
	OPT("repair", CFG_BOOL, repair, "false", CMD_FSCK, NULL,
	    "fsck: remove what is broken (the next sync fetches it again)"),
	OPT("json", CFG_BOOL, json, "false", CMD_STATUS | CMD_BUNDLES, NULL,
	    "print JSON instead of a table"),
	OPT_N("keep-trees", keep_trees, "256", 1, 1000000,
	      "tree manifests (whole-view versions, .dagfs/trees/) kept in "
	      "the cache"),
	OPT("fetch-timeout", CFG_DURATION, fetch_timeout_ms, "30s", DAEMON,
	    "DURATION",
	    "how long a lookup of a revision that is not retained "
	    "waits for it to be fetched (then: not found)"),
	OPT("whole-tree", CFG_BOOL, whole_tree, "false", CMD_BUNDLES, NULL,
	    "airflow-bundles: one bundle versioned by the whole tree instead "
	    "of one per source"),
	OPT("mount", CFG_STR, bundle_mount, NULL, CMD_BUNDLES, "PATH",
	    "airflow-bundles: the mount path the bundles read (default "
	    "MOUNTPOINT or --materialize DIR)"),
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static const char *const level_names[] = {
	[LOG_LVL_ERR] = "error",     [LOG_LVL_WARN] = "warn",
	[LOG_LVL_NOTICE] = "notice", [LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

const struct cfg_option *cfg_options(size_t *n)
{
	*n = NOPTIONS;
	return options;
}

const struct cfg_option *cfg_option_find_n(const char *name, size_t len)
{
	for (size_t i = 0; i < NOPTIONS; i++)
		if (strlen(options[i].name) == len &&
		    !strncmp(options[i].name, name, len))
			return &options[i];
	return NULL;
}

const struct cfg_option *cfg_option_find(const char *name)
{
	return cfg_option_find_n(name, strlen(name));
}

/* ------------------------------------------------------------ errors */

void cfg_error(struct cfg_errors *e, const char *fmt, ...)
{
	char **grown = realloc(e->msg, (e->n + 1) * sizeof(*e->msg));
	va_list ap;
	int rc;

	if (!grown)
		return;
	e->msg = grown;
	va_start(ap, fmt);
	rc = vasprintf(&e->msg[e->n], fmt, ap);
	va_end(ap);
	if (rc >= 0)
		e->n++;
}

void cfg_errors_print(const struct cfg_errors *e, FILE *f)
{
	for (size_t i = 0; i < e->n; i++)
		fprintf(f, "dagfs: %s\n", e->msg[i]);
}

void cfg_errors_clear(struct cfg_errors *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->msg[i]);
	free(e->msg);
	e->msg = NULL;
	e->n = 0;
}

/* ----------------------------------------------------- value parsers */

/* A decimal number without sign, spaces or trailing text. */
static int parse_decimal(const char *text, unsigned long long max,
			 unsigned long long *out)
{
	char *end;

	if (*text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(text, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || *out > max)
		return -ERANGE;
	return 0;
}

static int parse_addr(const char *text, char *err, size_t errlen)
{
	const char *colon = strrchr(text, ':');
	unsigned long long port;

	if (!*text)
		return 0;
	if (!colon || colon == text) {
		snprintf(err, errlen, "expected ADDR:PORT, got '%s'", text);
		return -EINVAL;
	}
	if (*text == '[' && colon[-1] != ']') {
		snprintf(err, errlen, "expected [IPV6]:PORT, got '%s'", text);
		return -EINVAL;
	}
	if (parse_decimal(colon + 1, 65535, &port) || port == 0) {
		snprintf(err, errlen, "port must be 1-65535, got '%s'",
			 colon + 1);
		return -EINVAL;
	}
	return 0;
}

static int set_str(char **field, const char *value)
{
	char *dup = strdup(value);

	if (!dup)
		return -ENOMEM;
	free(*field);
	*field = dup;
	return 0;
}

/* Parse @v for a row of @type into @p; reason into @err on failure. */
static int parse_value(const struct cfg_option *o, void *p, const char *v,
		       char *err, size_t errlen)
{
	unsigned long long u;
	int rc;

	switch (o->type) {
	case CFG_STR:
		return set_str(p, v);
	case CFG_LIST: {
		char **field = p, *joined;

		if (asprintf(&joined, "%s%s%s", *field ? *field : "",
			     *field ? "\n" : "", v) < 0)
			return -ENOMEM;
		free(*field);
		*field = joined;
		return 0;
	}
	case CFG_ADDR:
		rc = parse_addr(v, err, errlen);
		return rc ? rc : set_str(p, v);
	case CFG_BOOL:
		if (!parse_bool(v, p))
			return 0;
		snprintf(err, errlen, "expected true or false, got '%s'", v);
		return -EINVAL;
	case CFG_UINT:
		rc = parse_decimal(v, o->max, &u);
		if (!rc && u >= o->min) {
			*(unsigned *)p = (unsigned)u;
			return 0;
		}
		snprintf(err, errlen,
			 "expected a number from %u to %u, got '%s'", o->min,
			 o->max, v);
		return -EINVAL;
	case CFG_ID:
		if (!parse_decimal(v, 4294967294ULL, &u)) {
			*(int64_t *)p = (int64_t)u;
			return 0;
		}
		snprintf(err, errlen, "expected a numeric id, got '%s'", v);
		return -EINVAL;
	case CFG_UMASK:
		if (strspn(v, "01234567") == strlen(v) && *v &&
		    strlen(v) <= 4 && strtoul(v, NULL, 8) <= 0777) {
			*(unsigned *)p = (unsigned)strtoul(v, NULL, 8);
			return 0;
		}
		snprintf(err, errlen,
			 "expected an octal mask from 000 to 777, got '%s'", v);
		return -EINVAL;
	case CFG_LEVEL:
		rc = log_level_parse(v);
		if (rc >= 0) {
			*(int *)p = rc;
			return 0;
		}
		snprintf(err, errlen,
			 "expected error, warn, notice, info or debug, got '%s'",
			 v);
		return -EINVAL;
	case CFG_FORMAT:
		if (!strcmp(v, "text") || !strcmp(v, "json")) {
			*(bool *)p = !strcmp(v, "json");
			return 0;
		}
		snprintf(err, errlen, "expected text or json, got '%s'", v);
		return -EINVAL;
	case CFG_DURATION:
		if (!parse_duration_ms(v, p) && *(int *)p > 0)
			return 0;
		snprintf(err, errlen,
			 "expected a duration such as 500ms, 10s, 2m, got '%s'",
			 v);
		return -EINVAL;
	case CFG_SOURCE:
		break;
	}
	return -EINVAL;
}

int cfg_set(struct dagfs_config *c, const struct cfg_option *o,
	    const char *value, enum cfg_origin origin, const char *where,
	    char *err, size_t errlen)
{
	char why[512] = "";
	int rc;

	if (o->type == CFG_SOURCE) {
		rc = cfg_add_source_text(c, value, where, why, sizeof(why));
	} else {
		rc = parse_value(o, (char *)c + o->offset, value, why,
				 sizeof(why));
	}
	if (rc == -ENOMEM)
		snprintf(why, sizeof(why), "%s", strerror(ENOMEM));
	if (rc) {
		snprintf(err, errlen, "%s", why);
		return rc;
	}
	c->origin[o - options] = (unsigned char)origin;
	return 0;
}

/* ----------------------------------------------------------- sources */

int cfg_source_add(struct dagfs_config *c, const char *type,
		   const char *location, const char *where,
		   struct cfg_source **out)
{
	struct cfg_source *grown, *s;

	grown = realloc(c->sources, (c->nsources + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	c->sources = grown;
	s = &grown[c->nsources];
	memset(s, 0, sizeof(*s));
	s->spec.type = strdup(type);
	s->spec.location = strdup(location);
	s->origin = strdup(where);
	if (!s->spec.type || !s->spec.location || !s->origin) {
		source_spec_clear(&s->spec);
		free(s->origin);
		return -ENOMEM;
	}
	c->nsources++;
	*out = s;
	return 0;
}

int cfg_add_source_text(struct dagfs_config *c, const char *text,
			const char *where, char *err, size_t errlen)
{
	struct source_spec *p;
	struct cfg_source *s;
	int rc;

	rc = source_spec_parse(&p, text, err, errlen);
	if (rc)
		return rc;
	rc = cfg_source_add(c, p->type, p->location, where, &s);
	for (size_t i = 0; !rc && i < p->nkeys; i++) {
		rc = source_spec_set(&s->spec, p->keys[i], p->values[i]);
		if (rc == -EEXIST)
			snprintf(err, errlen, "key %s given twice", p->keys[i]);
	}
	source_spec_free(p);
	return rc;
}

int cfg_check_layout(const char *const *names, const char *const *ats, size_t n,
		     char *err, size_t errlen)
{
	size_t i, j;

	switch (source_layout_conflict(&i, &j, names, ats, n)) {
	case SOURCE_SAME_NAME:
		snprintf(err, errlen,
			 "two sources are named %s; give one of "
			 "them name=",
			 names[i]);
		return -EINVAL;
	case SOURCE_OVERLAP:
		snprintf(err, errlen,
			 "sources %s (at /%s) and %s (at /%s) "
			 "overlap; give each its own at=",
			 names[i], ats[i], names[j], ats[j]);
		return -EINVAL;
	}
	return 0;
}

/* ------------------------------------------------------ life of @c */

int config_init(struct dagfs_config *c)
{
	char err[256];

	memset(c, 0, sizeof(*c));
	c->uid = c->gid = -1;
	c->origin = calloc(NOPTIONS, 1);
	if (!c->origin)
		return -ENOMEM;
	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct cfg_option *o = &options[i];

		if (o->def && parse_value(o, (char *)c + o->offset, o->def, err,
					  sizeof(err)))
			return -ENOMEM; /* defaults are valid: only ENOMEM */
	}
	return 0;
}

void config_free(struct dagfs_config *c)
{
	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct cfg_option *o = &options[i];

		if (o->type == CFG_STR || o->type == CFG_ADDR ||
		    o->type == CFG_LIST)
			free(*(char **)((char *)c + o->offset));
	}
	for (size_t i = 0; i < c->nsources; i++) {
		source_spec_clear(&c->sources[i].spec);
		free(c->sources[i].origin);
	}
	free(c->sources);
	free(c->origin);
	free(c->pos);
	memset(c, 0, sizeof(*c));
}

/* ------------------------------------------- names and text of options */

void cfg_env_name(char *buf, size_t len, const struct cfg_option *o)
{
	size_t n = (size_t)snprintf(buf, len, "DAGFS_%s", o->name);

	for (size_t i = 6; i < n && i < len; i++)
		buf[i] = buf[i] == '-' ? '_' : (char)(buf[i] & ~0x20);
}

void cfg_format(const struct dagfs_config *c, const struct cfg_option *o,
		char *buf, size_t len)
{
	const void *p = (const char *)c + o->offset;

	switch (o->type) {
	case CFG_STR:
	case CFG_LIST:
	case CFG_ADDR:
		snprintf(buf, len, "%s",
			 *(char *const *)p && **(char *const *)p ?
				 *(char *const *)p :
				 "(none)");
		break;
	case CFG_BOOL:
		snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false");
		break;
	case CFG_UINT:
		if (*(const unsigned *)p)
			snprintf(buf, len, "%u", *(const unsigned *)p);
		else
			snprintf(buf, len, "(per source type)");
		break;
	case CFG_ID:
		if (*(const int64_t *)p >= 0)
			snprintf(buf, len, "%lld",
				 (long long)*(const int64_t *)p);
		else
			snprintf(buf, len, "(the daemon's)");
		break;
	case CFG_UMASK:
		snprintf(buf, len, "%03o", *(const unsigned *)p);
		break;
	case CFG_LEVEL:
		snprintf(buf, len, "%s", level_names[*(const int *)p]);
		break;
	case CFG_FORMAT:
		snprintf(buf, len, "%s", *(const bool *)p ? "json" : "text");
		break;
	case CFG_DURATION:
		if (*(const int *)p)
			snprintf(buf, len, "%dms", *(const int *)p);
		else
			snprintf(buf, len, "(per source type)");
		break;
	case CFG_SOURCE:
		snprintf(buf, len, "%zu source(s)", c->nsources);
		break;
	}
}

void cfg_redact(char *buf, size_t len, const char *url)
{
	const char *scheme = strstr(url, "://"), *at, *slash;

	snprintf(buf, len, "%s", url);
	if (!scheme)
		return;
	scheme += 3;
	slash = strchr(scheme, '/');
	at = memchr(scheme, '@',
		    slash ? (size_t)(slash - scheme) : strlen(scheme));
	if (at)
		snprintf(buf, len, "%.*s***%s", (int)(scheme - url), url, at);
}
