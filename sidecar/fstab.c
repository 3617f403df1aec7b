/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fstab.c - `mount -t fuse.dagfs` and /etc/fstab: mount.fuse3 runs
 * `dagfs CONFIG MOUNTPOINT -o OPTIONS`. The line becomes `dagfs mount
 * --config CONFIG --OPTION... MOUNTPOINT`, run in a child that stays in
 * the background, while the parent returns to mount(8) once the mount is
 * up (or with the child's failure).
 *
 *   /etc/dagfs/dagfs.conf  /opt/airflow/dags  fuse.dagfs  allow_other,uid=50000,gid=0,_netdev  0 0
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sidecar_i.h"

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif

/* Options mount(8) and mount.fuse3 own; not dagfs's business. */
static const char *const generic[] = {
	"rw",	  "ro",	     "dev",	 "nodev",  "suid",    "nosuid",
	"exec",	  "noexec",  "auto",	 "noauto", "user",    "nouser",
	"users",  "_netdev", "defaults", "atime",  "noatime", "relatime",
	"nofail", "async",   "sync",	 NULL
};

static bool is_generic(const char *o, size_t n)
{
	for (size_t i = 0; generic[i]; i++)
		if (strlen(generic[i]) == n && !strncmp(generic[i], o, n))
			return true;
	return n > 2 && (!strncmp(o, "x-", 2) || !strncmp(o, "comment=", 8));
}

/* argv for `mount`: --config SOURCE, one --opt per -o item, MOUNTPOINT. */
static char **translate(int argc, char **argv, int *out_argc)
{
	char **v = calloc((size_t)argc + 64, sizeof(char *));
	int n = 0;

	if (!v)
		return NULL;
	v[n++] = (char *)"--config";
	v[n++] = argv[1];
	for (int i = 3; i < argc; i++) {
		char *opts, *save = NULL;

		if (strcmp(argv[i], "-o") || i + 1 >= argc)
			continue;
		opts = strdup(argv[++i]);
		for (char *o = strtok_r(opts, ",", &save); o && n < argc + 60;
		     o = strtok_r(NULL, ",", &save)) {
			char *flag;

			if (is_generic(o, strcspn(o, "=")))
				continue;
			if (asprintf(&flag, "--%s", o) < 0)
				continue;
			/* FUSE spells allow_other; dagfs allow-other */
			for (char *c = flag + 2; *c && *c != '='; c++)
				if (*c == '_')
					*c = '-';
			v[n++] = flag;
		}
		free(opts);
	}
	v[n++] = argv[2];
	*out_argc = n;
	return v;
}

static bool is_fuse_mount(const char *path)
{
	struct statfs sfs;

	return !statfs(path, &sfs) && sfs.f_type == FUSE_SUPER_MAGIC;
}

/* The --flags translate() allocated (the others point into argv). */
static void translated_free(char **v, int n)
{
	for (int i = 2; i < n - 1; i++)
		free(v[i]);
	free(v);
}

static int wait_mounted(pid_t pid, const char *mountpoint);

int fstab_main(int argc, char **argv, int (*run_mount)(int, char **))
{
	int nargc, null;
	char **nargv = translate(argc, argv, &nargc);
	pid_t pid;

	if (!nargv)
		return 1;
	pid = fork();
	if (pid < 0) {
		perror("dagfs: fork");
		translated_free(nargv, nargc);
		return 1;
	}
	if (pid == 0) { /* the daemon: detached from mount(8)'s session */
		setsid();
		null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0)
			dup2(null, 0);
		_exit(run_mount(nargc, nargv));
	}
	translated_free(nargv, nargc);
	return wait_mounted(pid, argv[2]);
}

/* 0 once @mountpoint is a FUSE mount, else the child's failure. */
static int wait_mounted(pid_t pid, const char *mountpoint)
{
	int status;

	for (int i = 0; i < 600; i++) { /* up to 60 s */
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) && WEXITSTATUS(status) ?
				       WEXITSTATUS(status) :
				       1;
		if (is_fuse_mount(mountpoint))
			return 0;
		nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
	}
	fprintf(stderr, "dagfs: %s not mounted after 60 s\n", mountpoint);
	return 1;
}
