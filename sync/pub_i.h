/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pub_i.h - private to sync/: what pub.c (publication, loading),
 * pub_index.c (the revision index), gc_live.c (collection) and store.c
 * share.
 */
#ifndef DAGFS_PUB_I_H
#define DAGFS_PUB_I_H

#include "sync.h"

#define HIST_MAX 4096

/* One history link sources/<name>/h-<seq> -> ../../snapshots/<id>. */
struct hist {
	unsigned long long seq;
	char id[DHASH_HEX];
};

/** History of the source directory @srcdir, newest first; the count
 *  (at most HIST_MAX; 0 if the directory is absent). */
int pub_hist_list(const char *srcdir, struct hist *out);

/** Every retained link: the history, then the revisions fetched on
 *  demand (d-<seq>, pub_retain), each newest first; the count (at most
 *  2 * HIST_MAX: @out holds that many). */
int pub_retained_list(const char *srcdir, struct hist *out);

/** Read a link naming ../../snapshots/<id>; 0 and the id, or -errno. */
int pub_read_id_link(int dirfd, const char *name, char id[DHASH_HEX]) WUR;

/**
 * pub_write_file() (sync.h) without either fsync: the file is whole or
 * absent after a crash, but may be absent. For what is rebuilt when lost
 * (the collector's blob lists). Writers of one name must not race.
 */
int pub_write_file_lazy(const char *dir, const char *tmpdir, const char *name,
			const void *buf, size_t len) WUR;

/** Read the whole file @path into *@out (malloc'd, NUL-terminated). */
int pub_read_all(const char *path, void **out, size_t *len) WUR;

/** Load @id for @source if it decodes and all its blobs are present;
 *  logs why not (-EBADMSG, -errno). */
int pub_load_checked(struct store *st, const char *source, const char *id,
		     struct snap **out) WUR;

/**
 * Write gc/<id>, the blob list of @s (stored as snapshots/<id>), so that
 * collection rounds never decode it (gc_live.c). Best effort, no fsync: a
 * list missing or damaged is made again from the snapshot.
 */
void gc_live_note(struct store *st, const struct snap *s);

/** Parse an index (gc/live) or a blob list (gc/<id>, checked against the
 *  id it holds) from @buf: the snapshots it covers or the blobs it lists,
 *  or -EBADMSG. For the fuzz targets; nothing is kept. */
int gc_live_parse_check(const void *buf, size_t len) WUR;
int gc_list_parse_check(const void *buf, size_t len) WUR;

/** Count a publication (store.c; the collector watches the count). */
void store_note_publication(struct store *s);

/** Serialise writers of the revision indexes (store.c). */
void store_index_lock(struct store *s);
void store_index_unlock(struct store *s);

#endif
