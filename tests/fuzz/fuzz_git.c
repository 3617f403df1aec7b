/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_git.c - the git source's parsers: remote URLs (ssh host and port),
 * known_hosts files (plain, hashed, [host]:port, markers) and .gitmodules.
 * The first byte picks the parser; the rest is its input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "git_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_known_hosts(const uint8_t *data, size_t size)
{
	static const unsigned char key[51] = "\0\0\0\x0bssh-ed25519\0\0\0\x20";
	char path[64], why[256];
	int fd = memfd_create("kh", MFD_CLOEXEC), rc;

	if (fd < 0)
		return;
	if (write(fd, data, size) == (ssize_t)size) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		rc = gitsrc_known_hosts_check(path, "127.0.0.1", 2222, key,
					      sizeof(key), why, sizeof(why));
		if (rc && !memchr(why, '\0', sizeof(why)))
			abort();
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, out[1024];
	struct gitsrc_url u;

	if (!size)
		return 0;
	text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	switch (data[0] % 3) {
	case 0:
		if (!gitsrc_url_parse(&u, text) && u.ssh &&
		    (!u.host[0] || u.port <= 0 || u.port > 65535))
			abort();
		break;
	case 1:
		fuzz_known_hosts(data + 1, size - 1);
		break;
	default:
		if (gitsrc_gitmodules_url(out, sizeof(out), text, size - 1,
					  "libs/sub") &&
		    !memchr(out, '\0', sizeof(out)))
			abort();
	}
	free(text);
	return 0;
}
