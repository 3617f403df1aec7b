/* SPDX-License-Identifier: Apache-2.0 */
/*
 * git.c - the git source type: options, the bare repository in the cache
 * (<cache>/git/<name>/repo.git, plus the blob map beside it), and one sync:
 * list the remote's refs, fetch only when the wanted ref moved, then build
 * the snapshot of its commit (git_tree.c). The revision id is the commit
 * id in hex.
 *
 * Semantics an operator relies on:
 * - ref= a branch, a tag (followed if it moves) or a full commit id (a pin:
 *   once present it is never fetched again); default the remote's HEAD.
 * - A force-push simply moves to the new commit; a deleted ref or an
 *   unreachable remote fails the sync, and the loop keeps serving the
 *   last good snapshot.
 * - mtime of a file or link: the commit time of the revision in which
 *   dagfs first saw that content at that path (kept from the previous
 *   snapshot while the content is unchanged). On the very first sync of
 *   a source every entry gets the served commit's time: dagfs does not
 *   walk history. A directory's mtime is the newest of its entries'.
 * - Only the wanted ref is fetched; every fetch negotiates with all local
 *   refs, so later fetches are incremental. Built with libgit2 1.7 or
 *   later (GITSRC_SHALLOW), from smart HTTP (gitsrc_shallow), a source's
 *   first fetch and a commit asked for by id bring one commit and its tree
 *   (depth 1): mtimes need no history (above), and an older commit is
 *   fetched by its id, or failing that by deepening the branches and tags
 *   until it appears. Otherwise the first fetch brings the whole history
 *   of that ref.
 *
 * Polling, backoff, health and publication belong to source_loop.c; this
 * file only answers "build me the current revision". libgit2 errors become
 * a one-line message in exactly one place, gitsrc_fail().
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "git_i.h"

#define TIP_REF "refs/dagfs/tip"
#define PACKS_MAX 64 /* one pack per fetch; repack past this */

static const char *const git_keys[] = { "ref",
					"subpath",
					"submodules",
					"ssh-key",
					"ssh-passphrase-file",
					"known-hosts",
					"insecure-no-host-key-check",
					"username",
					"password-file",
					"token-file",
					"fetch-timeout",
					NULL };

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_rc;

/*
 * libgit2 is initialised once per process and never shut down (sources
 * come and go, the library stays). System and XDG git config are ignored
 * and remotes skip insteadOf, so the host's git config cannot redirect
 * what we fetch. Its trace goes to our log at debug only.
 */
static void trace_cb(git_trace_level_t level, const char *msg)
{
	(void)level;
	log_debug("libgit2", "%s", msg);
}

static void lib_init(void)
{
	static const int levels[] = { GIT_CONFIG_LEVEL_SYSTEM,
				      GIT_CONFIG_LEVEL_XDG };

	lib_rc = git_libgit2_init();
	if (lib_rc < 0 || (lib_rc = gitsrc_stream_register()))
		return;
	for (size_t i = 0; i < 2; i++)
		git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, levels[i], "");
	git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
	git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, 1);
	if (__atomic_load_n(&log_threshold, __ATOMIC_RELAXED) >= LOG_LVL_DEBUG)
		git_trace_set(GIT_TRACE_DEBUG, trace_cb);
	lib_rc = 0;
}

/* ------------------------------------------------------------ errors */

static int errno_of(int rc, const git_error *e)
{
	switch (rc) {
	case GIT_ECERTIFICATE:
		return EPERM;
	case GIT_EAUTH:
		return EACCES;
	case GIT_ENOTFOUND:
		return ENOENT;
	case GIT_EUSER:
		return ECANCELED;
	case GIT_EINVALIDSPEC:
		return EINVAL;
	default:
		break;
	}
	if (e && e->klass == GIT_ERROR_NOMEMORY)
		return ENOMEM;
	if (e && (e->klass == GIT_ERROR_NET || e->klass == GIT_ERROR_SSH ||
		  e->klass == GIT_ERROR_HTTP || e->klass == GIT_ERROR_SSL))
		return ECOMM;
	return EIO;
}

int gitsrc_fail(struct gitsrc *g, const struct gitsrc_cb *cb, int rc,
		const char *doing, char *err, size_t errlen)
{
	const git_error *e = git_error_last();
	const char *cause = cb && cb->why[0] ? cb->why :
			    e && e->message  ? e->message :
					       "unknown libgit2 error";
	int errnum = errno_of(rc, e), deadline_ms;
	int expired = gitsrc_stream_expired(&deadline_ms);

	if (expired == GITSRC_STOPPED)
		return -ECANCELED; /* not a failure: the loop ends quietly */
	if (expired == GITSRC_DEADLINE) {
		snprintf(err, errlen,
			 "%s: %s%sfetch took longer than %d s "
			 "(fetch-timeout=)",
			 g->src->tag, doing ? doing : "", doing ? ": " : "",
			 deadline_ms / 1000);
		return -ETIMEDOUT;
	}
	if (cb && cb->why[0] && rc != GIT_EUSER)
		errnum = rc == GIT_EAUTH ? EACCES : EPERM;
	if (rc == GIT_EAUTH && !(cb && cb->why[0]))
		cause = "authentication failed";
	snprintf(err, errlen, "%s: %s%s%s", g->src->tag, doing ? doing : "",
		 doing ? ": " : "", cause);
	/* libgit2's message may end with a newline from the remote */
	err[strcspn(err, "\r\n")] = '\0';
	return -errnum;
}

/* ------------------------------------------------------------- fetch */

static bool have_commit(git_repository *repo, const git_oid *oid)
{
	git_commit *c;

	if (git_commit_lookup(&c, repo, oid))
		return false;
	git_commit_free(c);
	return true;
}

/*
 * Fetch every branch and tag and keep them as refs/dagfs/... refs, so the
 * commit we want (a pin, a submodule's commit) arrives even when the
 * server refuses wants of unadvertised ids, and later fetches negotiate.
 */
static int fetch_all(struct gitsrc_cb *cb, git_repository *repo,
		     const char *url, int depth, const char *what, char *err,
		     size_t errlen)
{
	const char *specs[] = { "+refs/heads/*:refs/dagfs/heads/*",
				"+refs/tags/*:refs/dagfs/tags/*" };
	const git_remote_head **heads;
	git_remote *r = NULL;
	git_odb *odb = NULL;
	size_t n;
	int rc = gitsrc_connect(&r, cb, repo, url);

	if (!rc)
		rc = gitsrc_download(cb, r, specs, 2, depth);
	if (!rc)
		rc = git_remote_ls(&heads, &n, r);
	if (!rc)
		rc = git_repository_odb(&odb, repo);
	for (size_t i = 0; !rc && i < n; i++) {
		char name[GITSRC_REFNAME_MAX];
		git_reference *ref;

		if (strncmp(heads[i]->name, "refs/", 5) ||
		    strstr(heads[i]->name, "^{}") ||
		    !git_odb_exists(odb, &heads[i]->oid))
			continue;
		snprintf(name, sizeof(name), "refs/dagfs/%s",
			 heads[i]->name + 5);
		if (!git_reference_create(&ref, repo, name, &heads[i]->oid, 1,
					  "dagfs fetch"))
			git_reference_free(ref);
	}
	git_odb_free(odb);
	git_remote_free(r);
	return rc ? gitsrc_fail(cb->g, cb, rc, what, err, errlen) : 0;
}

/*
 * Shallow: ask for commit @want by its id, one commit deep, kept as
 * refs/dagfs/commits/<id>. True if it came; a server may refuse a want of
 * an id it does not advertise (git's uploadpack.allow*SHA1InWant), and
 * that is no error: the branches and tags are tried next.
 */
static bool fetch_by_id(struct gitsrc_cb *cb, git_repository *repo,
			const char *url, const git_oid *want)
{
	char hex[GIT_OID_HEXSZ + 1], spec[2 * GIT_OID_HEXSZ + 32];
	const char *specs[] = { spec };
	git_reference *ref;
	git_remote *r = NULL;
	int rc;

	if (!gitsrc_shallow(url))
		return false;
	git_oid_tostr(hex, sizeof(hex), want);
	snprintf(spec, sizeof(spec), "+%s:refs/dagfs/commits/%s", hex, hex);
	rc = gitsrc_connect(&r, cb, repo, url);
	if (!rc)
		rc = gitsrc_download(cb, r, specs, 1, 1);
	git_remote_free(r);
	if (rc) {
		log_debug(cb->g->src->tag, "fetching %s by id: %s", hex,
			  git_error_last() ? git_error_last()->message : "?");
		return false;
	}
	if (!have_commit(repo, want))
		return false;
	snprintf(spec, sizeof(spec), "refs/dagfs/commits/%s", hex);
	if (!git_reference_create(&ref, repo, spec, want, 1, "dagfs fetch"))
		git_reference_free(ref);
	return true;
}

/*
 * Make commit @want present in @repo (of @url): by its id, else from
 * every branch and tag, one commit deep and then deeper until it appears
 * (shallow), or whole (libgit2 1.5). -ENOENT if none of them reaches it;
 * @what names the fetch in errors.
 */
static int fetch_commit_into(struct gitsrc_cb *cb, git_repository *repo,
			     const char *url, const git_oid *want,
			     const char *what, char *err, size_t errlen)
{
	static const int depths[] = { 1, 64, 4096, GITSRC_UNSHALLOW };
	bool shallow = gitsrc_shallow(url);
	int rc = 0;

	if (have_commit(repo, want) || fetch_by_id(cb, repo, url, want))
		return 0;
	for (size_t i = shallow ? 0 : 3; i < 4; i++) {
		/* unshallowing a repository that is not shallow is an error */
		if (shallow && depths[i] == GITSRC_UNSHALLOW &&
		    !git_repository_is_shallow(repo))
			break;
		rc = fetch_all(cb, repo, url, shallow ? depths[i] : 0, what,
			       err, errlen);
		if (rc || have_commit(repo, want))
			return rc;
	}
	return -ENOENT;
}

/* Make commit @want of the source present (a pin, a revision by id). */
static int fetch_commit(struct gitsrc *g, const git_oid *want, char *err,
			size_t errlen)
{
	struct gitsrc_cb cb = { .g = g };
	int rc = fetch_commit_into(&cb, g->repo, g->url, want, "fetching", err,
				   errlen);

	if (rc == -ENOENT)
		snprintf(err, errlen,
			 "%s: commit %s is not reachable from any "
			 "branch or tag of the remote",
			 g->src->tag, git_oid_tostr_s(want));
	return rc;
}

/*
 * Point TIP_REF at @tip: the next fetch sends it as a "have", and a
 * repack keeps everything it reaches.
 */
static int keep_tip(struct gitsrc *g, const git_oid *tip)
{
	git_reference *ref;
	int rc = git_reference_create(&ref, g->repo, TIP_REF, tip, 1,
				      "dagfs fetch");

	git_reference_free(ref);
	return rc;
}

/* Peel the fetched @tip (a commit or an annotated tag) to a commit id. */
static int peel_commit(git_repository *repo, const git_oid *tip, git_oid *out)
{
	git_object *o, *c;
	int rc = git_object_lookup(&o, repo, tip, GIT_OBJECT_ANY);

	if (rc)
		return rc;
	rc = git_object_peel(&c, o, GIT_OBJECT_COMMIT);
	git_object_free(o);
	if (rc)
		return rc;
	git_oid_cpy(out, git_object_id(c));
	git_object_free(c);
	return 0;
}

/*
 * List the remote's refs; if the wanted commit is new, fetch just that
 * ref. Returns 1 if the commit is @prev_rev (nothing to do), 0 with the
 * commit to serve in @out, or -errno with the reason in @err.
 */
static int poll_ref(struct gitsrc *g, const char *prev_rev, git_oid *out,
		    char *err, size_t errlen)
{
	struct gitsrc_cb cb = { .g = g };
	char name[GITSRC_REFNAME_MAX], spec[GITSRC_REFNAME_MAX + 32];
	char hex[GIT_OID_HEXSZ + 1];
	const char *specs[] = { spec };
	git_remote *r = NULL;
	git_oid tip;
	int rc = gitsrc_connect(&r, &cb, g->repo, g->url);
	const char *doing = "listing remote refs";

	if (!rc)
		rc = gitsrc_ls_find(r, g->ref, name, sizeof(name), &tip, out);
	if (rc)
		goto out;
	git_oid_tostr(hex, sizeof(hex), out);
	if (prev_rev && !strcmp(hex, prev_rev)) {
		rc = 1;
		goto out;
	}
	if (!have_commit(g->repo, out)) {
		doing = "fetching";
		snprintf(spec, sizeof(spec), "+%s:%s", name, TIP_REF);
		/* the first fetch brings the tip alone (shallow); later ones
		 * what lies between it and what the repository has */
		rc = gitsrc_download(&cb, r, specs, 1,
				     git_repository_is_empty(g->repo) == 1);
		if (!rc)
			rc = keep_tip(g, &tip);
		if (!rc)
			rc = peel_commit(g->repo, &tip, out);
	} else {
		rc = keep_tip(g, out); /* keeps it reachable for repacks */
	}
out:
	git_remote_free(r);
	if (rc < 0)
		return gitsrc_fail(g, &cb, rc, doing, err, errlen);
	return rc;
}

int gitsrc_submodule_repo(git_repository **out, struct gitsrc *g,
			  const char *url, const git_oid *commit, char *err,
			  size_t errlen)
{
	struct gitsrc_cb cb = { .g = g };
	char path[PATH_MAX + 64], hex[DHASH_HEX], what[300];
	git_repository *repo = NULL;
	struct dhash h;
	int rc;

	dhash_buf(&h, url, strlen(url));
	dhash_hex(hex, &h);
	snprintf(path, sizeof(path), "%s/modules/%s.git", g->dir, hex);
	rc = git_repository_open_bare(&repo, path);
	if (rc == GIT_ENOTFOUND)
		rc = git_repository_init(&repo, path, 1);
	if (rc)
		return gitsrc_fail(g, NULL, rc, "submodule repository", err,
				   errlen);
	snprintf(what, sizeof(what), "fetching submodule %.200s", url);
	rc = fetch_commit_into(&cb, repo, url, commit, what, err, errlen);
	if (rc == -ENOENT)
		snprintf(err, errlen, "%s: submodule %.200s has no commit %s",
			 g->src->tag, url, git_oid_tostr_s(commit));
	if (rc) {
		git_repository_free(repo);
		return rc;
	}
	*out = repo;
	return 0;
}

/* --------------------------------------------------------------- ops */

/* A silent remote fails the sync after 3 periods, within [10 s, 60 s]. */
static int io_timeout_ms(const struct source *src)
{
	int ms = src->period_ms > 20000 ? 60000 : 3 * src->period_ms;

	return ms < 10000 ? 10000 : ms;
}

/* The limits of one sync's (or one on-demand fetch's) remote work. */
static void set_limits(struct source *src)
{
	struct gitsrc *g = src->priv;

	gitsrc_stream_limits(io_timeout_ms(src), g->fetch_timeout_ms,
			     &src->stop);
}

static int git_sync(struct source *src, const char *prev_rev, struct snap **out,
		    char *err, size_t errlen)
{
	struct gitsrc *g = src->priv;
	char hex[GIT_OID_HEXSZ + 1];
	struct snap *prev;
	git_commit *c;
	git_oid want;
	int64_t t0;
	int rc;

	if (prev_rev && !*prev_rev)
		prev_rev = NULL;
	if (!g->swept) {
		/* here, not at init: at a reload, init runs while the
		 * source it replaces may still be fetching */
		gitsrc_pack_sweep(g);
		g->swept = true;
	}
	set_limits(src);
	if (g->pinned) {
		git_oid_cpy(&want, &g->pin);
		git_oid_tostr(hex, sizeof(hex), &want);
		if (prev_rev && !strcmp(prev_rev, hex))
			return 0; /* a pin never moves */
		if ((rc = fetch_commit(g, &want, err, errlen)))
			return rc;
		if ((rc = keep_tip(g, &want)))
			return gitsrc_fail(g, NULL, rc, "pinning", err, errlen);
	} else if ((rc = poll_ref(g, prev_rev, &want, err, errlen)) < 0) {
		return rc;
	} else if (rc) {
		/* nothing new: a quiet moment to tidy the cached repository */
		rc = gitsrc_pack_tidy(g, PACKS_MAX);
		return rc ? gitsrc_fail(g, NULL, rc,
					"reopening after a "
					"repack",
					err, errlen) :
			    0;
	}
	rc = git_commit_lookup(&c, g->repo, &want);
	if (rc)
		return gitsrc_fail(g, NULL, rc, "looking up the commit", err,
				   errlen);
	prev = source_current(src);
	t0 = mono_ns();
	rc = gitsrc_build(g, c, prev, out, err, errlen);
	snap_unref(prev);
	git_commit_free(c);
	if (rc)
		return rc;
	log_debug(src->tag, "built the snapshot of %s in %.1f ms",
		  git_oid_tostr_s(&want), (double)(mono_ns() - t0) / 1e6);
	return 1;
}

/*
 * A revision asked for by id (revisions on demand): the commit, fetched if
 * need be, built as on a first sync (every mtime the commit's time). The
 * tip and the served revision do not move.
 */
static int git_fetch_rev(struct source *src, const char *rev, struct snap **out,
			 char *err, size_t errlen)
{
	struct gitsrc *g = src->priv;
	git_commit *c;
	git_oid want;
	int rc;

	if (strlen(rev) != GIT_OID_HEXSZ ||
	    strspn(rev, "0123456789abcdef") != GIT_OID_HEXSZ ||
	    git_oid_fromstr(&want, rev)) {
		snprintf(err, errlen,
			 "%s: '%.100s' is not a full commit id "
			 "(40 lowercase hex digits)",
			 src->tag, rev);
		return -ENOENT;
	}
	set_limits(src);
	rc = fetch_commit(g, &want, err, errlen);
	if (rc)
		return rc;
	rc = git_commit_lookup(&c, g->repo, &want);
	if (rc)
		return gitsrc_fail(g, NULL, rc, "looking up the commit", err,
				   errlen);
	rc = gitsrc_build(g, c, NULL, out, err, errlen);
	git_commit_free(c);
	return rc;
}

static void git_fini(struct source *src)
{
	struct gitsrc *g = src->priv;

	if (!g)
		return;
	gitsrc_blobmap_close(&g->map);
	git_repository_free(g->repo);
	free(g->subpath);
	free(g);
	src->priv = NULL;
}

/* A path option must name a readable file (checked now, read later). */
static int file_opt(struct gitsrc *g, const char **out, const char *key,
		    char *err, size_t errlen)
{
	const char *v = source_spec_get(g->src->spec, key);

	*out = v;
	if (v && access(v, R_OK)) {
		snprintf(err, errlen, "%s: %s=%s: %s", g->src->tag, key, v,
			 strerror(errno));
		return -errno;
	}
	return 0;
}

/* Credentials belong in files: refuse "https://user:secret@host/". */
static bool url_has_password(const char *url)
{
	const char *s = strstr(url, "://"), *at, *slash;

	if (!s)
		return false;
	s += 3;
	at = strchr(s, '@');
	slash = strchr(s, '/');
	if (!at || (slash && slash < at))
		return false;
	return memchr(s, ':', (size_t)(at - s)) != NULL;
}

static int opts_ref(struct gitsrc *g, char *err, size_t errlen)
{
	const char *v = source_spec_get(g->src->spec, "subpath");
	size_t n;

	g->ref = source_spec_get(g->src->spec, "ref");
	if (g->ref && strlen(g->ref) == GIT_OID_HEXSZ &&
	    strspn(g->ref, "0123456789abcdef") == GIT_OID_HEXSZ) {
		g->pinned = true;
		if (git_oid_fromstr(&g->pin, g->ref))
			return -EINVAL;
	}
	while (v && *v == '/')
		v++;
	g->subpath = strdup(v ? v : "");
	if (!g->subpath)
		return -ENOMEM;
	n = strlen(g->subpath);
	while (n && g->subpath[n - 1] == '/')
		g->subpath[--n] = '\0';
	if (n && snap_path_check(g->subpath, n)) {
		snprintf(err, errlen, "%s: bad subpath '%s'", g->src->tag, v);
		return -EINVAL;
	}
	v = source_spec_get(g->src->spec, "submodules");
	if (v && strcmp(v, "off") && strcmp(v, "recursive")) {
		snprintf(err, errlen,
			 "%s: submodules must be off or "
			 "recursive, not '%s'",
			 g->src->tag, v);
		return -EINVAL;
	}
	g->submodules = v && !strcmp(v, "recursive");
	return 0;
}

static int opts_auth(struct gitsrc *g, char *err, size_t errlen)
{
	const char *v = source_spec_get(g->src->spec,
					"insecure-no-host-key-check");
	struct gitsrc_url u;
	int rc;

	if (v && parse_bool(v, &g->insecure)) {
		snprintf(err, errlen,
			 "%s: bad insecure-no-host-key-check "
			 "'%s'",
			 g->src->tag, v);
		return -EINVAL;
	}
	/* default: ten periods within [10 min, 24 h] (a first clone) */
	g->fetch_timeout_ms = g->src->period_ms > 8640000 ?
				      86400000 :
			      g->src->period_ms > 60000 ?
				      10 * g->src->period_ms :
				      600000;
	v = source_spec_get(g->src->spec, "fetch-timeout");
	if (v && (parse_duration_ms(v, &g->fetch_timeout_ms) ||
		  g->fetch_timeout_ms < 1000)) {
		snprintf(err, errlen,
			 "%s: bad fetch-timeout '%s' (e.g. 10m; "
			 "at least 1s)",
			 g->src->tag, v);
		return -EINVAL;
	}
	g->username = source_spec_get(g->src->spec, "username");
	if ((rc = file_opt(g, &g->ssh_key, "ssh-key", err, errlen)) ||
	    (rc = file_opt(g, &g->ssh_pass_file, "ssh-passphrase-file", err,
			   errlen)) ||
	    (rc = file_opt(g, &g->known_hosts, "known-hosts", err, errlen)) ||
	    (rc = file_opt(g, &g->password_file, "password-file", err,
			   errlen)) ||
	    (rc = file_opt(g, &g->token_file, "token-file", err, errlen)))
		return rc;
	if (g->password_file && g->token_file) {
		snprintf(err, errlen,
			 "%s: give password-file= or token-file=, "
			 "not both",
			 g->src->tag);
		return -EINVAL;
	}
	if (url_has_password(g->url)) {
		snprintf(err, errlen,
			 "%s: the URL carries a password; put it "
			 "in password-file= instead",
			 g->src->tag);
		return -EINVAL;
	}
	if (gitsrc_url_parse(&u, g->url)) {
		snprintf(err, errlen, "%s: cannot parse URL '%s'", g->src->tag,
			 g->url);
		return -EINVAL;
	}
	if (u.ssh && !g->insecure && !g->known_hosts) {
		snprintf(err, errlen,
			 "%s: an ssh URL needs known-hosts= (or "
			 "insecure-no-host-key-check=1)",
			 g->src->tag);
		return -EINVAL;
	}
	return 0;
}

/* Open (creating if needed) the bare repository and the blob map. */
static int open_repo(struct gitsrc *g, char *err, size_t errlen)
{
	char path[PATH_MAX + 16];
	int rc;

	snprintf(g->dir, sizeof(g->dir), "%s/git/%s", store_dir(g->src->store),
		 g->src->name);
	rc = mkdir_p(g->dir, 0755);
	if (rc) {
		snprintf(err, errlen, "%s: %s: %s", g->src->tag, g->dir,
			 strerror(-rc));
		return rc;
	}
	snprintf(path, sizeof(path), "%s/repo.git", g->dir);
	rc = git_repository_open_bare(&g->repo, path);
	if (rc == GIT_ENOTFOUND)
		rc = git_repository_init(&g->repo, path, 1);
	if (rc)
		return gitsrc_fail(g, NULL, rc, path, err, errlen);
	snprintf(path, sizeof(path), "%s/blobmap", g->dir);
	rc = gitsrc_blobmap_open(&g->map, path);
	if (rc)
		snprintf(err, errlen, "%s: %s: %s", g->src->tag, path,
			 strerror(-rc));
	return rc;
}

static int git_init(struct source *src, char *err, size_t errlen)
{
	struct gitsrc *g;
	int rc;

	pthread_once(&lib_once, lib_init);
	if (lib_rc) {
		snprintf(err, errlen, "%s: libgit2 failed to initialise",
			 src->tag);
		return -EIO;
	}
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->map.fd = -1;
	g->src = src;
	g->url = src->spec->location;
	src->priv = g;
	rc = opts_ref(g, err, errlen);
	if (!rc)
		rc = opts_auth(g, err, errlen);
	if (!rc)
		rc = open_repo(g, err, errlen);
	if (rc) {
		if (rc == -ENOMEM && !err[0])
			snprintf(err, errlen, "%s: out of memory", src->tag);
		git_fini(src);
		return rc;
	}
	if (g->insecure)
		log_warn(src->tag,
			 "insecure-no-host-key-check is set: ssh host "
			 "keys are NOT verified");
	return 0;
}

const struct source_ops source_git_ops = {
	.type = "git",
	.init = git_init,
	.sync = git_sync,
	.fini = git_fini,
	.fetch_rev = git_fetch_rev,
	.keys = git_keys,
};
