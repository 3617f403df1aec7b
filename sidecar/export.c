/* SPDX-License-Identifier: Apache-2.0 */
/*
 * export.c - `dagfs export DIR`: write the served store's layout (what
 * serve=true answers under /store/) as plain files, for a static HTTP
 * server, a CDN or an S3 bucket in front of a large fleet:
 *
 *   DIR/objects/AB/CDEF...        every blob a retained snapshot names
 *   DIR/snapshots/ID              every retained snapshot
 *   DIR/sources/NAME/revs/REV     a statement per retained revision
 *   DIR/sources/NAME/current      the statement of the current one
 *   DIR/trees/ID                  every tree manifest (whole-view versions)
 *
 * in that order, each file complete before it is renamed into place, so
 * a reader of DIR never finds a statement naming a snapshot or blob that
 * is not there yet. Blobs are hard links into the cache where they can
 * be (copies across filesystems); what DIR already has is left alone.
 * It reads the cache shared: a daemon may be running on it.
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

#include "sidecar_i.h"

struct export
{
	struct store *st;
	const char *dir;
	struct sdoc_key *key;
	unsigned long blobs, snaps, docs, trees;
};

/* @buf into @dir/@name via a temporary name and rename(). */
static int put_file(const char *dir, const char *name, const void *buf,
		    size_t len)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	int fd, rc = 0;

	if (path_fmt(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) ||
	    path_fmt(dst, sizeof(dst), "%s/%s", dir, name))
		return -ENAMETOOLONG;
	rc = mkdir_p(dir, 0755);
	if (rc)
		return rc;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, len) != (ssize_t)len || fsync(fd))
		rc = errno ? -errno : -EIO;
	close(fd);
	if (!rc && rename(tmp, dst))
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

/* Blob @h into DIR/objects/AB/..., linked or copied, unless there. */
static int put_blob(struct export *x, const struct dhash *h)
{
	char hex[DHASH_HEX], sub[PATH_MAX], dst[PATH_MAX], src[PATH_MAX];
	struct stat sb;
	int fd, rc;

	dhash_hex(hex, h);
	if (path_fmt(sub, sizeof(sub), "%s/objects/%.2s", x->dir, hex) ||
	    path_fmt(dst, sizeof(dst), "%s/%s", sub, hex + 2))
		return -ENAMETOOLONG;
	if (!stat(dst, &sb))
		return 0;
	store_blob_path(x->st, h, src, sizeof(src));
	rc = mkdir_p(sub, 0755);
	if (rc)
		return rc;
	fd = store_open_blob(x->st, h); /* verified: never export bad bytes */
	if (fd < 0)
		return fd;
	if (link(src, dst)) { /* another filesystem: copy */
		void *buf = NULL;
		ssize_t n = fstat(fd, &sb) ? -1 : 0;

		if (!n && (buf = malloc((size_t)sb.st_size + 1)))
			n = pread(fd, buf, (size_t)sb.st_size, 0);
		rc = !buf || n != sb.st_size ?
			     -EIO :
			     put_file(sub, hex + 2, buf, (size_t)n);
		free(buf);
	}
	close(fd);
	x->blobs += !rc;
	return rc;
}

static int put_snapshot(struct export *x, const struct snap *s)
{
	char sub[PATH_MAX], dst[PATH_MAX];
	struct stat sb;
	void *raw;
	size_t len;
	int rc;

	for (uint32_t i = 0; i < s->n; i++)
		if (s->e[i].type == SNAP_FILE &&
		    (rc = put_blob(x, &s->e[i].hash)))
			return rc;
	if (path_fmt(sub, sizeof(sub), "%s/snapshots", x->dir) ||
	    path_fmt(dst, sizeof(dst), "%s/%s", sub, s->id))
		return -ENAMETOOLONG;
	if (!stat(dst, &sb))
		return 0;
	rc = pub_read_raw(x->st, s->id, &raw, &len);
	if (!rc)
		rc = put_file(sub, s->id, raw, len);
	free(raw);
	x->snaps += !rc;
	return rc;
}

static int put_statement(struct export *x, const struct snap *s,
			 const char *sub, const char *name)
{
	char *doc;
	size_t len;
	int rc = serve_statement(x->st, x->key, s, &doc, &len);

	if (!rc)
		rc = put_file(sub, name, doc, len);
	free(doc);
	x->docs += !rc;
	return rc;
}

static bool rev_ok(const char *rev)
{
	if (!*rev || !strcmp(rev, ".") || !strcmp(rev, ".."))
		return false;
	for (; *rev; rev++)
		if (*rev <= ' ' || *rev > '~' || *rev == '/' || *rev == '%')
			return false;
	return true;
}

/* One source: retained revisions first, current last. */
static int export_source(struct export *x, const char *name)
{
	char sub[PATH_MAX], revs[PATH_MAX], **v = NULL;
	struct snap *cur = NULL;
	int n, rc;

	if (path_fmt(sub, sizeof(sub), "%s/sources/%s", x->dir, name) ||
	    path_fmt(revs, sizeof(revs), "%s/revs", sub))
		return -ENAMETOOLONG;
	rc = pub_load_current(x->st, name, &cur);
	if (rc)
		return rc == -ENOENT ? 0 : rc; /* nothing published yet */
	n = pub_list_revs(x->st, name, &v);
	for (int i = 0; i < n; i++) {
		struct snap *s;

		if (!rc && rev_ok(v[i]) &&
		    !pub_find_rev(x->st, name, v[i], &s)) {
			rc = put_snapshot(x, s);
			if (!rc)
				rc = put_statement(x, s, revs, v[i]);
			snap_unref(s);
		}
		free(v[i]);
	}
	free(v);
	if (!rc)
		rc = put_snapshot(x, cur);
	if (!rc)
		rc = put_statement(x, cur, sub, "current");
	snap_unref(cur);
	return rc;
}

/* Every manifest that checks against its name, into DIR/trees/. */
static int export_trees(struct export *x)
{
	char sub[PATH_MAX], **ids = NULL;
	int n = tree_list(x->st, &ids), rc = 0;

	if (path_fmt(sub, sizeof(sub), "%s/trees", x->dir))
		rc = -ENAMETOOLONG;
	for (int i = 0; i < n; i++) {
		struct tree *t;
		char *text = NULL;
		size_t len;

		if (!rc && !tree_load(x->st, ids[i], &t)) {
			rc = tree_encode(t->m, t->n, &text, &len);
			if (!rc)
				rc = put_file(sub, ids[i], text, len);
			x->trees += !rc;
			free(text);
			tree_free(t);
		}
		free(ids[i]);
	}
	free(ids);
	return n < 0 ? n : rc;
}

int cmd_export(const struct dagfs_config *c)
{
	struct export x = { .dir = c->npos == 1 ? c->pos[0] : NULL };
	char path[PATH_MAX], err[512];
	struct dirent *de;
	DIR *d = NULL;
	int rc;

	if (!x.dir) {
		fprintf(stderr,
			"dagfs: export needs one DIR, got %d arguments "
			"(see dagfs export --help)\n",
			c->npos);
		return 1;
	}
	rc = store_open(&x.st, c->cache, true);
	if (rc) {
		fprintf(stderr, "dagfs: cache %s: %s\n", c->cache,
			strerror(-rc));
		return 1;
	}
	if (c->serve_key_file && *c->serve_key_file &&
	    sdoc_key_load(&x.key, c->serve_key_file, true, err, sizeof(err))) {
		fprintf(stderr, "dagfs: %s\n", err);
		rc = -EINVAL;
		goto out;
	}
	snprintf(path, sizeof(path), "%s/sources", c->cache);
	d = opendir(path);
	while (d && !rc && (de = readdir(d)))
		if (de->d_name[0] != '.') {
			rc = export_source(&x, de->d_name);
			if (rc)
				fprintf(stderr,
					"dagfs: export of source %s: "
					"%s\n",
					de->d_name, strerror(-rc));
		}
	if (d && !rc && (rc = export_trees(&x)))
		fprintf(stderr, "dagfs: export of trees: %s\n", strerror(-rc));
	if (!d)
		fprintf(stderr, "dagfs: cache %s has no sources/\n", c->cache);
	else if (!rc)
		printf("exported to %s: %lu blobs, %lu snapshots, %lu statements, "
		       "%lu trees new or rewritten\n",
		       x.dir, x.blobs, x.snaps, x.docs, x.trees);
out:
	if (d)
		closedir(d);
	sdoc_key_free(x.key);
	store_close(x.st);
	return rc || !d ? 1 : 0;
}
