/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mount.c - the FUSE session's life: checking the mountpoint, mounting,
 * serving (loop.c's workers), and unmounting; libfuse's
 * own messages go through log_emit().
 *
 * Signals are the sidecar's business. fs_exit() only raises libfuse's
 * exit flag (async-signal-safe); fs_loop() notices it when its thread is
 * interrupted by a signal or when the next request arrives. The sure way
 * to stop is fs_unmount() from any ordinary thread: the loop returns as
 * soon as the kernel lets go of the mount.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "fs_i.h"

#define FS_FSTYPE "fuse.dagfs"

static void log_bridge(enum fuse_log_level level, const char *fmt, va_list ap)
{
	int lvl = (int)level < LOG_LVL_ERR ? LOG_LVL_ERR : (int)level;
	char line[1024];
	size_t n;

	if (lvl > __atomic_load_n(&log_threshold, __ATOMIC_RELAXED))
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	if (n)
		log_emit(lvl, "fuse", "%s", line);
}

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

/* Undo mountinfo's octal escapes ("\040" for a space) in place. */
static void unescape(char *s)
{
	char *d = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] &&
		    s[3]) {
			*d++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 |
				      (s[3] - '0'));
			s += 3;
		} else {
			*d++ = *s;
		}
	}
	*d = '\0';
}

/*
 * Find a dagfs mount at @real in /proc/self/mountinfo; returns 1 and its
 * device minor in @minor_out (the fusectl connection), 0 if none.
 */
static int mountinfo_find(const char *real, unsigned *minor_out)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, *save, *tok, *mp, *dev;
	size_t cap = 0;
	int found = 0;

	if (!f)
		return 0;
	while (!found && getline(&line, &cap, f) > 0) {
		bool dash = false;
		unsigned maj, min;

		mp = dev = NULL;
		tok = strtok_r(line, " \n", &save);
		for (int i = 0; tok; tok = strtok_r(NULL, " \n", &save), i++) {
			if (i == 2)
				dev = tok;
			else if (i == 4)
				mp = tok;
			else if (dash)
				break;
			else if (i > 5 && !strcmp(tok, "-"))
				dash = true;
		}
		if (!tok || !mp || strcmp(tok, FS_FSTYPE))
			continue;
		unescape(mp);
		if (strcmp(mp, real))
			continue;
		found = 1;
		if (dev && sscanf(dev, "%u:%u", &maj, &min) == 2 && maj == 0)
			*minor_out = min;
	}
	free(line);
	fclose(f);
	return found;
}

static int dir_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int rc = 1;

	if (!d)
		return -errno;
	while (rc == 1 && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rc = 0;
	closedir(d);
	return rc;
}

/*
 * A FUSE mount whose daemon died (kill -9, OOM) answers ENOTCONN; its
 * kernel caches may still make stat() succeed, statfs() never does. Such
 * a mount is detached (lazily: readers holding files keep them) so a
 * restarted sidecar can mount in its place without restarting the pods
 * that see the mount through propagation. Returns 1 if it detached one.
 */
static int detach_dead(const char *mp)
{
	struct statfs sfs;

	if (!statfs(mp, &sfs) || (errno != ENOTCONN && errno != ECONNABORTED))
		return 0;
	if (umount2(mp, MNT_DETACH)) {
		log_err("fs",
			"%s is a dead FUSE mount and cannot be detached: "
			"%s",
			mp, strerror(errno));
		return 0;
	}
	log_warn("fs",
		 "%s was a dead FUSE mount (its daemon died); detached "
		 "it",
		 mp);
	return 1;
}

static int mount_check(const char *mp, char *real, char *err, size_t errlen)
{
	struct stat st;
	unsigned minor;
	int rc;

	detach_dead(mp);
	if (stat(mp, &st)) {
		rc = -errno;
		if (rc == -ENOENT)
			return fail(err, errlen, rc,
				    "mountpoint %s does not exist", mp);
		if (rc == -ENOTCONN)
			return fail(err, errlen, rc,
				    "mountpoint %s is a dead FUSE mount "
				    "(transport endpoint is not connected); "
				    "unmount it with: fusermount3 -uz %s",
				    mp, mp);
		return fail(err, errlen, rc, "mountpoint %s: %s", mp,
			    strerror(-rc));
	}
	if (!S_ISDIR(st.st_mode))
		return fail(err, errlen, -ENOTDIR,
			    "mountpoint %s is not a directory", mp);
	if (!realpath(mp, real))
		return fail(err, errlen, -errno, "mountpoint %s: %s", mp,
			    strerror(errno));
	if (mountinfo_find(real, &minor))
		return fail(err, errlen, -EBUSY,
			    "%s is already served by another dagfs", mp);
	rc = dir_empty(mp);
	if (rc < 0)
		return fail(err, errlen, rc, "mountpoint %s: %s", mp,
			    strerror(-rc));
	if (!rc)
		return fail(err, errlen, -ENOTEMPTY,
			    "mountpoint %s is not empty", mp);
	return 0;
}

static struct fuse_session *session_new(struct fs *fs)
{
	char opts[128];
	char *argv[] = { (char *)"dagfs", (char *)"-o", opts, (char *)"-d",
			 NULL };
	struct fuse_args args = FUSE_ARGS_INIT(fs->o.debug ? 4 : 3, argv);
	struct fuse_session *se;

	snprintf(opts, sizeof(opts),
		 "ro,default_permissions,fsname=dagfs,subtype=dagfs,nosuid,"
		 "nodev%s",
		 fs->o.allow_other ? ",allow_other" : "");
	se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), fs);
	fuse_opt_free_args(&args);
	return se;
}

int fs_mount(struct fs *fs, const char *mountpoint, char *err, size_t errlen)
{
	char real[PATH_MAX];
	struct fuse_session *se;
	int rc;

	if (fs->se)
		return fail(err, errlen, -EBUSY, "already mounted on %s",
			    fs->mountpoint);
	rc = mount_check(mountpoint, real, err, errlen);
	if (rc)
		return rc;
	fuse_set_log_func(log_bridge);
	se = session_new(fs);
	if (!se)
		return fail(err, errlen, -EINVAL,
			    "cannot start a FUSE session on %s", mountpoint);
	if (fuse_session_mount(se, real)) {
		fuse_session_destroy(se);
		return fail(err, errlen, -EPERM,
			    "cannot mount FUSE on %s (is /dev/fuse there, and "
			    "may this user mount?)",
			    mountpoint);
	}
	/* Not stat(): the kernel would ask us, and nobody serves yet. */
	mountinfo_find(real, &fs->conn_id);
	fs->mountpoint = strdup(real);
	fs->se = se;
	__atomic_store_n(&fs->mounted, 1, __ATOMIC_RELEASE);
	log_info("fs", "mounted on %s", real);
	return 0;
}

int fs_loop(struct fs *fs)
{
	int rc;

	if (!fs->se)
		return -EINVAL;
	__atomic_store_n(&fs->looping, 1, __ATOMIC_RELEASE);
	rc = fs_loop_serve(fs);
	__atomic_store_n(&fs->looping, 0, __ATOMIC_RELEASE);
	/* After fs_unmount the loop may trip over the closed descriptor. */
	if (rc > 0 || !__atomic_load_n(&fs->mounted, __ATOMIC_ACQUIRE))
		rc = 0;
	log_info("fs", "stopped serving %s",
		 fs->mountpoint ? fs->mountpoint : "?");
	return rc;
}

void fs_exit(struct fs *fs)
{
	if (fs->se)
		fuse_session_exit(fs->se);
}

/*
 * Abort the connection (/sys/fs/fuse/connections/N/abort): every request
 * in the kernel, and every notification waiting on one, ends with
 * ENOTCONN. fusectl is mounted there by systemd; containers and minimal
 * VMs often lack it, so mount it once when it is missing (a failure only
 * means the abort cannot be done, as before).
 */
static void conn_abort(struct fs *fs)
{
	char path[64];
	int fd;

	if (!fs->conn_id)
		return;
	snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort",
		 fs->conn_id);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT &&
	    !mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, NULL))
		fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		log_warn("fs", "cannot abort FUSE connection %u: %s",
			 fs->conn_id, strerror(errno));
		return;
	}
	if (write(fd, "1", 1) != 1)
		log_debug("fs", "%s: %s", path, strerror(errno));
	close(fd);
}

/*
 * A lazy unmount leaves the connection up while files on the mount are
 * still open, and the loop with it. Give it a second to end by itself,
 * then abort the connection: those readers get ENOTCONN, as they would
 * when the process exits.
 */
static void loop_stop(struct fs *fs)
{
	for (int i = 0; i < 100; i++) {
		if (!__atomic_load_n(&fs->looping, __ATOMIC_ACQUIRE))
			return;
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	conn_abort(fs);
}

void fs_unmount(struct fs *fs)
{
	struct timespec ts;
	bool locked;

	if (!fs->se || !__atomic_exchange_n(&fs->mounted, 0, __ATOMIC_ACQ_REL))
		return;
	fuse_session_exit(fs->se);
	/* A swap's notification in the kernel waits for requests only the
	 * loop answers; do not wait for it forever. */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	locked = !pthread_rwlock_timedwrlock(&fs->notify_lock, &ts);
	if (!locked) {
		/* it waits on a directory lock held by a request no loop
		 * will answer any more: only an abort ends it (else the
		 * process could never exit: a thread in the kernel) */
		log_warn("fs", "a cache invalidation is stuck; aborting the "
			       "connection");
		conn_abort(fs);
	}
	fuse_session_unmount(fs->se);
	if (locked)
		pthread_rwlock_unlock(&fs->notify_lock);
	loop_stop(fs);
	log_info("fs", "unmounted %s", fs->mountpoint);
}
