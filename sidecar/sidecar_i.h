/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sidecar_i.h - private to sidecar/: the process's configuration, the
 * daemon context, the status file and the commands built on them.
 *
 * sidecar/ is the only place that knows about argv, the environment, the
 * config file, signals and exit codes. It drives fs/ and sync/ through
 * their public headers and adds no file-system or sync logic of its own.
 */
#ifndef DAGFS_SIDECAR_I_H
#define DAGFS_SIDECAR_I_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fs.h"
#include "http_i.h"
#include "json.h"
#include "serve_i.h"
#include "sync.h"

#ifndef DAGFS_VERSION
#define DAGFS_VERSION "unknown"
#endif

/* ------------------------------------------------------------ config */

/** The commands an option applies to (a bit mask in the option table). */
enum cfg_cmd {
	CMD_MOUNT = 1,
	CMD_CHECK = 2,
	CMD_STATUS = 4,
	CMD_SYNC = 8,
	CMD_FSCK = 16,
	CMD_BUNDLES = 32, /* airflow-bundles */
	CMD_EXPORT = 64,
};

/** The commands that run sources (and so need at least one). */
#define CFG_CMDS_DAEMON (CMD_MOUNT | CMD_CHECK | CMD_SYNC | CMD_BUNDLES)

/** Where an option's value came from; later origins win. */
enum cfg_origin {
	CFG_DEFAULT = 0,
	CFG_FILE,
	CFG_ENV,
	CFG_FLAG,
};

/** Value types of the option table; each has one parser in config.c. */
enum cfg_type {
	CFG_STR,      /* any text, copied */
	CFG_BOOL,     /* 1/0, true/false, yes/no, on/off */
	CFG_UINT,     /* decimal, within the row's min..max */
	CFG_ID,	      /* numeric uid or gid; unset means the daemon's own */
	CFG_UMASK,    /* octal, at most 0777 */
	CFG_LEVEL,    /* log level name */
	CFG_FORMAT,   /* log format: text or json */
	CFG_ADDR,     /* ADDR:PORT, or empty for off */
	CFG_DURATION, /* 250ms, 10s, 2m, 1h or bare seconds */
	CFG_SOURCE,   /* a source spec; every occurrence adds one */
	CFG_LIST,     /* text; every occurrence adds a line */
};

/** One row of the option table: it drives file, environment, flags, help. */
struct cfg_option {
	const char *name; /* as in --name, name = in the file */
	enum cfg_type type;
	size_t offset;	 /* into struct dagfs_config */
	const char *def; /* default as text, parsed like any value; or NULL */
	unsigned cmds;	 /* enum cfg_cmd bits: where it is a flag */
	const char *arg; /* placeholder in --help */
	const char *help;
	unsigned min, max; /* CFG_UINT only */
};

/**
 * One configured source. The spec is embedded and owned by the
 * configuration (built with source_spec_set, freed by source_spec_clear,
 * never source_spec_free).
 */
struct cfg_source {
	struct source_spec spec;
	char *origin; /* "FILE:LINE", "--source" or "DAGFS_SOURCE" */
};

/**
 * The whole configuration of one process. Filled by config_load() and
 * then only read (passed as const).
 */
struct dagfs_config {
	char *config; /* the config file, NULL if none */
	char *cache;
	int64_t uid, gid; /* -1: the daemon's own */
	unsigned umask;
	bool allow_other;
	int log_level;
	bool log_json;
	char *http;
	unsigned keep;
	int period_ms;
	unsigned max_failures;
	bool show_meta;
	char *webhook_secret_file;
	bool serve;		/* the served store on http= */
	char *serve_token_file; /* bearer token /store/ requires */
	char *serve_key_file;	/* Ed25519 key that signs statements */
	char *materialize;	/* DIR: materialise mode instead of FUSE */
	int grace_ms;		/* materialise: old revisions kept this long */
	bool once;		/* dagfs sync --once */
	bool repair;		/* dagfs fsck --repair */
	char *revision;		/* NAME=REV lines: pinned revisions */
	int status_interval_ms;
	unsigned threads;
	unsigned fuse_spin_us, fuse_awake_us;
	bool fuse_prefetch;
	bool fuse_debug;
	bool json;	      /* dagfs status --json, airflow-bundles --json */
	unsigned keep_trees;  /* tree manifests kept in the cache */
	int fetch_timeout_ms; /* revisions on demand: most a lookup waits */
	bool whole_tree;      /* airflow-bundles: one bundle for the tree */
	char *bundle_mount;   /* airflow-bundles --mount PATH */
	bool help;
	bool version;

	size_t nsources;
	struct cfg_source *sources;

	/* where each option of the table was last set (enum cfg_origin) */
	unsigned char *origin;

	/* positional arguments (borrowed from argv) */
	int npos;
	char **pos;

	/* the options after the command, to load again on SIGHUP (borrowed) */
	int argc;
	char **argv;
};

/** The option table, @n rows. */
const struct cfg_option *cfg_options(size_t *n);

/** Row of option @name, or NULL. */
const struct cfg_option *cfg_option_find(const char *name);
/** Row of option @name of @len bytes (not NUL-terminated), or NULL. */
const struct cfg_option *cfg_option_find_n(const char *name, size_t len);
/** DAGFS_NAME, option @o's environment variable, into @buf. */
void cfg_env_name(char *buf, size_t len, const struct cfg_option *o);

/** Errors collected while loading: every one, in order, one line each. */
struct cfg_errors {
	size_t n;
	char **msg;
};

/** Add a formatted error line. */
void cfg_error(struct cfg_errors *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void cfg_errors_print(const struct cfg_errors *e, FILE *f);
void cfg_errors_clear(struct cfg_errors *e);

/** Set every option to its default. Free with config_free(). */
int config_init(struct dagfs_config *c) WUR;
void config_free(struct dagfs_config *c);

/**
 * Build the configuration of command @cmd from defaults, the config file
 * (--config or DAGFS_CONFIG), the DAGFS_* environment and @argv (options
 * after the command name), in that order of increasing precedence.
 * Sources from all three are combined. Every problem found is added to
 * @errs; returns -EINVAL if there were any. @c is always initialised and
 * must be freed with config_free(). @envp is the environment to read
 * (environ in the process, a fixed list in tests).
 */
int config_load(struct dagfs_config *c, unsigned cmd, int argc, char **argv,
		char **envp, struct cfg_errors *errs) WUR;

/**
 * Set option @o from text @value, as coming from @origin (@where names
 * the place for sources: "FILE:LINE", "--source"). On a bad value returns
 * -EINVAL and writes the reason (without the option's name) into @err.
 */
int cfg_set(struct dagfs_config *c, const struct cfg_option *o,
	    const char *value, enum cfg_origin origin, const char *where,
	    char *err, size_t errlen) WUR;

/** Add a source parsed from a --source style @text. */
int cfg_add_source_text(struct dagfs_config *c, const char *text,
			const char *where, char *err, size_t errlen) WUR;

/** A source being built from keys (config-file sections). */
int cfg_source_add(struct dagfs_config *c, const char *type,
		   const char *location, const char *where,
		   struct cfg_source **out) WUR;

/**
 * Read config file @path into @c: global options in [dagfs] (or before any
 * section) and [source NAME] sections. Errors carry "path:line: ".
 */
int config_file_load(struct dagfs_config *c, const char *path,
		     struct cfg_errors *errs) WUR;
/** The same from an open stream; @path only names it in errors. */
int config_file_read(struct dagfs_config *c, FILE *f, const char *path,
		     struct cfg_errors *errs) WUR;

/** Print the option help of command @cmd, generated from the table. */
void config_help(FILE *f, unsigned cmd);
/** The options of the commands in @cmd as man(7) .TP paragraphs, from the
 *  same table as config_help(). */
void config_man(FILE *f, unsigned cmd);

/** Text of option @o's current value into @buf (for summaries). */
void cfg_format(const struct dagfs_config *c, const struct cfg_option *o,
		char *buf, size_t len);

/** Copy @url into @buf with any user:password@ replaced by "***@". */
void cfg_redact(char *buf, size_t len, const char *url);

/**
 * Check that sources named @names sit at non-overlapping sub-paths @ats
 * and that no name repeats (source_layout_conflict, the daemon's and the
 * provisioner's rule). Returns -EINVAL with a reason in @err.
 */
int cfg_check_layout(const char *const *names, const char *const *ats, size_t n,
		     char *err, size_t errlen) WUR;

/* ------------------------------------------------------------ daemon */

/**
 * One running source and its place in the mount. Refcounted by the sets
 * that name it: the last sc_set_release() of the last such set stops
 * and frees it (a source a reload replaced or removed).
 */
struct sc_source {
	struct dagfs_ctx *ctx;
	struct source *src;
	const struct cfg_source *cfg;
	int slot;
	int refs; /* atomic */
};

/**
 * The running sources, in configuration order. A set never changes once
 * published; a reload publishes a new one. Refcounted like snapshots:
 * the context holds one reference to the current set, and a thread that
 * reads it holds another (sc_set_acquire/sc_set_release), so a set and
 * its sources outlive every reader and are freed by the last.
 */
struct sc_set {
	int refs; /* atomic */
	size_t n;
	struct sc_source *v[];
};

struct status_writer;
struct progress;

/**
 * The daemon context: the one piece of mutable process state, built by
 * cmd_mount() and reached by pointer from every thread.
 */
struct dagfs_ctx {
	const struct dagfs_config *cfg;
	char *mountpoint; /* absolute */
	struct store *store;
	struct fs *fs;

	pthread_mutex_t lock;	  /* usage; compositions */
	pthread_mutex_t set_lock; /* taking a reference to set */
	struct sc_set *set;	  /* atomic: the current set (one reference) */
	struct dagfs_config **reloads; /* configs loaded by SIGHUP, kept */
	size_t nreloads;

	struct status_writer *status;
	struct gc *gc;		   /* the store's garbage collector */
	struct progress *progress; /* first syncs shown (progress.c) */

	const char *materialize; /* DIR in materialise mode, else NULL */
	struct http *http;	 /* NULL when http= is off */
	struct serve *serve;	 /* NULL unless serve=true */
	bool notified;		 /* systemd told READY=1; atomic */
	int64_t usage_at;	 /* ctx->lock: store usage cache */
	uint64_t usage_blobs, usage_bytes;
};

/**
 * The current set, borrowed: only for the thread that publishes sets
 * (start-up, then the SIGHUP handler), since only it drops the context's
 * reference. Every other thread uses sc_set_acquire().
 */
static inline const struct sc_set *sc_set_get(struct dagfs_ctx *ctx)
{
	return __atomic_load_n(&ctx->set, __ATOMIC_ACQUIRE);
}

/** A new reference to the current set (never NULL once the daemon runs). */
struct sc_set *sc_set_acquire(struct dagfs_ctx *ctx);

/** Drop a reference; the last frees the set and releases its sources,
 *  stopping and freeing those no other set names. NULL is a no-op. */
void sc_set_release(struct sc_set *set);

/**
 * Make @set (malloc'd, refs 0) the current set: it takes a reference to
 * each of its sources, and the set it replaces is released. ctx owns it.
 */
void sc_set_publish(struct dagfs_ctx *ctx, struct sc_set *set);

/** Free @s, which no set names yet, and its source. */
void sc_source_free(struct sc_source *s);

/**
 * Build a source (not started) for each of @c's into @out (c->nsources
 * slots, NULL past a failure) and check that their names and places do
 * not clash. On failure @err says why, naming where it was set; the
 * caller frees what @out holds either way.
 */
int sc_build(struct dagfs_ctx *ctx, const struct dagfs_config *c,
	     struct source **out, char *err, size_t errlen) WUR;

/** A new source @src for @cfg, in no set yet; NULL on ENOMEM (@src kept). */
struct sc_source *sc_source_new(struct dagfs_ctx *ctx, struct source *src,
				const struct cfg_source *cfg);

/** Hand @s's publications to the view or the materialised tree. */
void sc_on_publish(struct source *src, struct snap *snap, void *payload);

/** Tell the view what status.json says of @s's source (type, keep...). */
void sc_describe(struct sc_source *s);

/**
 * Give @s its slot in the view (s->slot), serving its cached snapshot
 * from the start if the cache has one. 0 or -errno from fs_add_slot().
 */
int sc_place(struct sc_source *s) WUR;

/**
 * SIGHUP: load the configuration again (file, environment, the same
 * flags); add, remove and restart sources without unmounting. Nothing
 * changes unless the whole new configuration is valid. (reload.c)
 */
void reload(struct dagfs_ctx *ctx);

/* -------------------------------------------------------- endpoints */

/** Serve http= if set; one line on stderr on failure. */
int endpoints_start(struct dagfs_ctx *ctx) WUR;
void endpoints_stop(struct dagfs_ctx *ctx);
/** After a publication: READY=1 to systemd once every source has one. */
void endpoints_published(struct dagfs_ctx *ctx);
/** Free the served store once no source runs (after endpoints_stop). */
void endpoints_free(struct dagfs_ctx *ctx);

/* ------------------------------------------------------------ status */

/**
 * Write <cache>/status.json now (temp file and rename). Takes ctx->lock.
 * @running is false for the last write at shutdown.
 */
/* ------------------------------------------------------ progress.c */

/**
 * Show the syncs in flight while they run (progress.c): of the daemon's
 * sources when @ctx is set (with @first_only, only those without a
 * revision yet), else of @src[@n], which must outlive the reporter. On a
 * terminal an updating line; otherwise a log line per source every 10 s
 * of a longer sync. Stop and free with progress_stop().
 */
int progress_start(struct progress **out, struct dagfs_ctx *ctx,
		   struct source *const *src, size_t n, bool first_only) WUR;
/** Stop the reporter and clear its line; NULL: no-op. */
void progress_stop(struct progress *p);
/** "340/600 objects, 1.2 MB of 4.0 MB, 310 kB/s, 4s" into @buf. */
void progress_format(char *buf, size_t len, const struct source_progress *p,
		     int64_t now_wall_ns);

int status_write(struct dagfs_ctx *ctx, bool running) WUR;

/** Start the thread that rewrites status.json every status-interval. */
int status_writer_start(struct dagfs_ctx *ctx) WUR;
/** Ask the writer to write soon (after a publication). Async-safe: no. */
void status_writer_kick(struct dagfs_ctx *ctx);
/** Stop the writer after a final write; safe if never started. */
void status_writer_stop(struct dagfs_ctx *ctx);

/* ----------------------------------------------------------- commands */

/**
 * `dagfs mount`: serve until signalled or unmounted. Returns the exit
 * status: 0 after a clean shutdown, 1 if start-up or serving failed.
 */
int cmd_mount(const struct dagfs_config *c);

/**
 * `dagfs status`: print <cache>/status.json. Returns 0 if every source is
 * healthy and the daemon is writing, 1 if not, 2 without a status file.
 */
int cmd_status(const struct dagfs_config *c);

/**
 * `dagfs sync --once --materialize DIR [--revision NAME=REV]...`: build
 * DIR/current once (pinned revisions from the cache, or fetched) and
 * exit: 0, or 1 with a one-line reason.
 */
/** `dagfs airflow-bundles`: print Airflow's dag_bundle_config_list. */
int cmd_airflow_bundles(const struct dagfs_config *c);
int cmd_sync(const struct dagfs_config *c);

/**
 * `dagfs CONFIG MOUNTPOINT -o OPTS` as mount.fuse3 runs it (fstab,
 * `mount -t fuse.dagfs`): mount in a background child via @run_mount,
 * return 0 once mounted or the child's failure.
 */
int fstab_main(int argc, char **argv, int (*run_mount)(int, char **));

/**
 * `dagfs export [--cache C] [--serve-key-file K] DIR`: the served store's
 * layout as files in DIR (export.c). 0, or 1 with a one-line reason.
 */
int cmd_export(const struct dagfs_config *c);

/** `dagfs fsck --cache DIR [--repair]`; e2fsck exit statuses. */
int cmd_fsck(const struct dagfs_config *c);

/**
 * Materialise mode: compose every source's current snapshot into
 * DIR/.revs/<id>, point DIR/current at it, prune retired revisions.
 */
void materialize_all(struct dagfs_ctx *ctx);

/**
 * `dagfs check-config`: add the sources' own errors to @errs (those of
 * loading are already there), print them all and return 1, or print a
 * summary and return 0.
 */
int cmd_check_config(const struct dagfs_config *c, struct cfg_errors *errs);

#endif
