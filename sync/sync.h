/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sync.h - the public interface of sync/: the content-addressed blob
 * store, immutable snapshots, their publication on disk, and the sources
 * (dir, git, s3) that produce them. Logging is log.h, small helpers util.h.
 *
 * sync/ knows nothing of FUSE. fs/, sidecar/ and k8s/ include only these
 * three headers of sync/.
 * Fallible functions return 0 (or a documented count or fd) on success and
 * a negative errno on failure.
 */
#ifndef DAGFS_SYNC_H
#define DAGFS_SYNC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "util.h"

/* ---------------------------------------------------------------- hashes */

/** XXH3-128 of a blob's bytes; the blob's name in the store. */
struct dhash {
	uint8_t b[16];
};

#define DHASH_HEX 33 /* 32 hex digits and NUL */

void dhash_hex(char out[DHASH_HEX], const struct dhash *h);
/** Parse 32 lowercase hex digits; -EINVAL otherwise. */
int dhash_parse(struct dhash *out, const char *hex) WUR;
void dhash_buf(struct dhash *out, const void *buf, size_t len);
/** The dhash and length of all of @fd (read from offset 0); 0, -ENOMEM
 *  or -EIO. */
int dhash_fd(struct dhash *out, uint64_t *size, int fd) WUR;
bool dhash_eq(const struct dhash *a, const struct dhash *b);

/* ----------------------------------------------------------------- store */

struct store;
struct store_txn;

/**
 * Open (creating if needed) the cache at @dir: objects/, snapshots/, gc/,
 * sources/, tmp/. Takes an exclusive lock on the cache unless @shared;
 * -EBUSY if another daemon holds it. Caller frees with store_close().
 */
int store_open(struct store **out, const char *dir, bool shared) WUR;
void store_close(struct store *s);

/** The cache directory; borrowed, lives as long as @s. */
const char *store_dir(const struct store *s);

/** 1 if a blob named @h is present (not verified), 0 if not. */
int store_has(struct store *s, const struct dhash *h);

/** Path of blob @h into @buf (always fits in PATH_MAX). */
void store_blob_path(const struct store *s, const struct dhash *h, char *buf,
		     size_t len);

/**
 * Store a blob: temp file, write, rename (durable after store_flush). Concurrent puts of the
 * same content are harmless (rename of identical bytes).
 */
int store_put_buf(struct store *s, struct dhash *out, const void *buf,
		  size_t len) WUR;

/** Store everything readable from @fd (to EOF); @size_out may be NULL. */
int store_put_fd(struct store *s, struct dhash *out, uint64_t *size_out,
		 int fd) WUR;

/** A streaming store write: begin, write*, commit or abort. */
int store_txn_begin(struct store *s, struct store_txn **out) WUR;
int store_txn_write(struct store_txn *t, const void *buf, size_t len) WUR;
/**
 * Finish: fsync, name by hash, rename into place. Frees @t whatever the
 * result. If @expect is not NULL the content must hash to it (-EBADMSG).
 */
int store_txn_commit(struct store_txn *t, struct dhash *out, uint64_t *size_out,
		     const struct dhash *expect) WUR;
void store_txn_abort(struct store_txn *t);

/**
 * Open blob @h read-only after verifying its bytes hash to its name.
 * Returns the fd, -ENOENT if absent, -EIO if corrupt (the blob is then
 * removed so the next sync fetches it again).
 */
int store_open_blob(struct store *s, const struct dhash *h) WUR;

/**
 * Verify blob @h: 0 if intact, -EIO if its bytes do not hash to its name
 * (removed when @remove), -ENOENT if absent.
 */
int store_verify_blob(struct store *s, const struct dhash *h, bool remove);

/**
 * Make every blob written so far durable (one syncfs() of the cache's
 * filesystem rather than an fsync per blob).
 */
int store_flush(struct store *s) WUR;

/**
 * Call @fn for every entry of objects/00..ff but dot files: @dirfd is its
 * fan-out directory, @name the entry there, @hex the fan-out's two digits
 * and @name (a blob's id when well formed: the caller checks). A non-zero
 * return of @fn stops the walk and is returned; a fan-out directory that
 * cannot be opened is skipped (absent is normal for an empty one).
 */
int store_each_blob(struct store *s,
		    int (*fn)(int dirfd, const char *name, const char *hex,
			      void *arg),
		    void *arg);

/** Count and total bytes of stored blobs (walks objects/). */
int store_usage(struct store *s, uint64_t *blobs, uint64_t *bytes) WUR;

/**
 * Pins: a snapshot (by id) in use in memory is never garbage-collected.
 * Counted; thread-safe.
 */
void store_pin(struct store *s, const char *snap_id);
void store_unpin(struct store *s, const char *snap_id);
bool store_pinned(struct store *s, const char *snap_id);

/**
 * Syncs hold the store shared while they add blobs not yet named by a
 * published snapshot; garbage collection holds it exclusively.
 */
void store_sync_begin(struct store *s);
void store_sync_end(struct store *s);
void store_gc_begin(struct store *s);
/** store_gc_begin() if no sync holds the store: true if taken. */
bool store_gc_trybegin(struct store *s);
void store_gc_end(struct store *s);

/** Publications into @s so far (a counter the collector watches). */
uint64_t store_publications(struct store *s);

/* ------------------------------------------------------------- snapshots */

enum snap_type {
	SNAP_DIR = 1,
	SNAP_FILE = 2,
	SNAP_LINK = 3,
};

/** One entry of a snapshot. Strings are owned by the snapshot. */
struct snap_entry {
	const char *path;   /* relative to the source root, "" for the root */
	const char *name;   /* last component of path (points into it) */
	const char *target; /* symlink target; NULL for others */
	struct dhash hash;  /* file content; zero for others */
	uint64_t size;	    /* bytes; target length for links */
	int64_t mtime_ns;
	uint32_t mode;	      /* permission bits only (07777) */
	uint8_t type;	      /* enum snap_type */
	uint32_t parent;      /* index of the parent directory; 0 for root */
	uint32_t child_first; /* directories: children are contiguous, */
	uint32_t child_count; /* sorted by name */
};

/**
 * An immutable, refcounted listing of one revision of one source. Entry 0
 * is the root directory. Read concurrently without locks.
 */
struct snap {
	char *source; /* source name */
	char *rev;    /* revision id: git commit, S3 digest, dir scan id */
	char id[DHASH_HEX];   /* hash of the encoded snapshot; its file name */
	int64_t published_ns; /* when it was published (wall clock) */
	uint32_t n;
	struct snap_entry *e;
	/* refcount and path index follow, private to sync/ (snap_i.h) */
};

struct snap *snap_ref(struct snap *s);
/** Drop a reference; NULL is a no-op. */
void snap_unref(struct snap *s);

/** Index of @path ("" is the root), or -ENOENT. */
int snap_lookup(const struct snap *s, const char *path);
/** Index of child @name of directory @dir, or -ENOENT. */
int snap_child(const struct snap *s, uint32_t dir, const char *name);

struct snap_builder;

int snap_builder_new(struct snap_builder **out, const char *source) WUR;
/** Paths are relative, '/'-separated, without "." or ".." or empty parts. */
int snap_builder_add_file(struct snap_builder *b, const char *path,
			  uint32_t mode, uint64_t size, int64_t mtime_ns,
			  const struct dhash *h) WUR;
int snap_builder_add_dir(struct snap_builder *b, const char *path,
			 uint32_t mode, int64_t mtime_ns) WUR;
int snap_builder_add_link(struct snap_builder *b, const char *path,
			  const char *target, int64_t mtime_ns) WUR;
/**
 * Seal: sorts, creates missing parent directories, drops (with a logged
 * error) symlinks that resolve outside the root and entries under a path
 * that is also a file. Frees @b whatever the result.
 */
int snap_builder_finish(struct snap_builder *b, const char *rev,
			struct snap **out) WUR;
/**
 * snap_builder_finish() whose revision is @prefix and a digest of the
 * sealed entries (paths, types, modes, sizes, mtimes, hashes, targets):
 * a revision that names the listing itself, for sources without one.
 */
int snap_builder_finish_digest(struct snap_builder *b, const char *prefix,
			       struct snap **out) WUR;
void snap_builder_free(struct snap_builder *b);

/** Check a relative path as a snapshot path; 0 if valid, -EINVAL if not. */
int snap_path_check(const char *path, size_t len) WUR;

/** Serialise; *out is malloc'd. Format: magic, version, entries, XXH3-64. */
int snap_encode(const struct snap *s, void **out, size_t *len) WUR;
/** Parse and verify; -EBADMSG if corrupt or truncated. */
int snap_decode(struct snap **out, const void *buf, size_t len) WUR;

/**
 * Called for each path that differs between @a and @b: @ai or @bi is -1
 * when the path is absent on that side. Both may be NULL (empty).
 */
typedef void (*snap_diff_fn)(const struct snap *a, int ai, const struct snap *b,
			     int bi, void *payload);
void snap_diff(const struct snap *a, const struct snap *b, snap_diff_fn fn,
	       void *payload);

/* ---------------------------------------------------------- publication */

/**
 * Write @snap to snapshots/<id> (fsync), add it to the source's history
 * and publish it by rename() of sources/<source>/current. Every blob it
 * names must already be stored. Then keep only the newest @keep history
 * entries (and any pinned).
 */
int pub_publish(struct store *st, struct snap *snap, unsigned keep) WUR;

/**
 * Load the newest valid published snapshot of @source: current, else the
 * newest history entry that decodes and whose blobs are all present.
 * -ENOENT if none.
 */
int pub_load_current(struct store *st, const char *source,
		     struct snap **out) WUR;

/** One retained snapshot of a source, as its revision index lists it. */
struct pub_rev {
	char id[DHASH_HEX];
	char rev[128];
	int64_t published_ns;
};

/**
 * The retained, intact snapshots of @source, newest first, from the
 * revision index sources/<source>/index that publication writes: nothing
 * is decoded (but once, to build the index of a cache that has none).
 * *@out is malloc'd (free()). Returns the count or -errno.
 * Thread-safe; cheap enough for the FUSE read path.
 */
int pub_revs(struct store *st, const char *source, struct pub_rev **out) WUR;

/**
 * Rewrite the revision index of @source from its history, after the
 * history changed outside pub_publish() (which calls it). Entries already
 * indexed, and @added (may be NULL: a snapshot just linked into the
 * history), are not decoded. Thread-safe.
 */
int pub_index_update(struct store *st, const char *source,
		     const struct snap *added) WUR;

/**
 * Find a retained snapshot of @source whose revision is @rev, or starts
 * with it when @rev has at least 7 characters (short git ids). Looks in
 * the index and decodes only the snapshot it returns.
 */
int pub_find_rev(struct store *st, const char *source, const char *rev,
		 struct snap **out) WUR;

/**
 * Revisions of the retained, intact snapshots of @source, newest first,
 * each once (from the index). *@out is a malloc'd array of malloc'd
 * strings (free each and the array). Returns the count or -errno.
 */
int pub_list_revs(struct store *st, const char *source, char ***out) WUR;

/** Load snapshot @id (any retained one) of @source. */
int pub_load(struct store *st, const char *id, struct snap **out) WUR;

/**
 * The bytes of snapshots/<@id>, checked to hash to @id (-EBADMSG if not,
 * -ENOENT if absent, -EINVAL if @id is not 32 hex digits). *@out is
 * malloc'd.
 */
int pub_read_raw(struct store *st, const char *id, void **out, size_t *len) WUR;

/**
 * Remove snapshots no source retains, and blobs no retained or pinned
 * snapshot names. Waits for running syncs (store_gc_begin). Returns the
 * number of blobs removed. For one-shot commands; a daemon uses gc_start.
 */
int pub_gc(struct store *st) WUR;

/** pub_gc() unless a sync holds the store: then -EBUSY at once. */
int pub_gc_try(struct store *st) WUR;

struct gc;

/**
 * Collect garbage in a thread of its own: every @interval_ms, if anything
 * was published since the last collection, pub_gc_try(), retried a second
 * later while syncs hold the store. Never blocks a sync or a publication
 * from starting. Stop and free with gc_stop().
 */
int gc_start(struct gc **out, struct store *st, int interval_ms) WUR;
/** Stop the collector (waits for a collection in progress); NULL: no-op. */
void gc_stop(struct gc *g);

/**
 * Keep @snap (a revision fetched on demand) without making it current:
 * write snapshots/<id> (fsync) and link it from the source's demand list
 * sources/<source>/d-<seq>, of which the newest @keep are kept. It is then
 * found by pub_find_rev() and listed by pub_list_revs(), but never served
 * as the source's current revision, not even after a restart. Every blob
 * it names must already be stored (hold store_sync_begin()).
 */
int pub_retain(struct store *st, struct snap *snap, unsigned keep) WUR;

/**
 * Write @len bytes to @dir/@name crash-safely: a temporary file in
 * @tmpdir (same filesystem), fsync, rename, fsync of @dir.
 */
int pub_write_file(const char *dir, const char *tmpdir, const char *name,
		   const void *buf, size_t len) WUR;

/* ---------------------------------------------------------------- trees */

/** One source of a composed view. Strings are borrowed (or owned by the
 * struct tree that holds the member). */
struct tree_member {
	const char *source;  /* source name */
	const char *at;	     /* its sub-path, "" for the root */
	const char *rev;     /* its revision, "" if it had none yet */
	const char *snap_id; /* the snapshot composed, "" if unknown: a hint,
			      * not part of the id */
};

/** A tree manifest (tree_load, tree_decode): members sorted by source. */
struct tree {
	char id[DHASH_HEX];
	size_t n;
	struct tree_member *m;
	char *text; /* private: the strings */
};

/**
 * The tree id of @n members (any order): XXH3-128 hex of the lines
 * "SOURCE\tAT\tREV\n" sorted by source. -EINVAL if two members share a
 * source or a field holds a control character.
 */
int tree_id(char out[DHASH_HEX], const struct tree_member *m, size_t n) WUR;

/** The manifest text of @n members; *@out malloc'd. */
int tree_encode(const struct tree_member *m, size_t n, char **out,
		size_t *len) WUR;

/**
 * Parse a manifest; -EBADMSG if malformed or, when @want_id is not NULL,
 * if its lines do not hash to @want_id. Caller frees with tree_free().
 */
int tree_decode(struct tree **out, const char *want_id, const void *buf,
		size_t len) WUR;
void tree_free(struct tree *t);

/**
 * Record the composition of @n members as <cache>/trees/<id>, written
 * crash-safely (or, if that manifest is already there, made the newest),
 * and keep only the newest @keep manifests. The id is in @id_out.
 */
int tree_record(struct store *st, const struct tree_member *m, size_t n,
		unsigned keep, char id_out[DHASH_HEX]) WUR;

/**
 * Store manifest @buf as tree @id after checking it hashes to @id (a
 * manifest fetched from another daemon); as tree_record() otherwise.
 */
int tree_put(struct store *st, const char *id, const void *buf, size_t len,
	     unsigned keep) WUR;

/** Load manifest @id from the cache; -ENOENT if absent, -EBADMSG if bad. */
int tree_load(struct store *st, const char *id, struct tree **out) WUR;

/** What a status file says of one source of a tree (tree_json_put). */
struct tree_json_src {
	const char *source, *at;
	const char *type;	 /* "git", "s3", "dir"...; NULL: not said */
	unsigned keep;		 /* its keep= */
	const char *url, *ref;	 /* git: remote (no userinfo), ref= or NULL;
				  * url NULL for other types */
	const struct snap *snap; /* its revision; NULL before the first */
};

/**
 * Write {"tree": ID, "sources": {NAME: {"at", "type", "keep", "url",
 * "ref", "revision", "published", "published_ns"}}} to @f, the shape of
 * .dagfs/status.json and of a materialised revision's .json. @id NULL or
 * "" writes null.
 */
void tree_json_put(FILE *f, const char *id, const struct tree_json_src *v,
		   size_t n);

/**
 * Ids of the manifests in the cache, newest first: a malloc'd array of
 * malloc'd strings. Returns the count or -errno.
 */
int tree_list(struct store *st, char ***out) WUR;

/* ----------------------------------------------------------------- fsck */

struct fsck_result {
	unsigned long blobs, snapshots, problems;
};

typedef void (*fsck_report_fn)(const char *msg, void *payload);

/**
 * Verify every blob, snapshot and source link of the cache, calling @fn
 * with one line per problem. With @repair, broken pieces are removed and
 * current is pointed at the newest intact history entry.
 */
int fsck_run(struct store *st, bool repair, fsck_report_fn fn, void *payload,
	     struct fsck_result *out) WUR;

/* ---------------------------------------------------------- materialise */

/**
 * Write @s as a plain tree at @dir (which may exist): hard links into the
 * store, copies for executable files, across filesystems, or if @copy.
 */
int mat_snap(struct store *st, const struct snap *s, const char *dir,
	     bool copy) WUR;

/**
 * Build DIR/.revs/<id> from @n snapshots at sub-paths @ats (NULL snapshots
 * are skipped); <id> (written to @id_out) names the combination, so an
 * unchanged combination is not rebuilt. Built under a temporary name and
 * renamed into place.
 */
int mat_compose(struct store *st, struct snap *const *snaps,
		const char *const *ats, size_t n, const char *dir,
		char id_out[DHASH_HEX]) WUR;

/** Point DIR/current at .revs/<id> by rename(); marks the old one retired. */
int mat_publish(const char *dir, const char *id) WUR;

/** Remove revisions other than @keep_id retired more than @grace_s ago. */
int mat_prune(const char *dir, const char *keep_id, int grace_s);

/** rm -rf @path (no symlinks followed). */
int mat_remove(const char *path);

/* ------------------------------------------------ snapshot statements */

/*
 * What a served store says about one snapshot (sdoc.c): source, revision,
 * snapshot id, SHA-256 of the snapshot's bytes, publication time, and an
 * optional Ed25519 signature over those lines.
 */
#define SDOC_MAX 4096

struct sdoc {
	char source[65];
	char rev[128];
	char snapshot[DHASH_HEX];
	char sha256[65];
	int64_t published_ns;
	bool is_signed;
	size_t signed_len; /* bytes the signature covers */
	uint8_t sig[64];
};

/** An Ed25519 key: secret (signs) or public (verifies). */
struct sdoc_key;

/** Load a PEM key file; a one-line reason in @err on failure. */
int sdoc_key_load(struct sdoc_key **out, const char *path, bool secret,
		  char *err, size_t errlen) WUR;
/** NULL is a no-op. */
void sdoc_key_free(struct sdoc_key *k);

/**
 * The statement for @s, whose encoded bytes are @snapbytes, signed when
 * @key is a secret key (NULL: unsigned). *@out is malloc'd text.
 */
int sdoc_format(char **out, size_t *len, const struct snap *s,
		const void *snapbytes, size_t snaplen,
		const struct sdoc_key *key) WUR;
/** Parse strictly; -EBADMSG on anything malformed. No signature check. */
int sdoc_parse(struct sdoc *out, const char *buf, size_t len) WUR;
/** 0 if @d (parsed from @buf) is signed by @pub, else -EPERM. */
int sdoc_verify(const struct sdoc *d, const char *buf,
		const struct sdoc_key *pub) WUR;
/** 0 if @buf hashes to @d's snapshot id and SHA-256, else -EBADMSG. */
int sdoc_check_snapshot(const struct sdoc *d, const void *buf, size_t len) WUR;
/** Lowercase hex SHA-256 of @buf. */
void sdoc_sha256(char out[65], const void *buf, size_t len);

/* --------------------------------------------------------------- sources */

/** A parsed TYPE:LOCATION[,key=value]... specification. */
struct source_spec {
	char *type;
	char *location;
	size_t nkeys;
	char **keys;
	char **values;
};

/**
 * Parse a --source value. On error returns -EINVAL and writes a one-line
 * reason into @err.
 */
int source_spec_parse(struct source_spec **out, const char *text, char *err,
		      size_t errlen) WUR;
void source_spec_free(struct source_spec *spec);
/** Free what @spec holds and zero it (a spec embedded in another struct). */
void source_spec_clear(struct source_spec *spec);
/** Value of @key, or NULL. Borrowed from @spec. */
const char *source_spec_get(const struct source_spec *spec, const char *key);
/** Add @key = @value (copied); -EEXIST if @key is set, -ENOMEM. */
int source_spec_set(struct source_spec *spec, const char *key,
		    const char *value) WUR;

#define SOURCE_NAME_MAX 64

/** Whether @name may name a source: [A-Za-z0-9._-]{1,64}, not "." or "..". */
bool source_name_ok(const char *name);

/**
 * The name the daemon gives a source of @spec: name= if set, else one
 * derived from the location's last part ("team-b" for
 * "airflow-dags/team-b/", "my.dags" for ".../my.dags.git"). -EINVAL if
 * name= is not source_name_ok() (@out then holds it, cut to fit, for the
 * message). The one implementation: the provisioner uses it too.
 */
int source_spec_name(char out[SOURCE_NAME_MAX + 1],
		     const struct source_spec *spec) WUR;

/**
 * The sub-path of @spec in the mount: at= without leading or trailing
 * '/', "" for the root; *@out is malloc'd. -EINVAL if not a valid path.
 */
int source_spec_at(char **out, const struct source_spec *spec) WUR;

enum source_conflict {
	SOURCE_SAME_NAME = 1, /* two sources share a name */
	SOURCE_OVERLAP = 2,   /* one's sub-path contains the other's */
};

/**
 * Check the layout of @n sources (names and sub-paths as above): 0 if no
 * two conflict, else the first enum source_conflict found, with the pair
 * in *@first < *@second. Callers word the message.
 */
int source_layout_conflict(size_t *first, size_t *second,
			   const char *const *names, const char *const *ats,
			   size_t n) WUR;

/** Name of source type @i (0, 1, ...), or NULL past the last. */
const char *source_type_name(size_t i);

/**
 * The keys a source of @type accepts besides the common ones, or with
 * @type NULL the common keys: NULL-terminated, static. NULL if @type is
 * unknown. What --help lists, so it cannot drift from what is accepted.
 */
const char *const *source_type_keys(const char *type);

struct source;

/** Called from the source's thread after each publication. */
typedef void (*source_publish_fn)(struct source *src, struct snap *snap,
				  void *payload);

/**
 * Build a source from @spec: validates the type and every key, writing a
 * one-line reason into @err on failure (-EINVAL, -ENOENT...).
 */
int source_new(struct source **out, const struct source_spec *spec,
	       struct store *st, char *err, size_t errlen) WUR;
/**
 * Load the last published snapshot (if any) and publish it through @cb at
 * once, then start polling in a thread of its own.
 */
int source_start(struct source *src, source_publish_fn cb, void *payload) WUR;
/**
 * One sync in the caller's thread (one-shot mode): publish what the
 * remote has now and return it in *@out (a new reference). Fails with a
 * one-line reason in @err. Not with source_start().
 */
int source_sync_once(struct source *src, struct snap **out, char *err,
		     size_t errlen) WUR;

/**
 * Get revision @rev of @src although it is not retained: the source type
 * builds it from its upstream (git: fetched by commit id), and it is kept
 * by pub_retain(), not made current. One fetch per revision at a time:
 * concurrent calls for the same @rev wait on the same fetch. Runs in the
 * source's thread when started (woken through its wakefd), else in the
 * caller's. Waits at most @timeout_ms; -ETIMEDOUT past it, -ENOENT if the
 * upstream does not have @rev or the type cannot fetch by revision, with
 * a one-line reason in @err. *@out is a new reference.
 */
/**
 * Get the manifest of tree @id from @src's upstream into the store (see
 * tree_put); -ENOENT (no reason) if its type cannot. Any thread.
 */
int source_fetch_tree(struct source *src, const char *id, int timeout_ms,
		      char *err, size_t errlen) WUR;

int source_fetch_rev(struct source *src, const char *rev, int timeout_ms,
		     struct snap **out, char *err, size_t errlen) WUR;

/** Stop the thread; safe if never started. */
void source_stop(struct source *src);
void source_free(struct source *src);

const char *source_name(const struct source *src);
/** Sub-path in the mount: "" for the root, else "a/b". */
const char *source_at(const struct source *src);
/** The source's type ("git", "s3", "dir"...); borrowed. */
const char *source_type(const struct source *src);
/** Its keep= (snapshots retained). */
unsigned source_keep(const struct source *src);
/**
 * What status files may say of where it comes from: for git, the remote
 * URL with any userinfo removed, into @url, and ref= (or "" if unset)
 * into @ref; "" for both for other types.
 */
void source_origin(const struct source *src, char *url, size_t urllen,
		   char *ref, size_t reflen);
/** Current snapshot with a new reference, or NULL before the first. */
struct snap *source_current(struct source *src);
/**
 * The cached revision (the store's current for this source), read once,
 * with a new reference, or NULL if the cache has none. Before
 * source_start(), so the view serves the very snapshot the source then
 * starts from: one decoded copy, not two.
 */
struct snap *source_cached(struct source *src);
/** Poll now (webhook, tests). */
void source_kick(struct source *src);

/**
 * The sync in flight, one mechanism for every source type: the loop
 * starts and ends it, the type adds what arrives (source_count_fetch) and
 * says what it must fetch once it knows (source_progress_total). Read by
 * status.json, `dagfs status` and the progress line.
 */
struct source_progress {
	bool active;			     /* a sync is running */
	int64_t started_ns;		     /* when it began (wall clock) */
	uint64_t objects, bytes;	     /* fetched so far */
	uint64_t objects_total, bytes_total; /* 0 while unknown */
};

struct source_status {
	char rev[128];
	int64_t published_ns;
	int64_t last_attempt_ns;
	int64_t last_success_ns;
	unsigned failures;     /* consecutive */
	unsigned max_failures; /* unhealthy past this */
	char error[512];       /* last error, "" if none */
	uint64_t syncs, bytes_fetched, objects_fetched;
	/* sync durations: counts per SOURCE_DURATION_BUCKETS bound (the
	 * last is +Inf), their sum in seconds */
	uint64_t dur_buckets[11];
	double dur_sum;
	struct source_progress progress;
};

/** Upper bounds (seconds) of the sync duration histogram buckets. */
extern const double source_duration_bounds[10];
void source_get_status(struct source *src, struct source_status *out);

/**
 * The one rule of health, for /readyz, /metrics, status.json and `dagfs
 * status`: a revision is published and fewer than max_failures syncs in
 * a row have failed.
 */
bool source_healthy(const struct source_status *st);

#endif
