/* SPDX-License-Identifier: Apache-2.0 */
/*
 * source_i.h - private to sync/: how a source type plugs into the polling
 * loop (one ops struct per type, as libgit2 plugs odb backends).
 *
 * The loop in source_loop.c owns the thread, the timing, backoff, status
 * and publication. A type only answers "build me the current revision".
 *
 * A new type TYPE lives in sync/TYPE/ as a static library of its own
 * (sync/TYPE/meson.build, linked by sync_dep in sync/meson.build), defines
 * `const struct source_ops source_TYPE_ops` and is named in source.c's
 * table and declared below.
 */
#ifndef DAGFS_SOURCE_I_H
#define DAGFS_SOURCE_I_H

#include <pthread.h>

#include "log.h"
#include "sync.h"

struct source_ops {
	const char *type;
	/**
	 * Validate @src->spec (type-specific keys) and set up @src->priv.
	 * Unknown keys are already rejected by the loop against @keys.
	 * On error write a one-line reason to @err.
	 */
	int (*init)(struct source *src, char *err, size_t errlen);
	/**
	 * Build the current revision. Return 1 with a new snapshot in *out,
	 * 0 if the revision is still @prev_rev (nothing to publish), or a
	 * negative errno with a one-line reason in @err (no secrets).
	 * Every blob the snapshot names must be in the store on return.
	 */
	int (*sync)(struct source *src, const char *prev_rev, struct snap **out,
		    char *err, size_t errlen);
	/**
	 * Optional: block until the next sync is due (at most @timeout_ms) or
	 * source_kick()/stop. The default polls src->wakefd. Returns on
	 * timeout, when src->wakefd is readable, or when the type itself
	 * decides a sync is due (e.g. inotify after the debounce).
	 */
	void (*wait)(struct source *src, int timeout_ms);
	void (*fini)(struct source *src);
	/**
	 * Optional: build the snapshot of revision @rev, which is not
	 * retained (a worker asks for the revision the dag-processor
	 * recorded). Runs in the source's own thread between syncs, never
	 * at the same time as ->sync (or, before source_start(), in the
	 * caller's). Return 0 with a new snapshot in *out, every blob it
	 * names in the store (the loop keeps it with pub_retain(), it is
	 * never made current), -ENOENT if the upstream does not have @rev,
	 * or another negative errno; a one-line reason (no secrets) in
	 * @err. Without this op an unretained revision is ENOENT. The
	 * thread is woken through src->wakefd: a type whose ->sync or
	 * ->wait blocks for long must return when it is readable.
	 */
	int (*fetch_rev)(struct source *src, const char *rev, struct snap **out,
			 char *err, size_t errlen);
	/**
	 * Optional: get the manifest of tree @id from the upstream (a
	 * mirror's publisher) and store it with tree_put(), which checks
	 * it hashes to @id. Called from fs/'s fetch threads, not the
	 * source's, possibly while ->sync runs: it must not touch what
	 * ->sync uses without a lock of its own. At most @timeout_ms.
	 * Return 0 once stored, -ENOENT if the upstream lacks it, or
	 * another -errno; a one-line reason in @err.
	 */
	int (*fetch_tree)(struct source *src, const char *id, int timeout_ms,
			  char *err, size_t errlen);
	/** Keys this type accepts besides the common ones; NULL-terminated. */
	const char *const *keys;
};

extern const struct source_ops source_dir_ops;
extern const struct source_ops source_git_ops;
extern const struct source_ops source_s3_ops;
extern const struct source_ops source_dagfs_ops;

struct source {
	const struct source_ops *ops;
	struct source_spec *spec; /* owned copy */
	struct store *store;
	char *name;
	char *at;
	char tag[80];  /* "source NAME", for log lines */
	int period_ms; /* poll period */
	unsigned keep; /* snapshots retained */
	unsigned max_failures;
	char *validate;		/* publish gate command, or NULL */
	char rejected_rev[128]; /* last revision the gate refused */
	char rejected_why[256];
	void *priv; /* the type's state */

	int wakefd; /* eventfd: written by source_kick/stop, polled by waits */
	pthread_t thread;
	bool started;
	bool cache_loaded; /* source_cached() has read the cache */
	source_publish_fn cb;
	void *cb_payload;

	pthread_mutex_t lock; /* guards everything below */
	bool stop;
	bool kicked;
	bool rebuild; /* options changed: build even an unchanged revision */
	struct snap *current;
	struct source_status st;
	bool progress_absolute; /* source_progress_set() drives st.progress */
	struct source_demand *demands; /* revisions asked for (demand.c) */
	pthread_cond_t demand_cond;    /* a demand is done (CLOCK_MONOTONIC) */
};

/* ---------------------------------------------------- source.c */

/** Write src->wakefd: wakes the thread's wait (kick, stop). */
void source_wake(struct source *src);

/** Wait on src->wakefd (and @extra_fd if >= 0) at most @timeout_ms;
 *  drains the wake event. Returns 1 if @extra_fd is readable. */
int source_poll_wake(struct source *src, int extra_fd, int timeout_ms);

/* demand.c */

/** Fetch the revisions asked for, in the source's thread. */
void source_demands_run(struct source *src);
/** True if a demand waits for the thread. */
bool source_demands_pending(struct source *src);
/** Fail every demand with -ECANCELED (the thread has stopped). */
void source_demands_cancel(struct source *src);

/**
 * Whether source_stop() was called. A type's long loops (downloads,
 * retries) check it and return -ECANCELED, so a stop ends a sync within
 * a moment rather than at its end.
 */
static inline bool source_stopping(struct source *src)
{
	return __atomic_load_n(&src->stop, __ATOMIC_ACQUIRE);
}

/**
 * Sleep @ms (a retry's backoff) unless the source is stopped first:
 * 0, or -ECANCELED. A kick meanwhile is drained, not a reason to wake.
 */
int source_sleep(struct source *src, int ms) WUR;

/** Add to the source's fetch counters and to the progress of the sync in
 *  flight (thread-safe). */
void source_count_fetch(struct source *src, uint64_t bytes, uint64_t objects);

/** What the sync in flight must fetch, once the type knows (a listing, a
 *  pack's object count); 0 for a total still unknown (thread-safe). */
void source_progress_total(struct source *src, uint64_t objects,
			   uint64_t bytes);

/**
 * For a type whose library reports cumulative figures (libgit2's indexer):
 * set the progress of the sync in flight to @objects of @objects_total and
 * @bytes; source_count_fetch() then counts without adding to it.
 */
void source_progress_set(struct source *src, uint64_t objects,
			 uint64_t objects_total, uint64_t bytes);

/* ----------------------------------------------- source_spec.c */

/** A deep copy of @s, or NULL without memory. Free with source_spec_free. */
struct source_spec *source_spec_copy(const struct source_spec *s);

/* ----------------------------------------------- source_gate.c */

/**
 * Run the validate= command on a copy of @snap (0 if there is none). A
 * refusal returns -EINVAL with the reason in @err and is remembered, so
 * the same revision is refused again without running the command.
 */
int source_gate(struct source *src, struct snap *snap, char *err,
		size_t errlen) WUR;

/* --------------------------------------------- source_digest.c */

/**
 * Whether sources/<name>/spec holds the digest of src->spec; if not, it
 * is written, so the next call answers true.
 */
bool source_spec_unchanged(struct source *src);

#endif
