/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ops.c - the FUSE low-level handlers: lookup, attributes, links, open
 * and read of blobs (and of the files generated under .dagfs), directory
 * listings, the user.dagfs.* extended attributes, and EROFS for every
 * write. Every request is counted (fs_get_stats).
 *
 * Each handler replies exactly once. This is the read path: nothing here
 * logs above debug, and nothing blocks on anything but the local store.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs_i.h"

const char *const fs_op_names[FS_OP_COUNT] = {
	[FS_OP_LOOKUP] = "lookup",	   [FS_OP_GETATTR] = "getattr",
	[FS_OP_READLINK] = "readlink",	   [FS_OP_OPEN] = "open",
	[FS_OP_READ] = "read",		   [FS_OP_OPENDIR] = "opendir",
	[FS_OP_READDIR] = "readdir",	   [FS_OP_STATFS] = "statfs",
	[FS_OP_GETXATTR] = "getxattr",	   [FS_OP_LISTXATTR] = "listxattr",
	[FS_OP_IOCTL] = "ioctl",	   [FS_OP_RELEASEDIR] = "releasedir",
	[FS_OP_RELEASE] = "release",	   [FS_OP_FORGET] = "forget",
	[FS_OP_FLUSH] = "flush",
	[FS_OP_WRITE_REFUSED] = "write_refused", [FS_OP_OTHER] = "other",
};

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

void fs_get_stats(struct fs *fs, struct fs_stats *out)
{
	for (int i = 0; i < FS_OP_COUNT; i++) {
		out->ops[i] = __atomic_load_n(&fs->stats.ops[i],
					      __ATOMIC_RELAXED);
		out->errors[i] = __atomic_load_n(&fs->stats.errors[i],
						 __ATOMIC_RELAXED);
	}
}

/* Answer request @req of kind @op with error @err (counted). */
static void reply_err(fuse_req_t req, enum fs_op op, int err)
{
	struct fs *fs = fs_of(req);

	__atomic_fetch_add(&fs->stats.errors[op], 1, __ATOMIC_RELAXED);
	fuse_reply_err(req, err);
}

/* Refuse a write-type request: EROFS, counted as FS_OP_WRITE_REFUSED. */
static void refuse(fuse_req_t req)
{
	fs_count(fs_of(req), FS_OP_WRITE_REFUSED);
	reply_err(req, FS_OP_WRITE_REFUSED, EROFS);
}

/*
 * How long the kernel may keep what a request that began at swap sequence
 * @seq answers: long, unless a swap ran meanwhile (swap.c).
 */
static double timeout_for(struct fs *fs, uint64_t seq)
{
	return fs_seq_stable(fs, seq) ? FS_TIMEOUT : 0;
}

static void entry_fill(struct fs *fs, struct fs_inode *ino,
		       const struct fs_res *r, double timeout,
		       struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = fs_nodeid(fs, ino);
	e->attr_timeout = timeout;
	e->entry_timeout = timeout;
	if (ino->type == SNAP_DIR)
		fs_attr_dir(fs, ino, r, &e->attr);
	else if (r->kind == FS_META_FILE)
		fs_attr_meta(fs, ino->key, r->len, r->mtime_ns, &e->attr);
	else
		fs_attr_entry(fs, ino->key, fs_res_entry(r), &e->attr);
}

/*
 * How long the kernel may keep name @path resolved as @r. Under .dagfs
 * only a pinned revision's entries never change: the rest is looked up
 * anew at every use, and each generated file's content is a new inode.
 */
static double entry_timeout(struct fs *fs, uint64_t seq, const char *path,
			    const struct fs_res *r)
{
	if (fs_is_meta(path) && r->kind != FS_ENTRY)
		return 0;
	return timeout_for(fs, seq);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *dir = fs_inode_of(fs, parent);
	uint64_t seq = fs_seq_begin(fs);
	char path[FS_PATH_MAX];

	fs_count(fs, FS_OP_LOOKUP);
	if (dir->type != SNAP_DIR) {
		reply_err(req, FS_OP_LOOKUP, ENOTDIR);
		return;
	}
	if (fs_path_join(path, sizeof(path), dir->path, name)) {
		reply_err(req, FS_OP_LOOKUP, ENAMETOOLONG);
		return;
	}
	if (!fs_fetch_defer(fs, req, path, seq))
		fs_lookup_reply(fs, req, path, seq);
}

void fs_lookup_reply(struct fs *fs, fuse_req_t req, const char *path,
		     uint64_t seq)
{
	struct fs_inode *ino;
	struct fuse_entry_param e;
	struct fs_res r;

	fs_resolve(fs, path, &r);
	if (r.kind == FS_NONE) {
		/* a negative entry, cached like the others: swaps drop it */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = entry_timeout(fs, seq, path, &r);
		fuse_reply_entry(req, &e);
		return;
	}
	ino = fs_inode_get(fs, path, &r);
	if (!ino) {
		fs_res_drop(&r);
		reply_err(req, FS_OP_LOOKUP, ENOMEM);
		return;
	}
	entry_fill(fs, ino, &r, entry_timeout(fs, seq, path, &r), &e);
	fs_res_drop(&r);
	if (fuse_reply_entry(req, &e) == -ENOENT)
		fs_inode_forget(fs, ino, 1); /* interrupted: never counted */
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fs *fs = fs_of(req);

	fs_count(fs, FS_OP_FORGET);
	fs_inode_forget(fs, fs_inode_of(fs, ino), nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);

	fs_count(fs, FS_OP_FORGET);
	for (size_t i = 0; i < count; i++)
		fs_inode_forget(fs, fs_inode_of(fs, forgets[i].ino),
				forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	uint64_t seq = fs_seq_begin(fs);
	struct stat st;
	int rc;

	(void)fi;
	fs_count(fs, FS_OP_GETATTR);
	rc = fs_getattr(fs, fs_inode_of(fs, ino), &st);
	if (rc < 0)
		reply_err(req, FS_OP_GETATTR, -rc);
	else /* not kept meanwhile a swap runs (swap.c), or under .dagfs */
		fuse_reply_attr(req, &st, rc ? 0 : timeout_for(fs, seq));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *i = fs_inode_of(fs, ino);
	struct snap *s;

	fs_count(fs, FS_OP_READLINK);
	if (i->type != SNAP_LINK) {
		reply_err(req, FS_OP_READLINK, EINVAL);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	s = snap_ref(i->snap);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_readlink(req, s->e[i->idx].target);
	snap_unref(s);
}

/*
 * Opens cost no request at all: the first one answers ENOSYS, which the
 * kernel takes as "open in the kernel, keep the page cache" for every
 * later open. Nothing is lost: an inode's bytes never change, and the
 * kernel holds the inode of an open file, so its fs_inode, the snapshot
 * it references (pinned in the store) and the blob outlive any swap. A
 * kernel without zero-message opens gets an empty handle instead.
 */
static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *i = fs_inode_of(fs, ino);

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		refuse(req);
		return;
	}
	fs_count(fs, FS_OP_OPEN);
	if (i->type != SNAP_FILE) {
		reply_err(req, FS_OP_OPEN, i->type == SNAP_DIR ? EISDIR : ELOOP);
		return;
	}
	if (fs->no_open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->keep_cache = 1;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

/*
 * A descriptor on the blob of file @ino. The first open verifies the bytes
 * (store_open_blob); later ones, for the same inode, trust that check.
 */
static int blob_open(struct fs *fs, struct fs_inode *ino)
{
	char path[PATH_MAX];
	struct dhash hash;
	bool verified;
	int fd;

	pthread_mutex_lock(&fs->lock);
	hash = ino->snap->e[ino->idx].hash;
	verified = ino->verified;
	pthread_mutex_unlock(&fs->lock);
	if (verified) {
		store_blob_path(fs->st, &hash, path, sizeof(path));
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0)
			return fd;
	}
	fd = store_open_blob(fs->st, &hash);
	if (fd >= 0) {
		pthread_mutex_lock(&fs->lock);
		ino->verified = true;
		pthread_mutex_unlock(&fs->lock);
	}
	return fd;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *i = fs_inode_of(fs, ino);
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	int fd;

	(void)fi;
	fs_count(fs, FS_OP_READ);
	if (i->type != SNAP_FILE) {
		reply_err(req, FS_OP_READ, EISDIR);
		return;
	}
	if (i->slot == FS_SLOT_META) {
		/* generated under .dagfs: immutable bytes of the inode */
		off = off < (off_t)i->len ? off : (off_t)i->len;
		fuse_reply_buf(req, i->data + off,
			       size < i->len - off ? size : i->len - off);
		return;
	}
	fd = blob_open(fs, i);
	if (fd < 0) {
		log_debug("fs", "read: blob: %s", strerror(-fd));
		reply_err(req, FS_OP_READ, EIO);
		return;
	}
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = fd;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
	close(fd);
}

/* ---------------------------------------------------------- directories */

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
static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);

	fs_count(fs, FS_OP_OPENDIR);
	if (fs_inode_of(fs, ino)->type != SNAP_DIR) {
		reply_err(req, FS_OP_OPENDIR, ENOTDIR);
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

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
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
	l->link = l->plus && l->res.gen == __atomic_load_n(&l->fs->gen,
							     __ATOMIC_ACQUIRE) &&
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
		r->idx = fs_res_entry(&l->res)->child_first + (uint32_t)(pos - 2);
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
		entry_fill(l->fs, ino, r, entry_timeout(l->fs, l->seq, path, r),
			   e);
		l->counted[l->ncounted++] = ino;
		return;
	}
	e->attr.st_ino = fs_key(path, r);
	se = r->kind == FS_ENTRY ? fs_res_entry(r) : NULL;
	e->attr.st_mode = r->kind == FS_META_FILE	      ? S_IFREG :
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

	need = l->plus ? fuse_add_direntry_plus(l->req, NULL, 0, name, NULL, 0) :
			 fuse_add_direntry(l->req, NULL, 0, name, NULL, 0);
	if (need > room || r.kind == FS_NONE) {
		if (owned)
			fs_res_drop(&r);
		return need <= room; /* a made-up child vanished: skip it */
	}
	listing_entry(l, pos, path, &r, &e);
	if (owned)
		fs_res_drop(&r);
	if (l->plus)
		fuse_add_direntry_plus(l->req, l->buf + l->used, room, name,
				       &e, listing_off(l, pos + 1));
	else
		fuse_add_direntry(l->req, l->buf + l->used, room, name,
				  &e.attr, listing_off(l, pos + 1));
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
	fs_past_expire(fs);
	l.buf = malloc(size + 1);
	l.counted = malloc((size / min + 1) * sizeof(*l.counted));
	rc = l.buf && l.counted ? listing_open(&l, off) : -ENOMEM;
	if (rc == -ESTALE) {
		/* begun in a view that is gone: end it, never mix */
		log_debug("fs", "readdir of /%s: its view is gone",
			  l.dir->path);
	} else if (rc) {
		reply_err(req, FS_OP_READDIR, -rc);
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

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	dir_read(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	dir_read(req, ino, size, off, fi, true);
}

/* ------------------------------------------------------------- the rest */

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct statvfs sv = { .f_bsize = 4096, .f_frsize = 4096,
			      .f_namemax = NAME_MAX };

	(void)ino;
	fs_count(fs, FS_OP_STATFS);
	for (int i = 0, n = fs_nslots(fs); i < n; i++) {
		struct snap *s;

		if (!fs_slot_live(fs, i))
			continue;
		s = fs_slot_snap(fs, i, NULL);

		for (uint32_t j = 0; s && j < s->n; j++)
			sv.f_blocks += (s->e[j].size + 4095) / 4096;
		sv.f_files += s ? s->n : 1;
		snap_unref(s);
	}
	fuse_reply_statfs(req, &sv);
}

/* ------------------------------------------------- extended attributes */

/* The user.dagfs.* values of an inode; "" when it has none. */
struct xattrs {
	char source[256];
	char rev[256];
	char hash[DHASH_HEX];
};

static const char *const xattr_names[] = {
	"user.dagfs.source", "user.dagfs.revision", "user.dagfs.hash",
};

static void xattrs_fill(struct xattrs *x, const struct snap *s,
			const struct snap_entry *e)
{
	snprintf(x->source, sizeof(x->source), "%s", s->source);
	snprintf(x->rev, sizeof(x->rev), "%s", s->rev);
	if (e->type == SNAP_FILE)
		dhash_hex(x->hash, &e->hash);
}

/*
 * Entries of a snapshot (the current ones and pinned revisions) have a
 * source and a revision, files a hash too; a slot without a snapshot yet
 * has its source only; made-up directories and .dagfs have none.
 */
static void xattrs_of(struct fs *fs, const struct fs_inode *ino,
		      struct xattrs *x)
{
	struct fs_res r;
	struct snap *s;
	uint32_t idx;

	memset(x, 0, sizeof(*x));
	if (ino->type != SNAP_DIR) {
		if (ino->slot == FS_SLOT_META)
			return;
		pthread_mutex_lock(&fs->lock);
		s = snap_ref(ino->snap);
		idx = ino->idx;
		pthread_mutex_unlock(&fs->lock);
		xattrs_fill(x, s, &s->e[idx]);
		snap_unref(s);
		return;
	}
	fs_resolve(fs, ino->path, &r);
	if (r.kind == FS_ENTRY)
		xattrs_fill(x, r.snap, fs_res_entry(&r));
	else if (r.kind == FS_EMPTY)
		snprintf(x->source, sizeof(x->source), "%s",
			 fs->slots[r.slot].source);
	fs_res_drop(&r);
}

static const char *xattr_value(const struct xattrs *x, int i)
{
	return i == 0 ? x->source : i == 1 ? x->rev : x->hash;
}

/* Reply @len bytes of @buf, or their size to a size query (@size 0). */
static void reply_xattr(fuse_req_t req, enum fs_op op, const char *buf,
			size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		reply_err(req, op, ERANGE);
	else
		fuse_reply_buf(req, buf, len);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct fs *fs = fs_of(req);
	const char *v = NULL;
	struct xattrs x;

	fs_count(fs, FS_OP_GETXATTR);
	if (strncmp(name, "user.dagfs.", 11)) {
		fuse_reply_err(req, ENODATA); /* not ours: not an error */
		return;
	}
	xattrs_of(fs, fs_inode_of(fs, ino), &x);
	for (int i = 0; i < 3 && !v; i++)
		if (!strcmp(name, xattr_names[i]))
			v = xattr_value(&x, i);
	if (!v || !*v)
		fuse_reply_err(req, ENODATA);
	else
		reply_xattr(req, FS_OP_GETXATTR, v, strlen(v), size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs *fs = fs_of(req);
	char list[64];
	size_t len = 0;
	struct xattrs x;

	fs_count(fs, FS_OP_LISTXATTR);
	xattrs_of(fs, fs_inode_of(fs, ino), &x);
	for (int i = 0; i < 3; i++) {
		if (!*xattr_value(&x, i))
			continue;
		memcpy(list + len, xattr_names[i], strlen(xattr_names[i]) + 1);
		len += strlen(xattr_names[i]) + 1;
	}
	reply_xattr(req, FS_OP_LISTXATTR, list, len, size);
}

/*
 * Python's open() asks isatty() (TCGETS) of every file it opens, and the
 * kernel cannot cache a "no": answer at once, as a regular file would.
 */
static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
		     void *arg, struct fuse_file_info *fi, unsigned flags,
		     const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	(void)ino;
	(void)cmd;
	(void)arg;
	(void)fi;
	(void)flags;
	(void)in_buf;
	(void)in_bufsz;
	(void)out_bufsz;
	fs_count(fs_of(req), FS_OP_IOCTL);
	fuse_reply_err(req, ENOTTY);
}

/*
 * Nothing is ever written, so a close has nothing to flush: ENOSYS makes
 * the kernel stop sending FLUSH (fc->no_flush), as libfuse's own answer
 * without a handler would; it is only counted.
 */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fs_count(fs_of(req), FS_OP_FLUSH);
	fuse_reply_err(req, ENOSYS);
}

/* A kernel without zero-message opens releases the empty handles. */
static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fs_count(fs_of(req), FS_OP_RELEASE);
	fuse_reply_err(req, 0);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;
	unsigned want = FUSE_CAP_READDIRPLUS | FUSE_CAP_CACHE_SYMLINKS |
			FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_SPLICE_WRITE |
			FUSE_CAP_SPLICE_MOVE;

	/* auto_inval_data makes the kernel refresh a directory's mtime
	 * before it trusts its readdir cache (swap.c relies on it). */
	conn->want |= conn->capable & want;
	fs->no_open = !!(conn->capable & FUSE_CAP_NO_OPEN_SUPPORT);
	fs->no_opendir = !!(conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT);
	conn->want &= ~FUSE_CAP_EXPORT_SUPPORT;
	/* The kernel offers its largest readahead (its bdi default); DAG
	 * files are small and read whole, so keep it. */
	log_info("fs", "serving %s (FUSE %u.%u, readdirplus %s, "
		 "zero-message open %s, opendir %s, readahead %u KiB)",
		 fs->mountpoint ? fs->mountpoint : "?", conn->proto_major,
		 conn->proto_minor,
		 conn->want & FUSE_CAP_READDIRPLUS ? "on" : "off",
		 fs->no_open ? "on" : "off", fs->no_opendir ? "on" : "off",
		 conn->max_readahead / 1024);
}

/* Write-type operations: the mount is read-only. */
#define EROFS_OP(name, ...)                                                    \
	static void name(fuse_req_t req, __VA_ARGS__)                          \
	{                                                                      \
		refuse(req);                                                   \
	}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
EROFS_OP(op_setattr, fuse_ino_t i, struct stat *a, int s,
	 struct fuse_file_info *f)
EROFS_OP(op_mknod, fuse_ino_t p, const char *n, mode_t m, dev_t d)
EROFS_OP(op_mkdir, fuse_ino_t p, const char *n, mode_t m)
EROFS_OP(op_unlink, fuse_ino_t p, const char *n)
EROFS_OP(op_rmdir, fuse_ino_t p, const char *n)
EROFS_OP(op_symlink, const char *l, fuse_ino_t p, const char *n)
EROFS_OP(op_rename, fuse_ino_t p, const char *n, fuse_ino_t np,
	 const char *nn, unsigned f)
EROFS_OP(op_link, fuse_ino_t i, fuse_ino_t np, const char *nn)
EROFS_OP(op_write, fuse_ino_t i, const char *b, size_t s, off_t o,
	 struct fuse_file_info *f)
EROFS_OP(op_create, fuse_ino_t p, const char *n, mode_t m,
	 struct fuse_file_info *f)
EROFS_OP(op_setxattr, fuse_ino_t i, const char *n, const char *v, size_t s,
	 int f)
EROFS_OP(op_removexattr, fuse_ino_t i, const char *n)
EROFS_OP(op_fallocate, fuse_ino_t i, int m, off_t o, off_t l,
	 struct fuse_file_info *f)
EROFS_OP(op_copy_file_range, fuse_ino_t ii, off_t oi,
	 struct fuse_file_info *fi, fuse_ino_t io, off_t oo,
	 struct fuse_file_info *fo, size_t l, int f)
#pragma GCC diagnostic pop

const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.open = op_open,
	.read = op_read,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.ioctl = op_ioctl,
	.flush = op_flush,
	.release = op_release,
	.setattr = op_setattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.write = op_write,
	.create = op_create,
	.setxattr = op_setxattr,
	.removexattr = op_removexattr,
	.fallocate = op_fallocate,
	.copy_file_range = op_copy_file_range,
};
