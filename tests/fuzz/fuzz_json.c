/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_json.c - the status file's JSON reader. */
#include <stdint.h>
#include <stdlib.h>

#include "sidecar_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json *j;

	if (json_parse(&j, (const char *)data, size))
		return 0;
	(void)json_str(j, "name", NULL);
	(void)json_int(j, "failures", 0);
	(void)json_bool(j, "healthy", false);
	json_free(j);
	return 0;
}
