/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_s3_creds.c - shared credentials files and IMDS JSON answers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct s3_creds c;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (!s3_creds_parse_file(&c, text, "default") &&
	    (!memchr(c.access_key, '\0', sizeof(c.access_key)) ||
	     !c.access_key[0]))
		abort();
	(void)!s3_imds_parse(&c, text);
	free(text);
	return 0;
}
