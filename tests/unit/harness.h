/* SPDX-License-Identifier: Apache-2.0 */
/* harness.h - the smallest test runner: CHECK fails the case, main runs all. */
#ifndef DAGFS_HARNESS_H
#define DAGFS_HARNESS_H

#include <stdio.h>
#include <stdlib.h>

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
		printf("%s %s\n", harness_failed ? "FAIL" : "ok  ", cases->name);
		bad |= harness_failed;
	}
	return bad;
}

#endif
