/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_s3_key.c - the key sanitiser: whatever it accepts must be a path
 * the snapshot builder accepts too (no "..", no empty parts, no NUL).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[4096];
	const char *why;
	int k = s3_key_to_path((const char *)data, size, "", out, sizeof(out),
			       &why);

	if (k == 0 || k == 1) {
		if (snap_path_check(out, strlen(out)) ||
		    strlen(out) >= size + 1)
			abort();
	} else if (k < 0 && !why) {
		abort();
	}
	return 0;
}
