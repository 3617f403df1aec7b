/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_gc.c - collection rounds over the live-blob index (gc_live.c):
 * what a round decodes, a stale or damaged index, and SIGKILL at any
 * point of publish-and-collect rounds.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gen_tree.h"
#include "harness.h"
#include "log.h"
#include "snap_i.h"
#include "sync.h"

#define NFILES 200
#define CHANGE 10 /* files that change at every generation */
#define KEEP 8

static char dir[] = "/tmp/dagfs-test-gc-XXXXXX";

static struct store *fresh(void)
{
	struct store *s;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s/*", dir);
	if (system(cmd) || store_open(&s, dir, false))
		return NULL;
	return s;
}

static int publish(struct store *st, int gen)
{
	struct snap *s = gen_tree(st, NFILES, CHANGE, gen);
	int rc = s ? pub_publish(st, s, KEEP) : -EIO;

	snap_unref(s);
	return rc;
}

/* Every file of snapshot @s (revision r<gen>) is in the store, intact
 * and the bytes the generator made. */
static bool snap_exact(struct store *st, const struct snap *s)
{
	int gen = atoi(s->rev + 1);
	char body[64], p[64];
	bool ok = s->rev[0] == 'r';

	for (int i = 0; i < NFILES && ok; i++) {
		int len = gen_body(body, sizeof(body), i, gen, CHANGE), k;
		struct dhash want;

		gen_path(p, sizeof(p), i);
		dhash_buf(&want, body, (size_t)len);
		k = snap_lookup(s, p);
		ok = k >= 0 && dhash_eq(&s->e[k].hash, &want) &&
		     store_verify_blob(st, &want, false) == 0;
	}
	return ok;
}

static bool rev_exact(struct store *st, int gen)
{
	char rev[32];
	struct snap *s;
	bool ok;

	snprintf(rev, sizeof(rev), "r%d", gen);
	if (pub_find_rev(st, "src", rev, &s))
		return false;
	ok = snap_exact(st, s);
	snap_unref(s);
	return ok;
}

/* Every snapshot the history links to is exact; the number of distinct
 * revisions, -1 if one is not; the links in *@links. */
static int history_exact(struct store *st, int *links)
{
	char cmd[256], id[64];
	int seen[64], nseen = 0, bad = 0;
	FILE *f;

	*links = 0;
	snprintf(cmd, sizeof(cmd),
		 "for l in %s/sources/src/h-*; do "
		 "basename $(readlink $l); done",
		 dir);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fscanf(f, "%63s", id) == 1) {
		struct snap *s;
		bool dup = false;

		++*links;
		if (pub_load(st, id, &s)) {
			bad++;
			continue;
		}
		bad += !snap_exact(st, s);
		for (int i = 0; i < nseen; i++)
			dup |= seen[i] == atoi(s->rev + 1);
		if (!dup && nseen < 64)
			seen[nseen++] = atoi(s->rev + 1);
		snap_unref(s);
	}
	return pclose(f) || bad ? -1 : nseen;
}

static int blobs_stored(struct store *st)
{
	uint64_t n, bytes;

	return store_usage(st, &n, &bytes) ? -1 : (int)n;
}

static char *gc_path(const char *name)
{
	static char p[256];

	snprintf(p, sizeof(p), "%s/gc/%s", dir, name);
	return p;
}

static void test_gc__round_after_a_publish_decodes_nothing(void)
{
	struct store *s = fresh();
	struct snap *cur;
	unsigned long d0;

	CHECK(s);
	for (int g = 0; g < KEEP + 3; g++)
		CHECK(!publish(s, g));
	CHECK(pub_gc(s) == 3 * CHANGE);
	/* one more publication: the round reads its list and the list of
	 * the snapshot it pushed out, and decodes nothing */
	CHECK(!publish(s, KEEP + 3));
	d0 = snap_decodes();
	CHECK(pub_gc(s) == CHANGE);
	CHECK(snap_decodes() == d0);
	CHECK(blobs_stored(s) == NFILES + (KEEP - 1) * CHANGE);
	for (int g = 4; g < KEEP + 4; g++)
		CHECK(rev_exact(s, g));
	/* without the publisher's list, it decodes the new snapshot only */
	CHECK(!publish(s, KEEP + 4));
	CHECK(!pub_load_current(s, "src", &cur));
	CHECK(!unlink(gc_path(cur->id)));
	snap_unref(cur);
	d0 = snap_decodes();
	CHECK(pub_gc(s) == CHANGE);
	CHECK(snap_decodes() == d0 + 1);
	d0 = snap_decodes();
	CHECK(pub_gc(s) == 0); /* nothing new: nothing read */
	CHECK(snap_decodes() == d0);
	for (int g = 5; g < KEEP + 5; g++)
		CHECK(rev_exact(s, g));
	store_close(s);
}

/* Copy file @from to @to. */
static bool copy(const char *from, const char *to)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "cp -f %s %s && chmod 0644 %s", from, to,
		 to);
	return system(cmd) == 0;
}

static void test_gc__stale_or_damaged_index_is_rebuilt(void)
{
	struct store *s = fresh();
	char old[300], cmd[300];
	uint32_t ns, nb, zero = 0;
	int fd, zeroed = 0;

	CHECK(s);
	for (int g = 0; g < KEEP; g++)
		CHECK(!publish(s, g));
	CHECK(pub_gc(s) == 0);
	snprintf(old, sizeof(old), "%s/live.old", dir);
	CHECK(copy(gc_path("live"), old));
	/* the history moves on by more than KEEP; then the index of then
	 * comes back (a write lost in a crash) with no list of what it
	 * covered: the round must rebuild, not trust it */
	for (int g = KEEP; g < 2 * KEEP + 2; g++) {
		CHECK(!publish(s, g));
		CHECK(pub_gc(s) == CHANGE);
	}
	CHECK(copy(old, gc_path("live")));
	CHECK(!publish(s, 2 * KEEP + 2));
	CHECK(pub_gc(s) == CHANGE);
	for (int g = KEEP + 3; g <= 2 * KEEP + 2; g++)
		CHECK(rev_exact(s, g));
	/* the counts of the newest revision's own blobs zeroed, checksum
	 * left as it was: trusted, the round would remove them; the checksum
	 * fails instead and the counts are rebuilt */
	CHECK(chmod(gc_path("live"), 0644) == 0);
	fd = open(gc_path("live"), O_RDWR);
	CHECK(fd >= 0 && pread(fd, &ns, 4, 8) == 4 &&
	      pread(fd, &nb, 4, 12) == 4);
	for (uint32_t i = 0; i < nb; i++) {
		off_t at = 16 + (off_t)ns * 16 + (off_t)i * 20;
		struct dhash h;

		CHECK(pread(fd, h.b, 16, at) == 16);
		for (int f = 0; f < CHANGE; f++) {
			char body[64];
			int len = gen_body(body, sizeof(body), f, 2 * KEEP + 2,
					   CHANGE);
			struct dhash want;

			dhash_buf(&want, body, (size_t)len);
			if (dhash_eq(&h, &want))
				CHECK(pwrite(fd, &zero, 4, at + 16) == 4 &&
				      ++zeroed);
		}
	}
	close(fd);
	CHECK(zeroed == CHANGE);
	CHECK(!publish(s, 2 * KEEP + 3));
	CHECK(pub_gc(s) == CHANGE);
	/* and so does a damaged list: remade from its snapshot */
	snprintf(cmd, sizeof(cmd),
		 "for f in %s/gc/????????????????????????????????; "
		 "do chmod 0644 $f; printf X >> $f; done",
		 dir);
	CHECK(system(cmd) == 0);
	CHECK(!publish(s, 2 * KEEP + 4));
	CHECK(pub_gc(s) == CHANGE);
	for (int g = KEEP + 5; g <= 2 * KEEP + 4; g++)
		CHECK(rev_exact(s, g));
	CHECK(blobs_stored(s) == NFILES + (KEEP - 1) * CHANGE);
	store_close(s);
}

/* Child: publish and collect forever, from the generation after current. */
static void churn(void)
{
	struct store *s = NULL;
	struct snap *cur;
	int gen = 0;

	while (store_open(&s, dir, false) == -EBUSY)
		usleep(1000);
	if (!s)
		_exit(1);
	if (!pub_load_current(s, "src", &cur)) {
		gen = atoi(cur->rev + 1) + 1;
		snap_unref(cur);
	}
	for (;; gen++)
		if (publish(s, gen) || pub_gc(s) < 0)
			_exit(1);
}

static void test_gc__sigkill_mid_round_loses_nothing(void)
{
	struct store *s = fresh();
	struct fsck_result r;
	struct snap *cur;
	unsigned seed = (unsigned)time(NULL);
	int revs, links;

	CHECK(s);
	store_close(s);
	srand(seed);
	for (int i = 0; i < 40; i++) {
		pid_t pid = fork();
		int status;

		CHECK(pid >= 0);
		if (!pid)
			churn();
		usleep(5000 + (useconds_t)(rand() % 40000));
		kill(pid, SIGKILL);
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK(WIFSIGNALED(status));
	}
	CHECK(!store_open(&s, dir, false));
	CHECK(!fsck_run(s, false, NULL, NULL, &r));
	if (r.problems)
		fprintf(stderr, "seed %u: %d problems\n", seed,
			(int)r.problems);
	CHECK(r.problems == 0);
	CHECK(!pub_load_current(s, "src", &cur) && snap_exact(s, cur));
	snap_unref(cur);
	/* every retained revision (a kill between the history link and the
	 * trim leaves one more than KEEP) is there byte for byte */
	revs = history_exact(s, &links);
	CHECK(revs >= 1 && links >= KEEP && links <= KEEP + 1);
	/* the next round after the kills leaves exactly what is retained */
	CHECK(pub_gc(s) >= 0);
	CHECK(history_exact(s, &links) == revs);
	CHECK(blobs_stored(s) == NFILES + (revs - 1) * CHANGE);
	store_close(s);
}

int main(void)
{
	static const struct harness_case cases[] = {
		{ "test_gc__round_after_a_publish_decodes_nothing",
		  test_gc__round_after_a_publish_decodes_nothing },
		{ "test_gc__stale_or_damaged_index_is_rebuilt",
		  test_gc__stale_or_damaged_index_is_rebuilt },
		{ "test_gc__sigkill_mid_round_loses_nothing",
		  test_gc__sigkill_mid_round_loses_nothing },
		{ NULL, NULL },
	};
	log_setup(LOG_LVL_ERR - 1, false);
	return harness_run_in(dir, cases, NULL);
}
