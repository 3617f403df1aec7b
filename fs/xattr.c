/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xattr.c - the user.dagfs.* extended attributes of every entry: the
 * source, the revision and, for files, the content hash. Other names are
 * not ours (ENODATA); setting or removing any answers EROFS (ops.c).
 *
 * Each handler replies exactly once; nothing here logs.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fs_i.h"

/* The user.dagfs.* values of an inode; "" when it has none. */
struct xattrs {
	char source[256];
	char rev[256];
	char hash[DHASH_HEX];
};

static const char *const xattr_names[] = {
	"user.dagfs.source",
	"user.dagfs.revision",
	"user.dagfs.hash",
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
		fs_reply_err(req, op, ERANGE);
	else
		fuse_reply_buf(req, buf, len);
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
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

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
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
