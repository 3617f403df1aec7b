/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_tree.c - the tree manifest parser (tree_decode) on arbitrary bytes:
 * a manifest comes from the cache or, for a mirror, from another daemon.
 * What decodes must encode to the same bytes, and hash to the id it had.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sync.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char id[DHASH_HEX], *enc;
	struct tree *t, *u;
	size_t len;

	log_setup(LOG_LVL_ERR - 1, false);
	if (tree_decode(&t, NULL, data, size))
		return 0;
	if (tree_encode(t->m, t->n, &enc, &len))
		abort();
	if (len != size || memcmp(enc, data, size) ||
	    tree_decode(&u, t->id, enc, len))
		abort();
	if (tree_id(id, t->m, t->n) || strcmp(id, t->id))
		abort();
	tree_free(u);
	tree_free(t);
	free(enc);
	return 0;
}
