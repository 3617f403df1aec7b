/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gen_tree.h - a generated tree for the collector's test and benchmark
 * (test_gc.c, bench/bench_gc.c): @nfiles small Python files in 40
 * directories, revision r<gen>; the first @change files change at every
 * generation, the others never. Header-only: both include it.
 */
#ifndef DAGFS_GEN_TREE_H
#define DAGFS_GEN_TREE_H

#include <stdio.h>

#include "snap_i.h"
#include "sync.h"

/* The bytes of file @i at generation @gen. */
static inline int gen_body(char *buf, size_t len, int i, int gen, int change)
{
	return snprintf(buf, len, "# file %d\nv = %d\n", i,
			i < change ? gen : 0);
}

static inline void gen_path(char *buf, size_t len, int i)
{
	snprintf(buf, len, "d%02d/f%05d.py", i % 40, i);
}

/* Store the files of generation @gen and build its snapshot (NULL on
 * failure). */
static inline struct snap *gen_tree(struct store *st, int nfiles, int change,
				    int gen)
{
	struct snap_builder *b;
	struct snap *s;
	char path[64], body[64], rev[32];

	if (snap_builder_new(&b, "src"))
		return NULL;
	for (int i = 0; i < nfiles; i++) {
		int len = gen_body(body, sizeof(body), i, gen, change);
		struct dhash h;

		gen_path(path, sizeof(path), i);
		if (store_put_buf(st, &h, body, (size_t)len) ||
		    snap_builder_add_file(b, path, 0644, (uint64_t)len, 1,
					  &h)) {
			snap_builder_free(b);
			return NULL;
		}
	}
	snprintf(rev, sizeof(rev), "r%d", gen);
	return snap_builder_finish(b, rev, &s) ? NULL : s;
}

#endif
