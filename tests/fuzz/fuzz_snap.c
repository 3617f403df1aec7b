/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_snap.c - the snapshot decoder on arbitrary bytes. The checksum
 * would stop nearly every input at the door, so half the inputs get a
 * valid checksum appended: the parser behind it must hold too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "log.h"
#include "sync.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap *s;
	uint8_t *buf;
	uint64_t sum;

	log_setup(LOG_LVL_ERR - 1, false);
	if (!snap_decode(&s, data, size))
		snap_unref(s);
	buf = malloc(size + 8);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	sum = XXH3_64bits(buf, size);
	memcpy(buf + size, &sum, 8);
	if (!snap_decode(&s, buf, size + 8)) {
		void *enc;
		size_t len;

		/* what decodes must encode and decode again */
		if (!snap_encode(s, &enc, &len)) {
			struct snap *t;

			if (snap_decode(&t, enc, len))
				abort();
			if (t->n != s->n)
				abort();
			snap_unref(t);
			free(enc);
		}
		snap_unref(s);
	}
	free(buf);
	return 0;
}
