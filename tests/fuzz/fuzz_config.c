/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_config.c - the INI config file reader (inih behind a line reader). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sidecar_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg_errors errs = { 0 };
	struct dagfs_config c;
	FILE *f;

	if (!size || config_init(&c))
		return 0;
	f = fmemopen((void *)data, size, "r");
	if (f) {
		if (config_file_read(&c, f, "fuzz.conf", &errs) && !errs.n)
			abort(); /* failed without saying why */
		for (size_t i = 0; i < errs.n; i++)
			if (strncmp(errs.msg[i], "fuzz.conf", 9))
				abort(); /* an error that does not say where */
		fclose(f);
	}
	cfg_errors_clear(&errs);
	config_free(&c);
	return 0;
}
