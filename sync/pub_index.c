/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pub_index.c - the revision index of a source: sources/<name>/index
 * lists its retained snapshots (id, publication time, revision), newest
 * first, rewritten by the publisher whenever the history changes. It
 * exists so that revision listings and lookups, which FUSE handlers make
 * (.dagfs/revs), never decode or stat anything but what they serve.
 *
 * Format: the line "dagfs-index 1", then one line per snapshot,
 * "<id> <published_ns> <rev>". It is derived data: a missing or malformed
 * index is rebuilt from the history, decoding what it does not know.
 * Writers hold the store's index lock and rebuild from the history as it
 * is then, so the last writer's index is never older than the history.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pub_i.h"

#define INDEX_MAGIC "dagfs-index 1\n"

static int src_dir(char *out, size_t len, struct store *st, const char *source)
{
	return path_fmt(out, len, "%s/sources/%s", store_dir(st), source);
}

/* One "<id> <published_ns> <rev>" line into @r; -EBADMSG if malformed. */
static int line_parse(struct pub_rev *r, char *line)
{
	char *sp = strchr(line, ' '), *end;
	struct dhash h;

	if (!sp || sp - line != DHASH_HEX - 1)
		return -EBADMSG;
	*sp = '\0';
	if (dhash_parse(&h, line))
		return -EBADMSG;
	memcpy(r->id, line, DHASH_HEX);
	errno = 0;
	r->published_ns = strtoll(sp + 1, &end, 10);
	if (errno || end == sp + 1 || *end != ' ' || !end[1] ||
	    strlen(end + 1) >= sizeof(r->rev))
		return -EBADMSG;
	strcpy(r->rev, end + 1);
	return 0;
}

/* Parse index @text (modified); the count, or -EBADMSG. */
static int index_parse(struct pub_rev **out, char *text)
{
	size_t n = 0, k = 0;
	struct pub_rev *v;
	char *p, *nl;

	if (strncmp(text, INDEX_MAGIC, strlen(INDEX_MAGIC)))
		return -EBADMSG;
	text += strlen(INDEX_MAGIC);
	for (p = text; (p = strchr(p, '\n')); p++)
		n++;
	if (n > 2 * HIST_MAX || (*text && text[strlen(text) - 1] != '\n'))
		return -EBADMSG;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (p = text; k < n; p = nl + 1, k++) {
		nl = strchr(p, '\n');
		*nl = '\0';
		if (line_parse(&v[k], p)) {
			free(v);
			return -EBADMSG;
		}
	}
	*out = v;
	return (int)n;
}

static int index_read(struct store *st, const char *source,
		      struct pub_rev **out)
{
	char path[PATH_MAX];
	size_t len;
	void *text;
	int rc;

	if (path_fmt(path, sizeof(path), "%s/sources/%s/index", store_dir(st),
		     source))
		return -ENAMETOOLONG;
	rc = pub_read_all(path, &text, &len);
	if (rc)
		return rc;
	rc = strlen(text) == len ? index_parse(out, text) : -EBADMSG;
	free(text);
	return rc;
}

static const struct pub_rev *rev_by_id(const struct pub_rev *v, int n,
				       const char *id)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(v[i].id, id))
			return &v[i];
	return NULL;
}

/* What the index says of history entry @id: from @old, @added, or the
 * snapshot itself. 0, or -errno if it is not intact (left out). */
static int entry_of(struct store *st, const char *source, const char *id,
		    const struct pub_rev *old, int nold,
		    const struct snap *added, struct pub_rev *out)
{
	const struct pub_rev *r = rev_by_id(old, nold, id);
	struct snap *s;
	int rc;

	if (r) {
		*out = *r;
		return 0;
	}
	if (added && !strcmp(added->id, id)) {
		rc = snprintf(out->rev, sizeof(out->rev), "%s", added->rev);
		out->published_ns = added->published_ns;
	} else {
		rc = pub_load_checked(st, source, id, &s);
		if (rc)
			return rc;
		rc = snprintf(out->rev, sizeof(out->rev), "%s", s->rev);
		out->published_ns = s->published_ns;
		snap_unref(s);
	}
	if (rc < 0 || (size_t)rc >= sizeof(out->rev) ||
	    strchr(out->rev, '\n')) {
		log_err(source,
			"snapshot %s: revision id too long to index; "
			"left out",
			id);
		return -ENAMETOOLONG;
	}
	memcpy(out->id, id, DHASH_HEX);
	return 0;
}

/* Write the index of the history @h[@n]; index lock held. */
static int index_write(struct store *st, const char *source, const char *srcdir,
		       const struct hist *h, int n, const struct snap *added)
{
	struct pub_rev *old = NULL, r;
	char tmpdir[PATH_MAX], *buf = NULL;
	int nold = index_read(st, source, &old), rc;
	size_t len = 0;
	FILE *f;

	if (nold < 0)
		nold = 0;
	f = open_memstream(&buf, &len);
	if (!f) {
		free(old);
		return -ENOMEM;
	}
	fputs(INDEX_MAGIC, f);
	for (int i = 0; i < n; i++) {
		bool dup = false;

		for (int j = 0; j < i && !dup; j++)
			dup = !strcmp(h[j].id, h[i].id);
		if (!dup &&
		    !entry_of(st, source, h[i].id, old, nold, added, &r))
			fprintf(f, "%s %" PRId64 " %s\n", r.id, r.published_ns,
				r.rev);
	}
	free(old);
	rc = fclose(f) ? -ENOMEM : 0;
	if (!rc)
		rc = path_fmt(tmpdir, sizeof(tmpdir), "%s/tmp", store_dir(st));
	if (!rc)
		rc = pub_write_file(srcdir, tmpdir, "index", buf, len);
	free(buf);
	return rc;
}

int pub_index_update(struct store *st, const char *source,
		     const struct snap *added)
{
	char srcdir[PATH_MAX];
	struct hist *h;
	int n, rc;

	if (src_dir(srcdir, sizeof(srcdir), st, source))
		return -ENAMETOOLONG;
	if (access(srcdir, F_OK))
		return -ENOENT; /* no history: nothing to index */
	h = malloc(2 * HIST_MAX * sizeof(*h));
	if (!h)
		return -ENOMEM;
	store_index_lock(st);
	n = pub_retained_list(srcdir, h);
	rc = index_write(st, source, srcdir, h, n, added);
	store_index_unlock(st);
	free(h);
	return rc;
}

int pub_revs(struct store *st, const char *source, struct pub_rev **out)
{
	int rc = index_read(st, source, out);

	if (rc == -ENOENT || rc == -EBADMSG) {
		rc = pub_index_update(st, source, NULL);
		if (!rc)
			rc = index_read(st, source, out);
	}
	if (rc == -ENOENT) { /* a source that never published */
		*out = calloc(1, sizeof(**out));
		rc = *out ? 0 : -ENOMEM;
	}
	return rc;
}

int pub_find_rev(struct store *st, const char *source, const char *rev,
		 struct snap **out)
{
	struct pub_rev *v;
	size_t rl = strlen(rev);
	int n = pub_revs(st, source, &v), rc = -ENOENT;

	if (n < 0)
		return n;
	for (int i = 0; i < n && rc; i++) {
		struct snap *s;

		if (strcmp(v[i].rev, rev) &&
		    (rl < 7 || strncmp(v[i].rev, rev, rl)))
			continue;
		if (pub_load(st, v[i].id, &s))
			continue; /* removed since: try an older match */
		if (!strcmp(s->source, source)) {
			*out = s;
			rc = 0;
		} else {
			snap_unref(s);
		}
	}
	free(v);
	return rc;
}

int pub_list_revs(struct store *st, const char *source, char ***out)
{
	struct pub_rev *v;
	int n = pub_revs(st, source, &v), k = 0;
	char **names;

	if (n < 0)
		return n;
	names = calloc(n ? n : 1, sizeof(*names));
	for (int i = 0; names && i < n; i++) {
		bool dup = false;

		for (int j = 0; j < k && !dup; j++)
			dup = !strcmp(names[j], v[i].rev);
		if (dup)
			continue;
		if (!(names[k] = strdup(v[i].rev))) {
			while (k--)
				free(names[k]);
			free(names);
			names = NULL;
			break;
		}
		k++;
	}
	free(v);
	if (!names)
		return -ENOMEM;
	*out = names;
	return k;
}
