/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pub.c - snapshots on disk: writing, publishing and loading (collecting
 * is gc_live.c).
 *
 * Crash-safety order of a publication: (1) every blob the snapshot names
 * is already renamed into objects/, and one syncfs() makes them all
 * durable (store_flush); (2) the
 * snapshot file is written to tmp/, fsynced and renamed to
 * snapshots/<id>, then snapshots/ is fsynced; (3) the history link
 * sources/<name>/h-<seq> and then the current link are created under
 * temporary names and renamed into place; the source directory is
 * fsynced. A crash at any point leaves current naming a complete
 * snapshot: the old one or the new one. Loading checks the checksum and
 * the blobs, and falls back to older history when current is broken.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "pub_i.h"
#include "snap_i.h"

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd))
		rc = -errno;
	close(fd);
	return rc;
}

static int write_renamed(const char *dir, const char *tmpdir, const char *name,
			 const void *buf, size_t len, bool durable)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	const char *p = buf;
	int fd, rc = 0;

	if (path_fmt(tmp, sizeof(tmp), "%s/s.%d.%s", tmpdir, (int)getpid(),
		     name) ||
	    path_fmt(dst, sizeof(dst), "%s/%s", dir, name))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0444);
	if (fd < 0)
		return -errno;
	while (len && !rc) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno != EINTR)
			rc = -errno;
		else if (n > 0) {
			p += n;
			len -= (size_t)n;
		}
	}
	if (!rc && durable && fsync(fd))
		rc = -errno;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, dst))
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc || !durable ? rc : fsync_dir(dir);
}

int pub_write_file(const char *dir, const char *tmpdir, const char *name,
		   const void *buf, size_t len)
{
	return write_renamed(dir, tmpdir, name, buf, len, true);
}

int pub_write_file_lazy(const char *dir, const char *tmpdir, const char *name,
			const void *buf, size_t len)
{
	return write_renamed(dir, tmpdir, name, buf, len, false);
}

/* Atomically point @dir/@name at @target (symlink + rename). */
static int link_replace(const char *dir, const char *name, const char *target)
{
	char tmp[PATH_MAX], dst[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	snprintf(dst, sizeof(dst), "%s/%s", dir, name);
	unlink(tmp);
	if (symlink(target, tmp))
		return -errno;
	if (rename(tmp, dst)) {
		int rc = -errno;

		unlink(tmp);
		return rc;
	}
	return 0;
}

static int hist_cmp(const void *a, const void *b)
{
	const struct hist *x = a, *y = b;

	return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

/* Read a link naming ../../snapshots/<id>; 0 and the id, or -errno. */
int pub_read_id_link(int dirfd, const char *name, char id[DHASH_HEX])
{
	char buf[PATH_MAX];
	ssize_t n = readlinkat(dirfd, name, buf, sizeof(buf) - 1);
	const char *slash;
	struct dhash h;

	if (n < 0)
		return -errno;
	buf[n] = '\0';
	slash = strrchr(buf, '/');
	slash = slash ? slash + 1 : buf;
	if (dhash_parse(&h, slash))
		return -EBADMSG;
	memcpy(id, slash, DHASH_HEX);
	return 0;
}

/* Links @prefix<seq> of a source ("h-": its history, "d-": revisions
 * fetched on demand), newest first; at most HIST_MAX. */
static int links_list(const char *srcdir, const char *prefix, struct hist *out)
{
	int fd = open(srcdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	int n = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return errno == ENOENT ? 0 : -errno;
	}
	while ((de = readdir(d)) && n < HIST_MAX) {
		char *end;

		if (strncmp(de->d_name, prefix, 2))
			continue;
		out[n].seq = strtoull(de->d_name + 2, &end, 16);
		if (*end || pub_read_id_link(fd, de->d_name, out[n].id))
			continue;
		n++;
	}
	closedir(d);
	qsort(out, (size_t)n, sizeof(*out), hist_cmp);
	return n;
}

int pub_hist_list(const char *srcdir, struct hist *out)
{
	return links_list(srcdir, "h-", out);
}

int pub_retained_list(const char *srcdir, struct hist *out)
{
	int n = pub_hist_list(srcdir, out), d;

	if (n < 0)
		return n;
	d = links_list(srcdir, "d-", out + n);
	return d < 0 ? n : n + d;
}

/* Drop @prefix links beyond the newest @keep, except pinned or current
 * ones. */
static void links_trim(struct store *st, const char *srcdir, const char *prefix,
		       unsigned keep, const char *current)
{
	struct hist *h = malloc(HIST_MAX * sizeof(*h));
	int n = h ? links_list(srcdir, prefix, h) : 0;

	for (int i = (int)keep; i < n; i++) {
		char p[PATH_MAX];

		if (!strcmp(h[i].id, current) || store_pinned(st, h[i].id))
			continue;
		if (!path_fmt(p, sizeof(p), "%s/%s%016llx", srcdir, prefix,
			      h[i].seq))
			unlink(p);
	}
	free(h);
}

/*
 * Steps (1) and (2) of a publication: the blobs durable, snapshots/<id>
 * written; then the link @prefix<next seq> to it in the source's
 * directory, whose path is left in @srcdir. The directory is not fsynced.
 */
static int snap_store(struct store *st, struct snap *snap, const char *prefix,
		      char srcdir[PATH_MAX])
{
	char snapdir[PATH_MAX], tmpdir[PATH_MAX], target[PATH_MAX], name[32];
	struct hist *h;
	struct dhash id;
	size_t len;
	void *buf;
	int rc, n;

	rc = store_flush(st);
	if (rc)
		return rc;
	buf = snap_take_raw(snap, &len); /* a mirror's: upstream's bytes */
	if (!buf) {
		snap->published_ns = now_ns();
		rc = snap_encode(snap, &buf, &len);
		if (rc)
			return rc;
	}
	dhash_buf(&id, buf, len);
	dhash_hex(snap->id, &id);
	snprintf(snapdir, PATH_MAX, "%s/snapshots", store_dir(st));
	snprintf(tmpdir, PATH_MAX, "%s/tmp", store_dir(st));
	if (path_fmt(srcdir, PATH_MAX, "%s/sources/%s", store_dir(st),
		     snap->source)) {
		free(buf);
		return -ENAMETOOLONG;
	}
	rc = pub_write_file(snapdir, tmpdir, snap->id, buf, len);
	free(buf);
	if (rc)
		return rc;
	snap_pin(snap, st);
	gc_live_note(st, snap);
	if (mkdir(srcdir, 0755) && errno != EEXIST)
		return -errno;
	h = malloc(HIST_MAX * sizeof(*h));
	if (!h)
		return -ENOMEM;
	n = links_list(srcdir, prefix, h);
	snprintf(name, sizeof(name), "%s%016llx", prefix,
		 n > 0 ? h[0].seq + 1 : 1ULL);
	free(h);
	snprintf(target, sizeof(target), "../../snapshots/%s", snap->id);
	return link_replace(srcdir, name, target);
}

int pub_publish(struct store *st, struct snap *snap, unsigned keep)
{
	char srcdir[PATH_MAX], target[PATH_MAX];
	int rc = snap_store(st, snap, "h-", srcdir);

	snprintf(target, sizeof(target), "../../snapshots/%s", snap->id);
	if (!rc)
		rc = link_replace(srcdir, "current", target);
	if (!rc)
		rc = fsync_dir(srcdir);
	if (rc)
		return rc;
	links_trim(st, srcdir, "h-", keep ? keep : 1, snap->id);
	store_note_publication(st);
	/* derived data: without an index, readers rebuild one */
	if (pub_index_update(st, snap->source, snap))
		log_warn(snap->source, "revision index not written; it is "
				       "rebuilt when next read");
	return 0;
}

int pub_retain(struct store *st, struct snap *snap, unsigned keep)
{
	char srcdir[PATH_MAX];
	int rc = snap_store(st, snap, "d-", srcdir);

	if (!rc)
		rc = fsync_dir(srcdir);
	if (rc)
		return rc;
	links_trim(st, srcdir, "d-", keep ? keep : 1, snap->id);
	if (pub_index_update(st, snap->source, snap))
		log_warn(snap->source, "revision index not written; it is "
				       "rebuilt when next read");
	return 0;
}

int pub_read_all(const char *path, void **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	ssize_t n;
	char *buf;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) || sb.st_size > (1LL << 32)) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	n = pread(fd, buf, (size_t)sb.st_size, 0);
	close(fd);
	if (n != sb.st_size) {
		free(buf);
		return -EIO;
	}
	buf[n] = '\0';
	*out = buf;
	*len = (size_t)n;
	return 0;
}

int pub_load(struct store *st, const char *id, struct snap **out)
{
	char path[PATH_MAX];
	struct snap *s;
	size_t len = 0;
	void *buf = NULL;
	int rc;

	if (path_fmt(path, sizeof(path), "%s/snapshots/%s", store_dir(st), id))
		return -ENAMETOOLONG;
	rc = pub_read_all(path, &buf, &len);
	if (rc)
		return rc;
	rc = snap_decode(&s, buf, len);
	free(buf);
	if (rc)
		return rc;
	if (strcmp(s->id, id)) { /* renamed or damaged into another valid one */
		snap_unref(s);
		return -EBADMSG;
	}
	snap_pin(s, st);
	*out = s;
	return 0;
}

int pub_read_raw(struct store *st, const char *id, void **out, size_t *len)
{
	char path[PATH_MAX], hex[DHASH_HEX];
	struct dhash h;
	int rc;

	if (dhash_parse(&h, id))
		return -EINVAL;
	if (path_fmt(path, sizeof(path), "%s/snapshots/%s", store_dir(st), id))
		return -ENAMETOOLONG;
	rc = pub_read_all(path, out, len);
	if (rc)
		return rc;
	dhash_buf(&h, *out, *len);
	dhash_hex(hex, &h);
	if (strcmp(hex, id)) {
		free(*out);
		*out = NULL;
		return -EBADMSG;
	}
	return 0;
}

static bool blobs_present(struct store *st, const struct snap *s)
{
	for (uint32_t i = 0; i < s->n; i++)
		if (s->e[i].type == SNAP_FILE && !store_has(st, &s->e[i].hash))
			return false;
	return true;
}

int pub_load_checked(struct store *st, const char *source, const char *id,
		     struct snap **out)
{
	struct snap *s;
	int rc = pub_load(st, id, &s);

	if (rc) {
		log_err(source,
			"snapshot %s is unreadable or corrupt (%s); "
			"ignored",
			id, strerror(-rc));
		return rc;
	}
	if (strcmp(s->source, source) || !blobs_present(st, s)) {
		log_err(source,
			"snapshot %s names missing blobs or another "
			"source; ignored",
			id);
		snap_unref(s);
		return -EBADMSG;
	}
	*out = s;
	return 0;
}

int pub_load_current(struct store *st, const char *source, struct snap **out)
{
	char srcdir[PATH_MAX], id[DHASH_HEX] = "";
	struct hist *h;
	int fd, n, rc = -ENOENT;

	snprintf(srcdir, sizeof(srcdir), "%s/sources/%s", store_dir(st),
		 source);
	fd = open(srcdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	if (!pub_read_id_link(fd, "current", id) &&
	    !pub_load_checked(st, source, id, out)) {
		close(fd);
		return 0;
	}
	close(fd);
	h = malloc(HIST_MAX * sizeof(*h));
	if (!h)
		return -ENOMEM;
	n = pub_hist_list(srcdir, h);
	for (int i = 0; i < n && rc; i++)
		if (strcmp(h[i].id, id))
			rc = pub_load_checked(st, source, h[i].id, out);
	free(h);
	return rc;
}
