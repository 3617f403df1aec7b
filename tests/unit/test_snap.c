/* SPDX-License-Identifier: Apache-2.0 */
/* test_snap.c - snapshots: builder rules, lookups, diff, encoding. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "log.h"
#include "sync.h"

static struct dhash H(int v) {
	struct dhash h;

	dhash_buf(&h, &v, sizeof(v));
	return h;
}

static struct snap *
build(const char *rev)
{
	struct snap_builder *b;
	struct snap *s = NULL;
	struct dhash h1 = H(1), h2 = H(2);

	if (snap_builder_new(&b, "t"))
		return NULL;
	if (snap_builder_add_file(b, "dags/a.py", 0644, 10, 5, &h1) ||
	    snap_builder_add_file(b, "dags/team/b.py", 0755, 20, 6, &h2) ||
	    snap_builder_add_link(b, "dags/ln", "team/b.py", 7) ||
	    snap_builder_add_dir(b, "empty", 0700, 8) ||
	    snap_builder_finish(b, rev, &s))
		return NULL;
	return s;
}

/* A listing's own digest as its revision, set while sealing. */
static struct snap *one_digest(int64_t mtime)
{
	struct snap_builder *b;
	struct snap *s = NULL;
	struct dhash h = H(1);

	if (snap_builder_new(&b, "t") ||
	    snap_builder_add_file(b, "a.py", 0644, 10, mtime, &h) ||
	    snap_builder_finish_digest(b, "dir-", &s))
		return NULL;
	return s;
}

static void test_snap__digest_revision_names_the_listing(void)
{
	struct snap *a = one_digest(5), *b = one_digest(5), *c = one_digest(6);

	CHECK(a && b && c);
	CHECK(!strncmp(a->rev, "dir-", 4) && strlen(a->rev) == 4 + 32);
	CHECK(!strcmp(a->rev, b->rev) && strcmp(a->rev, c->rev));
	snap_unref(a);
	snap_unref(b);
	snap_unref(c);
}

static void test_snap__parents_are_synthesized(void)
{
	struct snap *s = build("r1");
	int d, t;

	CHECK(s);
	CHECK(s->n == 7); /* root, dags, empty, a.py, ln, team, b.py */
	d = snap_lookup(s, "dags");
	CHECK(d > 0 && s->e[d].type == SNAP_DIR && s->e[d].mode == 0755);
	t = snap_child(s, (uint32_t)d, "team");
	CHECK(t > 0 && snap_lookup(s, "dags/team") == t);
	CHECK(snap_child(s, (uint32_t)t, "b.py") ==
	      snap_lookup(s, "dags/team/b.py"));
	CHECK(s->e[snap_lookup(s, "dags/team/b.py")].mode == 0755);
	CHECK(snap_lookup(s, "nope") == -ENOENT);
	CHECK(s->e[0].child_count == 2);
	snap_unref(s);
}

static void test_snap__escaping_links_are_dropped(void)
{
	static const char *const bad[][2] = {
		{ "x", "../out" }, { "d/x", "../../out" }, { "y", "/etc" },
		{ "dot", "." },	   { "z", "dot/.." },	   { "w", "d/../.." },
	};
	struct snap_builder *b;
	struct snap *s;

	CHECK(!snap_builder_new(&b, "t"));
	CHECK(!snap_builder_add_dir(b, "d", 0755, 1));
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		CHECK(!snap_builder_add_link(b, bad[i][0], bad[i][1], 1));
	CHECK(!snap_builder_add_link(b, "ok", "d/../d", 1));
	CHECK(!snap_builder_add_link(b, "dangling", "d/missing/..", 1));
	CHECK(!snap_builder_finish(b, "r", &s));
	/* "dot" -> "." stays inside; "z" -> dot/.. climbs out through it */
	CHECK(snap_lookup(s, "dot") > 0);
	CHECK(snap_lookup(s, "z") == -ENOENT);
	CHECK(snap_lookup(s, "x") == -ENOENT && snap_lookup(s, "y") == -ENOENT);
	CHECK(snap_lookup(s, "d/x") == -ENOENT &&
	      snap_lookup(s, "w") == -ENOENT);
	CHECK(snap_lookup(s, "ok") > 0 && snap_lookup(s, "dangling") > 0);
	snap_unref(s);
}

static void test_snap__directory_wins_over_file(void)
{
	struct snap_builder *b;
	struct snap *s;
	struct dhash h = H(3);

	CHECK(!snap_builder_new(&b, "t"));
	CHECK(!snap_builder_add_file(b, "a", 0644, 1, 1, &h));
	CHECK(!snap_builder_add_file(b, "a/b", 0644, 1, 1, &h));
	CHECK(!snap_builder_finish(b, "r", &s));
	CHECK(s->e[snap_lookup(s, "a")].type == SNAP_DIR);
	CHECK(snap_lookup(s, "a/b") > 0);
	snap_unref(s);
}

static void test_snap__bad_paths_are_refused(void)
{
	static const char *const bad[] = { "/abs", "a//b", "a/../b", "./a",
					   "a/",   "..",   "." };
	struct snap_builder *b;
	struct dhash h = H(4);

	CHECK(!snap_builder_new(&b, "t"));
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		CHECK(snap_builder_add_file(b, bad[i], 0644, 1, 1, &h) ==
		      -EINVAL);
	snap_builder_free(b);
}

static void test_snap__encode_decode_roundtrip(void)
{
	struct snap *s = build("rev-1"), *d;
	void *buf;
	size_t len;

	CHECK(s);
	s->published_ns = 42;
	CHECK(!snap_encode(s, &buf, &len));
	CHECK(!snap_decode(&d, buf, len));
	CHECK(d->n == s->n && !strcmp(d->rev, "rev-1") &&
	      d->published_ns == 42);
	for (uint32_t i = 0; i < s->n; i++) {
		CHECK(!strcmp(s->e[i].path, d->e[i].path));
		CHECK(s->e[i].mode == d->e[i].mode &&
		      s->e[i].size == d->e[i].size);
	}
	snap_unref(d);
	free(buf);
	snap_unref(s);
}

static void test_snap__corruption_is_detected(void)
{
	struct snap *s = build("r"), *d;
	unsigned char *buf;
	size_t len;

	CHECK(s);
	CHECK(!snap_encode(s, (void **)&buf, &len));
	for (size_t i = 0; i < len; i++) {
		buf[i] ^= 0x40;
		CHECK(snap_decode(&d, buf, len) == -EBADMSG);
		buf[i] ^= 0x40;
	}
	for (size_t cut = 0; cut < len; cut++)
		CHECK(snap_decode(&d, buf, cut) == -EBADMSG);
	free(buf);
	snap_unref(s);
}

struct diffcount {
	int added, removed, changed;
};

static void count(const struct snap *a, int ai, const struct snap *b, int bi,
		  void *p)
{
	struct diffcount *c = p;

	(void)a;
	(void)b;
	if (ai < 0)
		c->added++;
	else if (bi < 0)
		c->removed++;
	else
		c->changed++;
}

static void test_snap__diff_names_exactly_the_changes(void)
{
	struct snap *a = build("a"), *b;
	struct snap_builder *bb;
	struct dhash h1 = H(1), h9 = H(9);
	struct diffcount c = { 0 };

	CHECK(a);
	CHECK(!snap_builder_new(&bb, "t"));
	CHECK(!snap_builder_add_file(bb, "dags/a.py", 0644, 10, 5, &h1));
	CHECK(!snap_builder_add_file(bb, "dags/team/b.py", 0755, 20, 6, &h9));
	CHECK(!snap_builder_add_dir(bb, "empty", 0700, 8));
	CHECK(!snap_builder_add_file(bb, "new.py", 0644, 1, 1, &h1));
	CHECK(!snap_builder_finish(bb, "b", &b));
	snap_diff(a, b, count, &c);
	/* root and dags mtimes follow the newest entry: unchanged here */
	CHECK(c.added == 1 && c.removed == 1 && c.changed == 1);
	snap_unref(a);
	snap_unref(b);
}

int main(void)
{
	static const struct harness_case cases[] = {
		{ "test_snap__parents_are_synthesized",
		  test_snap__parents_are_synthesized },
		{ "test_snap__digest_revision_names_the_listing",
		  test_snap__digest_revision_names_the_listing },
		{ "test_snap__escaping_links_are_dropped",
		  test_snap__escaping_links_are_dropped },
		{ "test_snap__directory_wins_over_file",
		  test_snap__directory_wins_over_file },
		{ "test_snap__bad_paths_are_refused",
		  test_snap__bad_paths_are_refused },
		{ "test_snap__encode_decode_roundtrip",
		  test_snap__encode_decode_roundtrip },
		{ "test_snap__corruption_is_detected",
		  test_snap__corruption_is_detected },
		{ "test_snap__diff_names_exactly_the_changes",
		  test_snap__diff_names_exactly_the_changes },
		{ NULL, NULL },
	};

	log_setup(LOG_LVL_ERR - 1, false);
	return harness_run(cases);
}
