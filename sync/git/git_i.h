/* SPDX-License-Identifier: Apache-2.0 */
/*
 * git_i.h - private to the git source (git.c, git_remote.c, git_tree.c):
 * its state, the remote side (connect, ref listing, fetch, credentials,
 * host keys) and the tree side (blob map, snapshot building).
 *
 * Nothing here is used outside sync/. libgit2 owns the git_ prefix, so
 * our symbols use gitsrc_.
 */
#ifndef DAGFS_GIT_I_H
#define DAGFS_GIT_I_H

#include <git2.h>
#if LIBGIT2_VER_MAJOR > 1 || LIBGIT2_VER_MINOR >= 8
#include <git2/sys/errors.h> /* git_error_set*() moved here in 1.8 */
#endif
#include <limits.h>

#include "source_i.h"

#define GITSRC_REFNAME_MAX 1024

/**
 * Persistent map git blob id -> (content hash, size), so an unchanged
 * blob is never read or hashed again. Kept in memory as an open-addressed
 * table and on disk as an append-only file of fixed-size checksummed
 * records (<cache>/git/<name>/blobmap). Used by the source's thread only.
 */
struct gitsrc_blobmap {
	int fd;
	size_t n, cap; /* cap is a power of two, or 0 */
	struct gitsrc_blobrec *v;
};

struct gitsrc_blobrec {
	git_oid oid;
	struct dhash h;
	uint64_t size;
	bool used;
};

/** Where an ssh URL points, for the known_hosts check. */
struct gitsrc_url {
	bool ssh;
	char host[256];
	char user[128]; /* "" if the URL names none */
	int port;	/* 22 unless given */
};

/** The source's state (src->priv). Used by the source's thread only. */
struct gitsrc {
	struct source *src;
	const char *url; /* borrowed from src->spec */
	const char *ref; /* NULL: the remote's HEAD */
	bool pinned;	 /* ref is a full commit id */
	git_oid pin;
	char *subpath; /* "" for the whole repository */
	bool submodules;
	const char *ssh_key; /* paths, borrowed from src->spec */
	const char *ssh_pass_file;
	const char *known_hosts;
	const char *username;
	const char *password_file;
	const char *token_file;
	bool insecure;	      /* no host key check */
	int fetch_timeout_ms; /* whole-fetch deadline */
	char dir[PATH_MAX];   /* <cache>/git/<name> */
	git_repository *repo;
	struct gitsrc_blobmap map;
	bool swept; /* gitsrc_pack_sweep() done */
};

/**
 * One remote operation's callback state: what our callbacks decided, so
 * the error translation can say why rather than libgit2's generic text.
 */
struct gitsrc_cb {
	struct gitsrc *g;
	struct gitsrc_url url;
	int cred_tries;
	char why[256]; /* "" unless a callback refused */
};

/* ------------------------------------------------------- git.c */

/**
 * The one place libgit2 errors become a negative errno and a one-line
 * message "git source NAME: @doing: cause" in @err. @cb may be NULL.
 * Never includes credentials.
 */
int gitsrc_fail(struct gitsrc *g, const struct gitsrc_cb *cb, int rc,
		const char *doing, char *err, size_t errlen);

/* ------------------------------------------------ git_remote.c */

/** Split @url into host, port and user if it is an ssh URL (scp-like too). */
int gitsrc_url_parse(struct gitsrc_url *out, const char *url) WUR;

/**
 * Check a raw ssh host key (wire format) against the known_hosts @file
 * for @host (and [host]:port when @port is not 22). Returns 0 if a line
 * matches, -ENOENT if no line names the host with this key, -EKEYREJECTED
 * if the host is listed with other keys of this type or the key is revoked,
 * -errno if the file cannot be read. A reason goes to @why.
 */
int gitsrc_known_hosts_check(const char *file, const char *host, int port,
			     const unsigned char *key, size_t keylen, char *why,
			     size_t whylen) WUR;

/**
 * Create an anonymous remote for @url in @repo and connect it for fetch
 * with our credential and host-key callbacks. @cb must outlive the remote.
 * Returns 0 or a libgit2 error code.
 */
int gitsrc_connect(git_remote **out, struct gitsrc_cb *cb, git_repository *repo,
		   const char *url) WUR;

/**
 * Find @ref on the connected remote: NULL for HEAD, a branch, a tag or a
 * full ref name. Sets the ref's full name (into @name), its object id
 * @tip and the commit it peels to @commit. GIT_ENOTFOUND if absent.
 */
int gitsrc_ls_find(git_remote *r, const char *ref, char *name, size_t namelen,
		   git_oid *tip, git_oid *commit) WUR;

/*
 * libgit2 1.7 and later fetch shallow (git_fetch_options.depth), decided
 * when dagfs is built; with an older one every fetch brings the whole
 * history it reaches.
 */
#if LIBGIT2_VER_MAJOR > 1 || LIBGIT2_VER_MINOR >= 7
#define GITSRC_SHALLOW 1
#define GITSRC_UNSHALLOW GIT_FETCH_DEPTH_UNSHALLOW
#else
#define GITSRC_SHALLOW 0
#define GITSRC_UNSHALLOW INT_MAX
#endif

/**
 * True if fetches from @url can be shallow: GITSRC_SHALLOW, and smart
 * HTTP. libgit2 1.8 gets the shallow negotiation right only on stateless
 * transports: over git:// and ssh it sends its wants a second time and
 * the server hangs up ("expected SHA1 list"; rust-lang/git2-rs#1084), so
 * there every fetch is whole.
 */
bool gitsrc_shallow(const char *url);

/**
 * Download what @refspecs name over the connected @r (negotiating with
 * every local ref). @depth > 0 asks for at most that many commits of
 * history from each wanted tip (GITSRC_UNSHALLOW: all of it, on a
 * shallow repository), 0 for what the repository has (a shallow one stays
 * shallow below what it had); ignored unless gitsrc_shallow(). Counts the
 * bytes and objects fetched on the source. Returns 0 or a libgit2 error
 * code.
 */
int gitsrc_download(struct gitsrc_cb *cb, git_remote *r, const char **refspecs,
		    size_t n, int depth) WUR;

/* -------------------------------------------------- git_shallow.c */

/* The commits at a shallow repository's boundary (<gitdir>/shallow). */
struct gitsrc_roots {
	git_oid *v;
	size_t n, cap;
};

/** Read @repo's boundary into @rs (empty if the repository is whole);
 * 0 or -errno. */
int gitsrc_roots_read(struct gitsrc_roots *rs, git_repository *repo) WUR;

/** Add the commit ids of the boundary file @path (git's format: one id a
 * line; other lines skipped) to @rs; absent is empty. 0 or -errno. */
int gitsrc_roots_load(struct gitsrc_roots *rs, const char *path) WUR;

/** The parents a raw commit object (@data, @size: its header, a blank
 * line, its message) names: at most @max ids into @out; returns how many
 * the header names, which may exceed @max. */
size_t gitsrc_commit_parents(const char *data, size_t size, git_oid *out,
			     size_t max);

/**
 * After a fetch: put back the commits of @before, the boundary read
 * before it, that are still in @repo and still lack a parent, where
 * libgit2 1.8 dropped them (it deletes the boundary on a fetch that does
 * not deepen, and the next fetch then fails). *@restored says whether the
 * file was rewritten. 0 or -errno.
 */
int gitsrc_roots_keep(git_repository *repo, const struct gitsrc_roots *before,
		      bool *restored) WUR;

void gitsrc_roots_free(struct gitsrc_roots *rs);

/* -------------------------------------------------- git_pack.c */

/**
 * If the cached repository holds more than @max_packs packs, rewrite what
 * our refs reach into one pack and reopen g->repo. Returns 0, or a
 * libgit2 error if the repository could not be reopened.
 */
int gitsrc_pack_tidy(struct gitsrc *g, int max_packs) WUR;

/**
 * Remove what a killed process left in the source's directory (its
 * repository and the submodules' beside it): temporary packs, indexes
 * without their pack, lock files. Only while nothing else writes there:
 * the cache is ours alone (store lock) and, as this runs in the source's
 * thread, the source a reload replaced has stopped. Best effort.
 */
void gitsrc_pack_sweep(struct gitsrc *g);

/* ------------------------------------------------ git_stream.c */

/** Route libgit2's TCP streams through ours (time limits, keepalive). */
int gitsrc_stream_register(void) WUR;

enum gitsrc_expiry {
	GITSRC_DEADLINE = 1, /* the whole-fetch deadline passed */
	GITSRC_STOPPED = 2,  /* the source was stopped */
};

/**
 * Limits of this thread's remote work from now on: @io_ms for a connect
 * and for each read or write, @deadline_ms (0: none) for everything
 * until the next call, and *@stop (may be NULL), which ends it at once.
 */
void gitsrc_stream_limits(int io_ms, int deadline_ms, const bool *stop);

/**
 * Whether this thread's remote work was cut short since the last
 * gitsrc_stream_limits(): 0, or an enum gitsrc_expiry; the deadline given
 * goes to *@deadline_ms.
 */
int gitsrc_stream_expired(int *deadline_ms);

/* -------------------------------------------------- git_tree.c */

/** Load (creating if needed) the blob map at @path. */
int gitsrc_blobmap_open(struct gitsrc_blobmap *m, const char *path) WUR;
void gitsrc_blobmap_close(struct gitsrc_blobmap *m);
/** The record for @oid, or NULL. Borrowed until the next add. */
const struct gitsrc_blobrec *gitsrc_blobmap_get(const struct gitsrc_blobmap *m,
						const git_oid *oid);
/** Remember @oid -> @h, @size (in memory, and appended to the file). */
int gitsrc_blobmap_add(struct gitsrc_blobmap *m, const git_oid *oid,
		       const struct dhash *h, uint64_t size) WUR;

/**
 * Build the snapshot of @commit (at g->subpath): store every blob not yet
 * stored, mtimes kept from @prev for unchanged content, else the commit
 * time. Returns 0 with *out, or -errno with a message in @err.
 */
int gitsrc_build(struct gitsrc *g, git_commit *commit, const struct snap *prev,
		 struct snap **out, char *err, size_t errlen) WUR;

/**
 * The url= of the .gitmodules section (text @text of @n bytes) whose
 * path= is @path, into @out. Returns false if there is none.
 */
bool gitsrc_gitmodules_url(char *out, size_t len, const char *text, size_t n,
			   const char *path);

/**
 * Make sure @commit is in the repository for submodule @url: open or
 * create its bare repository under the source's cache directory and fetch
 * its branches and tags if the commit is missing. *out is freed by the
 * caller with git_repository_free().
 */
int gitsrc_submodule_repo(git_repository **out, struct gitsrc *g,
			  const char *url, const git_oid *commit, char *err,
			  size_t errlen) WUR;

#endif
