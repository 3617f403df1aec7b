/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_range.c - the served store's Range header parser (serve.c) on
 * arbitrary text and body sizes: a range it accepts must lie inside the
 * body and be non-empty.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t body = 0, off = 0, len = 0;
	char *h;
	int rc;

	if (size < 8)
		return 0;
	memcpy(&body, data, 8);
	body %= 1ULL << 40;
	h = malloc(size - 8 + 1);
	if (!h)
		return 0;
	memcpy(h, data + 8, size - 8);
	h[size - 8] = '\0';
	rc = serve_range_parse(h, body, &off, &len);
	if (rc == 1 && (!len || off >= body || len > body - off))
		abort();
	if (rc < -1 || rc > 1)
		abort();
	free(h);
	return 0;
}
