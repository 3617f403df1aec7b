/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snap_i.h - private to sync/: what a snapshot holds besides what sync.h
 * shows (refcount, pin, path index, string pool), and the calls that
 * touch it. Only snap.c reads or writes these fields.
 */
#ifndef DAGFS_SNAP_I_H
#define DAGFS_SNAP_I_H

#include "sync.h"

/* What snap.c allocates; a struct snap * points at @pub. */
struct snap_impl {
	struct snap pub; /* first */
	int refs;	 /* atomic */
	struct store *pinned_in;
	uint32_t *slots; /* open-addressed path index */
	uint32_t nslots;
	char *strings;
	/* the exact bytes it was decoded from, when a mirror publishes them
	 * unchanged (the upstream's id); owned; NULL otherwise */
	void *raw;
	size_t rawlen;
};

/**
 * Pin @s in @st so garbage collection keeps it while it lives (unpinned
 * by the last snap_unref). Once: a second call is a no-op. Not
 * thread-safe for one snapshot: only its publisher calls it.
 */
void snap_pin(struct snap *s, struct store *st);

/**
 * Keep @buf (@len bytes, malloc'd; NULL drops any) as the bytes @s was
 * decoded from: pub_publish() then writes them as they are instead of
 * encoding @s again, so the id stays the upstream's. @s owns @buf.
 */
void snap_set_raw(struct snap *s, void *buf, size_t len);
/** Take the bytes snap_set_raw() kept (the caller frees), or NULL. */
void *snap_take_raw(struct snap *s, size_t *len);

/** The reference count of @s (tests and assertions). */
int snap_refs(const struct snap *s);

/**
 * How many times this process called snap_decode(): the tests' proof that
 * a path (the FUSE read path, a revision listing) decodes nothing, or only
 * the snapshot it serves.
 */
unsigned long snap_decodes(void);

#endif
