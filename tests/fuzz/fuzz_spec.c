/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_spec.c - the --source TYPE:LOCATION,key=value parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sync.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), err[512];
	struct source_spec *sp;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (!source_spec_parse(&sp, text, err, sizeof(err))) {
		for (size_t i = 0; i < sp->nkeys; i++)
			if (source_spec_get(sp, sp->keys[i]) != sp->values[i])
				abort(); /* a key given twice was accepted */
		source_spec_free(sp);
	} else if (!memchr(err, '\0', sizeof(err))) {
		abort();
	}
	free(text);
	return 0;
}
