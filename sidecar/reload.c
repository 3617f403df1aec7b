/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reload.c - SIGHUP: the configuration loaded again and applied to the
 * running daemon without unmounting.
 *
 * The whole new configuration is checked first (parsed, every source
 * built, the layout checked) and nothing changes unless all of it is
 * good. Then, against the running set, a source of the same name at the
 * same place is kept when its spec is unchanged and restarted when it
 * changed (its slot keeps serving the old tree until the new source
 * publishes); a source that is gone is stopped and its slot taken out of
 * the view; a new one gets a slot, filled from the start with its cached
 * snapshot if any (never an empty directory first), and a thread. A
 * source moved (at=) or renamed is one removal and one addition, so its
 * old place empties before its new one fills.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sidecar_i.h"

#define TAG "daemon"

extern char **environ;

/* What happens to each source of the new configuration. */
struct plan {
	const struct dagfs_config *c;
	struct source **fresh;	 /* built from c->sources, not started */
	struct sc_source **from; /* the running source it replaces, or NULL */
	bool *same;		 /* ...with an unchanged spec: kept as is */
	unsigned added, removed, restarted;
};

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

/* The running source named @name at @at, or NULL. */
static struct sc_source *running(const struct sc_set *set, const char *name,
				 const char *at)
{
	for (size_t i = 0; i < set->n; i++)
		if (!strcmp(source_name(set->v[i]->src), name) &&
		    !strcmp(source_at(set->v[i]->src), at))
			return set->v[i];
	return NULL;
}

/* True if no source of @p keeps running @s. */
static bool leaving(const struct plan *p, const struct sc_source *s)
{
	for (size_t i = 0; i < p->c->nsources; i++)
		if (p->from[i] == s)
			return false;
	return true;
}

static void plan_free(struct plan *p)
{
	for (size_t i = 0; p->fresh && i < p->c->nsources; i++)
		source_free(p->fresh[i]);
	free(p->fresh);
	free(p->from);
	free(p->same);
}

/* Build every source of @p->c and match it with the running set. */
static int plan_build(struct dagfs_ctx *ctx, struct plan *p)
{
	const struct sc_set *set = sc_set_get(ctx);
	size_t n = p->c->nsources;
	char err[1024] = "";
	int rc = 0;

	p->fresh = calloc(n + 1, sizeof(*p->fresh));
	p->from = calloc(n + 1, sizeof(*p->from));
	p->same = calloc(n + 1, sizeof(*p->same));
	if (!p->fresh || !p->from || !p->same) {
		snprintf(err, sizeof(err), "%s", strerror(ENOMEM));
		rc = -ENOMEM;
	} else {
		rc = sc_build(ctx, p->c, p->fresh, err, sizeof(err));
	}
	if (rc) {
		log_err(TAG, "reload rejected: %s", err);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		p->from[i] = running(set, source_name(p->fresh[i]),
				     source_at(p->fresh[i]));
		p->same[i] = p->from[i] && spec_equal(&p->from[i]->cfg->spec,
						      &p->c->sources[i].spec);
	}
	return 0;
}

/* Stop the sources that go or restart; empty the places of those that go.
 * Old threads end before new ones may publish into the same slot. */
static void retire(struct dagfs_ctx *ctx, struct plan *p)
{
	const struct sc_set *set = sc_set_get(ctx);

	for (size_t i = 0; i < p->c->nsources; i++)
		if (p->from[i] && !p->same[i])
			source_stop(p->from[i]->src);
	for (size_t i = 0; i < set->n; i++) {
		struct sc_source *s = set->v[i];

		if (!leaving(p, s))
			continue;
		source_stop(s->src);
		if (ctx->fs && fs_remove_slot(ctx->fs, s->slot))
			log_warn(TAG, "source %s was not in the view",
				 source_name(s->src));
		log_notice(TAG, "reload: source %s removed from /%s",
			   source_name(s->src), source_at(s->src));
		p->removed++;
	}
}

/* The running source for entry @i of the new configuration, or NULL if it
 * could not be placed (the reason is logged). */
static struct sc_source *enlist(struct dagfs_ctx *ctx, struct plan *p, size_t i)
{
	struct source *src = p->fresh[i];
	struct sc_source *s;

	if (p->same[i])
		return p->from[i];
	s = sc_source_new(ctx, src, &p->c->sources[i]);
	if (!s) {
		log_err(TAG, "reload: source %s: %s", source_name(src),
			strerror(ENOMEM));
		return NULL;
	}
	p->fresh[i] = NULL; /* s owns it now */
	if (p->from[i]) {
		s->slot = p->from[i]->slot;
		if (ctx->fs)
			sc_describe(s); /* keep=, ref= may have changed */
		p->restarted++;
		return s;
	}
	if (ctx->fs) {
		int rc = sc_place(s);

		if (rc) {
			log_err(TAG, "reload: source %s at /%s: %s; not served",
				source_name(src), source_at(src),
				strerror(-rc));
			sc_source_free(s);
			return NULL;
		}
	}
	log_notice(TAG, "reload: source %s added at /%s", source_name(src),
		   source_at(src));
	p->added++;
	return s;
}

/* Publish the new set and start the sources that are new in it. */
static void apply(struct dagfs_ctx *ctx, struct plan *p)
{
	size_t n = p->c->nsources;
	struct sc_set *set = calloc(1, sizeof(*set) + n * sizeof(set->v[0]));
	struct sc_source **start = calloc(n + 1, sizeof(*start));
	size_t nstart = 0;

	if (!set || !start) {
		log_err(TAG, "reload: %s; keeping the sources as they were",
			strerror(ENOMEM));
		free(set);
		free(start);
		return;
	}
	retire(ctx, p);
	for (size_t i = 0; i < n; i++) {
		struct sc_source *s = enlist(ctx, p, i);

		if (s)
			set->v[set->n++] = s;
		if (s && !p->same[i])
			start[nstart++] = s;
	}
	sc_set_publish(ctx, set); /* frees what only the old set named */
	for (size_t i = 0; i < nstart; i++)
		if (source_start(start[i]->src, sc_on_publish, start[i]))
			log_err(TAG, "reload: source %s did not start",
				source_name(start[i]->src));
	free(start);
	if (ctx->materialize && p->removed)
		materialize_all(ctx);
	endpoints_published(ctx);
	status_writer_kick(ctx);
}

/* Options other than sources and logging only change at a restart. */
static void warn_options(const struct dagfs_config *old,
			 const struct dagfs_config *c)
{
	const struct cfg_option *opts;
	char a[512], b[512];
	size_t n;

	opts = cfg_options(&n);
	for (size_t i = 0; i < n; i++) {
		if (opts[i].type == CFG_SOURCE ||
		    !strcmp(opts[i].name, "config") ||
		    opts[i].type == CFG_LEVEL || opts[i].type == CFG_FORMAT)
			continue;
		cfg_format(old, &opts[i], a, sizeof(a));
		cfg_format(c, &opts[i], b, sizeof(b));
		if (strcmp(a, b))
			log_warn(TAG,
				 "reload: %s changed from %s to %s; it takes "
				 "effect at the next start",
				 opts[i].name, a, b);
	}
}

void reload(struct dagfs_ctx *ctx)
{
	struct dagfs_config *c = calloc(1, sizeof(*c)), **kept = NULL;
	struct cfg_errors errs = { 0 };
	struct plan p = { .c = c };
	int rc;

	log_notice(TAG, "SIGHUP: reloading the configuration");
	rc = c ? config_load(c, CMD_MOUNT, ctx->cfg->argc, ctx->cfg->argv,
			     environ, &errs) :
		 -ENOMEM;
	for (size_t i = 0; i < errs.n; i++)
		log_err(TAG, "reload rejected: %s", errs.msg[i]);
	cfg_errors_clear(&errs);
	if (!rc && !(kept = realloc(ctx->reloads,
				    (ctx->nreloads + 1) * sizeof(*kept))))
		rc = -ENOMEM;
	if (kept)
		ctx->reloads = kept;
	if (!rc)
		rc = plan_build(ctx, &p);
	if (rc) {
		if (c) {
			plan_free(&p);
			config_free(c);
		}
		free(c);
		return;
	}
	warn_options(ctx->cfg, c);
	log_setup(c->log_level, c->log_json);
	apply(ctx, &p);
	log_notice(TAG,
		   "reloaded: %u added, %u removed, %u restarted, %zu "
		   "source%s serving",
		   p.added, p.removed, p.restarted, sc_set_get(ctx)->n,
		   sc_set_get(ctx)->n == 1 ? "" : "s");
	ctx->reloads[ctx->nreloads++] = c;
	plan_free(&p);
}
