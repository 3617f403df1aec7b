/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dir.c - the `dir` source: a local tree, watched with inotify on every
 * directory (including ones created later), rescanned after a debounce
 * of quiet, and every period. A rescan that no event asked for first
 * checks whether anything changed at all (dir_check.c), without building
 * a listing; a full scan copies into the store only files whose size,
 * mtime, ctime, inode or device changed since the last scan; the others
 * keep their hash. Symlinks are kept as links (snap.c drops those that
 * escape).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "dir_i.h"

#define WATCH_MASK                                                             \
	(IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM |  \
	 IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF |             \
	 IN_ONLYDIR | IN_DONT_FOLLOW)
#define SCAN_TRIES 3

/* A file met by a scan in progress, keyed by a hash of its path until
 * the listing is sealed and has indices. */
struct seen_new {
	uint64_t key;
	struct seen s;
};

struct seen_list {
	struct seen_new *v;
	size_t n, cap;
};

struct scan {
	struct source *src;
	struct dir_src *ds;
	struct snap_builder *b;
	struct seen_list next;
	char path[PATH_MAX]; /* relative path being scanned */
	int64_t started_ns;  /* wall clock at the start of the scan */
	bool unstable;
	int err;
	char *errmsg;
	size_t errlen;
};

static const char *const dir_keys[] = { "debounce", NULL };

static void seen_free(struct seen_list *l)
{
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int seen_key_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct seen_new *)a)->key;
	uint64_t y = ((const struct seen_new *)b)->key;

	return x < y ? -1 : x > y;
}

static int seen_add(struct seen_list *l, const char *path, const struct seen *s)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		struct seen_new *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n].key = XXH3_64bits(path, strlen(path));
	l->v[l->n].s = *s;
	l->n++;
	return 0;
}

/*
 * The files of @l by the index of their entry in the sealed @snap. Two
 * paths whose keys collide are both marked racy, so they are rehashed
 * next time rather than trusted on the other's inode: exact whatever
 * the hash does. Sorts @l.
 */
struct seen *dir_seen_alloc(uint32_t n)
{
	struct seen *v = calloc(n ? n : 1, sizeof(*v));

	for (uint32_t i = 0; v && i < n; i++)
		v[i].racy = true;
	return v;
}

static struct seen *seen_index(struct seen_list *l, const struct snap *snap)
{
	struct seen *out = dir_seen_alloc(snap->n);

	if (!out)
		return NULL;
	qsort(l->v, l->n, sizeof(*l->v), seen_key_cmp);
	for (size_t i = 1; i < l->n; i++)
		if (l->v[i].key == l->v[i - 1].key)
			l->v[i].s.racy = l->v[i - 1].s.racy = true;
	for (uint32_t i = 0; i < snap->n; i++) {
		const struct snap_entry *e = &snap->e[i];
		struct seen_new key, *hit;

		if (e->type != SNAP_FILE)
			continue;
		key.key = XXH3_64bits(e->path, strlen(e->path));
		hit = bsearch(&key, l->v, l->n, sizeof(key), seen_key_cmp);
		if (hit)
			out[i] = hit->s;
	}
	return out;
}

/* What the last scan recorded of the file at @path, or NULL. */
static const struct snap_entry *
seen_find(const struct dir_src *ds, const char *path, const struct seen **meta)
{
	int i = ds->last ? snap_lookup(ds->last, path) : -ENOENT;

	if (i < 0 || ds->last->e[i].type != SNAP_FILE)
		return NULL;
	*meta = &ds->seen[i];
	return &ds->last->e[i];
}

static int scan_fail(struct scan *sc, int rc, const char *what)
{
	if (!sc->err) {
		sc->err = rc;
		snprintf(sc->errmsg, sc->errlen, "%s: %s/%s: %s: %s",
			 sc->src->tag, sc->ds->root, sc->path, what,
			 strerror(-rc));
	}
	return rc;
}

void dir_watch(struct source *src, const struct dir_src *ds, const char *path)
{
	char full[PATH_MAX + 8];

	if (ds->ifd < 0)
		return;
	snprintf(full, sizeof(full), "%s%s%s", ds->root, path[0] ? "/" : "",
		 path);
	if (inotify_add_watch(ds->ifd, full, WATCH_MASK) < 0)
		log_warn(src->tag,
			 "cannot watch %s: %s (rescans still "
			 "run every period)",
			 full, strerror(errno));
}

/* Copy a regular file into the store unless the last scan knew it. */
static int scan_file(struct scan *sc, int dfd, const char *name,
		     const struct stat *st)
{
	int64_t mtime_ns = ts_ns(&st->st_mtim);
	struct seen s = seen_of(st, sc->started_ns);
	const struct seen *om = NULL;
	const struct snap_entry *old = seen_find(sc->ds, sc->path, &om);
	uint64_t size = (uint64_t)st->st_size;
	struct dhash hash;
	struct stat after;
	int fd, rc;

	if (old && seen_trusts(om, st) && old->size == size &&
	    old->mtime_ns == mtime_ns &&
	    store_has(sc->src->store, &old->hash)) {
		hash = old->hash;
	} else {
		fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return scan_fail(sc, -errno, "open");
		rc = store_put_fd(sc->src->store, &hash, &size, fd);
		if (!rc && fstat(fd, &after))
			rc = -errno;
		close(fd);
		if (rc)
			return scan_fail(sc, rc, "copying into the cache");
		if (!stood_still(st, &after) || size != (uint64_t)st->st_size)
			sc->unstable = true;
		source_count_fetch(sc->src, size, 1);
	}
	rc = seen_add(&sc->next, sc->path, &s);
	if (!rc)
		rc = snap_builder_add_file(sc->b, sc->path, st->st_mode, size,
					   mtime_ns, &hash);
	return rc ? scan_fail(sc, rc, "listing") : 0;
}

static int scan_dir(struct scan *sc, int dfd);

static int scan_entry(struct scan *sc, int dfd, const char *name)
{
	struct stat st;
	int64_t mt;
	char *target;
	ssize_t n;
	int cfd, rc;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW))
		return errno == ENOENT ? 0 : scan_fail(sc, -errno, "stat");
	mt = ts_ns(&st.st_mtim);
	if (snap_path_check(sc->path, strlen(sc->path))) {
		log_err(sc->src->tag, "%s: name too long or invalid; left out",
			sc->path);
		return 0;
	}
	if (S_ISREG(st.st_mode))
		return scan_file(sc, dfd, name, &st);
	if (S_ISLNK(st.st_mode)) {
		target = malloc(PATH_MAX); /* not on the stack: we recurse */
		if (!target)
			return scan_fail(sc, -ENOMEM, "readlink");
		n = readlinkat(dfd, name, target, PATH_MAX - 1);
		rc = n < 0 ? -errno : 0;
		if (n >= 0) {
			target[n] = '\0';
			rc = snap_builder_add_link(sc->b, sc->path, target, mt);
		}
		free(target);
		if (rc == -ENOENT)
			return 0;
		if (rc)
			log_err(sc->src->tag, "%s: bad symlink; left out",
				sc->path);
		return 0;
	}
	if (!S_ISDIR(st.st_mode))
		return 0; /* fifos, sockets, devices are not DAGs */
	rc = snap_builder_add_dir(sc->b, sc->path, st.st_mode, mt);
	if (rc)
		return scan_fail(sc, rc, "listing");
	dir_watch(sc->src, sc->ds, sc->path);
	cfd = openat(dfd, name,
		     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (cfd < 0)
		return errno == ENOENT ? 0 : scan_fail(sc, -errno, "open");
	return scan_dir(sc, cfd);
}

/* Scan the open directory @dfd (consumed) at sc->path. */
static int scan_dir(struct scan *sc, int dfd)
{
	size_t len = strlen(sc->path);
	DIR *d = fdopendir(dfd);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		close(dfd);
		return scan_fail(sc, -errno, "opendir");
	}
	while (!rc && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (len + 1 + strlen(de->d_name) >= PATH_MAX) {
			log_err(sc->src->tag, "%s/%s: path too long; left out",
				sc->path, de->d_name);
			continue;
		}
		snprintf(sc->path + len, PATH_MAX - len, "%s%s", len ? "/" : "",
			 de->d_name);
		rc = scan_entry(sc, dirfd(d), de->d_name);
		sc->path[len] = '\0';
	}
	closedir(d);
	return rc;
}

static int scan_once(struct source *src, struct scan *sc)
{
	struct dir_src *ds = src->priv;
	struct stat st;
	int fd, rc;

	sc->started_ns = now_ns();
	fd = open(ds->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return scan_fail(sc, rc, "open");
	}
	rc = snap_builder_new(&sc->b, src->name);
	if (!rc)
		rc = snap_builder_add_dir(sc->b, "", st.st_mode,
					  ts_ns(&st.st_mtim));
	if (rc) {
		close(fd);
		return scan_fail(sc, rc, "listing");
	}
	dir_watch(sc->src, sc->ds, sc->path);
	return scan_dir(sc, fd);
}

void dir_drain(int fd)
{
	char buf[16384]
		__attribute__((aligned(__alignof__(struct inotify_event))));

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

bool dir_tree_changed(const struct dir_src *ds)
{
	struct pollfd p = { .fd = ds->ifd, .events = POLLIN };

	return ds->ifd >= 0 && poll(&p, 1, 0) > 0;
}

void dir_keep_listing(struct dir_src *ds, struct snap *s, struct seen *seen)
{
	snap_unref(ds->last);
	free(ds->seen);
	ds->last = s;
	ds->seen = seen;
}

static int dir_sync(struct source *src, const char *prev_rev, struct snap **out,
		    char *err, size_t errlen)
{
	struct dir_src *ds = src->priv;
	bool woken = ds->woken;
	struct snap *s, *cur;
	struct seen *seen;
	int rc, tries = 0;
	struct scan sc;

	ds->woken = false;
	if (!woken && ds->last && !strcmp(ds->last->rev, prev_rev) &&
	    dir_tree_unchanged(src, ds, ds->last, NULL))
		return 0;
	if (!ds->last && dir_cached_unchanged(src, ds, prev_rev))
		return 0;
	/*
	 * A listing is only published if the tree stood still for the whole
	 * scan: an inotify event pending at its end means something changed
	 * between two files read (a half-written revision), so it is thrown
	 * away and, after the debounce of quiet, scanned again. Events are
	 * drained before each scan, so only changes during it count. After
	 * SCAN_TRIES the sync fails and the loop retries: serving the
	 * previous listing beats publishing a torn one.
	 */
	do {
		memset(&sc, 0, sizeof(sc));
		sc.src = src;
		sc.ds = ds;
		sc.errmsg = err;
		sc.errlen = errlen;
		dir_drain(ds->ifd);
		rc = scan_once(src, &sc);
		if (!rc && dir_tree_changed(ds))
			sc.unstable = true;
		if (rc || !sc.unstable)
			break;
		snap_builder_free(sc.b);
		seen_free(&sc.next);
		if (++tries >= SCAN_TRIES) {
			snprintf(err, errlen,
				 "%s: %s kept changing during %d "
				 "scans; retrying",
				 src->tag, ds->root, tries);
			return -EAGAIN;
		}
		log_info(src->tag, "files changed during the scan; rescanning");
		while (source_poll_wake(src, ds->ifd, ds->debounce_ms))
			dir_drain(ds->ifd);
	} while (1);
	if (rc) {
		snap_builder_free(sc.b);
		seen_free(&sc.next);
		return rc;
	}
	rc = snap_builder_finish_digest(sc.b, "dir-", &s);
	if (rc) {
		seen_free(&sc.next);
		snprintf(err, errlen, "%s: building snapshot: %s", src->tag,
			 strerror(-rc));
		return rc;
	}
	seen = seen_index(&sc.next, s);
	seen_free(&sc.next);
	if (!seen) {
		snap_unref(s);
		snprintf(err, errlen, "%s: building snapshot: %s", src->tag,
			 strerror(ENOMEM));
		return -ENOMEM;
	}
	if (!strcmp(s->rev, prev_rev)) {
		/*
		 * Unchanged: keep the served snapshot rather than a second
		 * copy. The same revision is the same digest of the same
		 * sorted entries, so @seen's indices hold for it.
		 */
		cur = source_current(src);
		if (cur && !strcmp(cur->rev, s->rev) && cur->n == s->n) {
			snap_unref(s);
			s = cur;
		} else {
			snap_unref(cur);
		}
		dir_keep_listing(ds, s, seen);
		return 0;
	}
	dir_keep_listing(ds, snap_ref(s), seen);
	*out = s;
	return 1;
}

static void dir_wait(struct source *src, int timeout_ms)
{
	struct dir_src *ds = src->priv;

	if (!source_poll_wake(src, ds->ifd, timeout_ms))
		return;
	/* An event: wait for the tree to be quiet for the debounce. */
	ds->woken = true;
	do
		dir_drain(ds->ifd);
	while (source_poll_wake(src, ds->ifd, ds->debounce_ms));
}

static int dir_init(struct source *src, char *err, size_t errlen)
{
	struct dir_src *ds = calloc(1, sizeof(*ds));
	const char *v = source_spec_get(src->spec, "debounce");
	char cur[PATH_MAX];
	struct stat st;
	int fd;

	if (!ds)
		return -ENOMEM;
	ds->debounce_ms = 250;
	if (v && parse_duration_ms(v, &ds->debounce_ms)) {
		snprintf(err, errlen, "%s: bad debounce '%s'", src->tag, v);
		free(ds);
		return -EINVAL;
	}
	ds->root = realpath(src->spec->location, NULL);
	fd = ds->root ? open(ds->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (fd < 0) {
		int e = errno;

		snprintf(cur, sizeof(cur), "%s/sources/%s/current",
			 store_dir(src->store), src->name);
		if (lstat(cur, &st) || e == ENOTDIR) {
			snprintf(err, errlen, "%s: %s: %s", src->tag,
				 src->spec->location, strerror(e));
			free(ds->root);
			free(ds);
			return -e;
		}
		log_warn(src->tag, "%s: %s; serving the cached revision",
			 src->spec->location, strerror(e));
		free(ds->root);
		ds->root = strdup(src->spec->location);
	} else {
		close(fd);
	}
	ds->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ds->ifd < 0)
		log_warn(src->tag, "inotify: %s; rescanning every period only",
			 strerror(errno));
	src->priv = ds;
	return 0;
}

static void dir_fini(struct source *src)
{
	struct dir_src *ds = src->priv;

	if (!ds)
		return;
	if (ds->ifd >= 0)
		close(ds->ifd);
	dir_keep_listing(ds, NULL, NULL);
	free(ds->root);
	free(ds);
	src->priv = NULL;
}

const struct source_ops source_dir_ops = {
	.type = "dir",
	.init = dir_init,
	.sync = dir_sync,
	.wait = dir_wait,
	.fini = dir_fini,
	.keys = dir_keys,
};
