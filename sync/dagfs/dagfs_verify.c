/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dagfs_verify.c - the dagfs source's checks of what the upstream states:
 * a statement (format, source, signature with public-key=), the snapshot
 * it names (id and SHA-256, from the cache or fetched), and the signed
 * statements a mirror keeps in sources/NAME/sdoc-ID for re-serving.
 *
 * It must not fetch blobs (dagfs_blobs.c) nor decide whether a round
 * publishes (dagfs.c).
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

#include <curl/curl.h>

#include "dagfs_i.h"

/* ------------------------------------------------------- statements */

/* Parse and check a statement of the upstream; one-line reason on error. */
int dg_check_statement(struct source *src, const char *doc, size_t len,
		       struct sdoc *d, char *err, size_t errlen)
{
	struct dg *g = src->priv;

	if (sdoc_parse(d, doc, len)) {
		snprintf(err, errlen,
			 "%s: the upstream's statement of %s is "
			 "malformed; refused",
			 src->tag, g->upstream);
		return -EBADMSG;
	}
	if (strcmp(d->source, g->upstream)) {
		snprintf(err, errlen,
			 "%s: statement names source '%s', not "
			 "'%s'; refused",
			 src->tag, d->source, g->upstream);
		return -EBADMSG;
	}
	if (g->pub && sdoc_verify(d, doc, g->pub)) {
		snprintf(err, errlen,
			 "%s: statement of snapshot %s is %s; "
			 "refused",
			 src->tag, d->snapshot,
			 d->is_signed ? "not signed by public-key=" :
					"unsigned");
		return -EPERM;
	}
	return 0;
}

/* The snapshot a statement names, its bytes checked, with raw bytes kept. */
int dg_fetch_snapshot(struct source *src, const struct sdoc *d,
		      struct snap **out, char *err, size_t errlen)
{
	struct dg *g = src->priv;
	struct body b = { .max = SNAP_MAX };
	char url[PATH_MAX];
	void *raw = NULL;
	size_t len = 0;
	int rc = -EBADMSG;

	if (!pub_read_raw(src->store, d->snapshot, &raw, &len) &&
	    !sdoc_check_snapshot(d, raw, len)) {
		b.p = raw;
		b.len = len;
		rc = 0;
	} else {
		free(raw);
	}
	if (rc &&
	    path_fmt(url, sizeof(url), "%s/snapshots/%s", g->base, d->snapshot))
		return -ENAMETOOLONG;
	for (int i = 0; rc == -EBADMSG && i < TRIES; i++) {
		rc = dg_get_retry(src, url, "snapshot", &b, err, errlen);
		if (!rc && sdoc_check_snapshot(d, b.p, b.len)) {
			log_warn(src->tag,
				 "snapshot %s does not match its "
				 "statement (damaged in transit?); fetching it "
				 "again",
				 d->snapshot);
			snprintf(err, errlen,
				 "%s: snapshot %s does not match "
				 "its statement %d times; refused",
				 src->tag, d->snapshot, TRIES);
			rc = -EBADMSG;
		}
	}
	if (!rc && snap_decode(out, b.p, b.len)) {
		snprintf(err, errlen,
			 "%s: snapshot %s does not decode; refused", src->tag,
			 d->snapshot);
		rc = -EBADMSG;
	}
	if (!rc && (strcmp((*out)->rev, d->rev) ||
		    strcmp((*out)->source, d->source))) {
		snprintf(err, errlen,
			 "%s: snapshot %s is not revision %s of "
			 "%s; refused",
			 src->tag, d->snapshot, d->rev, d->source);
		snap_unref(*out);
		rc = -EBADMSG;
	}
	if (!rc) {
		snap_set_raw(*out, b.p, b.len);
		return 0;
	}
	free(b.p);
	return rc;
}

/* Keep a signed statement for re-serving: sources/NAME/sdoc-ID. */
void dg_keep_statement(struct source *src, const struct sdoc *d,
		       const char *doc, size_t len)
{
	char dir[PATH_MAX], tmp[PATH_MAX], dst[PATH_MAX];
	int fd;

	if (!d->is_signed ||
	    path_fmt(dir, sizeof(dir), "%s/sources/%s", store_dir(src->store),
		     src->name) ||
	    path_fmt(tmp, sizeof(tmp), "%s/.sdoc.tmp", dir) ||
	    path_fmt(dst, sizeof(dst), "%s/sdoc-%s", dir, d->snapshot))
		return;
	if (mkdir_p(dir, 0755))
		return;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, doc, len) != (ssize_t)len || rename(tmp, dst))
		unlink(tmp);
	close(fd);
}

/* Drop kept statements whose snapshot is gone. */
void dg_prune_statements(struct source *src)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (path_fmt(dir, sizeof(dir), "%s/sources/%s", store_dir(src->store),
		     src->name) ||
	    !(d = opendir(dir)))
		return;
	while ((de = readdir(d))) {
		struct stat st;

		if (strncmp(de->d_name, "sdoc-", 5) ||
		    path_fmt(path, sizeof(path), "%s/snapshots/%s",
			     store_dir(src->store), de->d_name + 5))
			continue;
		if (stat(path, &st) && errno == ENOENT)
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}
