/* SPDX-License-Identifier: Apache-2.0 */
/*
 * harness.h - the smallest test runner: CHECK fails the case, main runs
 * all; and the scaffolding the store's tests share (an empty store in the
 * test directory, a line counter for fsck).
 */
#ifndef DAGFS_HARNESS_H
#define DAGFS_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync.h"

static int harness_failed;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			harness_failed = 1;                                    \
			return;                                                \
		}                                                              \
	} while (0)

struct harness_case {
	const char *name;
	void (*fn)(void);
};

static inline int harness_run(const struct harness_case *cases)
{
	int bad = 0;

	for (; cases->name; cases++) {
		harness_failed = 0;
		cases->fn();
		printf("%s %s\n", harness_failed ? "FAIL" : "ok  ",
		       cases->name);
		bad |= harness_failed;
	}
	return bad;
}

/*
 * Make the temporary directory @dir (a mkdtemp template, rewritten in
 * place), run @cases, then remove it. With @env (e.g. "TMPDIR"), that
 * variable names the directory while the cases run. 1 if a case failed
 * or the directory could not be made or removed.
 */
static inline int harness_run_in(char *dir, const struct harness_case *cases,
				 const char *env)
{
	char cmd[128];
	int rc;

	if (strlen(dir) + sizeof("rm -rf ") > sizeof(cmd) || !mkdtemp(dir))
		return 1;
	if (env)
		setenv(env, dir, 1);
	rc = harness_run(cases);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		rc = 1;
	return rc;
}

/*
 * Empty the test directory @dir (harness_run_in's) and open a new store
 * in it, or in its subdirectory @sub if not NULL, into *@out. 0, or
 * nonzero if either failed.
 */
static inline int harness_store(struct store **out, const char *dir,
				const char *sub)
{
	char cmd[128], path[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s/*", dir);
	snprintf(path, sizeof(path), "%s%s%s", dir, sub ? "/" : "",
		 sub ? sub : "");
	return system(cmd) || store_open(out, path, false);
}

/* A fsck_run() line callback: counts the lines into the int @payload. */
static inline void harness_count_line(const char *msg, void *payload)
{
	(void)msg;
	++*(int *)payload;
}

#endif
