/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_git.c - the git source's parsers: remote URLs (ssh host and port),
 * known_hosts files (plain, hashed, [host]:port, markers), .gitmodules, a
 * shallow repository's boundary file and a raw commit's parent lines
 * (git_shallow.c). The first byte picks the parser; the rest is its input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "git_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* @data as a file: its /proc path in @path; the fd, or -1 */
static int as_file(const uint8_t *data, size_t size, char *path, size_t len)
{
	int fd = memfd_create("in", MFD_CLOEXEC);

	if (fd >= 0 && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		fd = -1;
	}
	if (fd >= 0)
		snprintf(path, len, "/proc/self/fd/%d", fd);
	return fd;
}

static void fuzz_known_hosts(const uint8_t *data, size_t size)
{
	static const unsigned char key[51] = "\0\0\0\x0bssh-ed25519\0\0\0\x20";
	char path[64], why[256];
	int fd = as_file(data, size, path, sizeof(path)), rc;

	if (fd < 0)
		return;
	rc = gitsrc_known_hosts_check(path, "127.0.0.1", 2222, key, sizeof(key),
				      why, sizeof(why));
	if (rc && !memchr(why, '\0', sizeof(why)))
		abort();
	close(fd);
}

static void fuzz_shallow(const uint8_t *data, size_t size)
{
	struct gitsrc_roots rs = { 0 };
	git_oid parents[4];
	char path[64];
	int fd = as_file(data, size, path, sizeof(path));

	/* every line of 40 characters at most is one id: no more ids than
	 * lines, and each distinct */
	if (fd >= 0 && !gitsrc_roots_load(&rs, path)) {
		if (rs.n > size / 41 + 1)
			abort();
		for (size_t i = 1; i < rs.n; i++)
			if (!git_oid_cmp(&rs.v[i - 1], &rs.v[i]))
				abort();
	}
	gitsrc_roots_free(&rs);
	if (fd >= 0)
		close(fd);
	if (gitsrc_commit_parents((const char *)data, size, parents, 4) >
	    size / 48)
		abort(); /* "parent <40 hex>\n" is 48 bytes */
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
	switch (data[0] % 4) {
	case 0:
		if (!gitsrc_url_parse(&u, text) && u.ssh &&
		    (!u.host[0] || u.port <= 0 || u.port > 65535))
			abort();
		break;
	case 1:
		fuzz_known_hosts(data + 1, size - 1);
		break;
	case 3:
		fuzz_shallow(data + 1, size - 1);
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
