/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fsck_cmd.c - `dagfs fsck --cache DIR [--repair]`: run fsck_run() and
 * say what it found, one line per problem. Exit status as e2fsck's:
 * 0 clean, 1 errors repaired, 4 errors left, 8 operational error.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "sidecar_i.h"

static void print_line(const char *msg, void *payload)
{
	(void)payload;
	printf("%s\n", msg);
}

/* fsck checks a cache; it must not create one where there was none. */
static bool is_cache(const char *dir)
{
	char p[PATH_MAX];
	struct stat st;

	snprintf(p, sizeof(p), "%s/objects", dir);
	return !stat(p, &st) && S_ISDIR(st.st_mode);
}

int cmd_fsck(const struct dagfs_config *c)
{
	struct fsck_result r;
	struct store *st;
	int rc;

	if (!is_cache(c->cache)) {
		fprintf(stderr,
			"dagfs: %s is not a dagfs cache (no objects/ "
			"directory)\n",
			c->cache);
		return 8;
	}
	rc = store_open(&st, c->cache, !c->repair);
	if (rc == -EBUSY) {
		fprintf(stderr,
			"dagfs: cache %s is in use by a running dagfs; "
			"stop it or run without --repair\n",
			c->cache);
		return 8;
	}
	if (rc) {
		fprintf(stderr, "dagfs: cache %s: %s\n", c->cache,
			strerror(-rc));
		return 8;
	}
	rc = fsck_run(st, c->repair, print_line, NULL, &r);
	store_close(st);
	if (rc) {
		fprintf(stderr, "dagfs: fsck %s: %s\n", c->cache,
			strerror(-rc));
		return 8;
	}
	printf("%s: %lu blobs, %lu snapshots, %lu problem%s%s\n", c->cache,
	       r.blobs, r.snapshots, r.problems, r.problems == 1 ? "" : "s",
	       r.problems && c->repair ? " repaired" : "");
	return !r.problems ? 0 : c->repair ? 1 : 4;
}
