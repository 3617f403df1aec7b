/* SPDX-License-Identifier: Apache-2.0 */
/*
 * listing.c - directory handles and listings: opendir, releasedir,
 * readdir and readdirplus, with offsets that carry the view a listing
 * began in so that no listing ever mixes two trees. It must not change
 * what a listing shows: that is resolution (view.c, trees.c, meta.c).
 *
 * Each handler replies exactly once. This is the read path: nothing here
 * logs above debug, and nothing blocks on anything but the local store.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

/*
 * Opendir costs no request either: the first one answers ENOSYS, and the
 * kernel opens every directory itself from then on, with its readdir
 * cache on (fs/fuse/file.c fuse_file_open: FOPEN_KEEP_CACHE |
 * FOPEN_CACHE_DIR for no_opendir), and sends no RELEASEDIR. So a readdir
 * has no handle: it resolves the directory anew each time, and the offset
 * it hands back says in which view (fs->gen) the listing began. A listing
 * continues in that view to its end, across any swap, never mixing two
 * trees; swap.c keeps the kernel's cache of every listing exact. A kernel
 * without zero-message opendir gets an empty handle with the same flags.
 */
void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);

	fs_count(fs, FS_OP_OPENDIR);
	if (fs_inode_of(fs, ino)->type != SNAP_DIR) {
		fs_reply_err(req, FS_OP_OPENDIR, ENOTDIR);
		return;
	}
	if (fs->no_opendir) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fs_count(fs_of(req), FS_OP_RELEASEDIR);
	fuse_reply_err(req, 0);
}

/* One readdir reply being built. */
struct listing {
	fuse_req_t req;
	struct fs *fs;
	const struct fs_inode *dir;
	struct fs_res res; /* the directory, in the view listed */
	char **names;	   /* FS_SYNTH, FS_META_DIR: children */
	uint32_t n;	   /* positions after "." and ".." */
	bool meta;	   /* the root, listing .dagfs first */
	uint32_t tag;	   /* high half of every offset: the view begun in */
	bool plus;	   /* readdirplus records */
	bool link;	   /* hand nodeids to the kernel (readdirplus, current
			    * tree, no swap meanwhile) */
	uint64_t seq;	   /* fs->seq when the request began */
	char *buf;
	size_t size, used;
	struct fs_inode **counted; /* lookups taken, undone if not sent */
	size_t ncounted;
};

#define TAG_MASK 0x7fffffffULL

/*
 * The view to list @l->dir in, for a readdir at offset @off, resolved into
 * @l->res. Offset 0 begins a listing in the current view. A later offset
 * carries the view V it began in (its low 31 bits): if the directory's
 * listing changed since (lgen holds the view C of the first flip that
 * changed it after V), it is read in view C - 1, the last one with the
 * listing V saw, which swap.c keeps for a grace period. -ESTALE: that view
 * is gone (more changes than lgen remembers, or past the grace period).
 */
static int listing_view(struct listing *l, off_t off)
{
	struct fs *fs = l->fs;
	const struct fs_inode *dir = l->dir;
	uint64_t t = (uint64_t)off >> 32, v, change = 0, floor;

	for (;;) {
		fs_resolve(fs, dir->path, &l->res);
		if (l->res.kind == FS_META_DIR || fs_is_meta(dir->path))
			return 0; /* made at each read: by position */
		pthread_mutex_lock(&fs->lock);
		floor = dir->lfloor;
		v = l->res.gen - ((l->res.gen - t) & TAG_MASK);
		for (unsigned i = 0; off && i < dir->nlgen && !change; i++)
			if (dir->lgen[i] > v)
				change = dir->lgen[i];
		pthread_mutex_unlock(&fs->lock);
		if (!off && l->res.gen < floor) {
			/* resolved before the inode was made: once more */
			fs_res_drop(&l->res);
			continue;
		}
		l->tag = (uint32_t)((off ? v : l->res.gen) & TAG_MASK);
		if (!off || !change || change > l->res.gen)
			return off && v < floor ? -ESTALE : 0;
		fs_res_drop(&l->res);
		return fs_resolve_at(fs, dir->path, change - 1, &l->res);
	}
}

/* Resolve the directory and its children for a readdir at @off. */
static int listing_open(struct listing *l, off_t off)
{
	int n, rc = listing_view(l, off);

	if (rc)
		return rc;
	if (!fs_res_is_dir(&l->res))
		return off ? -ESTALE : -ENOENT;
	l->link = l->plus &&
		  l->res.gen ==
			  __atomic_load_n(&l->fs->gen, __ATOMIC_ACQUIRE) &&
		  l->res.kind != FS_META_DIR && fs_seq_stable(l->fs, l->seq);
	if (l->res.kind == FS_ENTRY) {
		l->n = fs_res_entry(&l->res)->child_count;
	} else if (l->res.kind == FS_SYNTH || l->res.kind == FS_META_DIR) {
		n = l->res.kind == FS_SYNTH ?
			    fs_synth_children(l->fs, l->dir->path, l->res.gen,
					      &l->names) :
			    fs_meta_children(l->fs, l->dir->path, &l->names);
		if (n < 0)
			return n;
		l->n = (uint32_t)n;
	}
	l->meta = !*l->dir->path && l->fs->o.show_meta;
	l->n += l->meta;
	return 0;
}

static void listing_close(struct listing *l)
{
	fs_res_drop(&l->res);
	for (uint32_t i = 0; l->names && i < l->n - l->meta; i++)
		free(l->names[i]);
	free(l->names);
	free(l->buf);
	free(l->counted);
}

/*
 * Name, mount path and resolution of position @pos: 0 is ".", 1 "..",
 * then .dagfs if listed, then the children. The resolution is borrowed
 * from the listing for a snapshot entry and owned (*@owned: drop it)
 * otherwise. The root slot's own .dagfs resolves to nothing (skipped).
 */
static const char *listing_at(struct listing *l, off_t pos, char *path,
			      struct fs_res *r, bool *owned)
{
	const char *name;
	char *slash;

	memset(r, 0, sizeof(*r));
	*owned = pos >= 2 && (l->res.kind != FS_ENTRY || (l->meta && pos == 2));
	if (l->meta && pos == 2) {
		snprintf(path, FS_PATH_MAX, "%s", FS_META);
		fs_resolve(l->fs, path, r);
		return FS_META;
	}
	pos -= l->meta && pos > 2;
	if (pos < 2) {
		snprintf(path, FS_PATH_MAX, "%s", l->dir->path);
		slash = strrchr(path, '/');
		if (pos == 1)
			*(slash ? slash : path) = '\0';
		r->kind = FS_SYNTH; /* a directory: only st_ino is used */
		return pos ? ".." : ".";
	}
	if (l->res.kind == FS_ENTRY) {
		*r = l->res;
		r->idx = fs_res_entry(&l->res)->child_first +
			 (uint32_t)(pos - 2);
		name = fs_res_entry(r)->name;
		fs_path_join(path, FS_PATH_MAX, l->dir->path, name);
		if (!*l->dir->path && !strcmp(name, FS_META))
			r->kind = FS_NONE;
		return name;
	}
	name = l->names[pos - 2];
	fs_path_join(path, FS_PATH_MAX, l->dir->path, name);
	if (l->res.kind == FS_META_DIR && fs_meta_rev_root(path))
		r->kind = FS_META_DIR; /* no need to load it to list it */
	else if (fs_resolve_at(l->fs, path, l->res.gen, r))
		r->kind = FS_NONE;
	return name;
}

static void listing_entry(struct listing *l, off_t pos, const char *path,
			  const struct fs_res *r, struct fuse_entry_param *e)
{
	struct fs_inode *ino = NULL;
	const struct snap_entry *se;

	memset(e, 0, sizeof(*e));
	if (l->link && pos >= 2)
		ino = fs_inode_get(l->fs, path, r);
	if (ino) {
		fs_entry_fill(l->fs, ino, r,
			      fs_entry_timeout(l->fs, l->seq, path, r), e);
		l->counted[l->ncounted++] = ino;
		return;
	}
	e->attr.st_ino = fs_key(path, r);
	se = r->kind == FS_ENTRY ? fs_res_entry(r) : NULL;
	e->attr.st_mode = r->kind == FS_META_FILE     ? S_IFREG :
			  !se || se->type == SNAP_DIR ? S_IFDIR :
			  se->type == SNAP_LINK	      ? S_IFLNK :
							S_IFREG;
}

/*
 * The offset the kernel hands back to continue after position @pos - 1:
 * the position, tagged with the view the listing began in.
 *
 * The kernel's readdir cache is filled by whichever reader reads at the
 * offset where the cache ends, and it trusts every reader of a directory
 * to list the same thing. With the view in the offset, a listing begun
 * before a change of the directory can never continue a cache that one
 * begun after it started, nor the reverse, so the cache never holds a
 * listing that mixes two trees.
 */
static off_t listing_off(const struct listing *l, off_t pos)
{
	return (off_t)l->tag << 32 | pos;
}

/* Add position @pos; false once the buffer is full. */
static bool listing_add(struct listing *l, off_t pos)
{
	char path[FS_PATH_MAX];
	struct fuse_entry_param e;
	struct fs_res r;
	bool owned;
	const char *name = listing_at(l, pos, path, &r, &owned);
	size_t room = l->size - l->used, need;

	need = l->plus ?
		       fuse_add_direntry_plus(l->req, NULL, 0, name, NULL, 0) :
		       fuse_add_direntry(l->req, NULL, 0, name, NULL, 0);
	if (need > room || r.kind == FS_NONE) {
		if (owned)
			fs_res_drop(&r);
		return need <= room; /* a made-up child vanished: skip it */
	}
	listing_entry(l, pos, path, &r, &e);
	if (r.kind == FS_ENTRY) /* the kernel lists only what it lacks */
		fs_prefetch_add(l->fs, &r.snap->e[r.idx]);
	if (owned)
		fs_res_drop(&r);
	if (l->plus)
		fuse_add_direntry_plus(l->req, l->buf + l->used, room, name, &e,
				       listing_off(l, pos + 1));
	else
		fuse_add_direntry(l->req, l->buf + l->used, room, name, &e.attr,
				  listing_off(l, pos + 1));
	l->used += need;
	return true;
}

static void dir_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi, bool plus)
{
	struct fs *fs = fs_of(req);
	struct listing l = {
		.req = req,
		.fs = fs,
		.dir = fs_inode_of(fs, ino),
		.plus = plus,
		.seq = fs_seq_begin(fs),
		.size = size,
	};
	size_t min = fuse_add_direntry(req, NULL, 0, "x", NULL, 0);
	int rc;

	(void)fi;
	fs_count(fs, FS_OP_READDIR);
	if (l.dir->type != SNAP_DIR) {
		/* the kernel lists only directories; a file's inode is too
		 * small to hold a path (fs_inode_has_tail) */
		fs_reply_err(req, FS_OP_READDIR, ENOTDIR);
		return;
	}
	fs_past_expire(fs);
	l.buf = malloc(size + 1);
	l.counted = malloc((size / min + 1) * sizeof(*l.counted));
	rc = l.buf && l.counted ? listing_open(&l, off) : -ENOMEM;
	if (rc == -ESTALE) {
		/* begun in a view that is gone: end it, never mix */
		log_debug("fs", "readdir of /%s: its view is gone",
			  l.dir->path);
	} else if (rc) {
		fs_reply_err(req, FS_OP_READDIR, -rc);
		goto out;
	} else {
		for (off_t pos = off & 0xffffffff;
		     pos < 2 + (off_t)l.n && listing_add(&l, pos); pos++)
			;
	}
	if (fuse_reply_buf(req, l.buf, l.used) == -ENOENT)
		for (size_t i = 0; i < l.ncounted; i++)
			fs_inode_forget(fs, l.counted[i], 1);
out:
	listing_close(&l);
}

void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	dir_read(req, ino, size, off, fi, false);
}

void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	dir_read(req, ino, size, off, fi, true);
}
