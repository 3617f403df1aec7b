/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ops.c - the FUSE low-level handler table and the handlers on single
 * entries: lookup, forget, attributes, links, open and read of blobs (and
 * of the files generated under .dagfs), statfs, and EROFS for every write.
 * Directory listings are in listing.c, the user.dagfs.* extended
 * attributes in xattr.c. Every request is counted (fs_get_stats).
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
	[FS_OP_LOOKUP] = "lookup",     [FS_OP_GETATTR] = "getattr",
	[FS_OP_READLINK] = "readlink", [FS_OP_OPEN] = "open",
	[FS_OP_READ] = "read",	       [FS_OP_OPENDIR] = "opendir",
	[FS_OP_READDIR] = "readdir",   [FS_OP_STATFS] = "statfs",
	[FS_OP_GETXATTR] = "getxattr", [FS_OP_LISTXATTR] = "listxattr",
	[FS_OP_IOCTL] = "ioctl",       [FS_OP_RELEASEDIR] = "releasedir",
	[FS_OP_RELEASE] = "release",   [FS_OP_FORGET] = "forget",
	[FS_OP_FLUSH] = "flush",       [FS_OP_WRITE_REFUSED] = "write_refused",
	[FS_OP_OTHER] = "other",
};

void fs_get_stats(struct fs *fs, struct fs_stats *out)
{
	for (int i = 0; i < FS_OP_COUNT; i++) {
		out->ops[i] = __atomic_load_n(&fs->stats.ops[i],
					      __ATOMIC_RELAXED);
		out->errors[i] = __atomic_load_n(&fs->stats.errors[i],
						 __ATOMIC_RELAXED);
	}
}

void fs_reply_err(fuse_req_t req, enum fs_op op, int err)
{
	struct fs *fs = fs_of(req);

	__atomic_fetch_add(&fs->stats.errors[op], 1, __ATOMIC_RELAXED);
	fuse_reply_err(req, err);
}

/* Refuse a write-type request: EROFS, counted as FS_OP_WRITE_REFUSED. */
static void refuse(fuse_req_t req)
{
	fs_count(fs_of(req), FS_OP_WRITE_REFUSED);
	fs_reply_err(req, FS_OP_WRITE_REFUSED, EROFS);
}

/*
 * How long the kernel may keep what a request that began at swap sequence
 * @seq answers: long, unless a swap ran meanwhile (swap.c).
 */
static double timeout_for(struct fs *fs, uint64_t seq)
{
	return fs_seq_stable(fs, seq) ? FS_TIMEOUT : 0;
}

void fs_entry_fill(struct fs *fs, struct fs_inode *ino, const struct fs_res *r,
		   double timeout, struct fuse_entry_param *e)
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

double fs_entry_timeout(struct fs *fs, uint64_t seq, const char *path,
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
		fs_reply_err(req, FS_OP_LOOKUP, ENOTDIR);
		return;
	}
	if (fs_path_join(path, sizeof(path), dir->path, name)) {
		fs_reply_err(req, FS_OP_LOOKUP, ENAMETOOLONG);
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
		e.entry_timeout = fs_entry_timeout(fs, seq, path, &r);
		fuse_reply_entry(req, &e);
		return;
	}
	ino = fs_inode_get(fs, path, &r);
	if (!ino) {
		fs_res_drop(&r);
		fs_reply_err(req, FS_OP_LOOKUP, ENOMEM);
		return;
	}
	fs_entry_fill(fs, ino, &r, fs_entry_timeout(fs, seq, path, &r), &e);
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
		fs_reply_err(req, FS_OP_GETATTR, -rc);
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
		fs_reply_err(req, FS_OP_READLINK, EINVAL);
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
		fs_reply_err(req, FS_OP_OPEN,
			     i->type == SNAP_DIR ? EISDIR : ELOOP);
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
		fs_reply_err(req, FS_OP_READ, EISDIR);
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
		fs_reply_err(req, FS_OP_READ, EIO);
		return;
	}
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = fd;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
	close(fd);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct statvfs sv = { .f_bsize = 4096,
			      .f_frsize = 4096,
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
	log_info("fs",
		 "serving %s (FUSE %u.%u, readdirplus %s, "
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
EROFS_OP(op_rename, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn,
	 unsigned f)
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
EROFS_OP(op_copy_file_range, fuse_ino_t ii, off_t oi, struct fuse_file_info *fi,
	 fuse_ino_t io, off_t oo, struct fuse_file_info *fo, size_t l, int f)
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
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.readdirplus = fs_op_readdirplus,
	.releasedir = fs_op_releasedir,
	.statfs = op_statfs,
	.getxattr = fs_op_getxattr,
	.listxattr = fs_op_listxattr,
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
