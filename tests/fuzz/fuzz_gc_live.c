/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_gc_live.c - the collector's live-blob index and blob-list parsers
 * (gc_live.c) on arbitrary bytes: both files come from the cache. Each
 * input is tried as it is and with a valid checksum appended, so that the
 * fuzzer reaches past the checksum into the counts and lists.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pub_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size + 16);
	struct dhash sum;

	if (!buf)
		return 0;
	log_setup(LOG_LVL_ERR - 1, false);
	memcpy(buf, data, size);
	dhash_buf(&sum, data, size);
	memcpy(buf + size, sum.b, 16);
	for (size_t n = size; n <= size + 16; n += 16) {
		int a = gc_live_parse_check(buf, n);
		int b = gc_list_parse_check(buf, n);

		if ((a < 0 && a != -EBADMSG && a != -ENOMEM) ||
		    (b < 0 && b != -EBADMSG && b != -ENOMEM))
			abort(); /* a count, or the input refused */
	}
	free(buf);
	return 0;
}
