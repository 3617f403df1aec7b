/* SPDX-License-Identifier: Apache-2.0 */
/* test_store.c - blob store and publication: verify, corrupt, publish, GC. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"
#include "snap_i.h"
#include "sync.h"

static char dir[] = "/tmp/dagfs-test-store-XXXXXX";

static struct store *fresh(void)
{
	struct store *s;

	return harness_store(&s, dir, NULL) ? NULL : s;
}

static void test_store__put_open_verify(void)
{
	struct store *s = fresh();
	struct dhash h;
	char buf[16] = { 0 };
	int fd;

	CHECK(s);
	CHECK(!store_put_buf(s, &h, "hello", 5));
	CHECK(store_has(s, &h) == 1);
	fd = store_open_blob(s, &h);
	CHECK(fd >= 0);
	CHECK(pread(fd, buf, sizeof(buf), 0) == 5 && !memcmp(buf, "hello", 5));
	close(fd);
	store_close(s);
}

static void test_store__corrupt_blob_is_eio_and_removed(void)
{
	struct store *s = fresh();
	char path[4096];
	struct dhash h;
	int fd;

	CHECK(s);
	CHECK(!store_put_buf(s, &h, "hello", 5));
	store_blob_path(s, &h, path, sizeof(path));
	chmod(path, 0644);
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0 && pwrite(fd, "J", 1, 0) == 1);
	close(fd);
	CHECK(store_open_blob(s, &h) == -EIO);
	CHECK(store_has(s, &h) == 0);
	store_close(s);
}

static void test_store__second_open_is_busy(void)
{
	struct store *s = fresh(), *t;

	CHECK(s);
	CHECK(store_open(&t, dir, false) == -EBUSY);
	store_close(s);
}

static void test_store__txn_checks_expected_hash(void)
{
	struct store *s = fresh();
	struct store_txn *t;
	struct dhash want, got;

	CHECK(s);
	dhash_buf(&want, "abc", 3);
	CHECK(!store_txn_begin(s, &t));
	CHECK(!store_txn_write(t, "abd", 3));
	CHECK(store_txn_commit(t, &got, NULL, &want) == -EBADMSG);
	CHECK(!store_has(s, &want));
	store_close(s);
}

static struct snap *one_file(struct store *s, const char *content,
			     const char *rev)
{
	struct snap_builder *b;
	struct snap *snap;
	struct dhash h;

	if (store_put_buf(s, &h, content, strlen(content)) ||
	    snap_builder_new(&b, "src"))
		return NULL;
	if (snap_builder_add_file(b, "f.py", 0644, strlen(content), 1, &h) ||
	    snap_builder_finish(b, rev, &snap))
		return NULL;
	return snap;
}

static void test_store__publish_load_and_fallback(void)
{
	struct store *s = fresh();
	struct snap *a, *b, *l;
	char path[4096];
	int fd;

	CHECK(s);
	a = one_file(s, "one", "r1");
	b = one_file(s, "two", "r2");
	CHECK(a && b);
	CHECK(!pub_publish(s, a, 5));
	CHECK(!pub_publish(s, b, 5));
	CHECK(!pub_load_current(s, "src", &l));
	CHECK(!strcmp(l->rev, "r2"));
	snap_unref(l);
	/* truncate the current snapshot: the previous one is served */
	snprintf(path, sizeof(path), "%s/snapshots/%s", dir, b->id);
	chmod(path, 0644);
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0 && !ftruncate(fd, 30));
	close(fd);
	CHECK(!pub_load_current(s, "src", &l));
	CHECK(!strcmp(l->rev, "r1"));
	snap_unref(l);
	snap_unref(a);
	snap_unref(b);
	store_close(s);
}

/* Listing and finding revisions read the index written at publish time:
 * no snapshot is decoded but the one served. */
static void test_store__revs_come_from_the_index(void)
{
	struct store *s = fresh();
	struct pub_rev *revs = NULL;
	char **names = NULL, path[4096], id[4][DHASH_HEX];
	struct snap *l = NULL;
	int64_t published[4];
	unsigned long d0;
	int n;

	CHECK(s);
	for (int i = 0; i < 4; i++) { /* unpinned once published: trimmed */
		struct snap *v;
		char c[8], r[8];

		snprintf(c, sizeof(c), "c%d", i);
		snprintf(r, sizeof(r), "r%d", i);
		v = one_file(s, c, r);
		CHECK(v && !pub_publish(s, v, 3));
		memcpy(id[i], v->id, DHASH_HEX);
		published[i] = v->published_ns;
		snap_unref(v);
	}
	d0 = snap_decodes();
	n = pub_list_revs(s, "src", &names);
	CHECK(n == 3 && !strcmp(names[0], "r3") && !strcmp(names[2], "r1"));
	CHECK(snap_decodes() == d0);
	while (n-- > 0)
		free(names[n]);
	free(names);
	CHECK(pub_revs(s, "src", &revs) == 3);
	CHECK(!strcmp(revs[0].id, id[3]) && !strcmp(revs[1].rev, "r2"));
	CHECK(revs[0].published_ns == published[3]);
	free(revs);
	CHECK(!pub_find_rev(s, "src", "r2", &l) && !strcmp(l->id, id[2]));
	CHECK(snap_decodes() == d0 + 1);
	snap_unref(l);
	CHECK(pub_find_rev(s, "src", "r0", &l) == -ENOENT); /* trimmed */
	CHECK(snap_decodes() == d0 + 1);
	/* a cache without an index (older dagfs) gets one on first use */
	snprintf(path, sizeof(path), "%s/sources/src/index", dir);
	CHECK(!unlink(path));
	CHECK(pub_revs(s, "src", &revs) == 3 && !strcmp(revs[2].rev, "r1"));
	free(revs);
	d0 = snap_decodes();
	CHECK(pub_revs(s, "src", &revs) == 3);
	CHECK(snap_decodes() == d0);
	free(revs);
	store_close(s);
}

static void test_store__gc_keeps_retained_and_pinned(void)
{
	struct snap *v[6];
	struct store *s = fresh();
	char c[8], r[8];

	CHECK(s);
	for (int i = 0; i < 6; i++) {
		snprintf(c, sizeof(c), "c%d", i);
		snprintf(r, sizeof(r), "r%d", i);
		v[i] = one_file(s, c, r);
		CHECK(v[i]);
	}
	for (int i = 0; i < 4; i++)
		CHECK(!pub_publish(s, v[i], 2));
	/* v[0] stays referenced (an open file); the others are let go */
	for (int i = 1; i < 4; i++)
		snap_unref(v[i]);
	CHECK(!pub_publish(s, v[4], 2));
	snap_unref(v[4]);
	/* history trimmed to r3, r4 and the pinned r0: c1, c2 and the
	 * never-published c5 go */
	CHECK(pub_gc(s) == 3);
	CHECK(store_has(s, &v[0]->e[1].hash));
	snap_unref(v[0]);
	snap_unref(v[5]);
	v[5] = one_file(s, "c5", "r5");
	CHECK(v[5] && !pub_publish(s, v[5], 2));
	CHECK(pub_gc(s) == 2); /* c0 (unpinned now) and c3 */
	snap_unref(v[5]);
	store_close(s);
}

/* A process that takes a source over refreshes a stale revision index
 * (a kill between the history link and the index update). */
static void test_store__stale_index_refreshed_when_taken_over(void)
{
	struct store *s = fresh();
	struct source_spec *spec;
	struct source *src;
	struct snap *cur;
	char text[256], err[256], cmd[512], **revs;
	int n;

	CHECK(s);
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p %s/tree && echo one > %s/tree/a.py", dir, dir);
	CHECK(!system(cmd));
	snprintf(text, sizeof(text), "dir:%s/tree,name=src,keep=5", dir);
	CHECK(!source_spec_parse(&spec, text, err, sizeof(err)));
	CHECK(!source_new(&src, spec, s, err, sizeof(err)));
	CHECK(!source_sync_once(src, &cur, err, sizeof(err)));
	snap_unref(cur);
	snprintf(cmd, sizeof(cmd),
		 "cp %s/sources/src/index %s/index.1 && "
		 "echo two > %s/tree/a.py",
		 dir, dir, dir);
	CHECK(!system(cmd));
	CHECK(!source_sync_once(src, &cur, err, sizeof(err)));
	snap_unref(cur);
	source_free(src);
	/* the kill: the second revision's links are there, its index not */
	snprintf(cmd, sizeof(cmd), "cp -f %s/index.1 %s/sources/src/index", dir,
		 dir);
	CHECK(!system(cmd));
	CHECK(!source_new(&src, spec, s, err, sizeof(err)));
	CHECK(!source_sync_once(src, &cur, err, sizeof(err))); /* unchanged */
	snap_unref(cur);
	n = pub_list_revs(s, "src", &revs);
	CHECK(n == 2);
	for (int i = 0; i < n; i++)
		free(revs[i]);
	free(revs);
	source_free(src);
	source_spec_free(spec);
	store_close(s);
}

static void test_store__fsck_reports_then_repairs(void)
{
	struct store *s = fresh();
	struct fsck_result r;
	struct snap *a, *b;
	char path[4096];
	int lines = 0, fd;

	CHECK(s);
	a = one_file(s, "good", "r1");
	b = one_file(s, "bad", "r2");
	CHECK(a && b && !pub_publish(s, a, 5) && !pub_publish(s, b, 5));
	CHECK(!fsck_run(s, false, harness_count_line, &lines, &r));
	CHECK(r.problems == 0 && lines == 0 && r.blobs == 2 &&
	      r.snapshots == 2);
	store_blob_path(s, &b->e[1].hash, path, sizeof(path));
	chmod(path, 0644);
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0 && pwrite(fd, "X", 1, 0) == 1);
	close(fd);
	snap_unref(a);
	snap_unref(b);
	CHECK(!fsck_run(s, false, harness_count_line, &lines, &r));
	CHECK(r.problems >= 1 && access(path, F_OK) == 0); /* reported only */
	CHECK(!fsck_run(s, true, NULL, NULL, &r));
	CHECK(r.problems >= 3 && access(path, F_OK) != 0);
	CHECK(!fsck_run(s, false, NULL, NULL, &r));
	CHECK(r.problems == 0);
	CHECK(!pub_load_current(s, "src", &a) && !strcmp(a->rev, "r1"));
	snap_unref(a);
	store_close(s);
}

int main(void)
{
	static const struct harness_case cases[] = {
		{ "test_store__put_open_verify", test_store__put_open_verify },
		{ "test_store__corrupt_blob_is_eio_and_removed",
		  test_store__corrupt_blob_is_eio_and_removed },
		{ "test_store__second_open_is_busy",
		  test_store__second_open_is_busy },
		{ "test_store__txn_checks_expected_hash",
		  test_store__txn_checks_expected_hash },
		{ "test_store__publish_load_and_fallback",
		  test_store__publish_load_and_fallback },
		{ "test_store__revs_come_from_the_index",
		  test_store__revs_come_from_the_index },
		{ "test_store__gc_keeps_retained_and_pinned",
		  test_store__gc_keeps_retained_and_pinned },
		{ "test_store__stale_index_refreshed_when_taken_over",
		  test_store__stale_index_refreshed_when_taken_over },
		{ "test_store__fsck_reports_then_repairs",
		  test_store__fsck_reports_then_repairs },
		{ NULL, NULL },
	};
	log_setup(LOG_LVL_ERR - 1, false);
	return harness_run_in(dir, cases, NULL);
}
