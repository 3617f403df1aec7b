/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_gc.c - the cost of one garbage-collection round with many
 * retained snapshots: publish @nsnap snapshots of an @nfiles-file tree
 * (each changing the same @change files) with keep=@nsnap, collect once, then
 * time @rounds rounds of "publish one more, collect" and print each
 * round's time and snapshot decodes; last, one round without gc/.
 *
 *   bench_gc DIR [nsnap=50] [nfiles=2000] [change=20] [rounds=5]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/gen_tree.h"

static int publish(struct store *st, int nfiles, int gen, int change, int keep)
{
	struct snap *s = gen_tree(st, nfiles, change, gen);
	int rc = s ? pub_publish(st, s, (unsigned)keep) : -1;

	snap_unref(s);
	return rc;
}

int main(int argc, char **argv)
{
	int nsnap = argc > 2 ? atoi(argv[2]) : 50;
	int nfiles = argc > 3 ? atoi(argv[3]) : 2000;
	int change = argc > 4 ? atoi(argv[4]) : 20;
	int rounds = argc > 5 ? atoi(argv[5]) : 5;
	struct store *st;
	char cmd[4200];
	int gen = 0, rc;

	if (argc < 2 || store_open(&st, argv[1], false)) {
		fprintf(stderr, "usage: bench_gc DIR [nsnap nfiles change "
				"rounds]\n");
		return 2;
	}
	for (; gen < nsnap; gen++)
		if (publish(st, nfiles, gen, change, nsnap))
			return 1;
	for (int r = -1; r < rounds; r++) {
		unsigned long d0 = snap_decodes();
		int64_t t0;

		if (r >= 0 && publish(st, nfiles, gen++, change, nsnap))
			return 1;
		t0 = mono_ns();
		rc = pub_gc(st);
		printf("%s %d: %.1f ms, %lu decodes, %d blobs removed\n",
		       r < 0 ? "first" : "round", r < 0 ? 0 : r + 1,
		       (double)(mono_ns() - t0) / 1e6, snap_decodes() - d0, rc);
	}
	/* a round that finds no index and no blob lists (a cache from before
	 * them, or all of gc/ lost): it decodes every retained snapshot */
	snprintf(cmd, sizeof(cmd), "rm -f %s/gc/*", argv[1]);
	if (system(cmd) == 0) {
		unsigned long d0 = snap_decodes();
		int64_t t0 = mono_ns();

		rc = pub_gc(st);
		printf("no index: %.1f ms, %lu decodes, %d blobs removed\n",
		       (double)(mono_ns() - t0) / 1e6, snap_decodes() - d0, rc);
	}
	store_close(st);
	return 0;
}
