/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fsck.c - check a cache: every blob against its name, every snapshot
 * against its checksum and its blobs, every source's links against the
 * snapshots, every tree manifest against its name. With repair, remove
 * what is broken (the next sync fetches it again) and point `current` at
 * the newest intact history entry.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync.h"

struct fsck {
	struct store *st;
	bool repair;
	fsck_report_fn fn;
	void *payload;
	struct fsck_result res;
};

static void report(struct fsck *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void report(struct fsck *f, const char *fmt, ...)
{
	char msg[PATH_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	f->res.problems++;
	if (f->fn)
		f->fn(msg, f->payload);
}

static int check_blob(int dirfd, const char *name, const char *hex, void *arg)
{
	struct fsck *f = arg;
	struct dhash h;
	int rc;

	(void)dirfd;
	if (dhash_parse(&h, hex)) {
		report(f, "objects/%.2s/%s: not a blob name", hex, name);
		return 0;
	}
	f->res.blobs++;
	rc = store_verify_blob(f->st, &h, f->repair);
	if (rc == -EIO)
		report(f, "blob %s: content does not match its name%s", hex,
		       f->repair ? "; removed" : "");
	else if (rc)
		report(f, "blob %s: %s", hex, strerror(-rc));
	return 0;
}

static void check_blobs(struct fsck *f)
{
	/* check_blob never stops the walk: every blob gets its verdict */
	(void)store_each_blob(f->st, check_blob, f);
}

/* A snapshot is intact when it decodes and every blob it names is. */
static int snapshot_intact(struct fsck *f, const char *id, char *why,
			   size_t whylen)
{
	struct snap *s;
	int rc = pub_load(f->st, id, &s);

	if (rc) {
		snprintf(why, whylen, "%s",
			 rc == -EBADMSG ? "corrupt or truncated" :
					  strerror(-rc));
		return rc;
	}
	for (uint32_t i = 0; i < s->n; i++) {
		if (s->e[i].type == SNAP_FILE &&
		    !store_has(f->st, &s->e[i].hash)) {
			char hex[DHASH_HEX];

			dhash_hex(hex, &s->e[i].hash);
			snprintf(why, whylen, "names missing blob %s (%s)", hex,
				 s->e[i].path);
			snap_unref(s);
			return -ENOENT;
		}
	}
	snap_unref(s);
	return 0;
}

static void check_snapshots(struct fsck *f)
{
	char path[PATH_MAX], why[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/snapshots", store_dir(f->st));
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		f->res.snapshots++;
		if (!snapshot_intact(f, de->d_name, why, sizeof(why)))
			continue;
		report(f, "snapshot %s: %s%s", de->d_name, why,
		       f->repair ? "; removed" : "");
		if (f->repair)
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

/* The id a source link names, or "" when it does not name a snapshot. */
static void link_id(int dfd, const char *name, char id[DHASH_HEX])
{
	char buf[PATH_MAX], *slash;
	struct dhash h;
	ssize_t n = readlinkat(dfd, name, buf, sizeof(buf) - 1);

	id[0] = '\0';
	if (n <= 0)
		return;
	buf[n] = '\0';
	slash = strrchr(buf, '/');
	slash = slash ? slash + 1 : buf;
	if (!dhash_parse(&h, slash))
		memcpy(id, slash, DHASH_HEX);
}

static bool snapshot_exists(struct fsck *f, const char *id)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/snapshots/%s", store_dir(f->st), id);
	return *id && !access(path, F_OK);
}

static void check_source(struct fsck *f, int sfd, const char *name)
{
	char id[DHASH_HEX], why[PATH_MAX], best[NAME_MAX + 1] = "";
	bool current_bad = false;
	struct dirent *de;
	DIR *d = fdopendir(sfd);

	if (!d) {
		close(sfd);
		return;
	}
	while ((de = readdir(d))) {
		bool is_cur = !strcmp(de->d_name, "current");
		bool hist = !strncmp(de->d_name, "h-", 2);

		/* d-: revisions fetched on demand, never made current */
		if (de->d_name[0] == '.' ||
		    (!is_cur && !hist && strncmp(de->d_name, "d-", 2)))
			continue;
		link_id(sfd, de->d_name, id);
		if (snapshot_exists(f, id) &&
		    !snapshot_intact(f, id, why, sizeof(why))) {
			if (hist && strcmp(de->d_name, best) > 0)
				snprintf(best, sizeof(best), "%s", de->d_name);
			continue;
		}
		report(f, "source %s: %s names a missing or broken snapshot%s",
		       name, de->d_name, f->repair ? "; removed" : "");
		current_bad |= is_cur;
		if (f->repair)
			unlinkat(sfd, de->d_name, 0);
	}
	if (f->repair) /* derived from the history: rebuilt when next read */
		unlinkat(sfd, "index", 0);
	if (f->repair && current_bad && best[0]) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(sfd, best, target, sizeof(target) - 1);

		if (n > 0) {
			target[n] = '\0';
			if (!symlinkat(target, sfd, "current")) {
				report(f, "source %s: current now %s", name,
				       best);
				f->res.problems--; /* a repair, not a problem */
			}
		}
	}
	closedir(d);
}

static void check_sources(struct fsck *f)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/sources", store_dir(f->st));
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		int sfd;

		if (de->d_name[0] == '.')
			continue;
		sfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY);
		if (sfd >= 0)
			check_source(f, sfd, de->d_name);
	}
	closedir(d);
}

/* Every tree manifest must hash to its name (a broken one is removed:
 * its tree can no longer be served, it would never be again). */
static void check_trees(struct fsck *f)
{
	char **ids = NULL, path[PATH_MAX];
	int n = tree_list(f->st, &ids);

	for (int i = 0; i < n; i++) {
		struct tree *t;
		int rc = tree_load(f->st, ids[i], &t);

		if (!rc) {
			tree_free(t);
		} else if (rc != -ENOENT) { /* ENOENT: trimmed meanwhile */
			report(f, "tree %s: manifest is corrupt (%s)%s", ids[i],
			       strerror(-rc), f->repair ? "; removed" : "");
			if (f->repair &&
			    !path_fmt(path, sizeof(path), "%s/trees/%s",
				      store_dir(f->st), ids[i]))
				unlink(path);
		}
		free(ids[i]);
	}
	free(ids);
}

int fsck_run(struct store *st, bool repair, fsck_report_fn fn, void *payload,
	     struct fsck_result *out)
{
	struct fsck f = {
		.st = st, .repair = repair, .fn = fn, .payload = payload
	};

	check_blobs(&f);
	check_snapshots(&f);
	check_sources(&f);
	check_trees(&f);
	*out = f.res;
	return 0;
}
