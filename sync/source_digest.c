/* SPDX-License-Identifier: Apache-2.0 */
/*
 * source_digest.c - the digest of a source's specification, kept in
 * sources/<name>/spec, which tells whether the cached snapshot was built
 * from the options in force.
 *
 * It only compares and records; the polling loop decides what to rebuild.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "log.h"
#include "source_i.h"

/*
 * Whether the cached snapshot was built from the same specification. A
 * revision id names what the remote holds (a commit), not what dagfs made
 * of it (subpath=, submodules=...): after a change the cached snapshot is
 * still served, but the first sync must rebuild rather than answer
 * "unchanged". The digest lives in sources/<name>/spec.
 */
bool source_spec_unchanged(struct source *src)
{
	const struct source_spec *sp = src->spec;
	char path[PATH_MAX], want[32], have[32] = "";
	uint64_t acc = XXH64(sp->type, strlen(sp->type), 0) ^
		       XXH64(sp->location, strlen(sp->location), 1);
	ssize_t n = -1;
	int fd;

	for (size_t i = 0; i < sp->nkeys; i++) /* in any order */
		acc += XXH64(sp->keys[i], strlen(sp->keys[i]), 2) ^
		       XXH64(sp->values[i], strlen(sp->values[i]), 3);
	snprintf(want, sizeof(want), "%016llx", (unsigned long long)acc);
	if (path_fmt(path, sizeof(path), "%s/sources/%s", store_dir(src->store),
		     src->name))
		return false;
	mkdir(path, 0755);
	if (path_fmt(path, sizeof(path), "%s/sources/%s/spec",
		     store_dir(src->store), src->name))
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, have, sizeof(have) - 1);
		close(fd);
	}
	have[n > 0 ? n : 0] = '\0';
	if (!strcmp(have, want))
		return true;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, want, strlen(want)) < 0)
			log_warn(src->tag, "%s: %s", path, strerror(errno));
		close(fd);
	}
	return false;
}
