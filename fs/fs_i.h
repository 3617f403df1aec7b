/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs_i.h - private to fs/: the view (slots and path resolution), the inode
 * table, and the handler table shared by view.c, inode.c, swap.c, ops.c
 * and mount.c. Nothing outside fs/ includes it.
 */
#ifndef DAGFS_FS_I_H
#define DAGFS_FS_I_H

#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "fs.h"
#include "log.h"

/* Entries, attributes and negative entries are cached for a day: an inode
 * never changes meaning and every swap invalidates what changed. */
#define FS_TIMEOUT 86400.0

/* A mount path is a slot's sub-path, a slash, and a snapshot path, each
 * shorter than PATH_MAX (snap_path_check). */
#define FS_PATH_MAX (2 * PATH_MAX + 2)

/* The read-only metadata directory in the root (meta.c). */
#define FS_META ".dagfs"
#define FS_META_LEN 6

/* Slot numbers of inodes that belong to no slot: entries of a pinned
 * revision under .dagfs/revs/ and files generated under .dagfs/. */
#define FS_SLOT_REV (-1)
#define FS_SLOT_META (-2)

/* Slots a view can hold over its life. A slot's place in fs->slots never
 * moves and its strings are never freed while the view exists, so
 * handlers read them without a lock; a removed slot is reused only by
 * the same source at the same sub-path. */
#define FS_SLOTS_MAX 256

/* Listing changes remembered per directory inode, and replaced slot states
 * kept, at most, each for FS_GRACE_NS after it was replaced: a listing
 * continues in the view it began in across that many swaps, that long. */
#define FS_LGEN 3
#define FS_PAST_MAX 32
#define FS_GRACE_NS (30 * 1000000000LL)

/* fs_resolve_at(): the current view. */
#define FS_NOW UINT64_MAX

/** One source's place in the view. */
struct fs_slot {
	int live;	    /* atomic: part of the view (swap_lock writes) */
	char *at;	    /* sub-path, "" for the root; immutable */
	size_t atlen;	    /* strlen(at) */
	char *source;	    /* source name for logs; immutable */
	struct snap *snap;  /* fs->slot_lock; NULL before the first swap */
	char *changes;	    /* fs->slot_lock; "A|M|D path" lines of the last
			    * swap, NULL before the first */
	int64_t swapped_ns; /* fs->slot_lock; when the last swap was made */
	char *type, *url, *ref; /* fs->slot_lock: what status.json says */
	unsigned keep;		/* of its source (fs_slot_describe) */
};

/** What a mount path is in the current view. */
enum fs_kind {
	FS_NONE = 0,  /* nothing */
	FS_SYNTH,     /* ancestor of a slot: a directory made up by fs/ */
	FS_EMPTY,     /* a slot's root before its first snapshot */
	FS_ENTRY,     /* an entry of a slot's snapshot, or of a pinned
		      * revision's (slot FS_SLOT_REV) */
	FS_META_DIR,  /* a directory made up under .dagfs */
	FS_META_FILE, /* a file generated under .dagfs */
};

/** A resolved path; FS_ENTRY holds a reference on @snap. */
struct fs_res {
	enum fs_kind kind;
	int slot;	   /* FS_EMPTY, FS_ENTRY; FS_SLOT_META for a file */
	struct snap *snap; /* FS_ENTRY */
	uint32_t idx;	   /* FS_ENTRY: entry index in @snap */
	uint64_t gen;	   /* the view resolved in (fs->gen then) */
	char *data;	   /* FS_META_FILE: its bytes (owned) */
	size_t len;	   /* FS_META_FILE */
	int64_t mtime_ns;  /* FS_META_FILE */
};

/*
 * An inode known to the kernel; the nodeid is its address (the root's is
 * FUSE_ROOT_ID). It lives while the kernel's lookup count is positive.
 *
 * A file or link inode names one (path, content) pair, so its attributes
 * never change; it keeps a reference on the newest snapshot holding that
 * exact entry (fs_swap moves it forward, so old snapshots are released
 * and their pins dropped as soon as no changed file still needs them).
 * A directory inode names only its mount path and is resolved anew
 * against the current snapshots at every use.
 */
struct fs_inode {
	struct fs_inode *next; /* hash chain; fs->lock */
	uint64_t key;	       /* st_ino; immutable */
	uint64_t nlookup;      /* fs->lock */
	struct snap *snap;     /* files, links: fs->lock */
	uint32_t idx;	       /* files, links: entry index; fs->lock */
	int slot;	       /* files, links: their slot; immutable */
	uint8_t type;	       /* enum snap_type; immutable */
	bool verified;	       /* files: blob checked once; fs->lock */
	/*
	 * Directories and files under .dagfs only: the inode of a file or
	 * link of a snapshot (nearly all of them, one per file the kernel
	 * has looked up) is allocated without what follows, FS_INODE_SNAP
	 * bytes instead of sizeof(struct fs_inode). fs_inode_has_tail()
	 * says which an inode is; nothing else may be read of the others.
	 */
	char *path;		/* directories: mount path; immutable */
	int64_t mtime_floor;	/* directories: see swap.c; written under
				* fs->lock, read atomically. Files under
				* .dagfs: their mtime; immutable */
	char *data;		/* files under .dagfs: bytes; immutable */
	size_t len;		/* files under .dagfs; immutable */
	uint64_t inval_gen;	/* directories: last swap that queued it;
				* fs->lock */
	uint64_t lgen[FS_LGEN]; /* directories: the views (fs->gen) whose
				 * flip changed the listing, oldest first;
				 * fs->lock */
	uint64_t lfloor;	/* directories: changes before this view are
				* not in lgen; fs->lock */
	uint8_t nlgen;		/* directories: used in lgen; fs->lock */
};

#define FS_INODE_SNAP offsetof(struct fs_inode, path)

static inline bool fs_inode_has_tail(const struct fs_inode *ino)
{
	return ino->type == SNAP_DIR || ino->slot == FS_SLOT_META;
}

/*
 * A slot's state that a flip replaced, kept a grace period so that a
 * listing begun in an older view finishes in it (ops.c, readdir).
 */
struct fs_past {
	uint64_t gen; /* the flip that replaced it: views before it */
	int slot;
	bool live;	   /* the slot was part of the view */
	struct snap *snap; /* a reference, NULL for none */
	int64_t until_ns;  /* when it was replaced */
};

struct fs {
	struct store *st;
	struct fs_opts o;
	int64_t start_ns; /* mtime of made-up directories */

	pthread_mutex_t slot_lock; /* slots[].snap, .live, gen, past */
	struct fs_slot *slots;	   /* FS_SLOTS_MAX of them, never moved */
	int nslots;		   /* atomic: slots ever used */
	uint64_t gen;		   /* flips so far (swaps, slots added or
				    * removed): the current view; written
				    * with slot_lock and lock held */
	struct fs_past past[FS_PAST_MAX]; /* slot_lock: ring, oldest first */
	unsigned past_first, npast;	  /* slot_lock */
	uint64_t past_floor; /* slot_lock: views before it are gone */
	int64_t meta_clock;  /* atomic: last mtime of a .dagfs directory */

	pthread_mutex_t lock; /* the inode table and inode fields so marked */
	struct fs_inode **buckets;
	size_t nbuckets, ninodes;
	struct fs_inode root;
	uint64_t swap_gen; /* invalidation rounds planned; fs->lock */

	pthread_mutex_t swap_lock; /* one fs_swap at a time */
	uint64_t seq;	 /* atomic: odd while a swap invalidates (swap.c) */
	bool no_open;	 /* the kernel opens files itself; set at init */
	bool no_opendir; /* ...and directories; set at init */

	/* Mount state. notify_lock (read) covers a swap's kernel
	 * notifications, (write) covers unmounting, so a notification never
	 * writes to a descriptor that is being closed. */
	pthread_rwlock_t notify_lock;
	struct fuse_session *se;
	char *mountpoint;
	unsigned conn_id; /* /sys/fs/fuse/connections/<id>; 0 if unknown */
	int mounted;	  /* atomic */
	int looping;	  /* atomic: fs_loop is serving */

	struct fs_stats stats;		 /* relaxed atomics (ops.c) */
	struct fs_loop_stats loop_stats; /* relaxed atomics (loop.c) */

	pthread_mutex_t rev_lock; /* revs */
	struct fs_rev *revs;	  /* loaded pinned revisions, newest use
				   * first (meta.c) */
	int meta_shadowed;	  /* atomic: logged a root .dagfs entry */

	struct fs_tree *tree;	      /* fs->slot_lock: the current composition
				 * (trees.c), NULL before the first slot */
	struct fs_tree *trees;	      /* rev_lock: loaded old trees, newest use
				 * first (trees.c) */
	struct fs_fetch *fetch;	      /* deferred lookups (fetch.c), NULL if no
				 * fetcher */
	struct fs_prefetch *prefetch; /* prefetch.c; NULL if off */
};

/* prefetch.c */

/** Set up read-ahead of listed files' blobs (no thread until used). */
int fs_prefetch_init(struct fs *fs);
/** Stop the thread and free; NULL-safe. */
void fs_prefetch_free(struct fs *fs);
/** Queue the blob of listed entry @e for read-ahead, if it is a small
 *  file and there is room; never blocks on I/O. */
void fs_prefetch_add(struct fs *fs, const struct snap_entry *e);

/* view.c */

/** Slots ever used; some may have left the view (fs_slot_live). */
static inline int fs_nslots(struct fs *fs)
{
	return __atomic_load_n(&fs->nslots, __ATOMIC_ACQUIRE);
}

/** True if slot @i is part of the view now. */
static inline bool fs_slot_live(struct fs *fs, int i)
{
	return __atomic_load_n(&fs->slots[i].live, __ATOMIC_ACQUIRE);
}

/** True if @a is @b or one of its ancestors, component-wise ("" is the
 * ancestor of everything). */
static inline bool fs_path_covers(const char *a, size_t alen, const char *b,
				  size_t blen)
{
	if (alen == 0)
		return true;
	if (blen < alen || memcmp(a, b, alen))
		return false;
	return blen == alen || b[alen] == '/';
}

/** Resolve mount path @path; *out holds a reference to release. */
void fs_resolve(struct fs *fs, const char *path, struct fs_res *out);
/**
 * Resolve @path in view @gen (FS_NOW: the current one, as fs_resolve);
 * -ESTALE if that view is no longer kept (fs_past_keep).
 */
int fs_resolve_at(struct fs *fs, const char *path, uint64_t gen,
		  struct fs_res *out) __attribute__((warn_unused_result));
void fs_res_drop(struct fs_res *r);
/** The entry of an FS_ENTRY resolution. */
const struct snap_entry *fs_res_entry(const struct fs_res *r);
/** True if @r is a directory of any kind. */
bool fs_res_is_dir(const struct fs_res *r);
/** Current snapshot of @slot with a new reference, or NULL; the view
 * (fs->gen) in @gen if not NULL. */
struct snap *fs_slot_snap(struct fs *fs, int slot, uint64_t *gen);
/** True if @snap is still @slot's current snapshot. */
bool fs_slot_current(struct fs *fs, int slot, const struct snap *snap);
/**
 * Names of the children of made-up directory @path in view @gen (as for
 * fs_resolve_at), sorted, malloc'd (free each and the array). Returns the
 * count, -ENOMEM or -ESTALE.
 */
int fs_synth_children(struct fs *fs, const char *path, uint64_t gen,
		      char ***out);
/**
 * Keep slot @slot's state before the flip now being made (@live, @snap:
 * the reference is taken over) for a grace period; slot_lock held. A
 * state that had to make room is returned, to be dropped unlocked.
 */
struct snap *fs_past_keep(struct fs *fs, int slot, bool live,
			  struct snap *snap);
/** Drop the kept states whose grace period is over (takes slot_lock). */
void fs_past_expire(struct fs *fs);
/** Write "@dir/@name" ("@name" at the root, "@dir" for an empty name)
 * into @buf; -ENAMETOOLONG if it does not fit. */
int fs_path_join(char *buf, size_t len, const char *dir, const char *name);

/* swap.c */

/**
 * Make slot @slot (its fields set, no snapshot) join the view with @snap
 * (may be NULL; a reference is taken), or leave it (@live false, @snap
 * NULL), and tell the kernel which made-up directories and names
 * changed. fs->swap_lock held.
 */
void fs_relayout(struct fs *fs, int slot, bool live, struct snap *snap);
/** fs_swap() with fs->swap_lock held. */
void fs_swap_locked(struct fs *fs, int slot, struct snap *snap);

/* meta.c */

/** True if mount path @path is .dagfs or below it. */
static inline bool fs_is_meta(const char *path)
{
	return !strncmp(path, FS_META, FS_META_LEN) &&
	       (!path[FS_META_LEN] || path[FS_META_LEN] == '/');
}

/** True if @path is .dagfs/revs/<source>/<revision>. */
bool fs_meta_rev_root(const char *path);
/** Resolve @path, under .dagfs (fs_resolve() does it for any path). */
void fs_meta_resolve(struct fs *fs, const char *path, struct fs_res *out);
/**
 * Names of the children of FS_META_DIR @path, sorted, malloc'd (as
 * fs_synth_children). Returns the count or -errno.
 */
int fs_meta_children(struct fs *fs, const char *path, char ***out);
/** Record the changes of a swap of @slot and forget its loaded revisions;
 * takes @changes (malloc'd lines, NULL if unknown). */
void fs_meta_swapped(struct fs *fs, int slot, char *changes);
/** Free the loaded revisions. */
void fs_meta_free(struct fs *fs);

/* trees.c */

/**
 * A composition of the view: the live slots and the snapshot each served
 * (NULL for none yet) when tree @id was current. Refcounted; immutable.
 */
struct fs_tree {
	struct fs_tree *next; /* fs->trees list; rev_lock */
	int refs;	      /* atomic */
	char id[DHASH_HEX];
	size_t n;
	struct fs_tree_member {
		char *source, *at;
		size_t atlen;
		int slot;	   /* the slot then, -1 in a loaded tree */
		struct snap *snap; /* a reference, NULL if empty */
	} m[];
};

void fs_tree_unref(struct fs_tree *t);
/** The current tree with a new reference, or NULL. */
struct fs_tree *fs_tree_get_current(struct fs *fs);
/**
 * Compose, record (<cache>/trees/<id>) and make current the tree the view
 * is about to show: the live slots, but slot @slot in the view if @live
 * and serving @snap (NULL: empty). fs->swap_lock held: just before each
 * swap and layout change, so status.json never names a tree older than
 * what a reader can already see (it may, for a moment, name the next).
 */
void fs_tree_update(struct fs *fs, int slot, bool live, struct snap *snap);
/** True if @path is .dagfs/trees/<id>. */
bool fs_tree_root(const char *path);
/** Resolve @rel, what follows ".dagfs/trees/" (may be ""). */
void fs_tree_resolve(struct fs *fs, const char *rel, struct fs_res *out);
/** Children of FS_META_DIR ".dagfs/trees/@rel" (as fs_meta_children). */
int fs_tree_children(struct fs *fs, const char *rel, char ***out);
/**
 * Tree @id with a new reference: loaded before, or from its manifest, its
 * members' snapshots from the store, each fetched through the fetcher
 * until @fetch_until (CLOCK_MONOTONIC ns; fetch threads only; 0: never
 * fetch) if it is missing. NULL if it cannot be served (the reason logged
 * when fetching).
 */
struct fs_tree *fs_tree_open(struct fs *fs, const char *id,
			     int64_t fetch_until);
/** Free the loaded trees and the current one. */
void fs_trees_free(struct fs *fs);

/* fetch.c */

/**
 * If the lookup of @path (begun at swap sequence @seq) needs a revision
 * fetched on demand, queue it for a fetch thread, which answers @req, and
 * return true. False: answer it now.
 */
bool fs_fetch_defer(struct fs *fs, fuse_req_t req, const char *path,
		    uint64_t seq);
/** Stop the fetch threads, answering what they still hold. */
void fs_fetch_free(struct fs *fs);
/** Fetch the manifest of tree @id until @until_ns; fetch threads only. */
int fs_fetch_tree(struct fs *fs, const char *id, int64_t until_ns);
/** The fetcher's verdict on @rev of @source, waiting until @until_ns
 * (CLOCK_MONOTONIC) at most; fetch threads only. */
int fs_fetch_rev(struct fs *fs, const char *source, const char *rev,
		 int64_t until_ns);
/** Revision @name of slot @slot's source with a new reference, or NULL
 * (meta.c, loaded or found in the store). */
struct snap *fs_meta_rev_get(struct fs *fs, int slot, const char *name);
/** Slot of live source @name (@len bytes), or -1 (meta.c). */
int fs_meta_slot_named(struct fs *fs, const char *name, size_t len);

/** Swap sequence at the start of a request. */
static inline uint64_t fs_seq_begin(struct fs *fs)
{
	return __atomic_load_n(&fs->seq, __ATOMIC_ACQUIRE);
}

/** True if no swap ran since fs_seq_begin() returned @seq. */
static inline bool fs_seq_stable(struct fs *fs, uint64_t seq)
{
	return !(seq & 1) && __atomic_load_n(&fs->seq, __ATOMIC_ACQUIRE) == seq;
}

/** The mount a request is for (libfuse userdata). */
static inline struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/** Count one request of kind @op. */
static inline void fs_count(struct fs *fs, enum fs_op op)
{
	__atomic_fetch_add(&fs->stats.ops[op], 1, __ATOMIC_RELAXED);
}

/* inode.c */

/** Allocate the empty inode table; -ENOMEM. */
int fs_table_init(struct fs *fs) __attribute__((warn_unused_result));
/** Free every inode (unmounted only). */
void fs_table_free(struct fs *fs);

/**
 * Serve fs->se until unmounted: libfuse's multi-threaded loop with the
 * same thread limits, plus fuse-spin and fuse-awake (loop.c).
 * @return 0, or negative errno of the read that failed
 */
int fs_loop_serve(struct fs *fs) __attribute__((warn_unused_result));
/** The inode behind a nodeid the kernel holds (borrowed). */
struct fs_inode *fs_inode_of(struct fs *fs, fuse_ino_t nodeid);
/** The nodeid the kernel knows @ino by. */
fuse_ino_t fs_nodeid(struct fs *fs, const struct fs_inode *ino);
/** st_ino of what @r names at mount path @path. */
uint64_t fs_key(const char *path, const struct fs_res *r);
/**
 * Find or create the inode for @r at @path and count one lookup.
 * NULL on allocation failure.
 */
struct fs_inode *fs_inode_get(struct fs *fs, const char *path,
			      const struct fs_res *r);
/** Drop @n lookups; frees the inode at zero. */
void fs_inode_forget(struct fs *fs, struct fs_inode *ino, uint64_t n);
/** Directory inode at @path if the kernel knows it; fs->lock held. */
struct fs_inode *fs_dir_find(struct fs *fs, const char *path);
/** Move file and link inodes of @slot whose entry @to holds unchanged. */
void fs_inodes_move(struct fs *fs, int slot, struct snap *to);
/** Attributes of entry @e with inode number @key. */
void fs_attr_entry(struct fs *fs, uint64_t key, const struct snap_entry *e,
		   struct stat *st);
/** Attributes of directory @dir, currently resolved as @r. */
void fs_attr_dir(struct fs *fs, const struct fs_inode *dir,
		 const struct fs_res *r, struct stat *st);
/** Attributes of a file generated under .dagfs. */
void fs_attr_meta(struct fs *fs, uint64_t key, size_t len, int64_t mtime_ns,
		  struct stat *st);
/**
 * Attributes of any inode; -ENOENT for a directory that is gone. Returns
 * 1 for a directory under .dagfs, whose listing is made at each read: its
 * mtime is new at every call, and the kernel must not keep it.
 */
int fs_getattr(struct fs *fs, const struct fs_inode *ino, struct stat *st)
	__attribute__((warn_unused_result));

/* ops.c */

extern const struct fuse_lowlevel_ops fs_ops;
/**
 * Answer lookup @req of mount path @path begun at swap sequence @seq:
 * resolve, count the inode, reply (from any thread).
 */
void fs_lookup_reply(struct fs *fs, fuse_req_t req, const char *path,
		     uint64_t seq);
/** Answer request @req of kind @op with positive errno @err (counted). */
void fs_reply_err(fuse_req_t req, enum fs_op op, int err);
/** Fill @e for inode @ino, resolved as @r, kept @timeout seconds. */
void fs_entry_fill(struct fs *fs, struct fs_inode *ino, const struct fs_res *r,
		   double timeout, struct fuse_entry_param *e);
/**
 * How long the kernel may keep name @path resolved as @r by a request
 * begun at swap sequence @seq. Under .dagfs only a pinned revision's
 * entries never change: the rest is looked up anew at every use, and each
 * generated file's content is a new inode.
 */
double fs_entry_timeout(struct fs *fs, uint64_t seq, const char *path,
			const struct fs_res *r);

/* listing.c: directory handles and listings (readdir, readdirplus) */

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino,
		      struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi);

/* xattr.c: the user.dagfs.* extended attributes */

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);

#endif
