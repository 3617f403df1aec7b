/* SPDX-License-Identifier: Apache-2.0 */
/*
 * endpoints.c - what the daemon answers on its HTTP address: liveness
 * (the process and the mount answer), readiness (every source has a
 * published revision and none is past max-failures), Prometheus metrics,
 * and POST /sync to poll now. Also the systemd readiness notification,
 * sent once every source has published.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <systemd/sd-daemon.h>

#include "http_i.h"
#include "sidecar_i.h"

#define TAG "http"
#define USAGE_EVERY_NS (30LL * 1000000000)

static bool source_ready(struct sc_source *s, struct source_status *st,
			 bool *published)
{
	source_get_status(s->src, st);
	*published = st->rev[0] != '\0';
	return source_healthy(st);
}

static int h_healthz(void *payload, char **body)
{
	struct dagfs_ctx *ctx = payload;
	struct statfs sfs;

	if (ctx->mountpoint && !ctx->materialize &&
	    statfs(ctx->mountpoint, &sfs)) {
		if (asprintf(body, "mount %s not answering: %s\n",
			     ctx->mountpoint, strerror(errno)) < 0)
			*body = NULL;
		return 503;
	}
	*body = strdup("ok\n");
	return 200;
}

static int h_readyz(void *payload, char **body)
{
	struct dagfs_ctx *ctx = payload;
	struct sc_set *set;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	bool all = true;

	if (!f)
		return 500;
	set = sc_set_acquire(ctx);
	for (size_t i = 0; i < set->n; i++) {
		struct source_status st;
		bool published;
		bool ok = source_ready(set->v[i], &st, &published);

		all &= ok;
		fprintf(f, "%s %s: %s\n", ok ? "ok" : "not ready",
			source_name(set->v[i]->src),
			!published ? "no revision published yet" :
			ok	   ? st.rev :
				     "too many failures in a row");
	}
	sc_set_release(set);
	fclose(f);
	*body = text;
	return all ? 200 : 503;
}

static void metric_head(FILE *f, const char *name, const char *type,
			const char *help)
{
	fprintf(f, "# HELP dagfs_%s %s\n# TYPE dagfs_%s %s\n", name, help, name,
		type);
}

/* Label values escaped as the text format wants (\\, \", \n). */
static void label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void per_source(FILE *f, struct dagfs_ctx *ctx, const char *name,
		       const char *type, const char *help,
		       double (*get)(const struct source_status *, bool))
{
	struct sc_set *set = sc_set_acquire(ctx);

	metric_head(f, name, type, help);
	for (size_t i = 0; i < set->n; i++) {
		struct source_status st;
		bool published;
		bool ok = source_ready(set->v[i], &st, &published);

		fprintf(f, "dagfs_%s{source=\"", name);
		label(f, source_name(set->v[i]->src));
		fprintf(f, "\"} %.17g\n", get(&st, ok));
	}
	sc_set_release(set);
}

static double m_published(const struct source_status *s, bool ok)
{
	(void)ok;
	return (double)s->published_ns / 1e9;
}

static double m_success(const struct source_status *s, bool ok)
{
	(void)ok;
	return (double)s->last_success_ns / 1e9;
}

static double m_attempt(const struct source_status *s, bool ok)
{
	(void)ok;
	return (double)s->last_attempt_ns / 1e9;
}

static double m_failures(const struct source_status *s, bool ok)
{
	(void)ok;
	return s->failures;
}

static double m_healthy(const struct source_status *s, bool ok)
{
	(void)s;
	return ok;
}

static double m_bytes(const struct source_status *s, bool ok)
{
	(void)ok;
	return (double)s->bytes_fetched;
}

static double m_objects(const struct source_status *s, bool ok)
{
	(void)ok;
	return (double)s->objects_fetched;
}

static double m_syncs(const struct source_status *s, bool ok)
{
	(void)ok;
	return (double)s->syncs;
}

static void histogram(FILE *f, struct dagfs_ctx *ctx)
{
	struct sc_set *set = sc_set_acquire(ctx);

	metric_head(f, "sync_duration_seconds", "histogram",
		    "Duration of sync attempts.");
	for (size_t i = 0; i < set->n; i++) {
		struct source_status st;
		const char *name = source_name(set->v[i]->src);
		uint64_t cum = 0;

		source_get_status(set->v[i]->src, &st);
		for (size_t b = 0; b < 11; b++) {
			cum += st.dur_buckets[b];
			fputs("dagfs_sync_duration_seconds_bucket{source=\"",
			      f);
			label(f, name);
			if (b < 10)
				fprintf(f, "\",le=\"%g\"} %llu\n",
					source_duration_bounds[b],
					(unsigned long long)cum);
			else
				fprintf(f, "\",le=\"+Inf\"} %llu\n",
					(unsigned long long)cum);
		}
		fputs("dagfs_sync_duration_seconds_sum{source=\"", f);
		label(f, name);
		fprintf(f,
			"\"} %.6f\ndagfs_sync_duration_seconds_count{source=\"",
			st.dur_sum);
		label(f, name);
		fprintf(f, "\"} %llu\n", (unsigned long long)cum);
	}
	sc_set_release(set);
}

static void revisions(FILE *f, struct dagfs_ctx *ctx)
{
	struct sc_set *set = sc_set_acquire(ctx);

	metric_head(f, "source_revision_info", "gauge",
		    "The revision a source serves (value 1).");
	for (size_t i = 0; i < set->n; i++) {
		struct source_status st;

		source_get_status(set->v[i]->src, &st);
		if (!st.rev[0])
			continue;
		fputs("dagfs_source_revision_info{source=\"", f);
		label(f, source_name(set->v[i]->src));
		fputs("\",revision=\"", f);
		label(f, st.rev);
		fputs("\"} 1\n", f);
	}
	sc_set_release(set);
}

/* The store walk costs a readdir of objects/: at most every 30 s. */
static void store_metrics(FILE *f, struct dagfs_ctx *ctx)
{
	int64_t now = mono_ns();

	pthread_mutex_lock(&ctx->lock);
	if (!ctx->usage_at || now - ctx->usage_at > USAGE_EVERY_NS) {
		if (!store_usage(ctx->store, &ctx->usage_blobs,
				 &ctx->usage_bytes))
			ctx->usage_at = now;
	}
	metric_head(f, "store_blobs", "gauge", "Blobs in the content store.");
	fprintf(f, "dagfs_store_blobs %llu\n",
		(unsigned long long)ctx->usage_blobs);
	metric_head(f, "store_bytes", "gauge", "Bytes in the content store.");
	fprintf(f, "dagfs_store_bytes %llu\n",
		(unsigned long long)ctx->usage_bytes);
	pthread_mutex_unlock(&ctx->lock);
}

/* FUSE request counters; none in materialise mode (no mount). */
static void fuse_metrics(FILE *f, struct dagfs_ctx *ctx)
{
	struct fs_stats st;
	struct fs_loop_stats ls;

	if (!ctx->fs)
		return;
	fs_get_stats(ctx->fs, &st);
	metric_head(f, "fuse_requests_total", "counter",
		    "FUSE requests served, by operation.");
	for (int i = 0; i < FS_OP_COUNT; i++)
		fprintf(f, "dagfs_fuse_requests_total{op=\"%s\"} %llu\n",
			fs_op_names[i], (unsigned long long)st.ops[i]);
	metric_head(f, "fuse_errors_total", "counter",
		    "FUSE requests answered with an error, by operation.");
	for (int i = 0; i < FS_OP_COUNT; i++)
		fprintf(f, "dagfs_fuse_errors_total{op=\"%s\"} %llu\n",
			fs_op_names[i], (unsigned long long)st.errors[i]);
	fs_get_loop_stats(ctx->fs, &ls);
	metric_head(f, "fuse_spin_hits_total", "counter",
		    "FUSE requests a polling worker found (fuse-spin).");
	fprintf(f, "dagfs_fuse_spin_hits_total %llu\n",
		(unsigned long long)ls.spin_hits);
	metric_head(f, "fuse_prefetched_total", "counter",
		    "Blobs read ahead when their directory was listed.");
	fprintf(f, "dagfs_fuse_prefetched_total %llu\n",
		(unsigned long long)ls.prefetched);
	metric_head(f, "fuse_awake_total", "counter",
		    "Times the CPUs were kept from halting (fuse-awake).");
	fprintf(f, "dagfs_fuse_awake_total %llu\n",
		(unsigned long long)ls.awake_holds);
	metric_head(f, "fuse_awake", "gauge",
		    "1 while the CPUs are kept from halting (fuse-awake).");
	fprintf(f, "dagfs_fuse_awake %llu\n",
		(unsigned long long)ls.awake_held);
}

static int h_metrics(void *payload, char **body)
{
	struct dagfs_ctx *ctx = payload;
	size_t len = 0;
	FILE *f = open_memstream(body, &len);

	if (!f)
		return 500;
	revisions(f, ctx);
	per_source(f, ctx, "source_published_timestamp_seconds", "gauge",
		   "When the served revision was published.", m_published);
	per_source(f, ctx, "source_last_success_timestamp_seconds", "gauge",
		   "End of the last successful sync.", m_success);
	per_source(f, ctx, "source_last_attempt_timestamp_seconds", "gauge",
		   "Start of the last sync attempt.", m_attempt);
	per_source(f, ctx, "source_consecutive_failures", "gauge",
		   "Failed syncs in a row.", m_failures);
	per_source(f, ctx, "source_healthy", "gauge",
		   "1 if published and under max-failures.", m_healthy);
	per_source(f, ctx, "source_syncs_total", "counter", "Sync attempts.",
		   m_syncs);
	per_source(f, ctx, "source_fetched_bytes_total", "counter",
		   "Bytes fetched from the remote.", m_bytes);
	per_source(f, ctx, "source_fetched_objects_total", "counter",
		   "Objects (files, blobs) fetched from the remote.",
		   m_objects);
	histogram(f, ctx);
	serve_metrics(ctx->serve, f);
	store_metrics(f, ctx);
	fuse_metrics(f, ctx);
	fclose(f);
	return 200;
}

static int h_sync(void *payload, const char *source, char **body)
{
	struct dagfs_ctx *ctx = payload;
	struct sc_set *set = sc_set_acquire(ctx);
	int kicked = 0;

	for (size_t i = 0; i < set->n; i++) {
		if (source && strcmp(source, source_name(set->v[i]->src)))
			continue;
		source_kick(set->v[i]->src);
		kicked++;
	}
	sc_set_release(set);
	if (!kicked) {
		if (asprintf(body, "unknown source '%s'\n", source) < 0)
			*body = NULL;
		return 404;
	}
	log_info(TAG, "POST /sync: polling %s now", source ? source : "all");
	if (asprintf(body, "polling %d source%s\n", kicked,
		     kicked == 1 ? "" : "s") < 0)
		*body = NULL;
	return 202;
}

static enum MHD_Result h_store(void *payload, struct MHD_Connection *c,
			       const char *url, void **con_cls)
{
	struct dagfs_ctx *ctx = payload;

	return serve_handle(ctx->serve, c, url, con_cls);
}

static void h_store_done(void *payload, void *con_cls)
{
	struct dagfs_ctx *ctx = payload;

	serve_conn_done(ctx->serve, con_cls);
}

static void h_quiesce(void *payload)
{
	struct dagfs_ctx *ctx = payload;

	serve_quiesce(ctx->serve);
}

int endpoints_start(struct dagfs_ctx *ctx)
{
	struct http_handlers h = { .healthz = h_healthz,
				   .readyz = h_readyz,
				   .metrics = h_metrics,
				   .sync = h_sync,
				   .payload = ctx };
	char err[512];
	int rc;

	if (!ctx->cfg->http || !*ctx->cfg->http)
		return 0;
	if (ctx->cfg->serve) {
		rc = serve_new(&ctx->serve, ctx, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "dagfs: %s\n", err);
			return rc;
		}
		h.store = h_store;
		h.store_done = h_store_done;
		h.quiesce = h_quiesce;
	}
	rc = http_start(&ctx->http, ctx->cfg->http,
			ctx->cfg->webhook_secret_file, &h, err, sizeof(err));
	if (rc)
		fprintf(stderr, "dagfs: %s\n", err);
	else
		log_info(TAG, "listening on %s%s%s", ctx->cfg->http,
			 ctx->cfg->webhook_secret_file ?
				 " (POST /sync needs a signature)" :
				 "",
			 ctx->serve ? "; serving the store under /store/" : "");
	return rc;
}

void endpoints_stop(struct dagfs_ctx *ctx)
{
	http_stop(ctx->http);
	ctx->http = NULL;
	serve_quiesce(ctx->serve);
}

void endpoints_free(struct dagfs_ctx *ctx)
{
	serve_free(ctx->serve);
	ctx->serve = NULL;
}

void endpoints_published(struct dagfs_ctx *ctx)
{
	struct sc_set *set = sc_set_acquire(ctx);
	bool all = true;

	for (size_t i = 0; i < set->n && all; i++) {
		struct snap *snap = source_current(set->v[i]->src);

		all = snap != NULL;
		snap_unref(snap);
	}
	sc_set_release(set);
	if (all && !__atomic_exchange_n(&ctx->notified, true, __ATOMIC_ACQ_REL))
		sd_notify(0, "READY=1\nSTATUS=serving every source");
}
