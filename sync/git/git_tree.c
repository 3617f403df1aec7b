/* SPDX-License-Identifier: Apache-2.0 */
/*
 * git_tree.c - from a git commit to a dagfs snapshot: walks the commit's
 * tree (or its sub-path), stores blobs the store does not have yet, keeps
 * mtimes stable for unchanged content, and composes submodules in place.
 *
 * The blob map (git blob id -> content hash) is what makes a sync of a new
 * commit cost only its changed files: a known blob is never read from git
 * nor hashed again. This file does no network I/O except through
 * gitsrc_submodule_repo() when submodules are on.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "git_i.h"

#define REC_SIZE 48 /* oid 20, dhash 16, size 8, XXH32 4 */
#define SUBMODULE_DEPTH_MAX 8

/* ------------------------------------------------------------ blob map */

static size_t slot_of(const struct gitsrc_blobmap *m, const git_oid *oid)
{
	uint64_t k;

	memcpy(&k, oid->id, sizeof(k));
	return (size_t)k & (m->cap - 1);
}

static void map_insert(struct gitsrc_blobmap *m, const struct gitsrc_blobrec *r)
{
	size_t i = slot_of(m, &r->oid);

	while (m->v[i].used && git_oid_cmp(&m->v[i].oid, &r->oid))
		i = (i + 1) & (m->cap - 1);
	if (!m->v[i].used)
		m->n++;
	m->v[i] = *r;
	m->v[i].used = true;
}

static int map_grow(struct gitsrc_blobmap *m)
{
	struct gitsrc_blobmap big = { .cap = m->cap ? m->cap * 2 : 1024 };

	big.v = calloc(big.cap, sizeof(*big.v));
	if (!big.v)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++)
		if (m->v[i].used)
			map_insert(&big, &m->v[i]);
	free(m->v);
	m->v = big.v;
	m->cap = big.cap;
	return 0;
}

const struct gitsrc_blobrec *gitsrc_blobmap_get(const struct gitsrc_blobmap *m,
						const git_oid *oid)
{
	if (!m->cap)
		return NULL;
	for (size_t i = slot_of(m, oid); m->v[i].used;
	     i = (i + 1) & (m->cap - 1))
		if (!git_oid_cmp(&m->v[i].oid, oid))
			return &m->v[i];
	return NULL;
}

static void rec_encode(unsigned char *buf, const struct gitsrc_blobrec *r)
{
	uint32_t sum;

	memcpy(buf, r->oid.id, 20);
	memcpy(buf + 20, r->h.b, 16);
	memcpy(buf + 36, &r->size, 8);
	sum = XXH32(buf, 44, 0);
	memcpy(buf + 44, &sum, 4);
}

static bool rec_decode(struct gitsrc_blobrec *r, const unsigned char *buf)
{
	uint32_t sum;

	memcpy(&sum, buf + 44, 4);
	if (sum != XXH32(buf, 44, 0))
		return false;
	memset(r, 0, sizeof(*r));
	memcpy(r->oid.id, buf, 20);
	memcpy(r->h.b, buf + 20, 16);
	memcpy(&r->size, buf + 36, 8);
	return true;
}

int gitsrc_blobmap_add(struct gitsrc_blobmap *m, const git_oid *oid,
		       const struct dhash *h, uint64_t size)
{
	struct gitsrc_blobrec r = { .h = *h, .size = size };
	unsigned char buf[REC_SIZE];
	int rc;

	git_oid_cpy(&r.oid, oid);
	if (2 * (m->n + 1) > m->cap && (rc = map_grow(m)))
		return rc;
	map_insert(m, &r);
	rec_encode(buf, &r);
	/* Not fsynced: a lost record only costs hashing that blob again. */
	if (write(m->fd, buf, REC_SIZE) != REC_SIZE)
		return -EIO;
	return 0;
}

/* Read every record; cut the file at the first bad one (a torn append). */
static int map_load(struct gitsrc_blobmap *m)
{
	unsigned char buf[REC_SIZE * 256];
	off_t good = 0;
	ssize_t n;
	int rc;

	while ((n = pread(m->fd, buf, sizeof(buf), good)) > 0) {
		for (ssize_t o = 0; o + REC_SIZE <= n; o += REC_SIZE) {
			struct gitsrc_blobrec r;

			if (!rec_decode(&r, buf + o))
				return ftruncate(m->fd, good) ? -errno : 0;
			if (2 * (m->n + 1) > m->cap && (rc = map_grow(m)))
				return rc;
			map_insert(m, &r);
			good += REC_SIZE;
		}
		if (n % REC_SIZE)
			return ftruncate(m->fd, good) ? -errno : 0;
	}
	return n < 0 ? -errno : 0;
}

int gitsrc_blobmap_open(struct gitsrc_blobmap *m, const char *path)
{
	int rc;

	memset(m, 0, sizeof(*m));
	m->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (m->fd < 0)
		return -errno;
	rc = map_load(m);
	if (rc)
		gitsrc_blobmap_close(m);
	return rc;
}

void gitsrc_blobmap_close(struct gitsrc_blobmap *m)
{
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	free(m->v);
	m->v = NULL;
	m->n = m->cap = 0;
}

/* ---------------------------------------------------------------- walk */

/* One walk over one repository's tree (submodules nest walks). */
struct walk {
	struct gitsrc *g;
	struct snap_builder *b;
	const struct snap *prev;
	int64_t commit_ns;
	git_repository *repo;
	git_tree *root;	 /* root tree of this repository's commit */
	const char *url; /* this repository's URL (relative submodules) */
	int depth;
	int64_t newest;	      /* newest mtime in the directory being walked */
	char *spath;	      /* snapshot path being built (shared buffer) */
	char rpath[PATH_MAX]; /* path inside this repository */
	char *err;
	size_t errlen;
};

static int walk_tree(struct walk *w, const git_tree *tree, size_t slen,
		     size_t rlen);

/* Keep the previous mtime if this path had this very content before. */
static int64_t keep_mtime(const struct walk *w, uint8_t type,
			  const struct dhash *h, const char *target)
{
	const struct snap_entry *e;
	int i;

	if (!w->prev || (i = snap_lookup(w->prev, w->spath)) < 0)
		return w->commit_ns;
	e = &w->prev->e[i];
	if (e->type != type || (h && !dhash_eq(&e->hash, h)) ||
	    (target && strcmp(e->target, target)))
		return w->commit_ns;
	return e->mtime_ns;
}

/* The mtime of the entry at w->spath; also tracks the directory's newest. */
static int64_t stable_mtime(struct walk *w, uint8_t type, const struct dhash *h,
			    const char *target)
{
	int64_t t = keep_mtime(w, type, h, target);

	if (t > w->newest)
		w->newest = t;
	return t;
}

/*
 * A directory's mtime is the newest of its entries', so it moves only
 * when something under it changed (the kernel then drops only its
 * cached names). @newest is 0 for an empty tree.
 */
static int add_dir(struct walk *w, int64_t newest, int64_t outer)
{
	int rc;

	if (!newest)
		newest = keep_mtime(w, SNAP_DIR, NULL, NULL);
	rc = snap_builder_add_dir(w->b, w->spath, 0755, newest);
	w->newest = newest > outer ? newest : outer;
	return rc;
}

static int fail_store(struct walk *w, int rc, const char *what)
{
	snprintf(w->err, w->errlen, "%s: %s %s: %s", w->g->src->tag, what,
		 w->spath, strerror(-rc));
	return rc;
}

/* The content hash of blob @oid, storing the bytes if the store lacks them. */
static int blob_hash(struct walk *w, const git_oid *oid,
		     struct gitsrc_blobrec *out)
{
	const struct gitsrc_blobrec *r = gitsrc_blobmap_get(&w->g->map, oid);
	git_blob *blob;
	int rc;

	if (r && store_has(w->g->src->store, &r->h) == 1) {
		*out = *r;
		return 0;
	}
	rc = git_blob_lookup(&blob, w->repo, oid);
	if (rc)
		return gitsrc_fail(w->g, NULL, rc, w->spath, w->err, w->errlen);
	out->size = (uint64_t)git_blob_rawsize(blob);
	rc = store_put_buf(w->g->src->store, &out->h, git_blob_rawcontent(blob),
			   out->size);
	git_blob_free(blob);
	if (rc)
		return fail_store(w, rc, "storing");
	rc = gitsrc_blobmap_add(&w->g->map, oid, &out->h, out->size);
	if (rc)
		return fail_store(w, rc, "recording blob of");
	return 0;
}

static int add_link(struct walk *w, const git_oid *oid)
{
	git_blob *blob;
	char target[PATH_MAX];
	size_t n;
	int rc = git_blob_lookup(&blob, w->repo, oid);

	if (rc)
		return gitsrc_fail(w->g, NULL, rc, w->spath, w->err, w->errlen);
	n = (size_t)git_blob_rawsize(blob);
	if (n >= sizeof(target) || !n ||
	    memchr(git_blob_rawcontent(blob), '\0', n)) {
		git_blob_free(blob);
		log_err(w->g->src->tag,
			"symlink %s has an invalid target; "
			"left out",
			w->spath);
		return 0;
	}
	memcpy(target, git_blob_rawcontent(blob), n);
	target[n] = '\0';
	git_blob_free(blob);
	rc = snap_builder_add_link(w->b, w->spath, target,
				   stable_mtime(w, SNAP_LINK, NULL, target));
	return rc ? fail_store(w, rc, "adding link") : 0;
}

static int add_file(struct walk *w, const git_tree_entry *e)
{
	struct gitsrc_blobrec r;
	uint32_t mode = git_tree_entry_filemode(e) ==
					GIT_FILEMODE_BLOB_EXECUTABLE ?
				0755 :
				0644;
	int rc = blob_hash(w, git_tree_entry_id(e), &r);

	if (rc)
		return rc;
	rc = snap_builder_add_file(w->b, w->spath, mode, r.size,
				   stable_mtime(w, SNAP_FILE, &r.h, NULL),
				   &r.h);
	return rc ? fail_store(w, rc, "adding file") : 0;
}

/* --------------------------------------------------------- submodules */

bool gitsrc_gitmodules_url(char *out, size_t len, const char *text, size_t n,
			   const char *path)
{
	char line[1024], url[1024] = "", mpath[1024] = "";
	const char *p = text, *end = text + n;

	for (;;) {
		const char *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) :
					   NULL;
		size_t ll = (size_t)((nl ? nl : end) - p);
		char *s = line, *eq, *k, *v;

		if (p >= end || *p == '[') {
			if (mpath[0] && url[0] && !strcmp(mpath, path)) {
				snprintf(out, len, "%s", url);
				return true;
			}
			url[0] = mpath[0] = '\0';
			if (p >= end)
				return false;
		}
		snprintf(line, sizeof(line), "%.*s", (int)ll, p);
		p = nl ? nl + 1 : end;
		if (!(eq = strchr(s, '=')))
			continue;
		*eq = '\0';
		k = s + strspn(s, " \t");
		k[strcspn(k, " \t")] = '\0';
		v = eq + 1 + strspn(eq + 1, " \t\"");
		v[strcspn(v, "\"\r")] = '\0';
		for (size_t l = strlen(v);
		     l && (v[l - 1] == ' ' || v[l - 1] == '\t'); l--)
			v[l - 1] = '\0';
		if (!strcmp(k, "path"))
			snprintf(mpath, sizeof(mpath), "%s", v);
		else if (!strcmp(k, "url"))
			snprintf(url, sizeof(url), "%s", v);
	}
}

/* Resolve a relative submodule URL ("../x.git") against @base. */
static void resolve_url(char *out, size_t len, const char *base,
			const char *rel)
{
	char b[2048];
	size_t n;

	if (strncmp(rel, "./", 2) && strncmp(rel, "../", 3)) {
		snprintf(out, len, "%s", rel);
		return;
	}
	snprintf(b, sizeof(b), "%s", base);
	n = strlen(b);
	while (n && b[n - 1] == '/')
		b[--n] = '\0';
	for (;;) {
		if (!strncmp(rel, "./", 2)) {
			rel += 2;
		} else if (!strncmp(rel, "../", 3)) {
			char *cut = strrchr(b, '/');

			if (cut && cut > strstr(b, "://") + 2)
				*cut = '\0';
			rel += 3;
		} else {
			break;
		}
	}
	snprintf(out, len, "%s/%s", b, rel);
}

static int submodule_url(struct walk *w, char *out, size_t len)
{
	git_tree_entry *e;
	git_blob *blob = NULL;
	char rel[1024];
	bool found = false;
	int rc = git_tree_entry_bypath(&e, w->root, ".gitmodules");

	if (!rc) {
		rc = git_blob_lookup(&blob, w->repo, git_tree_entry_id(e));
		git_tree_entry_free(e);
	}
	if (!rc) {
		found = gitsrc_gitmodules_url(rel, sizeof(rel),
					      git_blob_rawcontent(blob),
					      (size_t)git_blob_rawsize(blob),
					      w->rpath);
		git_blob_free(blob);
	}
	if (!found) {
		snprintf(w->err, w->errlen,
			 "%s: submodule %s has no url in "
			 ".gitmodules",
			 w->g->src->tag, w->rpath);
		return -ENOENT;
	}
	resolve_url(out, len, w->url, rel);
	return 0;
}

/* Compose the submodule at w->spath (commit @oid) in place. */
static int add_submodule(struct walk *w, const git_oid *oid, size_t slen)
{
	struct walk sub = *w;
	git_commit *c = NULL;
	git_tree *t = NULL;
	char url[PATH_MAX];
	int rc;

	if (w->depth >= SUBMODULE_DEPTH_MAX) {
		snprintf(w->err, w->errlen,
			 "%s: submodules nested deeper than "
			 "%d at %s",
			 w->g->src->tag, SUBMODULE_DEPTH_MAX, w->spath);
		return -ELOOP;
	}
	rc = submodule_url(w, url, sizeof(url));
	if (!rc)
		rc = gitsrc_submodule_repo(&sub.repo, w->g, url, oid, w->err,
					   w->errlen);
	if (rc)
		return rc;
	rc = git_commit_lookup(&c, sub.repo, oid);
	if (!rc)
		rc = git_commit_tree(&t, c);
	if (!rc) {
		sub.root = t;
		sub.url = url;
		sub.depth++;
		sub.rpath[0] = '\0';
		sub.newest = 0;
		rc = walk_tree(&sub, t, slen, 0);
		if (!rc && (rc = add_dir(w, sub.newest, w->newest)))
			rc = fail_store(w, rc, "adding");
	} else {
		rc = gitsrc_fail(w->g, NULL, rc, w->spath, w->err, w->errlen);
	}
	git_tree_free(t);
	git_commit_free(c);
	git_repository_free(sub.repo);
	return rc;
}

/* -------------------------------------------------------------- entries */

/* Append "/@name" (or "@name" at the top) to a path of length @len. */
static int path_push(char *buf, size_t cap, size_t len, const char *name,
		     size_t *out)
{
	size_t nl = strlen(name), sep = len ? 1 : 0;

	if (len + sep + nl + 1 > cap)
		return -ENAMETOOLONG;
	if (sep)
		buf[len] = '/';
	memcpy(buf + len + sep, name, nl + 1);
	*out = len + sep + nl;
	return 0;
}

static int walk_entry(struct walk *w, const git_tree_entry *e, size_t slen,
		      size_t rlen)
{
	const char *name = git_tree_entry_name(e);
	int64_t outer;
	size_t sl, rl;
	git_tree *t;
	int rc;

	/* git itself never writes these, but a hand-made tree can hold them:
	 * refused like escaping symlinks and hostile S3 keys, not fatal */
	if (snap_path_check(name, strlen(name)) || strchr(name, '/')) {
		log_err(w->g->src->tag,
			"tree entry '%.200s' under '%s' is not "
			"a valid name ('.', '..', empty or with '/'); left out",
			name, w->spath);
		return 0;
	}
	if (path_push(w->spath, PATH_MAX, slen, name, &sl) ||
	    path_push(w->rpath, PATH_MAX, rlen, name, &rl)) {
		log_err(w->g->src->tag, "path too long under %s; left out",
			w->spath);
		return 0;
	}
	switch (git_tree_entry_filemode(e)) {
	case GIT_FILEMODE_TREE:
		rc = git_tree_lookup(&t, w->repo, git_tree_entry_id(e));
		if (rc)
			return gitsrc_fail(w->g, NULL, rc, w->spath, w->err,
					   w->errlen);
		outer = w->newest;
		w->newest = 0;
		rc = walk_tree(w, t, sl, rl);
		git_tree_free(t);
		if (!rc && (rc = add_dir(w, w->newest, outer)))
			rc = fail_store(w, rc, "adding");
		return rc;
	case GIT_FILEMODE_LINK:
		return add_link(w, git_tree_entry_id(e));
	case GIT_FILEMODE_COMMIT:
		if (w->g->submodules)
			return add_submodule(w, git_tree_entry_id(e), sl);
		/* like git archive: an empty directory */
		rc = add_dir(w, 0, w->newest);
		return rc ? fail_store(w, rc, "adding") : 0;
	default:
		return add_file(w, e);
	}
}

static int walk_tree(struct walk *w, const git_tree *tree, size_t slen,
		     size_t rlen)
{
	size_t n = git_tree_entrycount(tree);
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i++)
		rc = walk_entry(w, git_tree_entry_byindex(tree, i), slen, rlen);
	w->spath[slen] = '\0';
	w->rpath[rlen] = '\0';
	return rc;
}

/* The tree at g->subpath of @root (a new reference in *out). */
static int subtree(struct gitsrc *g, git_tree **out, git_tree *root,
		   const git_oid *commit, char *err, size_t errlen)
{
	git_tree_entry *e;
	char hex[GIT_OID_HEXSZ + 1];
	int rc;

	if (!g->subpath[0])
		return git_tree_dup(out, root);
	git_oid_tostr(hex, sizeof(hex), commit);
	rc = git_tree_entry_bypath(&e, root, g->subpath);
	if (rc == GIT_ENOTFOUND ||
	    (!rc && git_tree_entry_type(e) != GIT_OBJECT_TREE)) {
		if (!rc)
			git_tree_entry_free(e);
		snprintf(err, errlen,
			 "%s: subpath %s is not a directory in "
			 "commit %.12s",
			 g->src->tag, g->subpath, hex);
		return -ENOENT;
	}
	if (rc)
		return gitsrc_fail(g, NULL, rc, "subpath", err, errlen);
	rc = git_tree_lookup(out, g->repo, git_tree_entry_id(e));
	git_tree_entry_free(e);
	return rc ? gitsrc_fail(g, NULL, rc, "subpath", err, errlen) : 0;
}

int gitsrc_build(struct gitsrc *g, git_commit *commit, const struct snap *prev,
		 struct snap **out, char *err, size_t errlen)
{
	struct walk w = { .g = g,
			  .prev = prev,
			  .repo = g->repo,
			  .url = g->url,
			  .err = err,
			  .errlen = errlen };
	char hex[GIT_OID_HEXSZ + 1], spath[PATH_MAX] = "";
	git_tree *top = NULL;
	int rc;

	w.spath = spath;
	w.commit_ns = (int64_t)git_commit_time(commit) * 1000000000;
	git_oid_tostr(hex, sizeof(hex), git_commit_id(commit));
	rc = git_commit_tree(&w.root, commit);
	if (rc)
		return gitsrc_fail(g, NULL, rc, "reading commit", err, errlen);
	rc = subtree(g, &top, w.root, git_commit_id(commit), err, errlen);
	if (rc)
		goto out;
	snprintf(w.rpath, sizeof(w.rpath), "%s", g->subpath);
	rc = snap_builder_new(&w.b, g->src->name);
	if (rc)
		goto out;
	rc = walk_tree(&w, top, 0, strlen(w.rpath));
	if (rc) {
		snap_builder_free(w.b);
		goto out;
	}
	rc = snap_builder_finish(w.b, hex, out);
	if (rc)
		snprintf(err, errlen, "%s: building the snapshot of %s: %s",
			 g->src->tag, hex, strerror(-rc));
out:
	git_tree_free(top);
	git_tree_free(w.root);
	return rc;
}
