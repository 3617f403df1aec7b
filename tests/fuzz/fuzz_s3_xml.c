/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_s3_xml.c - ListObjectsV2 pages (whole and fed in two pieces),
 * <Error> bodies and STS answers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The page fed as it would arrive, cut where the input says: it must
 * parse exactly as the whole does. */
static void check_fed_in_pieces(const uint8_t *data, size_t size, int whole_rc,
				const struct s3_page *whole)
{
	struct s3_page cut = { 0 };
	struct s3_list_parser *lp;
	size_t at = size ? data[0] % size : 0;
	int rc;

	if (s3_list_begin(&lp, &cut))
		return;
	rc = s3_list_feed(lp, (const char *)data, at, false);
	if (!rc)
		rc = s3_list_feed(lp, (const char *)data + at, size - at, true);
	s3_list_end(lp);
	if (!rc != !whole_rc || cut.n != whole->n)
		abort();
	for (size_t i = 0; i < cut.n; i++)
		if (cut.v[i].klen != whole->v[i].klen ||
		    memcmp(cut.v[i].key, whole->v[i].key, cut.v[i].klen) ||
		    strcmp(cut.v[i].etag, whole->v[i].etag))
			abort();
	s3_page_free(&cut);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct s3_page pg = { 0 };
	struct s3_creds c;
	char code[64], msg[128], path[4096];
	const char *why;
	int rc = s3_list_parse(&pg, (const char *)data, size);

	if (!rc) {
		for (size_t i = 0; i < pg.n; i++) {
			int k = s3_key_to_path(pg.v[i].key, pg.v[i].klen, "",
					       path, sizeof(path), &why);

			if (k >= 0 && k < 2 &&
			    snap_path_check(path, strlen(path)))
				abort(); /* the sanitiser let a bad path by */
		}
	}
	check_fed_in_pieces(data, size, rc, &pg);
	s3_page_free(&pg);
	s3_error_parse((const char *)data, size, code, sizeof(code), msg,
		       sizeof(msg));
	if (!memchr(code, '\0', sizeof(code)) ||
	    !memchr(msg, '\0', sizeof(msg)))
		abort();
	(void)!s3_sts_parse(&c, (const char *)data, size);
	return 0;
}
