/* SPDX-License-Identifier: Apache-2.0 */
/*
 * source_gate.c - the publish gate: before a new revision is published,
 * run the source's validate= command on a private copy of it and refuse
 * the revision if the command fails.
 *
 * It must not touch the store's blobs (the command sees copies) nor
 * publish anything itself; the polling loop decides what a refusal means.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "source_i.h"

/* Run the gate command in @dir; 0 if it exits 0, else the reason in @why. */
static int gate_run(struct source *src, const char *dir, char *why,
		    size_t whylen)
{
	char script[4096], out[200];
	size_t got = 0;
	int pfd[2], status;
	ssize_t n;
	pid_t pid;

	snprintf(script, sizeof(script), "%s \"$1\"", src->validate);
	if (pipe2(pfd, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0) {
		int rc = -errno;

		close(pfd[0]);
		close(pfd[1]);
		return rc;
	}
	if (pid == 0) { /* only async-signal-safe calls until exec */
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		if (chdir(dir) == 0)
			execl("/bin/sh", "sh", "-c", script, "sh", dir,
			      (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	/* Keep the tail of the output: that is where errors are. */
	while ((n = read(pfd[0], out + got, sizeof(out) - 1 - got)) > 0) {
		got += (size_t)n;
		if (got == sizeof(out) - 1) {
			memmove(out, out + got / 2, got - got / 2);
			got -= got / 2;
		}
	}
	close(pfd[0]);
	out[got] = '\0';
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	for (char *p = out; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	snprintf(why, whylen, "validate command %s (%s)",
		 WIFEXITED(status) ? "failed" : "was killed",
		 out[0] ? out : "no output");
	return -EINVAL;
}

/* The publish gate: materialise @snap in a temporary directory (copies,
 * so the command cannot touch the store) and run validate= on it. */
int source_gate(struct source *src, struct snap *snap, char *err, size_t errlen)
{
	char dir[PATH_MAX], why[256] = "";
	int rc;

	if (!src->validate)
		return 0;
	if (!strcmp(src->rejected_rev, snap->rev)) {
		snprintf(err, errlen, "%s: revision %s refused: %s", src->tag,
			 snap->rev, src->rejected_why);
		return -EINVAL;
	}
	snprintf(dir, sizeof(dir), "%s/tmp/validate-%s-XXXXXX",
		 store_dir(src->store), src->name);
	if (!mkdtemp(dir))
		return -errno;
	rc = mat_snap(src->store, snap, dir, true);
	if (!rc)
		rc = gate_run(src, dir, why, sizeof(why));
	mat_remove(dir);
	if (rc == -EINVAL) {
		snprintf(src->rejected_rev, sizeof(src->rejected_rev), "%s",
			 snap->rev);
		snprintf(src->rejected_why, sizeof(src->rejected_why), "%s",
			 why);
		snprintf(err, errlen, "%s: revision %s refused: %s", src->tag,
			 snap->rev, why);
	} else if (rc) {
		snprintf(err, errlen, "%s: publish gate: %s", src->tag,
			 strerror(-rc));
	}
	return rc;
}
