/* SPDX-License-Identifier: Apache-2.0 */
/*
 * git_pack.c - keeps the cached bare repository compact. Every fetch adds
 * one pack file and libgit2 1.5 has no gc, so a busy branch polled for
 * months would leave thousands of packs, each one more index to search on
 * every object lookup. Past a number of packs, everything reachable from
 * our refs is written into one new pack and the old packs go.
 *
 * Runs in the source's thread on a poll that found nothing new (so it
 * delays no revision already known), with the repository closed and
 * reopened around the removal; nothing else uses the repository. libgit2
 * searches deltas afresh, so this costs seconds on a big history: it is
 * rare by design.
 *
 * Also sweeps, once per source, what a killed process left behind: a
 * half-written pack, a lone index, a stale lock file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "git_i.h"

/* Count the packs in @dir; with @keep, remove every pack but @keep. */
static int packs(const char *dir, const char *keep)
{
	struct dirent *d;
	DIR *dp = opendir(dir);
	char path[PATH_MAX + 300];
	int n = 0;

	if (!dp)
		return -errno;
	while ((d = readdir(dp))) {
		const char *dot = strrchr(d->d_name, '.');

		if (strncmp(d->d_name, "pack-", 5) || !dot)
			continue;
		if (!strcmp(dot, ".pack"))
			n++;
		if (!keep || !strncmp(d->d_name + 5, keep, strlen(keep)) ||
		    (strcmp(dot, ".pack") && strcmp(dot, ".idx") &&
		     strcmp(dot, ".rev")))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		unlink(path);
	}
	closedir(dp);
	return n;
}

/* Write one pack of every object reachable from refs/dagfs/. */
static int write_pack(git_repository *repo, const char *dir, char *name,
		      size_t len)
{
	git_packbuilder *pb = NULL;
	git_revwalk *walk = NULL;
	int rc = git_packbuilder_new(&pb, repo);

	if (!rc)
		rc = git_revwalk_new(&walk, repo);
	if (!rc)
		rc = git_revwalk_push_glob(walk, "refs/dagfs/*");
	if (!rc)
		rc = git_packbuilder_insert_walk(pb, walk);
	if (!rc)
		rc = git_packbuilder_write(pb, dir, 0, NULL, NULL);
	if (!rc)
		snprintf(name, len, "%s", git_packbuilder_name(pb));
	git_revwalk_free(walk);
	git_packbuilder_free(pb);
	return rc;
}

int gitsrc_pack_tidy(struct gitsrc *g, int max_packs)
{
	char dir[PATH_MAX + 32], path[PATH_MAX + 16], name[GIT_OID_HEXSZ + 1];
	int64_t t0 = mono_ns();
	int n, rc;

	snprintf(path, sizeof(path), "%s/repo.git", g->dir);
	snprintf(dir, sizeof(dir), "%s/objects/pack", path);
	n = packs(dir, NULL);
	if (n <= max_packs)
		return 0;
	rc = write_pack(g->repo, dir, name, sizeof(name));
	if (rc) {
		log_warn(g->src->tag, "repacking %d packs failed: %s", n,
			 git_error_last() ? git_error_last()->message : "?");
		return 0; /* the repository is still whole */
	}
	git_repository_free(g->repo);
	g->repo = NULL;
	packs(dir, name);
	rc = git_repository_open_bare(&g->repo, path);
	if (rc)
		return rc;
	log_info(g->src->tag, "repacked %d packs into one in %.0f ms", n,
		 (double)(mono_ns() - t0) / 1e6);
	return 0;
}

/*
 * Whether @name (in @dirfd; @in_pack: in objects/pack) is a leftover.
 * libgit2 writes a fetched pack to objects/pack/pack_git2_*, commits its
 * index, then renames the pack into place; it updates a ref or a config
 * through NAME.lock. A process killed in between leaves a temporary pack
 * (space lost for good), an index without its pack (never read), or a
 * lock, which is worse: every later update of that ref is refused, so
 * the source would fail every sync until someone removed it by hand.
 * Git forbids ref names ending in ".lock", so none is taken for one.
 */
static bool leftover(int dirfd, const char *name, bool in_pack)
{
	const char *dot = strrchr(name, '.');
	char other[NAME_MAX + 1];

	if (dot && !strcmp(dot, ".lock"))
		return true;
	if (!in_pack)
		return false;
	if (!strncmp(name, "pack_git2_", 10))
		return true;
	if (strncmp(name, "pack-", 5) || !dot)
		return false;
	snprintf(other, sizeof(other), "%.*s%s", (int)(dot - name), name,
		 strcmp(dot, ".pack") ? ".pack" : ".idx");
	return faccessat(dirfd, other, F_OK, AT_SYMLINK_NOFOLLOW) &&
	       errno == ENOENT;
}

/* Remove the leftovers under @fd (closed here); returns how many went. */
static int sweep(int fd, bool in_objects, bool in_pack, int depth)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;
	int n = 0;

	if (!d) {
		close(fd);
		return 0;
	}
	while ((de = readdir(d))) {
		const char *name = de->d_name;
		struct stat st;
		int sub;

		if (name[0] == '.' ||
		    fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW))
			continue;
		if (S_ISDIR(st.st_mode) && depth < 64) {
			sub = openat(fd, name,
				     O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
					     O_CLOEXEC);
			if (sub >= 0)
				n += sweep(sub, !strcmp(name, "objects"),
					   in_objects && !strcmp(name, "pack"),
					   depth + 1);
		} else if (S_ISREG(st.st_mode) && leftover(fd, name, in_pack) &&
			   !unlinkat(fd, name, 0)) {
			n++;
		}
	}
	closedir(d);
	return n;
}

void gitsrc_pack_sweep(struct gitsrc *g)
{
	int fd = open(g->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int n;

	if (fd < 0)
		return;
	n = sweep(fd, false, false, 0);
	if (n)
		log_notice(g->src->tag,
			   "removed %d file%s left in %s by an "
			   "interrupted fetch or update",
			   n, n == 1 ? "" : "s", g->dir);
}
