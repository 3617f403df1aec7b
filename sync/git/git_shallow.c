/* SPDX-License-Identifier: Apache-2.0 */
/*
 * git_shallow.c - keep a shallow repository's boundary across fetches.
 *
 * Why: libgit2 1.8's git_remote_download() rewrites <gitdir>/shallow from
 * what the fetch negotiated, and a fetch that does not deepen negotiates
 * nothing: the file is deleted. The commits at the old boundary still
 * lack their parents, so the next fetch's negotiation walks from the
 * local refs into commits that were never fetched and fails, for ever,
 * with "object not found - no match for id (<a parent>)": the source
 * stops following its branch at the second fetch after a shallow first
 * one. Here the boundary read before a fetch is put back after it, less
 * the commits that now have every parent (a deepening fetch brought
 * them) and those that are gone; what libgit2 wrote is kept.
 *
 * This file reads and writes only <gitdir>/shallow (git's format: one
 * commit id a line) and reads commits from the object database.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "git_i.h"

#define HEX 40 /* SHA-1 repositories: what dagfs clones */

static int roots_add(struct gitsrc_roots *rs, const git_oid *id)
{
	for (size_t i = 0; i < rs->n; i++)
		if (!git_oid_cmp(&rs->v[i], id))
			return 0;
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? 2 * rs->cap : 8;
		git_oid *v = realloc(rs->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		rs->v = v;
		rs->cap = cap;
	}
	git_oid_cpy(&rs->v[rs->n++], id);
	return 0;
}

void gitsrc_roots_free(struct gitsrc_roots *rs)
{
	free(rs->v);
	memset(rs, 0, sizeof(*rs));
}

static void shallow_path(char *buf, size_t len, git_repository *repo)
{
	/* git_repository_path() ends with a slash */
	snprintf(buf, len, "%sshallow", git_repository_path(repo));
}

int gitsrc_roots_load(struct gitsrc_roots *rs, const char *path)
{
	char line[HEX + 8];
	FILE *f = fopen(path, "re");
	int rc = 0;

	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (!rc && fgets(line, sizeof(line), f)) {
		git_oid id;

		/* a line that is not a commit id is none of ours: skip it */
		if (strcspn(line, "\n") == HEX &&
		    !git_oid_fromstrn(&id, line, HEX))
			rc = roots_add(rs, &id);
	}
	if (!rc && ferror(f))
		rc = -EIO;
	fclose(f);
	return rc;
}

int gitsrc_roots_read(struct gitsrc_roots *rs, git_repository *repo)
{
	char path[PATH_MAX];

	shallow_path(path, sizeof(path), repo);
	return gitsrc_roots_load(rs, path);
}

size_t gitsrc_commit_parents(const char *data, size_t size, git_oid *out,
			     size_t max)
{
	const char *p = data, *end = data + size;
	size_t n = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		git_oid id;

		if (!nl || nl == p)
			break; /* the blank line that ends the header */
		if (nl - p == 7 + HEX && !memcmp(p, "parent ", 7) &&
		    !git_oid_fromstrn(&id, p + 7, HEX)) {
			if (n < max)
				git_oid_cpy(&out[n], &id);
			n++;
		}
		p = nl + 1;
	}
	return n;
}

/* True if commit @id is in @odb and lacks a parent there: it stays a
 * boundary commit. The raw object is read because libgit2 shows a
 * commit it thinks shallow with no parents at all. */
static bool still_boundary(git_odb *odb, const git_oid *id)
{
	git_oid few[16], *v = few;
	const char *data;
	git_odb_object *o;
	bool lacks = false;
	size_t n, size;

	if (git_odb_read(&o, odb, id))
		return false;
	if (git_odb_object_type(o) != GIT_OBJECT_COMMIT) {
		git_odb_object_free(o);
		return false;
	}
	data = git_odb_object_data(o);
	size = git_odb_object_size(o);
	n = gitsrc_commit_parents(data, size, few, 16);
	if (n > 16 && (v = malloc(n * sizeof(*v))))
		gitsrc_commit_parents(data, size, v, n); /* an octopus */
	/* out of memory: keep it a boundary; an extra line is harmless */
	lacks = !v;
	for (size_t i = 0; v && i < n && !lacks; i++)
		lacks = !git_odb_exists(odb, &v[i]);
	if (v != few)
		free(v);
	git_odb_object_free(o);
	return lacks;
}

/* Replace @gitdir's boundary file by @rs, crash-safely. */
static int roots_write(const struct gitsrc_roots *rs, const char *gitdir)
{
	char *buf = malloc(rs->n * (HEX + 1) + 1);
	int rc;

	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < rs->n; i++) {
		git_oid_tostr(buf + i * (HEX + 1), HEX + 1, &rs->v[i]);
		buf[i * (HEX + 1) + HEX] = '\n';
	}
	rc = pub_write_file(gitdir, gitdir, "shallow", buf, rs->n * (HEX + 1));
	free(buf);
	return rc;
}

int gitsrc_roots_keep(git_repository *repo, const struct gitsrc_roots *before,
		      bool *restored)
{
	struct gitsrc_roots now = { 0 };
	char path[PATH_MAX];
	git_odb *odb = NULL;
	size_t had;
	int rc;

	*restored = false;
	if (!before->n)
		return 0;
	shallow_path(path, sizeof(path), repo);
	rc = gitsrc_roots_load(&now, path);
	if (!rc && git_repository_odb(&odb, repo))
		rc = -EIO;
	had = now.n;
	for (size_t i = 0; !rc && i < before->n; i++)
		if (still_boundary(odb, &before->v[i]))
			rc = roots_add(&now, &before->v[i]);
	if (!rc && now.n != had) {
		rc = roots_write(&now, git_repository_path(repo));
		*restored = !rc;
	}
	git_odb_free(odb);
	gitsrc_roots_free(&now);
	return rc;
}
