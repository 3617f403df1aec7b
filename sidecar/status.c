/* SPDX-License-Identifier: Apache-2.0 */
/*
 * status.c - <cache>/status.json: written by the daemon after every
 * publication and every status-interval (temp file, then rename, so a
 * reader never sees half a file), and read back by `dagfs status`, which
 * prints it as a table or JSON and exits non-zero when a source is
 * unhealthy. The file is the daemon's only report to other processes
 * until the HTTP endpoints exist; it holds no secrets (errors from the
 * sources never carry any).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sidecar_i.h"

#define STATUS_FORMAT 1
#define STATUS_FILE "status.json"

struct status_writer {
	pthread_t thread;
	pthread_mutex_t lock; /* guards kick and stop */
	pthread_cond_t cond;
	bool kick, stop;
};

/* The sync in flight: "progress":null between syncs. */
static void put_progress(FILE *f, const struct source_progress *p)
{
	if (!p->active) {
		fputs(",\"progress\":null", f);
		return;
	}
	fprintf(f,
		",\"progress\":{\"started_ns\":%lld,\"objects\":%llu,"
		"\"objects_total\":%llu,\"bytes\":%llu,\"bytes_total\":%llu}",
		(long long)p->started_ns, (unsigned long long)p->objects,
		(unsigned long long)p->objects_total,
		(unsigned long long)p->bytes,
		(unsigned long long)p->bytes_total);
}

static void put_source(FILE *f, const struct sc_source *s)
{
	struct source_status st;

	source_get_status(s->src, &st);
	fputs("{\"name\":", f);
	json_put_str(f, source_name(s->src));
	fputs(",\"type\":", f);
	json_put_str(f, s->cfg->spec.type);
	fputs(",\"at\":", f);
	json_put_str(f, source_at(s->src));
	fputs(",\"revision\":", f);
	json_put_str(f, st.rev);
	fprintf(f,
		",\"published_ns\":%lld,\"last_attempt_ns\":%lld,"
		"\"last_success_ns\":%lld,\"failures\":%u,\"max_failures\":%u,"
		"\"syncs\":%llu,\"bytes_fetched\":%llu,"
		"\"objects_fetched\":%llu,\"error\":",
		(long long)st.published_ns, (long long)st.last_attempt_ns,
		(long long)st.last_success_ns, st.failures, st.max_failures,
		(unsigned long long)st.syncs,
		(unsigned long long)st.bytes_fetched,
		(unsigned long long)st.objects_fetched);
	json_put_str(f, st.error);
	fprintf(f, ",\"healthy\":%s", source_healthy(&st) ? "true" : "false");
	put_progress(f, &st.progress);
	fputc('}', f);
}

static void put_status(FILE *f, struct dagfs_ctx *ctx, bool running)
{
	struct sc_set *set;

	fprintf(f, "{\"format\":%d,\"version\":", STATUS_FORMAT);
	json_put_str(f, DAGFS_VERSION);
	fprintf(f,
		",\"pid\":%ld,\"running\":%s,\"mountpoint\":", (long)getpid(),
		running ? "true" : "false");
	json_put_str(f, ctx->mountpoint);
	fprintf(f, ",\"written_ns\":%lld,\"interval_ms\":%d,\"sources\":[",
		(long long)now_ns(), ctx->cfg->status_interval_ms);
	set = sc_set_acquire(ctx);
	for (size_t i = 0; i < set->n; i++) {
		if (i)
			fputc(',', f);
		put_source(f, set->v[i]);
	}
	sc_set_release(set);
	fputs("]}\n", f);
}

int status_write(struct dagfs_ctx *ctx, bool running)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	int fd, rc = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", store_dir(ctx->store),
		 STATUS_FILE);
	snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", store_dir(ctx->store),
		 STATUS_FILE);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, 0644) < 0 || !(f = fdopen(fd, "w"))) {
		rc = -errno;
		close(fd);
		unlink(tmp);
		return rc;
	}
	put_status(f, ctx, running);
	if (fflush(f) || ferror(f))
		rc = errno ? -errno : -EIO;
	if (fclose(f) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

/* ------------------------------------------------------------ writer */

static void write_logged(struct dagfs_ctx *ctx, bool running, int *last_rc)
{
	int rc = status_write(ctx, running);

	/* Log a failure once, not every interval, until it changes. */
	if (rc && rc != *last_rc)
		log_warn("status", "cannot write %s/%s: %s",
			 store_dir(ctx->store), STATUS_FILE, strerror(-rc));
	*last_rc = rc;
}

static void *writer_main(void *arg)
{
	struct dagfs_ctx *ctx = arg;
	struct status_writer *w = ctx->status;
	int last_rc = 0;
	struct timespec ts;

	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		if (!w->kick) {
			int64_t due = mono_ns() +
				      (int64_t)ctx->cfg->status_interval_ms *
					      1000000;

			ts.tv_sec = (time_t)(due / 1000000000);
			ts.tv_nsec = (long)(due % 1000000000);
			pthread_cond_timedwait(&w->cond, &w->lock, &ts);
		}
		if (w->stop)
			break;
		w->kick = false;
		pthread_mutex_unlock(&w->lock);
		write_logged(ctx, true, &last_rc);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	write_logged(ctx, false, &last_rc);
	return NULL;
}

int status_writer_start(struct dagfs_ctx *ctx)
{
	struct status_writer *w = calloc(1, sizeof(*w));
	pthread_condattr_t attr;
	int rc;

	if (!w)
		return -ENOMEM;
	w->kick = true; /* the first write at once */
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &attr);
	pthread_condattr_destroy(&attr);
	ctx->status = w;
	rc = pthread_create(&w->thread, NULL, writer_main, ctx);
	if (rc) {
		ctx->status = NULL;
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		free(w);
		return -rc;
	}
	return 0;
}

void status_writer_kick(struct dagfs_ctx *ctx)
{
	struct status_writer *w = ctx->status;

	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->kick = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void status_writer_stop(struct dagfs_ctx *ctx)
{
	struct status_writer *w = ctx->status;

	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	ctx->status = NULL;
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

/* ------------------------------------------------------ dagfs status */

/* "2026-11-24T09:00:01Z", or "never" for 0. */
static void fmt_time(char *buf, size_t len, int64_t ns)
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;

	if (ns <= 0) {
		snprintf(buf, len, "never");
		return;
	}
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "4s", "3m12s", "2h05m", "3d04h"; "-" for an unknown age. */
static void fmt_age(char *buf, size_t len, int64_t ns)
{
	long long s = ns / 1000000000;

	if (ns < 0)
		snprintf(buf, len, "-");
	else if (s < 60)
		snprintf(buf, len, "%llds", s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%lldh%02lldm", s / 3600, s / 60 % 60);
	else
		snprintf(buf, len, "%lldd%02lldh", s / 86400, s / 3600 % 24);
}

static int64_t age(int64_t now, int64_t then)
{
	return then > 0 ? now - then : -1;
}

/*
 * When the served content was last known to be current: the last
 * successful poll, or, before one (a restart serving the cache), the
 * publication of the snapshot being served.
 */
static int64_t confirmed_ns(const struct json *s)
{
	int64_t ok = json_int(s, "last_success_ns", 0);

	return ok > 0 ? ok : json_int(s, "published_ns", 0);
}

/* The daemon stopped writing: it is gone or hung, whatever it wrote. */
static bool daemon_fresh(const struct json *st, int64_t now)
{
	int64_t interval = json_int(st, "interval_ms", 5000) * 1000000LL;
	int64_t limit = 3 * interval > 30000000000LL ? 3 * interval :
						       30000000000LL;

	return json_bool(st, "running", false) &&
	       now - json_int(st, "written_ns", 0) <= limit;
}

/* The sync in flight status.json reports for @s; false if none. */
static bool entry_progress(const struct json *s, struct source_progress *out)
{
	const struct json *p = json_get(s, "progress");

	if (!p || p->type != JSON_OBJ)
		return false;
	*out = (struct source_progress){
		.active = true,
		.started_ns = json_int(p, "started_ns", 0),
		.objects = (uint64_t)json_int(p, "objects", 0),
		.objects_total = (uint64_t)json_int(p, "objects_total", 0),
		.bytes = (uint64_t)json_int(p, "bytes", 0),
		.bytes_total = (uint64_t)json_int(p, "bytes_total", 0),
	};
	return true;
}

/* Health as the daemon judged it (source_healthy): never recomputed. */
static bool entry_healthy(const struct json *s)
{
	return json_bool(s, "healthy", false);
}

static void print_text(const struct json *st, int64_t now, bool fresh)
{
	const struct json *srcs = json_get(st, "sources");
	char pub[32], ok[32], stale[32], wr[32], line[256];
	struct source_progress p;

	fmt_age(wr, sizeof(wr), age(now, json_int(st, "written_ns", 0)));
	printf("dagfs %s, pid %lld, %s %s; status written %s ago%s\n",
	       json_str(st, "version", "?"), (long long)json_int(st, "pid", 0),
	       json_bool(st, "running", false) ? "serving" : "stopped, was",
	       json_str(st, "mountpoint", "?"), wr,
	       fresh ? "" : " (daemon not running or not responding)");
	printf("%-16s %-4s %-14s %-14s %-20s %-20s %-9s %-8s %s\n", "SOURCE",
	       "TYPE", "AT", "REVISION", "PUBLISHED", "LAST SUCCESS",
	       "STALENESS", "FAILURES", "STATE");
	for (size_t i = 0; srcs && srcs->type == JSON_ARR && i < srcs->n; i++) {
		const struct json *s = &srcs->items[i];
		char at[64], fails[24];

		fmt_time(pub, sizeof(pub), json_int(s, "published_ns", 0));
		fmt_time(ok, sizeof(ok), json_int(s, "last_success_ns", 0));
		fmt_age(stale, sizeof(stale), age(now, confirmed_ns(s)));
		snprintf(at, sizeof(at), "/%s", json_str(s, "at", ""));
		snprintf(fails, sizeof(fails), "%lld/%lld",
			 (long long)json_int(s, "failures", 0),
			 (long long)json_int(s, "max_failures", 0));
		printf("%-16s %-4s %-14s %-14.12s %-20s %-20s %-9s %-8s %s\n",
		       json_str(s, "name", "?"), json_str(s, "type", "?"), at,
		       *json_str(s, "revision", "") ?
			       json_str(s, "revision", "") :
			       "-",
		       pub, ok, stale, fails,
		       entry_healthy(s) ? "ok" : "UNHEALTHY");
		if (*json_str(s, "error", ""))
			printf("  last error: %s\n", json_str(s, "error", ""));
		if (fresh && entry_progress(s, &p)) {
			progress_format(line, sizeof(line), &p,
					json_int(st, "written_ns", now));
			printf("  syncing: %s\n", line);
		}
	}
}

static void put_time_field(const char *key, int64_t ns)
{
	char buf[32];

	printf(",\"%s\":", key);
	if (ns <= 0) {
		fputs("null", stdout);
		return;
	}
	fmt_time(buf, sizeof(buf), ns);
	json_put_str(stdout, buf);
}

static void print_json_source(const struct json *s, int64_t now)
{
	int64_t ok = confirmed_ns(s);
	struct source_progress p;

	fputs("{\"name\":", stdout);
	json_put_str(stdout, json_str(s, "name", ""));
	fputs(",\"type\":", stdout);
	json_put_str(stdout, json_str(s, "type", ""));
	fputs(",\"at\":", stdout);
	json_put_str(stdout, json_str(s, "at", ""));
	fputs(",\"revision\":", stdout);
	json_put_str(stdout, json_str(s, "revision", ""));
	put_time_field("published", json_int(s, "published_ns", 0));
	put_time_field("last_attempt", json_int(s, "last_attempt_ns", 0));
	put_time_field("last_success", json_int(s, "last_success_ns", 0));
	if (ok > 0)
		printf(",\"staleness_s\":%.3f", (double)(now - ok) / 1e9);
	else
		fputs(",\"staleness_s\":null", stdout);
	printf(",\"failures\":%lld,\"max_failures\":%lld,\"error\":",
	       (long long)json_int(s, "failures", 0),
	       (long long)json_int(s, "max_failures", 0));
	json_put_str(stdout, json_str(s, "error", ""));
	printf(",\"healthy\":%s,\"progress\":",
	       entry_healthy(s) ? "true" : "false");
	if (entry_progress(s, &p))
		printf("{\"objects\":%llu,\"objects_total\":%llu,"
		       "\"bytes\":%llu,\"bytes_total\":%llu,"
		       "\"elapsed_s\":%.3f}",
		       (unsigned long long)p.objects,
		       (unsigned long long)p.objects_total,
		       (unsigned long long)p.bytes,
		       (unsigned long long)p.bytes_total,
		       (double)(now - p.started_ns) / 1e9);
	else
		fputs("null", stdout);
	putchar('}');
}

static void print_json(const struct json *st, int64_t now, bool fresh,
		       bool healthy)
{
	const struct json *srcs = json_get(st, "sources");

	printf("{\"healthy\":%s,\"daemon\":{\"pid\":%lld,\"running\":%s,"
	       "\"responding\":%s,\"version\":",
	       healthy ? "true" : "false", (long long)json_int(st, "pid", 0),
	       json_bool(st, "running", false) ? "true" : "false",
	       fresh ? "true" : "false");
	json_put_str(stdout, json_str(st, "version", ""));
	fputs(",\"mountpoint\":", stdout);
	json_put_str(stdout, json_str(st, "mountpoint", ""));
	put_time_field("written", json_int(st, "written_ns", 0));
	fputs("},\"sources\":[", stdout);
	for (size_t i = 0; srcs && srcs->type == JSON_ARR && i < srcs->n; i++) {
		if (i)
			putchar(',');
		print_json_source(&srcs->items[i], now);
	}
	fputs("]}\n", stdout);
}

static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "r");
	size_t cap = 0, n = 0, got;
	char *buf = NULL, *grown;

	if (!f)
		return -errno;
	do {
		if (cap - n < 4096) {
			cap = cap ? 2 * cap : 65536;
			grown = realloc(buf, cap + 1);
			if (!grown) {
				free(buf);
				fclose(f);
				return -ENOMEM;
			}
			buf = grown;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
	} while (got);
	fclose(f);
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

int cmd_status(const struct dagfs_config *c)
{
	const struct json *srcs;
	struct json *st = NULL;
	char path[PATH_MAX], *text = NULL;
	bool healthy, fresh;
	int64_t now = now_ns();
	size_t len = 0;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", c->cache, STATUS_FILE);
	rc = read_file(path, &text, &len);
	if (rc) {
		fprintf(stderr, "dagfs: status %s: %s%s\n", path, strerror(-rc),
			rc == -ENOENT ? " (no dagfs mount has run with this "
					"--cache)" :
					"");
		return 2;
	}
	rc = json_parse(&st, text, len);
	free(text);
	if (rc || json_int(st, "format", 0) != STATUS_FORMAT) {
		fprintf(stderr,
			"dagfs: status %s: not a status file of this "
			"version of dagfs\n",
			path);
		json_free(st);
		return 2;
	}
	fresh = daemon_fresh(st, now);
	healthy = fresh;
	srcs = json_get(st, "sources");
	for (size_t i = 0; srcs && srcs->type == JSON_ARR && i < srcs->n; i++)
		healthy = healthy && entry_healthy(&srcs->items[i]);
	if (c->json)
		print_json(st, now, fresh, healthy);
	else
		print_text(st, now, fresh);
	json_free(st);
	return healthy ? 0 : 1;
}
