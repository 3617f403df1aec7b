/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_fs.c - the parts of fs/ that need no mount: slot placement, the
 * mountpoint checks and their messages, snapshot references across swaps
 * (fs_i.h for the bound on the trees kept).
 * Everything served through the kernel is tested by tests/integration.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_i.h"
#include "log.h"
#include "harness.h"
#include "snap_i.h"

static char dir[] = "/tmp/dagfs-test-fs-XXXXXX";

static struct fs *fresh(struct store **st)
{
	struct fs_opts o = FS_OPTS_INIT;
	struct fs *fs;

	if (harness_store(st, dir, "cache"))
		return NULL;
	if (fs_new(&fs, *st, &o)) {
		store_close(*st);
		return NULL;
	}
	return fs;
}

static void test_fs__slots_must_not_overlap(void)
{
	struct store *st;
	struct fs *fs = fresh(&st);

	CHECK(fs);
	CHECK(fs_add_slot(fs, "teams/a", "a", NULL) == 0);
	CHECK(fs_add_slot(fs, "teams/b", "b", NULL) == 1);
	CHECK(fs_add_slot(fs, "teams-c", "c", NULL) == 2);
	CHECK(fs_add_slot(fs, "teams/a", "x", NULL) == -EEXIST);
	CHECK(fs_add_slot(fs, "teams/a/deeper", "x", NULL) == -EEXIST);
	CHECK(fs_add_slot(fs, "teams", "x", NULL) == -EEXIST);
	CHECK(fs_add_slot(fs, "", "x", NULL) == -EEXIST);
	CHECK(fs_add_slot(fs, "/abs", "x", NULL) == -EINVAL);
	CHECK(fs_add_slot(fs, "a/../b", "x", NULL) == -EINVAL);
	CHECK(fs_add_slot(fs, "trailing/", "x", NULL) == -EINVAL);
	CHECK(fs_add_slot(fs, ".dagfs", "x", NULL) == -EINVAL);
	CHECK(fs_add_slot(fs, ".dagfs/x", "x", NULL) == -EINVAL);
	CHECK(fs_add_slot(fs, ".dagfsx", "x", NULL) == 3);
	fs_free(fs);
	store_close(st);

	fs = fresh(&st);
	CHECK(fs);
	CHECK(fs_add_slot(fs, "", "root", NULL) == 0);
	CHECK(fs_add_slot(fs, "a", "x", NULL) == -EEXIST);
	fs_free(fs);
	store_close(st);
}

static void test_fs__slots_come_and_go(void)
{
	struct store *st;
	struct fs *fs = fresh(&st);
	char at[32];
	int n = 0;

	CHECK(fs);
	CHECK(fs_add_slot(fs, "teams/a", "a", NULL) == 0);
	CHECK(fs_add_slot(fs, "teams/b", "b", NULL) == 1);
	CHECK(fs_remove_slot(fs, 0) == 0);
	CHECK(fs_remove_slot(fs, 0) == -ENOENT);
	CHECK(fs_remove_slot(fs, 7) == -ENOENT);
	/* its place is free for another source; it takes a new slot */
	CHECK(fs_add_slot(fs, "teams/a/x", "c", NULL) == 2);
	CHECK(fs_remove_slot(fs, 2) == 0);
	/* the same source at the same place gets its old slot back */
	CHECK(fs_add_slot(fs, "teams/a", "a", NULL) == 0);
	CHECK(fs_add_slot(fs, "teams/a", "a", NULL) == -EEXIST);
	/* the root slot overlaps every slot, then none once they are gone */
	CHECK(fs_add_slot(fs, "", "root", NULL) == -EEXIST);
	CHECK(fs_remove_slot(fs, 0) == 0 && fs_remove_slot(fs, 1) == 0);
	CHECK(fs_add_slot(fs, "", "root", NULL) == 3);
	CHECK(fs_remove_slot(fs, 3) == 0);
	/* slots are never moved: a view uses 256 over its life (4 so far) */
	for (int rc = 0; rc >= 0; n++) {
		snprintf(at, sizeof(at), "s%d", n);
		rc = fs_add_slot(fs, at, at, NULL);
		if (rc >= 0)
			CHECK(fs_remove_slot(fs, rc) == 0);
		else
			CHECK(rc == -ENOSPC && n == 256 - 4);
	}
	fs_free(fs);
	store_close(st);
}

static int refused(struct fs *fs, const char *mp, const char *want)
{
	char err[512] = "";
	int rc = fs_mount(fs, mp, err, sizeof(err));

	if (rc >= 0 || !strstr(err, want) || strchr(err, '\n')) {
		fprintf(stderr, "fs_mount(%s) = %d, \"%s\"\n", mp, rc, err);
		return 0;
	}
	return 1;
}

static void test_fs__mountpoint_refused_with_reason(void)
{
	struct store *st;
	struct fs *fs = fresh(&st);
	char missing[64], file[64], full[64], inside[80];
	FILE *f;

	CHECK(fs);
	snprintf(missing, sizeof(missing), "%s/missing", dir);
	snprintf(file, sizeof(file), "%s/file", dir);
	snprintf(full, sizeof(full), "%s/full", dir);
	snprintf(inside, sizeof(inside), "%s/full/x", dir);
	f = fopen(file, "w");
	CHECK(f && !fclose(f));
	CHECK(!mkdir(full, 0755));
	f = fopen(inside, "w");
	CHECK(f && !fclose(f));
	CHECK(refused(fs, missing, "does not exist"));
	CHECK(refused(fs, file, "is not a directory"));
	CHECK(refused(fs, full, "is not empty"));
	CHECK(fs_loop(fs) == -EINVAL); /* nothing was mounted */
	fs_free(fs);
	store_close(st);
}

static struct snap *tree(const char *rev)
{
	struct snap_builder *b;
	struct snap *s = NULL;
	struct dhash h;

	dhash_buf(&h, rev, strlen(rev));
	if (snap_builder_new(&b, "t"))
		return NULL;
	if (snap_builder_add_file(b, "dags/x.py", 0644, strlen(rev), 1, &h)) {
		snap_builder_free(b);
		return NULL;
	}
	if (snap_builder_finish(b, rev, &s))
		return NULL;
	return s;
}

/*
 * A swap keeps the tree it replaced for a grace period (a listing begun in
 * it finishes there), at most FS_PAST_MAX of them, and fs_free() lets go
 * of every one: references never leak, nor pile up.
 */
static void test_fs__swap_keeps_old_trees_bounded(void)
{
	struct store *st;
	struct fs *fs = fresh(&st);
	struct snap *a = tree("a"), *b = tree("b");
	int slot;

	CHECK(fs && a && b);
	slot = fs_add_slot(fs, "team", "t", NULL);
	CHECK(slot == 0);
	/* ours, the slot's, and the current tree's (trees.c) */
	fs_swap(fs, slot, a);
	CHECK(snap_refs(a) == 3);
	fs_swap(fs, slot, b);
	CHECK(snap_refs(a) == 2 && snap_refs(b) == 3); /* a: kept a while */
	fs_swap(fs, slot, b);
	CHECK(snap_refs(b) == 4);
	fs_swap(fs, slot, NULL);
	CHECK(snap_refs(b) == 3);
	for (int i = 0; i < 3 * FS_PAST_MAX; i++)
		fs_swap(fs, slot, i % 2 ? a : b);
	/* ours, the slot's, the current tree's, and at most FS_PAST_MAX kept */
	CHECK(snap_refs(a) + snap_refs(b) == 2 + 1 + 1 + FS_PAST_MAX);
	fs_swap(fs, slot, a);
	fs_free(fs);
	CHECK(snap_refs(a) == 1 && snap_refs(b) == 1);
	snap_unref(a);
	snap_unref(b);
	store_close(st);
}

/* A published snapshot of source "t" whose dags/x.py holds @rev. */
static struct snap *published(struct store *st, const char *rev)
{
	struct snap *s = tree(rev);
	struct dhash h;

	if (!s || store_put_buf(st, &h, rev, strlen(rev)) ||
	    pub_publish(st, s, 5)) {
		snap_unref(s);
		return NULL;
	}
	return s;
}

static void test_fs__tree_recorded_before_each_swap(void)
{
	struct store *st;
	struct fs *fs = fresh(&st);
	char t0[DHASH_HEX], t1[DHASH_HEX], t2[DHASH_HEX], path[128];
	struct snap *a, *b;
	struct fs_res r;
	struct tree *mf;
	int slot;

	CHECK(fs);
	a = published(st, "a");
	b = published(st, "b");
	CHECK(a && b);
	CHECK(fs_tree_current(fs, t0) == -ENOENT); /* no slot yet */
	slot = fs_add_slot(fs, "team", "t", NULL);
	CHECK(slot == 0 && !fs_tree_current(fs, t0));
	fs_swap(fs, slot, a);
	CHECK(!fs_tree_current(fs, t1) && strcmp(t0, t1));
	fs_swap(fs, slot, b);
	CHECK(!fs_tree_current(fs, t2) && strcmp(t1, t2));
	/* the manifest is in the cache: tree t1 is a's */
	CHECK(!tree_load(st, t1, &mf) && mf->n == 1 &&
	      !strcmp(mf->m[0].rev, "a") && !strcmp(mf->m[0].at, "team"));
	tree_free(mf);
	snprintf(path, sizeof(path), ".dagfs/trees/%s/team/dags/x.py", t1);
	fs_resolve(fs, path, &r);
	CHECK(r.kind == FS_ENTRY && !strcmp(r.snap->rev, "a"));
	fs_res_drop(&r);
	snprintf(path, sizeof(path), ".dagfs/trees/%s", t1);
	fs_resolve(fs, path, &r);
	CHECK(r.kind == FS_META_DIR); /* made up above team/ */
	snprintf(path, sizeof(path), ".dagfs/trees/%s/other", t1);
	fs_resolve(fs, path, &r);
	CHECK(r.kind == FS_NONE);
	/* the empty tree (the slot before its first snapshot) too */
	snprintf(path, sizeof(path), ".dagfs/trees/%s/team", t0);
	fs_resolve(fs, path, &r);
	CHECK(r.kind == FS_META_DIR);
	fs_free(fs);
	/* a new view over the same cache composing the same: the same id */
	CHECK(!fs_new(&fs, st, &(struct fs_opts)FS_OPTS_INIT));
	CHECK(fs_add_slot(fs, "team", "t", b) == 0);
	CHECK(!fs_tree_current(fs, t0) && !strcmp(t0, t2));
	fs_free(fs);
	snap_unref(a);
	snap_unref(b);
	store_close(st);
}

struct prefetch_arg {
	struct fs *fs;
	const struct snap_entry *e;
	int n;
};

static void *prefetch_many(void *arg)
{
	struct prefetch_arg *a = arg;

	for (int i = 0; i < 2000; i++)
		fs_prefetch_add(a->fs, &a->e[i % a->n]);
	return NULL;
}

/* Listings from many FUSE threads feed one prefetch thread: every small
 * file's blob is read ahead once per listing while the queue has room,
 * other entries never; freeing stops the thread whatever is queued. */
static void test_fs__prefetch_reads_small_files_only(void)
{
	struct store *st;
	struct fs *fs = fresh(&st);
	struct snap_entry e[3] = { 0 };
	struct fs_loop_stats ls;
	struct prefetch_arg a;
	pthread_t t[4];
	uint64_t want = 0;

	CHECK(fs && fs->prefetch);
	e[0].type = SNAP_FILE; /* small: read ahead */
	CHECK(!store_put_buf(st, &e[0].hash, "x = 1\n", 6));
	e[0].size = 6;
	e[1].type = SNAP_DIR;  /* not a file */
	e[2].type = SNAP_FILE; /* over the limit */
	e[2].hash = e[0].hash;
	e[2].size = 2u << 20;
	a = (struct prefetch_arg){ .fs = fs, .e = e, .n = 3 };
	for (int i = 0; i < 4; i++)
		CHECK(!pthread_create(&t[i], NULL, prefetch_many, &a));
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	want = 4 * 667; /* e[0] at i = 0, 3, ..., 1998 in each thread */
	for (int i = 0; i < 500; i++) {
		fs_get_loop_stats(fs, &ls);
		if (ls.prefetched >= want)
			break;
		usleep(10000);
	}
	CHECK(ls.prefetched == want); /* the queue (4,096) held them all */
	fs_prefetch_add(fs, &e[0]);
	fs_prefetch_add(fs, &e[0]);
	fs_free(fs); /* with work perhaps still queued */
	store_close(st);
}

int main(void)
{
	static const struct harness_case cases[] = {
		{ "test_fs__slots_must_not_overlap",
		  test_fs__slots_must_not_overlap },
		{ "test_fs__slots_come_and_go", test_fs__slots_come_and_go },
		{ "test_fs__mountpoint_refused_with_reason",
		  test_fs__mountpoint_refused_with_reason },
		{ "test_fs__swap_keeps_old_trees_bounded",
		  test_fs__swap_keeps_old_trees_bounded },
		{ "test_fs__tree_recorded_before_each_swap",
		  test_fs__tree_recorded_before_each_swap },
		{ "test_fs__prefetch_reads_small_files_only",
		  test_fs__prefetch_reads_small_files_only },
		{ NULL, NULL },
	};
	log_setup(LOG_LVL_ERR - 1, false);
	return harness_run_in(dir, cases, NULL);
}
