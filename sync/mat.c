/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mat.c - materialise snapshots as plain directories, for clusters that
 * forbid FUSE, for one-shot init containers, and for the publish gate.
 *
 * A revision is DIR/.revs/<id>/ built from hard links into the store
 * (copies when the store is on another filesystem, when a file must be
 * executable since links share the blob's 0444 mode, or when asked),
 * then published by rename() of the DIR/current symlink: a reader sees
 * the old tree or the new one, and `current` always exists once made.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "log.h"
#include "sync.h"

static int copy_blob(struct store *st, const struct dhash *h, const char *dst,
		     mode_t mode)
{
	char buf[65536];
	int in = store_open_blob(st, h), out;
	off_t off = 0;
	ssize_t n;
	int rc = 0;

	if (in < 0)
		return in;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (out < 0) {
		rc = -errno;
		close(in);
		return rc;
	}
	while ((n = pread(in, buf, sizeof(buf), off)) > 0) {
		if (write(out, buf, (size_t)n) != n) {
			rc = errno ? -errno : -EIO;
			break;
		}
		off += n;
	}
	if (n < 0)
		rc = -errno;
	close(in);
	if (!rc && fchmod(out, mode))
		rc = -errno;
	close(out);
	return rc;
}

static void set_mtime(const char *path, int64_t ns, int flags)
{
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT },
				  { .tv_sec = ns / 1000000000,
				    .tv_nsec = ns % 1000000000 } };

	utimensat(AT_FDCWD, path, ts, flags);
}

static int mat_entry(struct store *st, const struct snap_entry *e,
		     const char *dst, bool copy)
{
	char blob[PATH_MAX];

	switch (e->type) {
	case SNAP_DIR:
		return mkdir(dst, 0755) && errno != EEXIST ? -errno : 0;
	case SNAP_LINK:
		if (symlink(e->target, dst))
			return -errno;
		set_mtime(dst, e->mtime_ns, AT_SYMLINK_NOFOLLOW);
		return 0;
	}
	store_blob_path(st, &e->hash, blob, sizeof(blob));
	if (copy || (e->mode & 0111) || link(blob, dst)) {
		int rc;

		if (!copy && !(e->mode & 0111) && errno != EXDEV &&
		    errno != EMLINK)
			return -errno;
		rc = copy_blob(st, &e->hash, dst, e->mode & 0777);
		if (rc)
			return rc;
	}
	set_mtime(dst, e->mtime_ns, 0);
	return 0;
}

int mat_snap(struct store *st, const struct snap *s, const char *dir, bool copy)
{
	char *path = malloc(PATH_MAX * 2);
	int rc = 0;

	if (!path)
		return -ENOMEM;
	/* Entries come parents first (sorted by directory, then name). */
	for (uint32_t i = 0; i < s->n && !rc; i++) {
		snprintf(path, PATH_MAX * 2, "%s%s%s", dir, i ? "/" : "",
			 s->e[i].path);
		rc = mat_entry(st, &s->e[i], path, copy);
		if (rc)
			log_err(s->source, "materialising %s: %s", path,
				strerror(-rc));
	}
	/* Directory modes and mtimes last, deepest first. */
	for (uint32_t i = s->n; i-- > 0 && !rc;) {
		if (s->e[i].type != SNAP_DIR)
			continue;
		snprintf(path, PATH_MAX * 2, "%s%s%s", dir, i ? "/" : "",
			 s->e[i].path);
		chmod(path, s->e[i].mode & 07777);
		set_mtime(path, s->e[i].mtime_ns, 0);
	}
	free(path);
	return rc;
}

/* mkdir -p of @rel under @base. */
static int mkdirs(const char *base, const char *rel)
{
	char path[PATH_MAX];
	size_t bl = strlen(base);

	if (path_fmt(path, sizeof(path), "%s/%s", base, rel))
		return -ENAMETOOLONG;
	for (char *p = path + bl + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

int mat_compose(struct store *st, struct snap *const *snaps,
		const char *const *ats, size_t n, const char *dir,
		char id_out[DHASH_HEX])
{
	char revdir[PATH_MAX], tmpdir[PATH_MAX];
	XXH3_state_t *xs = XXH3_createState();
	XXH128_canonical_t c;
	struct dhash h;
	int rc = 0;

	if (!xs)
		return -ENOMEM;
	XXH3_128bits_reset(xs);
	for (size_t i = 0; i < n; i++) {
		XXH3_128bits_update(xs, ats[i], strlen(ats[i]) + 1);
		XXH3_128bits_update(xs, snaps[i] ? snaps[i]->id : "", 33);
	}
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(xs));
	XXH3_freeState(xs);
	memcpy(h.b, c.digest, 16);
	dhash_hex(id_out, &h);
	snprintf(revdir, sizeof(revdir), "%s/.revs/%s", dir, id_out);
	if (!access(revdir, F_OK))
		return 0; /* already built */
	snprintf(tmpdir, sizeof(tmpdir), "%s/.revs/.tmp-%s", dir, id_out);
	snprintf(revdir, sizeof(revdir), "%s/.revs", dir);
	rc = mkdir_p(revdir, 0755);
	if (rc)
		return rc;
	mat_remove(tmpdir);
	if (mkdir(tmpdir, 0755))
		return -errno;
	for (size_t i = 0; i < n && !rc; i++) {
		char sub[PATH_MAX * 2];

		if (!snaps[i])
			continue;
		if (*ats[i]) {
			rc = mkdirs(tmpdir, ats[i]);
			snprintf(sub, sizeof(sub), "%s/%s", tmpdir, ats[i]);
		} else {
			snprintf(sub, sizeof(sub), "%s", tmpdir);
		}
		if (!rc)
			rc = mat_snap(st, snaps[i], sub, false);
	}
	snprintf(revdir, sizeof(revdir), "%s/.revs/%s", dir, id_out);
	if (!rc && rename(tmpdir, revdir))
		rc = -errno;
	if (rc)
		mat_remove(tmpdir);
	return rc;
}

int mat_publish(const char *dir, const char *id)
{
	char tmp[PATH_MAX], cur[PATH_MAX], target[PATH_MAX], old[PATH_MAX];
	ssize_t on;
	int fd;

	snprintf(tmp, sizeof(tmp), "%s/.current.tmp", dir);
	snprintf(cur, sizeof(cur), "%s/current", dir);
	snprintf(target, sizeof(target), ".revs/%s", id);
	on = readlink(cur, old, sizeof(old) - 1);
	unlink(tmp);
	if (symlink(target, tmp))
		return -errno;
	if (rename(tmp, cur)) {
		int rc = -errno;

		unlink(tmp);
		return rc;
	}
	/* Mark when the old revision stopped being current: the grace
	 * period of mat_prune counts from here. */
	if (on > 0 && (old[on] = '\0', strcmp(old, target))) {
		char mark[PATH_MAX + 16];

		snprintf(mark, sizeof(mark), "%s/%s.retired", dir, old);
		fd = open(mark, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0)
			close(fd);
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

static int remove_at(int dfd, const char *name)
{
	struct stat st;
	int fd, rc = 0;
	struct dirent *de;
	DIR *d;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) ? -errno : 0;
	/* a read-only directory must be made writable to be emptied; where
	 * that is not ours to do, the removals below report what fails */
	if (fchmodat(dfd, name, 0755, 0) && errno != EPERM && errno != EACCES)
		return -errno;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rc = remove_at(fd, de->d_name) ?: rc;
	closedir(d);
	return unlinkat(dfd, name, AT_REMOVEDIR) ? -errno : rc;
}

int mat_remove(const char *path)
{
	return remove_at(AT_FDCWD, path);
}

int mat_prune(const char *dir, const char *keep_id, int grace_s)
{
	char revs[PATH_MAX];
	struct dirent *de;
	time_t now = time(NULL);
	int removed = 0;
	DIR *d;

	snprintf(revs, sizeof(revs), "%s/.revs", dir);
	d = opendir(revs);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char mark[NAME_MAX + 16];
		struct stat st;
		struct dhash h;

		if (dhash_parse(&h, de->d_name) || !strcmp(de->d_name, keep_id))
			continue;
		/* Retired when the marker was made; a revision without one
		 * (a crash between build and publication) by its ctime. */
		snprintf(mark, sizeof(mark), "%s.retired", de->d_name);
		if (fstatat(dirfd(d), mark, &st, 0) &&
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW))
			continue;
		if (now - st.st_mtime < grace_s && now - st.st_ctime < grace_s)
			continue;
		if (!remove_at(dirfd(d), de->d_name)) {
			char desc[NAME_MAX + 16];

			unlinkat(dirfd(d), mark, 0);
			snprintf(desc, sizeof(desc), "%s.json", de->d_name);
			unlinkat(dirfd(d), desc,
				 0); /* its tree (materialize) */
			removed++;
		}
	}
	closedir(d);
	return removed;
}
