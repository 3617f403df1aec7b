/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs.h - the read-only FUSE view over the sources' current snapshots.
 *
 * fs/ is kernel-facing glue only: inode table, low-level handlers and
 * kernel cache invalidation. It never fetches, hashes or parses; it reads
 * snapshots and opens blobs through sync.h.
 *
 * The root also holds a read-only .dagfs directory (see fs/README.md):
 * status.json, changes/<source> of each source's last swap, and
 * revs/<source>/<revision>/ serving any retained snapshot. Every entry
 * answers the user.dagfs.source, .revision and (files) .hash extended
 * attributes.
 */
#ifndef DAGFS_FS_H
#define DAGFS_FS_H

#include <stdbool.h>
#include <sys/types.h>

#include "sync.h"

struct fs_opts {
	uid_t uid;
	gid_t gid;
	mode_t umask;
	bool allow_other;
	bool debug;
	unsigned threads;    /* max idle worker threads */
	unsigned spin_us;    /* fuse-spin: a worker polls that long (loop.c) */
	unsigned awake_us;   /* fuse-awake: CPUs kept from halting (loop.c) */
	bool prefetch;	     /* read listed files ahead (prefetch.c) */
	bool show_meta;	     /* list .dagfs in the root (lookups always work) */
	unsigned keep_trees; /* tree manifests kept in the cache */
	int fetch_timeout_ms; /* revisions on demand: most a lookup waits */
};

#define FS_OPTS_INIT                                                           \
	{                                                                      \
		.uid = 0, .gid = 0, .umask = 022, .allow_other = false,        \
		.debug = false, .threads = 10, .spin_us = 0, .awake_us = 5000, \
		.prefetch = true, .show_meta = false, .keep_trees = 256,       \
		.fetch_timeout_ms = 30000                                      \
	}

/** Kinds of FUSE requests, as counted by fs_get_stats(). */
enum fs_op {
	FS_OP_LOOKUP,
	FS_OP_GETATTR,
	FS_OP_READLINK,
	FS_OP_OPEN,
	FS_OP_READ,
	FS_OP_OPENDIR,
	FS_OP_READDIR, /* readdir and readdirplus */
	FS_OP_STATFS,
	FS_OP_GETXATTR,
	FS_OP_LISTXATTR,
	FS_OP_IOCTL, /* Python's isatty() on every open() */
	FS_OP_RELEASEDIR,
	FS_OP_RELEASE,
	FS_OP_FORGET, /* forget and batch forget, one per request */
	FS_OP_FLUSH,
	FS_OP_WRITE_REFUSED, /* every request answered EROFS */
	FS_OP_OTHER,	     /* init, destroy, interrupt... (libfuse's own) */
};

#define FS_OP_COUNT (FS_OP_OTHER + 1)

/** Metric label of each enum fs_op ("lookup", "write_refused"...). */
extern const char *const fs_op_names[FS_OP_COUNT];

/**
 * Requests served since fs_new(), and those answered with an error.
 * Answers that only say "not here" are not errors: negative lookups,
 * ENODATA for an absent extended attribute, ENOTTY to ioctl, and ENOSYS
 * to open, opendir and flush (the kernel then stops sending them). Every EROFS answer is
 * counted as one request and one error of FS_OP_WRITE_REFUSED.
 */
struct fs_stats {
	uint64_t ops[FS_OP_COUNT];
	uint64_t errors[FS_OP_COUNT];
};

struct fs;

/** Create an unmounted view. Caller frees with fs_free(). */
int fs_new(struct fs **out, struct store *st, const struct fs_opts *o) WUR;
void fs_free(struct fs *fs);

/** Copy the request counters (relaxed reads: each is exact, the set is
 * not a snapshot). Thread-safe. */
void fs_get_stats(struct fs *fs, struct fs_stats *out);

/** What the loop's levers did (fs/loop.c). */
struct fs_loop_stats {
	uint64_t spin_hits;   /* requests a polling worker found (fuse-spin) */
	uint64_t awake_holds; /* zero CPU-latency requests taken (fuse-awake) */
	uint64_t awake_held;  /* 1 while one is held */
	uint64_t prefetched; /* blobs read ahead after a listing (prefetch.c) */
};

/** Copy the loop's counters (relaxed reads). Thread-safe. */
void fs_get_loop_stats(struct fs *fs, struct fs_loop_stats *out);

/**
 * Add a slot at sub-path @at ("" is the root) for a source; returns the
 * slot number, or -EEXIST if it overlaps a slot of the view ("" overlaps
 * everything, "a" overlaps "a/b"), -EINVAL if @at is not a clean
 * relative path (snap_path_check) or is .dagfs or below it (the metadata
 * directory always wins over the root slot's own .dagfs, which is
 * hidden), -ENOSPC past FS_SLOTS_MAX (256) slots in the view's life (a
 * slot removed and added again at the same place with the same @source
 * is reused). @source names the slot in logs and under .dagfs. @snap
 * (a new reference is taken), if not NULL, is its tree from the start;
 * without one the slot is an empty directory until fs_swap(). The
 * directories above a slot are made up (mode 0555). Thread-safe, mounted
 * or not: when mounted, readers see the slot appear whole, tree and all,
 * as after a swap.
 */
int fs_add_slot(struct fs *fs, const char *at, const char *source,
		struct snap *snap) WUR;

/** What .dagfs/status.json says of a slot's source (strings copied). */
struct fs_slot_info {
	const char *type; /* "git", "s3", "dir"... */
	unsigned keep;	  /* its keep= */
	const char *url;  /* git: the remote without userinfo; else NULL */
	const char *ref;  /* git: ref= as configured, NULL if unset */
};

/** Describe slot @slot's source (replacing what was said). Thread-safe. */
int fs_slot_describe(struct fs *fs, int slot,
		     const struct fs_slot_info *info) WUR;

/**
 * Get revision @rev of source @source although it is not retained
 * (revisions on demand): return 0 once it is retained in the store, or
 * a negative errno (the reason logged by the callee), within @timeout_ms.
 * Called from fs/'s own fetch threads, never from a FUSE handler.
 */
typedef int (*fs_fetch_fn)(const char *source, const char *rev, int timeout_ms,
			   void *payload);

/**
 * Get the manifest of tree @id into the store (tree_put) although this
 * view never composed it: 0 once stored, or a negative errno, within
 * @timeout_ms. Called from fs/'s fetch threads.
 */
typedef int (*fs_fetch_tree_fn)(const char *id, int timeout_ms, void *payload);

/**
 * Let lookups of unretained revisions (.dagfs/revs/<source>/<rev>, and
 * the members of .dagfs/trees/<id>) fetch them through @fn, and lookups
 * of unknown trees their manifests through @tree_fn (may be NULL). Such
 * a lookup is answered from a fetch thread once the fetch returns, so
 * FUSE threads never wait. Set before mounting.
 */
void fs_set_fetcher(struct fs *fs, fs_fetch_fn fn, fs_fetch_tree_fn tree_fn,
		    void *payload);

/**
 * The current tree id (see .dagfs/trees/) into @out; -ENOENT if the view
 * has no slot yet.
 */
int fs_tree_current(struct fs *fs, char out[DHASH_HEX]) WUR;

/**
 * Take slot @slot out of the view: its tree, its place and the made-up
 * directories only it needed go at once (the root slot's tree goes first,
 * as by fs_swap(NULL)). Open files keep their bytes. The caller stops
 * swapping into it first. -ENOENT if it is not in the view.
 */
int fs_remove_slot(struct fs *fs, int slot) WUR;

/**
 * Make @snap (a new reference is taken; NULL empties the slot) the slot's
 * tree. Thread-safe, one swap at a time; call it from any thread but a
 * FUSE handler. Readers see either the old or the new tree, never a mix,
 * and once one has seen a file of the new tree no other read returns the
 * old one. When mounted, the kernel forgets exactly the names that
 * changed; returns once it has been told.
 */
void fs_swap(struct fs *fs, int slot, struct snap *snap);

/**
 * Mount on @mountpoint (must be an empty directory, not already a dagfs
 * mount). On failure writes a one-line reason to @err.
 */
int fs_mount(struct fs *fs, const char *mountpoint, char *err,
	     size_t errlen) WUR;

/**
 * Serve requests with libfuse's multi-threaded loop until unmounted
 * (fusermount3 -u, fs_unmount() from another thread) or fs_exit().
 * Returns 0 or -errno. Installs no signal handlers.
 */
int fs_loop(struct fs *fs) WUR;

/**
 * Ask fs_loop() to return (async-signal-safe): it only raises a flag,
 * which fs_loop() sees when its thread is interrupted by a signal or at
 * the next request. To stop for sure, call fs_unmount() from an ordinary
 * thread (e.g. one that took the signal with sigwait()).
 */
void fs_exit(struct fs *fs);

/**
 * Unmount if mounted (lazily, as fusermount3 -uz) and make a running
 * fs_loop() return; readers that still hold files open on the mount after
 * a second get ENOTCONN. Idempotent; fs_free() calls it.
 */
void fs_unmount(struct fs *fs);

#endif
