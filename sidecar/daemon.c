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
#define GC_INTERVAL_MS 10000 /* a look for garbage after publications */

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

void sc_on_publish(struct source *src, struct snap *snap, void *payload)
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
	serve_published(s->ctx->serve, source_name(src));
}

/* ------------------------------------------------------- source sets */

struct sc_source *sc_source_new(struct dagfs_ctx *ctx, struct source *src,
				const struct cfg_source *cfg)
{
	struct sc_source *s = calloc(1, sizeof(*s));

	if (s)
		*s = (struct sc_source){
			.ctx = ctx, .src = src, .cfg = cfg, .slot = -1
		};
	return s;
}

void sc_source_free(struct sc_source *s)
{
	if (!s)
		return;
	source_free(s->src); /* stops its thread first */
	free(s);
}

struct sc_set *sc_set_acquire(struct dagfs_ctx *ctx)
{
	struct sc_set *set;

	pthread_mutex_lock(&ctx->set_lock);
	set = ctx->set;
	if (set)
		__atomic_add_fetch(&set->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&ctx->set_lock);
	return set;
}

void sc_set_release(struct sc_set *set)
{
	if (!set || __atomic_sub_fetch(&set->refs, 1, __ATOMIC_ACQ_REL))
		return;
	for (size_t i = 0; i < set->n; i++)
		if (!__atomic_sub_fetch(&set->v[i]->refs, 1, __ATOMIC_ACQ_REL))
			sc_source_free(set->v[i]);
	free(set);
}

void sc_set_publish(struct dagfs_ctx *ctx, struct sc_set *set)
{
	struct sc_set *old;

	set->refs = 1;
	for (size_t i = 0; i < set->n; i++)
		__atomic_add_fetch(&set->v[i]->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&ctx->set_lock);
	old = ctx->set;
	__atomic_store_n(&ctx->set, set, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&ctx->set_lock);
	sc_set_release(old);
}

void sc_describe(struct sc_source *s)
{
	char url[1024], ref[256];
	struct fs_slot_info info;

	source_origin(s->src, url, sizeof(url), ref, sizeof(ref));
	info = (struct fs_slot_info){ .type = source_type(s->src),
				      .keep = source_keep(s->src),
				      .url = *url ? url : NULL,
				      .ref = *ref ? ref : NULL };
	if (fs_slot_describe(s->ctx->fs, s->slot, &info))
		log_warn(TAG, "source %s: not described in status.json",
			 source_name(s->src));
}

/*
 * The view's fetcher (revisions on demand): revision @rev of source
 * @name, fetched by that source. Runs in fs/'s fetch threads.
 */
static int sc_fetch(const char *name, const char *rev, int timeout_ms,
		    void *payload)
{
	struct dagfs_ctx *ctx = payload;
	struct sc_set *set = sc_set_acquire(ctx);
	int rc = -ENOENT;
	char err[1024];
	struct snap *snap;

	for (size_t i = 0; set && i < set->n; i++) {
		if (strcmp(source_name(set->v[i]->src), name))
			continue;
		rc = source_fetch_rev(set->v[i]->src, rev, timeout_ms, &snap,
				      err, sizeof(err));
		if (!rc)
			snap_unref(snap);
		break;
	}
	sc_set_release(set);
	return rc;
}

/*
 * The view's tree fetcher: the manifest of tree @id from the first source
 * whose upstream has it (mirrors of a served store). Fetch threads.
 */
static int sc_fetch_tree(const char *id, int timeout_ms, void *payload)
{
	struct dagfs_ctx *ctx = payload;
	const struct sc_set *set = sc_set_get(ctx);
	int64_t until = mono_ns() + (int64_t)timeout_ms * 1000000;
	char err[1024];
	int rc = -ENOENT;

	for (size_t i = 0; rc && i < set->n; i++) {
		int left = (int)((until - mono_ns()) / 1000000);

		if (left <= 0)
			return -ETIMEDOUT;
		rc = source_fetch_tree(set->v[i]->src, id, left, err,
				       sizeof(err));
	}
	return rc;
}

int sc_place(struct sc_source *s)
{
	struct dagfs_ctx *ctx = s->ctx;
	struct snap *snap = source_cached(s->src);

	s->slot = fs_add_slot(ctx->fs, source_at(s->src), source_name(s->src),
			      snap);
	if (s->slot >= 0)
		sc_describe(s);
	if (snap && s->slot >= 0)
		log_debug(TAG, "serving cached %s revision %s at /%s",
			  source_name(s->src), snap->rev, source_at(s->src));
	snap_unref(snap);
	return s->slot < 0 ? s->slot : 0;
}

int sc_build(struct dagfs_ctx *ctx, const struct dagfs_config *c,
	     struct source **out, char *err, size_t errlen)
{
	size_t n = c->nsources;
	const char **names = calloc(n + 1, sizeof(*names));
	const char **ats = calloc(n + 1, sizeof(*ats));
	char why[1024];
	int rc = 0;

	if (!names || !ats) {
		snprintf(err, errlen, "%s", strerror(ENOMEM));
		rc = -ENOMEM;
	}
	for (size_t i = 0; !rc && i < n; i++) {
		const struct cfg_source *cs = &c->sources[i];

		rc = source_new(&out[i], &cs->spec, ctx->store, why,
				sizeof(why));
		if (rc) {
			snprintf(err, errlen, "%s: %s", cs->origin, why);
		} else {
			names[i] = source_name(out[i]);
			ats[i] = source_at(out[i]);
		}
	}
	if (!rc && cfg_check_layout(names, ats, n, err, errlen))
		rc = -EINVAL;
	free(names);
	free(ats);
	return rc;
}

/* Build every source; nothing is started. Errors name where it was set. */
static int sources_create(struct dagfs_ctx *ctx)
{
	const struct dagfs_config *c = ctx->cfg;
	struct source **fresh = calloc(c->nsources + 1, sizeof(*fresh));
	struct sc_set *set;
	char err[1024] = "";
	int rc;

	set = calloc(1, sizeof(*set) + c->nsources * sizeof(set->v[0]));
	if (!fresh || !set) {
		snprintf(err, sizeof(err), "%s", strerror(ENOMEM));
		rc = -ENOMEM;
	} else {
		rc = sc_build(ctx, c, fresh, err, sizeof(err));
	}
	for (size_t i = 0; !rc && i < c->nsources; i++) {
		set->v[i] = sc_source_new(ctx, fresh[i], &c->sources[i]);
		if (!set->v[i]) {
			snprintf(err, sizeof(err), "%s", strerror(ENOMEM));
			rc = -ENOMEM;
		} else {
			fresh[i] = NULL; /* the set owns it now */
			set->n++;
		}
	}
	if (!rc) {
		sc_set_publish(ctx, set);
	} else if (set) {
		for (size_t i = 0; i < set->n; i++)
			sc_source_free(set->v[i]);
		free(set);
	}
	if (rc)
		log_err(TAG, "%s", err);
	for (size_t i = 0; fresh && i < c->nsources; i++)
		source_free(fresh[i]);
	free(fresh);
	return rc;
}

static int view_create(struct dagfs_ctx *ctx)
{
	const struct dagfs_config *c = ctx->cfg;
	const struct sc_set *set = sc_set_get(ctx);
	struct fs_opts o = FS_OPTS_INIT;
	int rc;

	o.uid = c->uid >= 0 ? (uid_t)c->uid : getuid();
	o.gid = c->gid >= 0 ? (gid_t)c->gid : getgid();
	o.umask = (mode_t)c->umask;
	o.allow_other = c->allow_other;
	o.debug = c->fuse_debug;
	o.threads = c->threads;
	o.spin_us = c->fuse_spin_us;
	o.awake_us = c->fuse_awake_us;
	o.prefetch = c->fuse_prefetch;
	o.show_meta = c->show_meta;
	o.keep_trees = c->keep_trees;
	o.fetch_timeout_ms = c->fetch_timeout_ms;
	rc = fs_new(&ctx->fs, ctx->store, &o);
	if (rc) {
		log_err(TAG, "creating the view: %s", strerror(-rc));
		return rc;
	}
	fs_set_fetcher(ctx->fs, sc_fetch, sc_fetch_tree, ctx);
	for (size_t i = 0; i < set->n; i++) {
		struct sc_source *s = set->v[i];

		/* what the cache holds is served before any thread starts */
		rc = sc_place(s);
		if (rc) {
			log_err(TAG, "source %s at /%s: %s",
				source_name(s->src), source_at(s->src),
				strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static int sources_start(struct dagfs_ctx *ctx)
{
	const struct sc_set *set = sc_set_get(ctx);
	int rc;

	for (size_t i = 0; i < set->n; i++) {
		struct sc_source *s = set->v[i];

		rc = source_start(s->src, sc_on_publish, s);
		if (rc) {
			log_err(TAG, "source %s: cannot start: %s",
				source_name(s->src), strerror(-rc));
			return rc;
		}
	}
	rc = gc_start(&ctx->gc, ctx->store, GC_INTERVAL_MS);
	if (rc)
		log_err(TAG, "garbage collector: %s", strerror(-rc));
	if (!rc && progress_start(&ctx->progress, ctx, NULL, 0, true))
		log_warn(TAG, "progress reporter not started");
	return rc;
}

/* Materialise mode: no mount to serve, only signals to wait for. */
static int serve_materialized(struct dagfs_ctx *ctx, const sigset_t *set)
{
	int sig;

	size_t n = sc_set_get(ctx)->n;

	log_notice(TAG,
		   "materialising %zu source%s into %s/current (dagfs %s, "
		   "cache %s)",
		   n, n == 1 ? "" : "s", ctx->materialize, DAGFS_VERSION,
		   ctx->cfg->cache);
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
		log_err(TAG, "signal thread: %s", strerror(rc));
		return -rc;
	}
	size_t n = sc_set_get(ctx)->n;

	log_notice(TAG, "serving %zu source%s on %s (dagfs %s, cache %s)", n,
		   n == 1 ? "" : "s", ctx->mountpoint, DAGFS_VERSION,
		   ctx->cfg->cache);
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
	const struct sc_set *set = sc_set_get(ctx);

	progress_stop(ctx->progress);
	endpoints_stop(ctx);
	for (size_t i = 0; set && i < set->n; i++)
		source_stop(set->v[i]->src);
	endpoints_free(ctx);
	status_writer_stop(ctx);
	if (ctx->fs)
		fs_unmount(ctx->fs);
	fs_free(ctx->fs);
	gc_stop(ctx->gc);
	sc_set_release(ctx->set); /* no reader is left: frees the sources */
	ctx->set = NULL;
	for (size_t i = 0; i < ctx->nreloads; i++) {
		config_free(ctx->reloads[i]);
		free(ctx->reloads[i]);
	}
	free(ctx->reloads);
	store_close(ctx->store);
	free(ctx->mountpoint);
	pthread_mutex_destroy(&ctx->lock);
	pthread_mutex_destroy(&ctx->set_lock);
}

static int open_cache(struct dagfs_ctx *ctx)
{
	const char *cache = ctx->cfg->cache;
	int rc = store_open(&ctx->store, cache, false);

	if (rc == -EBUSY)
		log_err(TAG,
			"cache %s: in use by another dagfs "
			"process",
			cache);
	else if (rc)
		log_err(TAG, "cache %s: %s", cache, strerror(-rc));
	return rc;
}

static int mount_materialized(struct dagfs_ctx *ctx, const sigset_t *set)
{
	int rc;

	ctx->materialize = ctx->cfg->materialize;
	rc = mkdir_p(ctx->materialize, 0755);
	if (rc) {
		log_err(TAG, "--materialize %s: %s", ctx->materialize,
			strerror(-rc));
		goto out;
	}
	rc = open_cache(ctx);
	if (!rc)
		rc = sources_create(ctx);
	if (!rc && (rc = status_writer_start(ctx)))
		log_err(TAG, "status writer: %s", strerror(-rc));
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
		log_err(TAG,
			"mount needs %s, got %d argument%s "
			"(see dagfs mount --help)",
			c->materialize ? "no MOUNTPOINT with --materialize" :
					 "one MOUNTPOINT",
			c->npos, c->npos == 1 ? "" : "s");
		return 1;
	}
	pthread_mutex_init(&ctx.lock, NULL);
	pthread_mutex_init(&ctx.set_lock, NULL);
	signals_block(&set);
	if (c->materialize)
		return mount_materialized(&ctx, &set);
	ctx.mountpoint = realpath(c->pos[0], NULL);
	if (!ctx.mountpoint) {
		log_err(TAG, "mountpoint %s: %s", c->pos[0], strerror(errno));
		rc = -errno;
		goto out;
	}
	rc = open_cache(&ctx);
	if (!rc)
		rc = sources_create(&ctx);
	if (!rc)
		rc = view_create(&ctx);
	if (!rc) {
		rc = fs_mount(ctx.fs, ctx.mountpoint, err, sizeof(err));
		if (rc)
			log_err(TAG, "%s", err);
	}
	if (!rc && (rc = status_writer_start(&ctx)))
		log_err(TAG, "status writer: %s", strerror(-rc));
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
