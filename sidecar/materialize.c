/* SPDX-License-Identifier: Apache-2.0 */
/*
 * materialize.c - dagfs without FUSE: `mount --materialize DIR` keeps
 * DIR/current pointing at a plain tree of the current revisions (hard
 * links into the cache), and `sync --once` does it once and exits, at
 * pinned revisions if asked. The layout is git-sync's --link: Airflow's
 * dags_folder is DIR/current, swapped by one rename().
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sidecar_i.h"

#define TAG "materialize"

/*
 * Describe materialised revision @mid as DIR/.revs/<mid>.json (before
 * DIR/current names it): its tree id, recorded in the cache like a
 * mount's, and each source's revision, in the shape of a mount's
 * .dagfs/status.json, so a DAG bundle over DIR knows what it serves.
 */
static int mat_describe(struct store *st, struct source *const *src,
			struct snap *const *snaps, size_t n, const char *dir,
			const char *mid, unsigned keep_trees)
{
	struct tree_member *m = calloc(n + 1, sizeof(*m));
	struct tree_json_src *v = calloc(n + 1, sizeof(*v));
	char(*urls)[1024] = calloc(n + 1, sizeof(*urls));
	char(*refs)[256] = calloc(n + 1, sizeof(*refs));
	char tree[DHASH_HEX], revs[PATH_MAX], name[DHASH_HEX + 8];
	char *buf = NULL;
	size_t len = 0;
	FILE *f = NULL;
	int rc = m && v && urls && refs ? 0 : -ENOMEM;

	for (size_t i = 0; !rc && i < n; i++) {
		source_origin(src[i], urls[i], sizeof(urls[i]), refs[i],
			      sizeof(refs[i]));
		m[i] = (struct tree_member){
			.source = source_name(src[i]),
			.at = source_at(src[i]),
			.rev = snaps[i] ? snaps[i]->rev : "",
			.snap_id = snaps[i] ? snaps[i]->id : ""
		};
		v[i] = (struct tree_json_src){
			.source = source_name(src[i]),
			.at = source_at(src[i]),
			.type = source_type(src[i]),
			.keep = source_keep(src[i]),
			.url = *urls[i] ? urls[i] : NULL,
			.ref = *refs[i] ? refs[i] : NULL,
			.snap = snaps[i],
		};
	}
	if (!rc)
		rc = tree_record(st, m, n, keep_trees, tree);
	if (!rc && !(f = open_memstream(&buf, &len)))
		rc = -ENOMEM;
	if (f) {
		tree_json_put(f, tree, v, n);
		if (fclose(f))
			rc = -ENOMEM;
	}
	snprintf(revs, sizeof(revs), "%s/.revs", dir);
	snprintf(name, sizeof(name), "%s.json", mid);
	if (!rc)
		rc = pub_write_file(revs, revs, name, buf, len);
	free(buf);
	free(m);
	free(v);
	free(urls);
	free(refs);
	return rc;
}

void materialize_all(struct dagfs_ctx *ctx)
{
	struct sc_set *set;
	struct snap **snaps = NULL;
	struct source **srcs = NULL;
	const char **ats = NULL;
	char id[DHASH_HEX];
	int rc = -ENOMEM;

	pthread_mutex_lock(&ctx->lock); /* one composition at a time */
	set = sc_set_acquire(ctx);
	snaps = calloc(set->n + 1, sizeof(*snaps));
	srcs = calloc(set->n + 1, sizeof(*srcs));
	ats = calloc(set->n + 1, sizeof(*ats));
	if (snaps && ats && srcs) {
		bool all = true;

		for (size_t i = 0; i < set->n; i++) {
			srcs[i] = set->v[i]->src;
			snaps[i] = source_current(set->v[i]->src);
			ats[i] = source_at(set->v[i]->src);
			all &= snaps[i] != NULL;
		}
		/* never a tree with a source missing: wait for all */
		rc = all ? mat_compose(ctx->store, snaps, ats, set->n,
				       ctx->materialize, id) :
			   -EAGAIN;
		if (rc == -EAGAIN)
			goto out;
		if (!rc)
			rc = mat_describe(ctx->store, srcs, snaps, set->n,
					  ctx->materialize, id,
					  ctx->cfg->keep_trees);
		if (!rc)
			rc = mat_publish(ctx->materialize, id);
	}
	if (rc)
		log_err(TAG, "%s: %s; the previous revision stays current",
			ctx->materialize, strerror(-rc));
	else if (mat_prune(ctx->materialize, id, ctx->cfg->grace_ms / 1000) > 0)
		log_info(TAG, "removed revisions retired over %d s ago",
			 ctx->cfg->grace_ms / 1000);
out:
	for (size_t i = 0; snaps && i < set->n; i++)
		snap_unref(snaps[i]);
	pthread_mutex_unlock(&ctx->lock);
	sc_set_release(set);
	free(snaps);
	free(srcs);
	free(ats);
}

/* The pinned revision of @name in the NAME=REV lines, or NULL. */
static const char *pinned(const char *lines, const char *name, char *buf,
			  size_t len)
{
	size_t nl = strlen(name);

	for (const char *l = lines; l && *l;) {
		const char *end = strchr(l, '\n');
		size_t ll = end ? (size_t)(end - l) : strlen(l);

		if (ll > nl + 1 && !strncmp(l, name, nl) && l[nl] == '=' &&
		    ll - nl - 1 < len) {
			memcpy(buf, l + nl + 1, ll - nl - 1);
			buf[ll - nl - 1] = '\0';
			return buf;
		}
		l = end ? end + 1 : NULL;
	}
	return NULL;
}

/* Every NAME in --revision names a configured source. */
static int check_pins(const struct dagfs_config *c, struct source **src)
{
	for (const char *l = c->revision; l && *l;) {
		const char *eq = strchr(l, '='), *end = strchr(l, '\n');
		size_t nl = eq ? (size_t)(eq - l) : 0;
		bool found = false;

		for (size_t i = 0; eq && i < c->nsources; i++)
			found |= strlen(source_name(src[i])) == nl &&
				 !strncmp(source_name(src[i]), l, nl);
		if (!found) {
			fprintf(stderr,
				"dagfs: --revision %.*s: expected NAME=REV "
				"with NAME a configured source\n",
				(int)(end ? end - l : (long)strlen(l)), l);
			return -EINVAL;
		}
		l = end ? end + 1 : NULL;
	}
	return 0;
}

int cmd_sync(const struct dagfs_config *c)
{
	struct source **src = calloc(c->nsources, sizeof(*src));
	struct snap **snaps = calloc(c->nsources, sizeof(*snaps));
	const char **ats = calloc(c->nsources, sizeof(*ats));
	struct store *st = NULL;
	struct progress *prog = NULL;
	char err[1024], id[DHASH_HEX], rev[256];
	int rc = 0;

	if (!c->once || !c->materialize || c->npos) {
		fprintf(stderr,
			"dagfs: sync needs --once and --materialize DIR "
			"(a continuous materialise is dagfs mount --materialize "
			"DIR)\n");
		rc = -EINVAL;
		goto out;
	}
	if (!src || !snaps || !ats) {
		rc = -ENOMEM;
		goto out;
	}
	rc = store_open(&st, c->cache, false);
	if (rc) {
		fprintf(stderr, "dagfs: cache %s: %s\n", c->cache,
			rc == -EBUSY ? "in use by another dagfs process" :
				       strerror(-rc));
		goto out;
	}
	for (size_t i = 0; !rc && i < c->nsources; i++) {
		rc = source_new(&src[i], &c->sources[i].spec, st, err,
				sizeof(err));
		if (rc)
			fprintf(stderr, "dagfs: %s: %s\n", c->sources[i].origin,
				err);
	}
	if (!rc)
		rc = check_pins(c, src);
	if (!rc && progress_start(&prog, NULL, src, c->nsources, false))
		prog = NULL; /* syncs without a progress line */
	for (size_t i = 0; !rc && i < c->nsources; i++) {
		const char *pin = pinned(c->revision, source_name(src[i]), rev,
					 sizeof(rev));

		/* a pinned revision: from the cache, else fetched by id */
		rc = pin ? source_fetch_rev(src[i], pin, c->fetch_timeout_ms,
					    &snaps[i], err, sizeof(err)) :
			   source_sync_once(src[i], &snaps[i], err,
					    sizeof(err));
		if (rc)
			fprintf(stderr, "dagfs: %s\n", err);
		else
			ats[i] = source_at(src[i]);
	}
	progress_stop(prog);
	if (!rc) {
		rc = mat_compose(st, snaps, ats, c->nsources, c->materialize,
				 id);
		if (!rc)
			rc = mat_describe(st, src, snaps, c->nsources,
					  c->materialize, id, c->keep_trees);
		if (!rc)
			rc = mat_publish(c->materialize, id);
		if (rc)
			fprintf(stderr, "dagfs: materialising into %s: %s\n",
				c->materialize, strerror(-rc));
	}
	if (!rc) {
		for (size_t i = 0; i < c->nsources; i++)
			printf("%s %s\n", source_name(src[i]), snaps[i]->rev);
		printf("%s/current -> .revs/%s\n", c->materialize, id);
	}
out:
	for (size_t i = 0; snaps && src && i < c->nsources; i++) {
		snap_unref(snaps[i]);
		source_free(src[i]);
	}
	free(src);
	free(snaps);
	free(ats);
	store_close(st);
	return rc ? 1 : 0;
}
