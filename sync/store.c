/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store.c - the content-addressed blob store: objects/ab/<30 hex>, named
 * by the XXH3-128 of the bytes. Blobs are written as transactions (temp
 * file in tmp/, hash check, rename; made durable in batches by
 * store_flush) and never modified. A blob
 * whose bytes no longer hash to its name is removed and counts as absent.
 *
 * It must not know about snapshots' format or sources; it only keeps the
 * pin counts that garbage collection consults.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "log.h"
#include "pub_i.h"

struct pin {
	char id[DHASH_HEX];
	unsigned count;
};

struct store {
	char *dir;
	int dirfd;
	int lockfd;
	pthread_rwlock_t gc_lock;   /* shared: syncs; exclusive: gc */
	uint64_t publications;	    /* atomic */
	pthread_mutex_t index_lock; /* serialises revision index writers */
	pthread_mutex_t pin_lock;   /* guards pins, npins */
	struct pin *pins;
	size_t npins;
};

struct store_txn {
	struct store *s;
	int fd;
	char tmp[64];
	XXH3_state_t *xs;
	uint64_t size;
};

static const char *const store_subdirs[] = { "objects", "snapshots", "sources",
					     "tmp", "gc" };

static int store_mkdirs(struct store *s)
{
	for (size_t i = 0; i < sizeof(store_subdirs) / sizeof(*store_subdirs);
	     i++)
		if (mkdirat(s->dirfd, store_subdirs[i], 0755) &&
		    errno != EEXIST)
			return -errno;
	for (int i = 0; i < 256; i++) {
		char sub[16];

		snprintf(sub, sizeof(sub), "objects/%02x", i);
		if (mkdirat(s->dirfd, sub, 0755) && errno != EEXIST)
			return -errno;
	}
	return 0;
}

/* Remove leftovers of transactions a crash interrupted. */
static void store_clean_tmp(struct store *s)
{
	int fd = openat(s->dirfd, "tmp", O_RDONLY | O_DIRECTORY);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			unlinkat(fd, de->d_name, 0);
	closedir(d);
}

int store_open(struct store **out, const char *dir, bool shared)
{
	struct store *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	s->lockfd = -1;
	s->dirfd = -1;
	s->dir = strdup(dir);
	if (!s->dir) {
		rc = -ENOMEM;
		goto err;
	}
	/* every command comes here first: create a missing cache, and its
	 * parents, private to the daemon's user */
	rc = mkdir_p(dir, 0700);
	if (rc)
		goto err;
	s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		rc = -errno;
		goto err;
	}
	if (!shared) {
		rc = store_mkdirs(s);
		if (rc)
			goto err;
		s->lockfd = openat(s->dirfd, "lock",
				   O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (s->lockfd < 0) {
			rc = -errno;
			goto err;
		}
		if (flock(s->lockfd, LOCK_EX | LOCK_NB)) {
			rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
			goto err;
		}
		store_clean_tmp(s);
	}
	pthread_rwlock_init(&s->gc_lock, NULL);
	pthread_mutex_init(&s->pin_lock, NULL);
	pthread_mutex_init(&s->index_lock, NULL);
	*out = s;
	return 0;
err:
	if (s->lockfd >= 0)
		close(s->lockfd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->dir);
	free(s);
	return rc;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->lockfd >= 0)
		close(s->lockfd);
	close(s->dirfd);
	pthread_rwlock_destroy(&s->gc_lock);
	pthread_mutex_destroy(&s->pin_lock);
	pthread_mutex_destroy(&s->index_lock);
	free(s->pins);
	free(s->dir);
	free(s);
}

const char *store_dir(const struct store *s)
{
	return s->dir;
}

/* objects/ab/cdef... relative to the cache directory. */
static void blob_relpath(char out[48], const struct dhash *h)
{
	char hex[DHASH_HEX];

	dhash_hex(hex, h);
	snprintf(out, 48, "objects/%.2s/%s", hex, hex + 2);
}

void store_blob_path(const struct store *s, const struct dhash *h, char *buf,
		     size_t len)
{
	char rel[48];

	blob_relpath(rel, h);
	snprintf(buf, len, "%s/%s", s->dir, rel);
}

int store_has(struct store *s, const struct dhash *h)
{
	char rel[48];
	struct stat st;

	blob_relpath(rel, h);
	return fstatat(s->dirfd, rel, &st, 0) == 0 && S_ISREG(st.st_mode);
}

int store_txn_begin(struct store *s, struct store_txn **out)
{
	static unsigned long counter;
	struct store_txn *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->s = s;
	t->xs = XXH3_createState();
	if (!t->xs) {
		free(t);
		return -ENOMEM;
	}
	XXH3_128bits_reset(t->xs);
	snprintf(t->tmp, sizeof(t->tmp), "tmp/b.%d.%lu", (int)getpid(),
		 __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
	t->fd = openat(s->dirfd, t->tmp,
		       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (t->fd < 0) {
		int rc = -errno;

		XXH3_freeState(t->xs);
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int store_txn_write(struct store_txn *t, const void *buf, size_t len)
{
	const char *p = buf;

	XXH3_128bits_update(t->xs, buf, len);
	t->size += len;
	while (len) {
		ssize_t n = write(t->fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void store_txn_abort(struct store_txn *t)
{
	if (!t)
		return;
	close(t->fd);
	unlinkat(t->s->dirfd, t->tmp, 0);
	XXH3_freeState(t->xs);
	free(t);
}

int store_txn_commit(struct store_txn *t, struct dhash *out, uint64_t *size_out,
		     const struct dhash *expect)
{
	XXH128_canonical_t c;
	struct dhash h;
	char rel[48];
	int rc = 0;

	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(t->xs));
	memcpy(h.b, c.digest, 16);
	if (expect && !dhash_eq(expect, &h)) {
		rc = -EBADMSG;
		goto out;
	}
	/* No fsync per blob: publication flushes them all with one syncfs()
	 * before any snapshot names them (see pub.c). */
	blob_relpath(rel, &h);
	if (renameat(t->s->dirfd, t->tmp, t->s->dirfd, rel)) {
		rc = -errno;
		goto out;
	}
	t->tmp[0] = '\0';
	if (out)
		*out = h;
	if (size_out)
		*size_out = t->size;
out:
	close(t->fd);
	if (t->tmp[0])
		unlinkat(t->s->dirfd, t->tmp, 0);
	XXH3_freeState(t->xs);
	free(t);
	return rc;
}

int store_put_buf(struct store *s, struct dhash *out, const void *buf,
		  size_t len)
{
	struct store_txn *t;
	int rc;

	dhash_buf(out, buf, len);
	if (store_has(s, out))
		return 0;
	rc = store_txn_begin(s, &t);
	if (rc)
		return rc;
	rc = store_txn_write(t, buf, len);
	if (rc) {
		store_txn_abort(t);
		return rc;
	}
	return store_txn_commit(t, out, NULL, NULL);
}

int store_put_fd(struct store *s, struct dhash *out, uint64_t *size_out, int fd)
{
	struct store_txn *t;
	char buf[65536];
	ssize_t n;
	int rc = store_txn_begin(s, &t);

	if (rc)
		return rc;
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		rc = store_txn_write(t, buf, (size_t)n);
		if (rc)
			break;
	}
	if (rc) {
		store_txn_abort(t);
		return rc;
	}
	return store_txn_commit(t, out, size_out, NULL);
}

/* Hash the whole of @fd; 0 if it matches @h. */
static int blob_verify(int fd, const struct dhash *h)
{
	struct dhash got;
	int rc = dhash_fd(&got, NULL, fd);

	if (rc)
		return rc;
	return dhash_eq(&got, h) ? 0 : -EIO;
}

/* Open and verify; on corruption log, remove if @remove, and fail -EIO. */
static int blob_open_verified(struct store *s, const struct dhash *h,
			      bool remove)
{
	char rel[48];
	int fd, rc;

	blob_relpath(rel, h);
	fd = openat(s->dirfd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = blob_verify(fd, h);
	if (rc) {
		close(fd);
		if (rc == -EIO && remove) {
			log_err("store",
				"blob %s is corrupt; removed, it will "
				"be fetched again",
				rel + 8);
			unlinkat(s->dirfd, rel, 0);
		}
		return rc;
	}
	return fd;
}

int store_open_blob(struct store *s, const struct dhash *h)
{
	return blob_open_verified(s, h, true);
}

int store_verify_blob(struct store *s, const struct dhash *h, bool remove)
{
	int fd = blob_open_verified(s, h, remove);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

int store_each_blob(struct store *s,
		    int (*fn)(int dirfd, const char *name, const char *hex,
			      void *arg),
		    void *arg)
{
	int rc = 0;

	for (int i = 0; !rc && i < 256; i++) {
		char sub[16], hex[300];
		struct dirent *de;
		DIR *d;
		int fd;

		snprintf(sub, sizeof(sub), "objects/%02x", i);
		fd = openat(s->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		d = fdopendir(fd);
		if (!d) {
			close(fd);
			return -errno;
		}
		while (!rc && (de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(hex, sizeof(hex), "%02x%s", i, de->d_name);
			rc = fn(fd, de->d_name, hex, arg);
		}
		closedir(d);
	}
	return rc;
}

struct usage {
	uint64_t blobs, bytes;
};

static int usage_add(int dirfd, const char *name, const char *hex, void *arg)
{
	struct usage *u = arg;
	struct stat st;

	(void)hex;
	if (!fstatat(dirfd, name, &st, 0)) {
		u->blobs++;
		u->bytes += (uint64_t)st.st_size;
	}
	return 0;
}

int store_usage(struct store *s, uint64_t *blobs, uint64_t *bytes)
{
	struct usage u = { 0, 0 };
	int rc = store_each_blob(s, usage_add, &u);

	*blobs = u.blobs;
	*bytes = u.bytes;
	return rc;
}

int store_flush(struct store *s)
{
	return syncfs(s->dirfd) ? -errno : 0;
}

void store_pin(struct store *s, const char *id)
{
	pthread_mutex_lock(&s->pin_lock);
	for (size_t i = 0; i < s->npins; i++) {
		if (!strcmp(s->pins[i].id, id)) {
			s->pins[i].count++;
			goto out;
		}
	}
	{
		struct pin *p = realloc(s->pins, (s->npins + 1) * sizeof(*p));

		if (!p) /* an unpinned snapshot is only collected sooner */
			goto out;
		s->pins = p;
		snprintf(p[s->npins].id, DHASH_HEX, "%s", id);
		p[s->npins++].count = 1;
	}
out:
	pthread_mutex_unlock(&s->pin_lock);
}

void store_index_lock(struct store *s)
{
	pthread_mutex_lock(&s->index_lock);
}

void store_index_unlock(struct store *s)
{
	pthread_mutex_unlock(&s->index_lock);
}

void store_unpin(struct store *s, const char *id)
{
	pthread_mutex_lock(&s->pin_lock);
	for (size_t i = 0; i < s->npins; i++) {
		if (strcmp(s->pins[i].id, id))
			continue;
		if (--s->pins[i].count == 0)
			s->pins[i] = s->pins[--s->npins];
		break;
	}
	pthread_mutex_unlock(&s->pin_lock);
}

bool store_pinned(struct store *s, const char *id)
{
	bool found = false;

	pthread_mutex_lock(&s->pin_lock);
	for (size_t i = 0; i < s->npins && !found; i++)
		found = !strcmp(s->pins[i].id, id);
	pthread_mutex_unlock(&s->pin_lock);
	return found;
}

void store_sync_begin(struct store *s)
{
	pthread_rwlock_rdlock(&s->gc_lock);
}

void store_sync_end(struct store *s)
{
	pthread_rwlock_unlock(&s->gc_lock);
}

void store_gc_begin(struct store *s)
{
	pthread_rwlock_wrlock(&s->gc_lock);
}

bool store_gc_trybegin(struct store *s)
{
	return pthread_rwlock_trywrlock(&s->gc_lock) == 0;
}

uint64_t store_publications(struct store *s)
{
	return __atomic_load_n(&s->publications, __ATOMIC_ACQUIRE);
}

void store_note_publication(struct store *s)
{
	__atomic_add_fetch(&s->publications, 1, __ATOMIC_RELEASE);
}

void store_gc_end(struct store *s)
{
	pthread_rwlock_unlock(&s->gc_lock);
}
