/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dir_check.c - the check before a dir source's rescan: is the tree on
 * disk still exactly the last listing? (see below)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dir_i.h"

/*
 * The check before a rescan: is the tree on disk still exactly the last
 * listing? One walk that compares with the snapshot and allocates
 * nothing, so a rescan that finds nothing changed (most of them: inotify
 * already reports the changes) costs no second listing, no builder and
 * no second snapshot beside the served one. Any difference, error or
 * doubt (a racy file, a link the listing dropped) says "changed", and the
 * full scan decides and reports. "Unchanged" is exact: the counts match
 * only if no entry appeared or vanished, and a file is trusted on the
 * stat fields the full scan trusts.
 *
 * The first rescan after a restart knows no inodes yet. It checks the
 * served (cached) snapshot by hashing each file instead (@fill: the
 * inodes it records for the next rescans), and adds the inotify watches
 * a full scan would: what a restart over an unchanged tree costs is
 * reading it, not a second listing nor a copy of every file.
 */
struct check {
	struct source *src;
	const struct dir_src *ds;
	const struct snap *snap;
	struct seen *fill; /* hashing: per entry of @snap; else NULL */
	int64_t started_ns;
	char path[PATH_MAX];
	char target[PATH_MAX];
	uint32_t matched;
};

static bool check_dir(struct check *c, int dfd);

/* Whether the regular file @name (@st) has @e's bytes, by hashing it. */
static bool check_bytes(int dfd, const char *name, const struct stat *st,
			const struct snap_entry *e)
{
	struct stat after;
	struct dhash h;
	uint64_t size;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	bool same;

	if (fd < 0)
		return false;
	same = !dhash_fd(&h, &size, fd) && !fstat(fd, &after) &&
	       size == e->size && dhash_eq(&h, &e->hash) &&
	       stood_still(st, &after);
	close(fd);
	return same;
}

static bool check_file(struct check *c, int dfd, const char *name,
		       const struct stat *st, uint32_t i)
{
	const struct snap_entry *e = &c->snap->e[i];

	if (e->type != SNAP_FILE || e->mode != (st->st_mode & 07777) ||
	    e->size != (uint64_t)st->st_size ||
	    !store_has(c->src->store, &e->hash))
		return false;
	if (!c->fill)
		return seen_trusts(&c->ds->seen[i], st);
	if (!check_bytes(dfd, name, st, e))
		return false;
	c->fill[i] = seen_of(st, c->started_ns);
	return true;
}

static bool check_entry(struct check *c, int dfd, const char *name)
{
	const struct snap_entry *e;
	struct stat st;
	ssize_t n;
	int i, cfd;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW))
		return false;
	if (snap_path_check(c->path, strlen(c->path)))
		return true; /* left out by the scan as well */
	i = snap_lookup(c->snap, c->path);
	if (i < 0)
		return !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode) &&
		       !S_ISDIR(st.st_mode);
	e = &c->snap->e[i];
	if (e->mtime_ns != ts_ns(&st.st_mtim))
		return false;
	c->matched++;
	if (S_ISREG(st.st_mode))
		return check_file(c, dfd, name, &st, (uint32_t)i);
	if (S_ISLNK(st.st_mode)) {
		n = readlinkat(dfd, name, c->target, sizeof(c->target) - 1);
		return e->type == SNAP_LINK && n >= 0 &&
		       (uint64_t)n == e->size &&
		       !memcmp(c->target, e->target, (size_t)n);
	}
	if (!S_ISDIR(st.st_mode) || e->type != SNAP_DIR ||
	    e->mode != (st.st_mode & 07777))
		return false;
	if (c->fill)
		dir_watch(c->src, c->ds, c->path);
	cfd = openat(dfd, name,
		     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return cfd >= 0 && check_dir(c, cfd);
}

/* Check the open directory @dfd (consumed) at c->path. */
static bool check_dir(struct check *c, int dfd)
{
	size_t len = strlen(c->path);
	DIR *d = fdopendir(dfd);
	struct dirent *de;
	bool same = d != NULL;

	if (!d)
		close(dfd);
	while (same && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (len + 1 + strlen(de->d_name) >= PATH_MAX)
			continue; /* left out by the scan as well */
		snprintf(c->path + len, PATH_MAX - len, "%s%s", len ? "/" : "",
			 de->d_name);
		same = check_entry(c, dirfd(d), de->d_name);
		c->path[len] = '\0';
	}
	if (d)
		closedir(d);
	return same;
}

/* Whether the tree is still @snap; with @fill, by hashing (see above). */
bool dir_tree_unchanged(struct source *src, const struct dir_src *ds,
			const struct snap *snap, struct seen *fill)
{
	struct check *c = malloc(sizeof(*c)); /* two paths: not on a stack */
	const struct snap_entry *root = &snap->e[0];
	struct stat st;
	bool same;
	int fd;

	if (!c)
		return false;
	*c = (struct check){ .src = src,
			     .ds = ds,
			     .snap = snap,
			     .fill = fill,
			     .started_ns = now_ns(),
			     .matched = 1 };
	fd = open(ds->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	same = fd >= 0 && !fstat(fd, &st) && root->type == SNAP_DIR &&
	       root->mode == (st.st_mode & 07777) &&
	       root->mtime_ns == ts_ns(&st.st_mtim);
	if (same && fill)
		dir_watch(src, ds, "");
	if (same)
		same = check_dir(c, fd) && c->matched == snap->n;
	else if (fd >= 0)
		close(fd);
	free(c);
	return same;
}

/*
 * The first rescan of this process, over the revision it serves from the
 * cache (@prev_rev): check it by hashing; on success it becomes the last
 * listing. False if there is none or the tree differs (then scan).
 */
bool dir_cached_unchanged(struct source *src, struct dir_src *ds,
			  const char *prev_rev)
{
	struct snap *cur = source_current(src);
	struct seen *fill = NULL;
	bool same = false;

	if (cur && prev_rev[0] && !strcmp(cur->rev, prev_rev) &&
	    (fill = dir_seen_alloc(cur->n))) {
		dir_drain(ds->ifd);
		same = dir_tree_unchanged(src, ds, cur, fill) &&
		       !dir_tree_changed(ds);
	}
	if (!same) {
		snap_unref(cur);
		free(fill);
		return false;
	}
	dir_keep_listing(ds, cur, fill);
	return true;
}
