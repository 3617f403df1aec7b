/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daemon.c - `dagfs mount`: open the cache, build every source, lay them
 * out in one FUSE view, serve it in the foreground until a signal or an
 * unmount, then take everything down in reverse order.
 *
 * Start-up either completes or leaves nothing behind: any error before
 * the mount is one line on stderr and exit status 1, and no thread has
 * started yet to add more. Each source's last published snapshot is put
 * into the view before the mount, so the first reader already sees the
 * last known tree instead of an empty directory (Airflow would take the
 * missing files for deleted DAGs), even when every remote is unreachable.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "sidecar_i.h"

#define TAG "daemon"

extern char **environ;

/*
 * Signals are blocked in every thread (the mask is set before the first
 * thread starts and inherited) and taken by one thread with sigwait(), so
 * the shutdown path and reload may lock, log and call into libfuse.
 * SIGUSR2 is only ever sent by this process, to end that thread.
 */
struct sig_thread {
	pthread_t thread;
	sigset_t set;
	struct dagfs_ctx *ctx;
	atomic_int got; /* the signal that ended serving, 0 if none */
};

static void reload(struct dagfs_ctx *ctx);

static void *sig_main(void *arg)
{
	struct sig_thread *t = arg;
	int sig;

	for (;;) {
		if (sigwait(&t->set, &sig))
			continue;
		if (sig == SIGUSR2)
			return NULL;
		if (sig == SIGHUP) {
			reload(t->ctx);
			continue;
		}
		if (atomic_exchange(&t->got, sig)) {
			log_err(TAG, "%s again: exiting without cleanup",
				strsignal(sig));
			_exit(1);
		}
		log_notice(TAG, "%s: unmounting %s", strsignal(sig),
			   t->ctx->mountpoint);
		sd_notify(0, "STOPPING=1");
		fs_exit(t->ctx->fs);
		fs_unmount(t->ctx->fs);
	}
}

static void signals_block(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void on_publish(struct source *src, struct snap *snap, void *payload)
{
	struct sc_source *s = payload;

	if (s->ctx->materialize)
		materialize_all(s->ctx);
	else
		fs_swap(s->ctx->fs, s->slot, snap);
	log_debug(TAG, "serving %s revision %s at /%s", source_name(src),
		  snap->rev, source_at(src));
	status_writer_kick(s->ctx);
	endpoints_published(s->ctx);
}

/* ------------------------------------------------------------ reload */

static bool spec_equal(const struct source_spec *a, const struct source_spec *b)
{
	if (strcmp(a->type, b->type) || strcmp(a->location, b->location) ||
	    a->nkeys != b->nkeys)
		return false;
	for (size_t i = 0; i < a->nkeys; i++) {
		const char *v = source_spec_get(b, a->keys[i]);

		if (!v || strcmp(v, a->values[i]))
			return false;
	}
	return true;
}

/* The running source named @name at @at, or -1. */
static int running_index(struct dagfs_ctx *ctx, const char *name,
			 const char *at)
{
	for (size_t i = 0; i < ctx->n; i++)
		if (!strcmp(source_name(ctx->src[i].src), name) &&
		    !strcmp(source_at(ctx->src[i].src), at))
			return (int)i;
	return -1;
}

/*
 * Build every source of @c without starting it. The new set must have the
 * running set's names and places: the view's slots are fixed once mounted.
 */
static int reload_build(struct dagfs_ctx *ctx, const struct dagfs_config *c,
			struct source **fresh)
{
	char err[1024];
	int rc = 0;

	for (size_t i = 0; !rc && i < c->nsources; i++) {
		rc = source_new(&fresh[i], &c->sources[i].spec, ctx->store, err,
				sizeof(err));
		if (rc)
			log_err(TAG, "reload rejected: %s: %s",
				c->sources[i].origin, err);
	}
	for (size_t i = 0; !rc && i < c->nsources; i++) {
		if (c->nsources != ctx->n ||
		    running_index(ctx, source_name(fresh[i]),
				  source_at(fresh[i])) < 0) {
			log_err(TAG, "reload rejected: adding, removing, renaming "
				     "or moving (at=) sources needs a restart");
			rc = -EINVAL;
		}
	}
	return rc;
}

/* Options other than sources and logging only change at a restart. */
static void reload_warn_options(const struct dagfs_config *old,
				const struct dagfs_config *c)
{
	const struct cfg_option *opts;
	char a[512], b[512];
	size_t n;

	opts = cfg_options(&n);
	for (size_t i = 0; i < n; i++) {
		if (opts[i].type == CFG_SOURCE || !strcmp(opts[i].name, "config") ||
		    opts[i].type == CFG_LEVEL || opts[i].type == CFG_FORMAT)
			continue;
		cfg_format(old, &opts[i], a, sizeof(a));
		cfg_format(c, &opts[i], b, sizeof(b));
		if (strcmp(a, b))
			log_warn(TAG, "reload: %s changed from %s to %s; it takes "
				      "effect at the next start", opts[i].name,
				 a, b);
	}
}

/* Swap in the sources whose spec changed; free the rest of @fresh. */
static void reload_apply(struct dagfs_ctx *ctx, const struct dagfs_config *c,
			 struct source **fresh)
{
	unsigned changed = 0;

	for (size_t i = 0; i < c->nsources; i++) {
		int j = running_index(ctx, source_name(fresh[i]),
				      source_at(fresh[i]));
		struct sc_source *s = &ctx->src[j];
		struct source *old = s->src;

		if (spec_equal(&s->cfg->spec, &c->sources[i].spec)) {
			source_free(fresh[i]);
			continue;
		}
		/* The old thread ends before the new one may publish. */
		source_stop(old);
		pthread_mutex_lock(&ctx->lock);
		ctx->retired[ctx->nretired++] = old;
		s->src = fresh[i];
		s->cfg = &c->sources[i];
		pthread_mutex_unlock(&ctx->lock);
		if (source_start(s->src, on_publish, s))
			log_err(TAG, "reload: source %s did not start",
				source_name(s->src));
		changed++;
	}
	log_notice(TAG, "reloaded: %u source%s restarted, %zu unchanged",
		   changed, changed == 1 ? "" : "s", c->nsources - changed);
}

/*
 * SIGHUP: load the configuration again (file, environment, the same
 * flags) and restart the sources whose spec changed, without unmounting.
 * Nothing changes unless the whole new configuration is valid.
 */
static void reload(struct dagfs_ctx *ctx)
{
	struct dagfs_config *c = calloc(1, sizeof(*c));
	struct cfg_errors errs = { 0 };
	struct source **fresh = NULL, **retired = NULL;
	struct dagfs_config **kept = NULL;
	int rc;

	log_notice(TAG, "SIGHUP: reloading the configuration");
	rc = c ? config_load(c, CMD_MOUNT, ctx->cfg->argc, ctx->cfg->argv,
			     environ, &errs) : -ENOMEM;
	for (size_t i = 0; i < errs.n; i++)
		log_err(TAG, "reload rejected: %s", errs.msg[i]);
	cfg_errors_clear(&errs);
	if (!rc && (!(fresh = calloc(c->nsources + 1, sizeof(*fresh))) ||
		    !(retired = realloc(ctx->retired, (ctx->nretired + ctx->n) *
							      sizeof(*retired))) ||
		    !(kept = realloc(ctx->reloads, (ctx->nreloads + 1) *
							   sizeof(*kept)))))
		rc = -ENOMEM;
	if (retired)
		ctx->retired = retired;
	if (kept)
		ctx->reloads = kept;
	if (!rc)
		rc = reload_build(ctx, c, fresh);
	if (rc) {
		if (rc == -ENOMEM)
			log_err(TAG, "reload rejected: %s", strerror(ENOMEM));
		for (size_t i = 0; fresh && i < c->nsources; i++)
			source_free(fresh[i]);
		if (c)
			config_free(c);
		free(c);
		free(fresh);
		return;
	}
	reload_warn_options(ctx->cfg, c);
	log_setup(c->log_level, c->log_json);
	reload_apply(ctx, c, fresh);
	ctx->reloads[ctx->nreloads++] = c;
	free(fresh);
}

/* Build every source; nothing is started. Errors name where it was set. */
static int sources_create(struct dagfs_ctx *ctx)
{
	const struct dagfs_config *c = ctx->cfg;
	const char **names, **ats;
	char err[1024];
	int rc = 0;

	ctx->src = calloc(c->nsources, sizeof(*ctx->src));
	names = calloc(c->nsources, sizeof(*names));
	ats = calloc(c->nsources, sizeof(*ats));
	if (!ctx->src || !names || !ats)
		rc = -ENOMEM;
	for (size_t i = 0; !rc && i < c->nsources; i++) {
		struct sc_source *s = &ctx->src[i];

		s->ctx = ctx;
		s->cfg = &c->sources[i];
		rc = source_new(&s->src, &s->cfg->spec, ctx->store, err,
				sizeof(err));
		if (rc) {
			fprintf(stderr, "dagfs: %s: %s\n", s->cfg->origin, err);
			break;
		}
		ctx->n++;
		names[i] = source_name(s->src);
		ats[i] = source_at(s->src);
	}
	if (!rc && cfg_check_layout(names, ats, ctx->n, err, sizeof(err))) {
		fprintf(stderr, "dagfs: %s\n", err);
		rc = -EINVAL;
	}
	if (rc == -ENOMEM)
		fprintf(stderr, "dagfs: %s\n", strerror(ENOMEM));
	free(names);
	free(ats);
	return rc;
}

static int view_create(struct dagfs_ctx *ctx)
{
	const struct dagfs_config *c = ctx->cfg;
	struct fs_opts o = FS_OPTS_INIT;
	int rc;

	o.uid = c->uid >= 0 ? (uid_t)c->uid : getuid();
	o.gid = c->gid >= 0 ? (gid_t)c->gid : getgid();
	o.umask = (mode_t)c->umask;
	o.allow_other = c->allow_other;
	o.debug = c->fuse_debug;
	o.threads = c->threads;
	o.show_meta = c->show_meta;
	rc = fs_new(&ctx->fs, ctx->store, &o);
	if (rc) {
		fprintf(stderr, "dagfs: creating the view: %s\n", strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < ctx->n; i++) {
		struct sc_source *s = &ctx->src[i];

		s->slot = fs_add_slot(ctx->fs, source_at(s->src),
				      source_name(s->src));
		if (s->slot < 0) {
			fprintf(stderr, "dagfs: source %s at /%s: %s\n",
				source_name(s->src), source_at(s->src),
				strerror(-s->slot));
			return s->slot;
		}
	}
	return 0;
}

/* Serve what the cache already holds, before any thread starts. */
static void view_preload(struct dagfs_ctx *ctx)
{
	for (size_t i = 0; i < ctx->n; i++) {
		struct sc_source *s = &ctx->src[i];
		struct snap *snap;

		if (pub_load_current(ctx->store, source_name(s->src), &snap))
			continue;
		fs_swap(ctx->fs, s->slot, snap);
		log_debug(TAG, "serving cached %s revision %s at /%s",
			  source_name(s->src), snap->rev, source_at(s->src));
		snap_unref(snap);
	}
}

static int sources_start(struct dagfs_ctx *ctx)
{
	for (size_t i = 0; i < ctx->n; i++) {
		struct sc_source *s = &ctx->src[i];
		int rc = source_start(s->src, on_publish, s);

		if (rc) {
			fprintf(stderr, "dagfs: source %s: cannot start: %s\n",
				source_name(s->src), strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* Materialise mode: no mount to serve, only signals to wait for. */
static int serve_materialized(struct dagfs_ctx *ctx, const sigset_t *set)
{
	int sig;

	log_notice(TAG, "materialising %zu source%s into %s/current (dagfs %s, "
		   "cache %s)", ctx->n, ctx->n == 1 ? "" : "s", ctx->materialize,
		   DAGFS_VERSION, ctx->cfg->cache);
	for (;;) {
		if (sigwait(set, &sig))
			continue;
		if (sig == SIGHUP) {
			reload(ctx);
			continue;
		}
		if (sig != SIGUSR2) {
			log_notice(TAG, "%s: stopping", strsignal(sig));
			sd_notify(0, "STOPPING=1");
			return 0;
		}
	}
}

/* Serve until a signal or an unmount; 0 for a clean end. */
static int serve(struct dagfs_ctx *ctx, const sigset_t *set)
{
	struct sig_thread t = { .set = *set, .ctx = ctx };
	int rc;

	rc = pthread_create(&t.thread, NULL, sig_main, &t);
	if (rc) {
		fprintf(stderr, "dagfs: signal thread: %s\n", strerror(rc));
		return -rc;
	}
	log_notice(TAG, "serving %zu source%s on %s (dagfs %s, cache %s)",
		   ctx->n, ctx->n == 1 ? "" : "s", ctx->mountpoint,
		   DAGFS_VERSION, ctx->cfg->cache);
	rc = fs_loop(ctx->fs);
	if (rc)
		log_err(TAG, "serving %s: %s", ctx->mountpoint, strerror(-rc));
	else if (!atomic_load(&t.got))
		log_notice(TAG, "%s was unmounted", ctx->mountpoint);
	pthread_kill(t.thread, SIGUSR2);
	pthread_join(t.thread, NULL);
	return rc;
}

static void ctx_free(struct dagfs_ctx *ctx)
{
	endpoints_stop(ctx);
	for (size_t i = 0; i < ctx->n; i++)
		source_stop(ctx->src[i].src);
	status_writer_stop(ctx);
	if (ctx->fs)
		fs_unmount(ctx->fs);
	fs_free(ctx->fs);
	for (size_t i = 0; i < ctx->n; i++)
		source_free(ctx->src[i].src);
	for (size_t i = 0; i < ctx->nretired; i++)
		source_free(ctx->retired[i]);
	free(ctx->retired);
	for (size_t i = 0; i < ctx->nreloads; i++) {
		config_free(ctx->reloads[i]);
		free(ctx->reloads[i]);
	}
	free(ctx->reloads);
	free(ctx->src);
	store_close(ctx->store);
	free(ctx->mountpoint);
	pthread_mutex_destroy(&ctx->lock);
}

static int open_cache(struct dagfs_ctx *ctx)
{
	const char *cache = ctx->cfg->cache;
	int rc = store_open(&ctx->store, cache, false);

	if (rc == -EBUSY)
		fprintf(stderr, "dagfs: cache %s: in use by another dagfs "
				"process\n", cache);
	else if (rc)
		fprintf(stderr, "dagfs: cache %s: %s\n", cache, strerror(-rc));
	return rc;
}

static int mount_materialized(struct dagfs_ctx *ctx, const sigset_t *set)
{
	int rc;

	ctx->materialize = ctx->cfg->materialize;
	if (mkdir(ctx->materialize, 0755) && errno != EEXIST) {
		fprintf(stderr, "dagfs: --materialize %s: %s\n",
			ctx->materialize, strerror(errno));
		rc = -errno;
		goto out;
	}
	rc = open_cache(ctx);
	if (!rc)
		rc = sources_create(ctx);
	if (!rc && (rc = status_writer_start(ctx)))
		fprintf(stderr, "dagfs: status writer: %s\n", strerror(-rc));
	if (!rc)
		rc = endpoints_start(ctx);
	if (!rc)
		rc = sources_start(ctx);
	if (!rc)
		rc = serve_materialized(ctx, set);
out:
	ctx_free(ctx);
	return rc ? 1 : 0;
}

int cmd_mount(const struct dagfs_config *c)
{
	struct dagfs_ctx ctx = { .cfg = c };
	char err[1024];
	sigset_t set;
	int rc;

	if (c->npos != (c->materialize ? 0 : 1)) {
		fprintf(stderr, "dagfs: mount needs %s, got %d argument%s "
				"(see dagfs mount --help)\n",
			c->materialize ? "no MOUNTPOINT with --materialize" :
					 "one MOUNTPOINT",
			c->npos, c->npos == 1 ? "" : "s");
		return 1;
	}
	pthread_mutex_init(&ctx.lock, NULL);
	signals_block(&set);
	if (c->materialize)
		return mount_materialized(&ctx, &set);
	ctx.mountpoint = realpath(c->pos[0], NULL);
	if (!ctx.mountpoint) {
		fprintf(stderr, "dagfs: mountpoint %s: %s\n", c->pos[0],
			strerror(errno));
		rc = -errno;
		goto out;
	}
	rc = open_cache(&ctx);
	if (!rc)
		rc = sources_create(&ctx);
	if (!rc)
		rc = view_create(&ctx);
	if (!rc) {
		view_preload(&ctx);
		rc = fs_mount(ctx.fs, ctx.mountpoint, err, sizeof(err));
		if (rc)
			fprintf(stderr, "dagfs: %s\n", err);
	}
	if (!rc && (rc = status_writer_start(&ctx)))
		fprintf(stderr, "dagfs: status writer: %s\n", strerror(-rc));
	if (!rc)
		rc = endpoints_start(&ctx);
	if (!rc)
		rc = sources_start(&ctx);
	if (!rc) {
		endpoints_published(&ctx); /* a cache may serve every source */
		rc = serve(&ctx, &set);
	}
out:
	ctx_free(&ctx);
	return rc ? 1 : 0;
}
