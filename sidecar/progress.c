/* SPDX-License-Identifier: Apache-2.0 */
/*
 * progress.c - what a long sync shows while it runs: `dagfs sync --once`
 * and a mount's first sync of each source. It only reads the progress
 * every source type keeps in its status (struct source_progress); it
 * never asks a type for anything.
 *
 * On a terminal (stderr) one line is redrawn every PROGRESS_TTY_MS under
 * the log lines (log_tty_line). Otherwise nothing is shown for a sync
 * shorter than PROGRESS_LOG_MS, then one log line per source every
 * PROGRESS_LOG_MS: a log never gets more than that.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sidecar_i.h"

#define PROGRESS_TTY_MS 250
#define PROGRESS_LOG_MS 10000
#define PROGRESS_MAX 64 /* sources reported at once */

struct progress {
	struct dagfs_ctx *ctx;	   /* the daemon's sources, or NULL */
	struct source *const *src; /* else these @n */
	size_t n;
	bool first_only; /* only sources without a revision yet */
	bool tty;
	struct ticker *t;
	struct {
		const struct source *src;
		int64_t logged_ns; /* monotonic */
	} seen[PROGRESS_MAX];
};

/* "1.2 MB", "340 kB", "12 B". */
static void fmt_bytes(char *buf, size_t len, double b)
{
	static const char *const unit[] = { "B", "kB", "MB", "GB", "TB" };
	int u = 0;

	while (b >= 1000 && u < 4) {
		b /= 1000;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

void progress_format(char *buf, size_t len, const struct source_progress *p,
		     int64_t now_wall_ns)
{
	double secs = (double)(now_wall_ns - p->started_ns) / 1e9;
	char done[24], total[24], rate[24];
	int k;

	if (secs < 0.001)
		secs = 0.001;
	fmt_bytes(done, sizeof(done), (double)p->bytes);
	fmt_bytes(total, sizeof(total), (double)p->bytes_total);
	fmt_bytes(rate, sizeof(rate), (double)p->bytes / secs);
	if (p->objects_total)
		k = snprintf(buf, len, "%llu/%llu objects",
			     (unsigned long long)p->objects,
			     (unsigned long long)p->objects_total);
	else
		k = snprintf(buf, len, "%llu objects",
			     (unsigned long long)p->objects);
	if (k < 0 || (size_t)k >= len)
		return;
	if (p->bytes_total)
		snprintf(buf + k, len - (size_t)k, ", %s of %s, %s/s, %.0fs",
			 done, total, rate, secs);
	else
		snprintf(buf + k, len - (size_t)k, ", %s, %s/s, %.0fs", done,
			 rate, secs);
}

/* The entry of @src in p->seen (added), or NULL when full. */
static int64_t *logged_of(struct progress *p, const struct source *src)
{
	for (size_t i = 0; i < PROGRESS_MAX; i++) {
		if (p->seen[i].src == src)
			return &p->seen[i].logged_ns;
		if (!p->seen[i].src) {
			p->seen[i].src = src;
			p->seen[i].logged_ns = mono_ns();
			return &p->seen[i].logged_ns;
		}
	}
	return NULL;
}

/* Report @src; on a terminal append to @line. */
static void report_one(struct progress *p, struct source *src, char *line,
		       size_t len)
{
	struct source_status st;
	char what[256];
	int64_t *logged;

	source_get_status(src, &st);
	if (!st.progress.active || (p->first_only && st.rev[0]))
		return;
	progress_format(what, sizeof(what), &st.progress, now_ns());
	if (p->tty) {
		size_t k = strlen(line);

		snprintf(line + k, len - k, "%s%s: %s", k ? " | " : "",
			 source_name(src), what);
		return;
	}
	logged = logged_of(p, src);
	if (logged && mono_ns() - *logged >= PROGRESS_LOG_MS * 1000000LL) {
		*logged = mono_ns();
		log_info(source_name(src), "syncing: %s", what);
	}
}

static void report(struct progress *p)
{
	char line[512] = "";

	if (p->ctx) {
		struct sc_set *set = sc_set_acquire(p->ctx);

		for (size_t i = 0; i < set->n; i++)
			report_one(p, set->v[i]->src, line, sizeof(line));
		sc_set_release(set);
	} else {
		for (size_t i = 0; i < p->n; i++)
			report_one(p, p->src[i], line, sizeof(line));
	}
	if (p->tty)
		log_tty_line(line);
}

static int progress_tick(void *payload)
{
	struct progress *p = payload;

	report(p);
	return p->tty ? PROGRESS_TTY_MS : 1000;
}

int progress_start(struct progress **out, struct dagfs_ctx *ctx,
		   struct source *const *src, size_t n, bool first_only)
{
	struct progress *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return -ENOMEM;
	p->ctx = ctx;
	p->src = src;
	p->n = n;
	p->first_only = first_only;
	p->tty = isatty(STDERR_FILENO);
	rc = ticker_start(&p->t, p->tty ? PROGRESS_TTY_MS : 1000, progress_tick,
			  p);
	if (rc) {
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void progress_stop(struct progress *p)
{
	if (!p)
		return;
	ticker_stop(p->t);
	if (p->tty)
		log_tty_line(NULL);
	free(p);
}
