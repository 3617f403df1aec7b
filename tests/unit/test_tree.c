/* SPDX-License-Identifier: Apache-2.0 */
/* test_tree.c - tree ids and manifests (tree.c), revisions kept on demand
 * (pub_retain) and source_fetch_rev for a type that cannot fetch. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"
#include "sync.h"

static char dir[] = "/tmp/dagfs-test-tree-XXXXXX";

static struct store *fresh(void)
{
	struct store *s;

	return harness_store(&s, dir, NULL) ? NULL : s;
}

static const struct tree_member two[] = {
	{ .source = "b", .at = "teams/b", .rev = "r2", .snap_id = "" },
	{ .source = "a", .at = "", .rev = "", .snap_id = "" },
};

static void test_tree__id_is_the_set_of_members(void)
{
	struct tree_member swapped[2] = { two[1], two[0] }, other[2];
	char x[DHASH_HEX], y[DHASH_HEX], z[DHASH_HEX];

	CHECK(!tree_id(x, two, 2) && !tree_id(y, swapped, 2));
	CHECK(!strcmp(x, y) && strlen(x) == 32);
	/* a snapshot id is a hint, not part of the id */
	memcpy(other, two, sizeof(other));
	other[0].snap_id = "0123456789abcdef0123456789abcdef";
	CHECK(!tree_id(z, other, 2) && !strcmp(x, z));
	/* but a revision, a place or a name is */
	other[0].rev = "r3";
	CHECK(!tree_id(z, other, 2) && strcmp(x, z));
	other[0].rev = "r2";
	other[0].at = "teams/c";
	CHECK(!tree_id(z, other, 2) && strcmp(x, z));
	/* two members of one name, or a bad field */
	other[0] = two[1];
	CHECK(tree_id(z, other, 2) == -EINVAL);
	other[0] = two[0];
	other[0].rev = "r\n2";
	CHECK(tree_id(z, other, 2) == -EINVAL);
	other[0].rev = "r2";
	other[0].at = "../x";
	CHECK(tree_id(z, other, 2) == -EINVAL);
}

static void test_tree__manifest_round_trip_and_refusals(void)
{
	char id[DHASH_HEX], *buf, *bad;
	struct tree *t;
	size_t len;

	CHECK(!tree_id(id, two, 2));
	CHECK(!tree_encode(two, 2, &buf, &len));
	CHECK(!strncmp(buf, "dagfs-tree 1\na\t\t\t-\nb\tteams/b\tr2\t-\n",
		       len));
	CHECK(!tree_decode(&t, id, buf, len));
	CHECK(t->n == 2 && !strcmp(t->id, id));
	CHECK(!strcmp(t->m[1].at, "teams/b") && !*t->m[1].snap_id);
	tree_free(t);
	/* another id, a truncated line, an extra field, unsorted lines */
	CHECK(tree_decode(&t, "00000000000000000000000000000000", buf, len) ==
	      -EBADMSG);
	CHECK(tree_decode(&t, NULL, buf, len - 1) == -EBADMSG);
	bad = strdup("dagfs-tree 1\nb\tx\tr\t-\na\ty\tr\t-\n");
	CHECK(tree_decode(&t, NULL, bad, strlen(bad)) == -EBADMSG);
	free(bad);
	bad = strdup("dagfs-tree 1\na\tx\tr\t-\tmore\n");
	CHECK(tree_decode(&t, NULL, bad, strlen(bad)) == -EBADMSG);
	free(bad);
	bad = strdup("dagfs-tree 2\n");
	CHECK(tree_decode(&t, NULL, bad, strlen(bad)) == -EBADMSG);
	free(bad);
	free(buf);
}

static void test_tree__record_keeps_the_newest(void)
{
	struct store *st = fresh();
	struct tree_member m = { .source = "s", .at = "", .snap_id = "" };
	char ids[3][DHASH_HEX], **v;
	const char *revs[] = { "r1", "r2", "r3" };
	struct tree *t;
	int n;

	CHECK(st);
	for (int i = 0; i < 3; i++) {
		m.rev = revs[i];
		CHECK(!tree_record(st, &m, 1, 2, ids[i]));
		usleep(20000); /* mtimes order the manifests */
	}
	n = tree_list(st, &v);
	CHECK(n == 2 && !strcmp(v[0], ids[2]) && !strcmp(v[1], ids[1]));
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
	CHECK(tree_load(st, ids[0], &t) == -ENOENT);
	/* recorded again, a tree becomes the newest and the oldest goes */
	m.rev = "r2";
	CHECK(!tree_record(st, &m, 1, 2, ids[0]) && !strcmp(ids[0], ids[1]));
	usleep(20000);
	m.rev = "r4";
	CHECK(!tree_record(st, &m, 1, 2, ids[0]));
	CHECK(tree_load(st, ids[2], &t) == -ENOENT);
	CHECK(!tree_load(st, ids[1], &t) && !strcmp(t->m[0].rev, "r2"));
	tree_free(t);
	/* a manifest from elsewhere is checked against its name */
	CHECK(tree_put(st, ids[1], "dagfs-tree 1\ns\t\tr9\t-\n", 21, 8) ==
	      -EBADMSG);
	store_close(st);
}

static void test_tree__fsck_removes_a_corrupt_manifest(void)
{
	struct store *st = fresh();
	struct tree_member m = {
		.source = "s", .at = "a", .rev = "r", .snap_id = ""
	};
	struct fsck_result res;
	char id[DHASH_HEX], path[PATH_MAX];
	struct tree *t;
	int n = 0;
	FILE *f;

	CHECK(st && !tree_record(st, &m, 1, 8, id));
	CHECK(!fsck_run(st, false, harness_count_line, &n, &res) &&
	      res.problems == 0);
	snprintf(path, sizeof(path), "%s/trees/%s", dir, id);
	CHECK(!chmod(path, 0644));
	f = fopen(path, "a");
	CHECK(f && fputs("x\tb\tr\t-\n", f) >= 0 && !fclose(f));
	CHECK(tree_load(st, id, &t) == -EBADMSG);
	CHECK(!fsck_run(st, false, harness_count_line, &n, &res) &&
	      res.problems == 1);
	CHECK(!access(path, F_OK));
	CHECK(!fsck_run(st, true, harness_count_line, &n, &res) &&
	      res.problems == 1);
	CHECK(access(path, F_OK) && n == 2);
	store_close(st);
}

static struct snap *one_file(const char *source, const char *rev)
{
	struct snap_builder *b;
	struct snap *s;
	struct dhash h;

	dhash_buf(&h, rev, strlen(rev));
	if (snap_builder_new(&b, source))
		return NULL;
	if (snap_builder_add_file(b, "x.py", 0644, strlen(rev), 1, &h)) {
		snap_builder_free(b);
		return NULL;
	}
	return snap_builder_finish(b, rev, &s) ? NULL : s;
}

static void test_pub__retained_found_listed_never_current(void)
{
	struct store *st = fresh();
	struct snap *cur = one_file("s", "new"), *old = one_file("s", "old");
	struct snap *extra = one_file("s", "older"), *got;
	struct dhash h;
	char **v;
	int n;

	CHECK(st && cur && old && extra);
	CHECK(!store_put_buf(st, &h, "new", 3) &&
	      !store_put_buf(st, &h, "old", 3));
	CHECK(!store_put_buf(st, &h, "older", 5));
	CHECK(!pub_publish(st, cur, 5));
	CHECK(!pub_retain(st, old, 1));
	CHECK(!pub_find_rev(st, "s", "old", &got) && !strcmp(got->rev, "old"));
	snap_unref(got);
	CHECK(!pub_load_current(st, "s", &got) && !strcmp(got->rev, "new"));
	snap_unref(got);
	n = pub_list_revs(st, "s", &v);
	CHECK(n == 2);
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
	/* keep=1 of the on-demand ones; the history is not touched */
	snap_unref(old);
	CHECK(!pub_retain(st, extra, 1));
	snap_unref(extra);
	CHECK(pub_find_rev(st, "s", "old", &got) == -ENOENT);
	CHECK(!pub_find_rev(st, "s", "new", &got));
	snap_unref(got);
	CHECK(pub_gc(st) >= 1); /* "old"'s blob goes with its snapshot */
	snap_unref(cur);
	store_close(st);
}

static void test_source__fetch_rev_refused_by_dir(void)
{
	struct store *st = fresh();
	struct source_spec *sp;
	struct source *src;
	struct snap *s;
	char err[512], spec[256];

	CHECK(st);
	snprintf(spec, sizeof(spec), "dir:%s,name=d,keep=3", dir);
	CHECK(!source_spec_parse(&sp, spec, err, sizeof(err)));
	CHECK(!source_new(&src, sp, st, err, sizeof(err)));
	CHECK(source_fetch_rev(src, "dir-00", 1000, &s, err, sizeof(err)) ==
	      -ENOENT);
	CHECK(strstr(err, "dir-00") && strstr(err, "keep=3"));
	CHECK(!strcmp(source_type(src), "dir") && source_keep(src) == 3);
	source_free(src);
	source_spec_free(sp);
	store_close(st);
}

static void test_source__origin_drops_userinfo(void)
{
	struct store *st = fresh();
	struct source_spec *sp;
	struct source *src;
	char err[512], url[256], ref[64];

	CHECK(st);
	CHECK(!source_spec_parse(&sp,
				 "git:https://user@example.com/org/d.git,"
				 "ref=main",
				 err, sizeof(err)));
	CHECK(!source_new(&src, sp, st, err, sizeof(err)));
	source_origin(src, url, sizeof(url), ref, sizeof(ref));
	CHECK(!strcmp(url, "https://example.com/org/d.git"));
	CHECK(!strcmp(ref, "main"));
	source_free(src);
	source_spec_free(sp);
	CHECK(!source_spec_parse(&sp,
				 "git:git@example.com:org/d.git,name=e,"
				 "insecure-no-host-key-check=1",
				 err, sizeof(err)));
	CHECK(!source_new(&src, sp, st, err, sizeof(err)));
	source_origin(src, url, sizeof(url), ref, sizeof(ref));
	CHECK(!strcmp(url, "example.com:org/d.git") && !*ref);
	source_free(src);
	source_spec_free(sp);
	store_close(st);
}

int main(void)
{
	static const struct harness_case cases[] = {
		{ "test_tree__id_is_the_set_of_members",
		  test_tree__id_is_the_set_of_members },
		{ "test_tree__manifest_round_trip_and_refusals",
		  test_tree__manifest_round_trip_and_refusals },
		{ "test_tree__record_keeps_the_newest",
		  test_tree__record_keeps_the_newest },
		{ "test_tree__fsck_removes_a_corrupt_manifest",
		  test_tree__fsck_removes_a_corrupt_manifest },
		{ "test_pub__retained_found_listed_never_current",
		  test_pub__retained_found_listed_never_current },
		{ "test_source__fetch_rev_refused_by_dir",
		  test_source__fetch_rev_refused_by_dir },
		{ "test_source__origin_drops_userinfo",
		  test_source__origin_drops_userinfo },
		{ NULL, NULL },
	};
	log_setup(LOG_LVL_ERR - 1, false);
	return harness_run_in(dir, cases, NULL);
}
