/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_dir.c - the dir source's rescans. Syncs here never wait, so no
 * inotify event marks a tree as changed: every sync after the first runs
 * the check that decides "unchanged" without a second listing, trusting
 * stats (tree_unchanged in dir.c), and the first sync of a restarted
 * source checks its cached revision by hashing (cached_unchanged). Each
 * change below keeps size and mtime where it can, and is made to a tree
 * that has stood still past the racy window, so that only the check can
 * see it. The revision reported must equal the one a new source over an
 * empty store (a full scan) computes.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static char dir[] = "/tmp/dagfs-test-dir-XXXXXX";

/* Wait past dir.c's racy window (2 s) so that every stat is trusted. */
#define STILL_US (2100 * 1000)

/* Set every mtime under tree @t newer than 2020-01-02 to a time before
 * it: entries already that old keep their ctime. */
static int age(const char *t)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
		 "find %s -newermt '2020-01-02' "
		 "-exec touch -h -d '2020-01-01 00:00:00' {} +",
		 t);
	return system(cmd);
}

/* Run @fmt with every %s the tree @t. */
static int sh(const char *fmt, const char *t)
{
	char cmd[4096];

	snprintf(cmd, sizeof(cmd), fmt, t, t, t, t);
	return system(cmd);
}

/* A standard tree at @t: files, a subdirectory, a symlink. */
static int make_tree(const char *t)
{
	return sh("rm -rf %s && mkdir -p %s/sub && printf 'a = 1\\n' > %s/a.py"
		  " && echo b > %s/b.py",
		  t) ||
	       sh("echo c > %s/sub/c.py && ln -s b.py %s/link", t) || age(t);
}

/* Rewrite @t/@rel in place with @data (same length), keeping its times. */
static int rewrite_in_place(const char *t, const char *rel, const char *data)
{
	char path[512];
	struct timespec ts[2];
	struct stat st;
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s", t, rel);
	if (stat(path, &st) || (fd = open(path, O_WRONLY)) < 0)
		return -1;
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	rc = pwrite(fd, data, strlen(data), 0) != (ssize_t)strlen(data) ||
	     futimens(fd, ts);
	return close(fd) || rc ? -1 : 0;
}

static int new_source(struct source **out, struct source_spec **spec,
		      struct store *st, const char *t, const char *name)
{
	char text[512], err[256];

	snprintf(text, sizeof(text), "dir:%s,name=%s,keep=50", t, name);
	if (!*spec && source_spec_parse(spec, text, err, sizeof(err)))
		return -1;
	return source_new(out, *spec, st, err, sizeof(err));
}

/* The revision @src serves after one sync, into @rev; 0 or -1. */
static int sync_rev(struct source *src, char rev[128])
{
	struct snap *cur;
	char err[256];

	if (source_sync_once(src, &cur, err, sizeof(err))) {
		fprintf(stderr, "sync: %s\n", err);
		return -1;
	}
	snprintf(rev, 128, "%s", cur->rev);
	snap_unref(cur);
	return 0;
}

/* What a new source over an empty store computes for tree @t: a full
 * scan, the reference every other answer must equal. */
static int full_scan_rev(const char *t, char rev[128])
{
	struct source_spec *spec = NULL;
	struct source *src = NULL;
	struct store *st;
	char path[128], cmd[160];
	int rc;

	snprintf(path, sizeof(path), "%s/reference", dir);
	if (store_open(&st, path, false))
		return -1;
	rc = new_source(&src, &spec, st, t, "ref") || sync_rev(src, rev);
	source_free(src);
	source_spec_free(spec);
	store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", path);
	return rc || system(cmd) ? -1 : 0;
}

static uint64_t fetched(struct source *src)
{
	struct source_status st;

	source_get_status(src, &st);
	return st.objects_fetched;
}

static const struct step {
	const char *what, *cmd; /* NULL: an in-place rewrite of a.py */
	bool changes;
} steps[] = {
	{ "nothing", "true", false },
	{ "a same-size rewrite under the old mtime (a new inode)",
	  "printf 'a = 2\\n' > %s.tmp && mv %s.tmp %s/a.py", true },
	{ "a same-size rewrite in place, times kept (only ctime moves)", NULL,
	  true },
	{ "a file's mode", "chmod 600 %s/a.py", true },
	{ "a directory's mode", "chmod 700 %s/sub", true },
	{ "a new empty directory", "mkdir %s/empty", true },
	{ "a symlink's target, same length", "ln -sfn a.py %s/link", true },
	{ "a file replaced by a fifo", "rm %s/sub/c.py && mkfifo %s/sub/c.py",
	  true },
	{ "a new fifo (not listed)", "mkfifo %s/f", false },
	{ "a removed file", "rm %s/b.py", true },
	{ "a new file", "echo x > %s/sub/new.py", true },
};
#define NSTEPS (sizeof(steps) / sizeof(steps[0]))

/*
 * Each change on a tree of its own, each twice: under a source that keeps
 * running (its rescan trusts what its full scan recorded) and under one
 * restarted after the tree stood still (its first sync hashes; the change
 * then meets the inodes that recorded).
 */
static void test_dir__rescan_sees_what_a_full_scan_sees(void)
{
	struct store *st = NULL;
	struct source_spec *spec[2 * NSTEPS] = { 0 };
	struct source *src[2 * NSTEPS] = { 0 };
	char t[2 * NSTEPS][256], prev[2 * NSTEPS][128], name[32];
	char got[128], want[128];
	bool ok = true;
	size_t i;

	CHECK(!harness_store(&st, dir, "cache"));
	for (i = 0; i < 2 * NSTEPS; i++) {
		snprintf(t[i], sizeof(t[i]), "%s/tree%zu", dir, i);
		snprintf(name, sizeof(name), "t%zu", i);
		CHECK(!make_tree(t[i]));
		CHECK(!new_source(&src[i], &spec[i], st, t[i], name));
		CHECK(!sync_rev(src[i], prev[i]));
	}
	usleep(STILL_US);
	for (i = 0; i < 2 * NSTEPS; i++) {
		const struct step *s = &steps[i % NSTEPS];
		char err[256];

		if (i >= NSTEPS) { /* the restarted half */
			source_free(src[i]);
			CHECK(!source_new(&src[i], spec[i], st, err,
					  sizeof(err)));
			CHECK(!sync_rev(src[i], got) && !strcmp(got, prev[i]));
			CHECK(fetched(src[i]) == 0);
		}
		if (s->cmd)
			CHECK(!sh(s->cmd, t[i]));
		else
			CHECK(!rewrite_in_place(t[i], "a.py", "a = 3\n"));
		CHECK(!age(t[i]));
		CHECK(!sync_rev(src[i], got));
		CHECK(!full_scan_rev(t[i], want));
		if (strcmp(got, want) || !strcmp(got, prev[i]) != !s->changes) {
			fprintf(stderr, "%s, %s: %s; full scan %s; before %s\n",
				s->what, i >= NSTEPS ? "restarted" : "running",
				got, want, prev[i]);
			ok = false;
		}
	}
	CHECK(ok);
	for (i = 0; i < 2 * NSTEPS; i++) {
		source_free(src[i]);
		source_spec_free(spec[i]);
	}
	store_close(st);
}

/* A tree that stood still is not read again by a rescan; a restart reads
 * it (to hash it) but copies nothing into the store; a change made while
 * no daemon ran, invisible to a stat, is seen by that hashing. */
static void test_dir__restart_hashes_and_copies_nothing(void)
{
	struct store *st = NULL;
	struct source_spec *spec = NULL;
	struct source *src = NULL;
	char t[256], rev[128], got[128], want[128];
	uint64_t n;

	snprintf(t, sizeof(t), "%s/tree", dir);
	CHECK(!harness_store(&st, dir, "cache"));
	CHECK(!make_tree(t));
	usleep(STILL_US);
	CHECK(!new_source(&src, &spec, st, t, "d"));
	CHECK(!sync_rev(src, rev));
	n = fetched(src);
	CHECK(n == 3);
	CHECK(!sync_rev(src, got) && !strcmp(got, rev) && fetched(src) == n);
	source_free(src);
	CHECK(!new_source(&src, &spec, st, t, "d"));
	CHECK(!sync_rev(src, got) && !strcmp(got, rev));
	CHECK(!sync_rev(src, got) && !strcmp(got, rev));
	CHECK(fetched(src) == 0);
	source_free(src);
	CHECK(!rewrite_in_place(t, "sub/c.py", "C\n"));
	CHECK(!new_source(&src, &spec, st, t, "d"));
	CHECK(!sync_rev(src, got));
	CHECK(!full_scan_rev(t, want));
	CHECK(strcmp(got, rev) && !strcmp(got, want));
	source_free(src);
	source_spec_free(spec);
	store_close(st);
}

/* A file written just before a scan is hashed again at the next one even
 * if its stat then looks the same (the racy-git rule). */
static void test_dir__racy_file_is_read_again(void)
{
	struct store *st = NULL;
	struct source_spec *spec = NULL;
	struct source *src = NULL;
	char t[256], rev1[128], rev2[128], want[128];

	snprintf(t, sizeof(t), "%s/tree", dir);
	CHECK(!harness_store(&st, dir, "cache"));
	CHECK(!sh("rm -rf %s && mkdir -p %s && printf one > %s/a.py", t));
	CHECK(!new_source(&src, &spec, st, t, "d"));
	CHECK(!sync_rev(src, rev1));
	/* same size, mtime and inode, at once: only the bytes differ */
	CHECK(!rewrite_in_place(t, "a.py", "two"));
	CHECK(!sync_rev(src, rev2));
	CHECK(!full_scan_rev(t, want));
	CHECK(strcmp(rev1, rev2) && !strcmp(rev2, want));
	source_free(src);
	source_spec_free(spec);
	store_close(st);
}

int main(void)
{
	static const struct harness_case cases[] = {
		{ "dir: rescan sees what a full scan sees",
		  test_dir__rescan_sees_what_a_full_scan_sees },
		{ "dir: restart hashes and copies nothing",
		  test_dir__restart_hashes_and_copies_nothing },
		{ "dir: racy file is read again",
		  test_dir__racy_file_is_read_again },
		{ NULL, NULL },
	};

	return harness_run_in(dir, cases, NULL);
}
