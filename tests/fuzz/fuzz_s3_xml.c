/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_s3_xml.c - ListObjectsV2 pages, <Error> bodies and STS answers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct s3_page pg = { 0 };
	struct s3_creds c;
	char code[64], msg[128], path[4096];
	const char *why;

	if (!s3_list_parse(&pg, (const char *)data, size)) {
		for (size_t i = 0; i < pg.n; i++) {
			int k = s3_key_to_path(pg.v[i].key, pg.v[i].klen, "",
					       path, sizeof(path), &why);

			if (k >= 0 && k < 2 &&
			    snap_path_check(path, strlen(path)))
				abort(); /* the sanitiser let a bad path by */
		}
	}
	s3_page_free(&pg);
	s3_error_parse((const char *)data, size, code, sizeof(code), msg,
		       sizeof(msg));
	if (!memchr(code, '\0', sizeof(code)) ||
	    !memchr(msg, '\0', sizeof(msg)))
		abort();
	(void)!s3_sts_parse(&c, (const char *)data, size);
	return 0;
}
