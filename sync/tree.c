/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tree.c - tree ids and their manifests: which revision of which source
 * sat where when a whole view was composed. A DAG bundle versioned by the
 * whole tree records the id; the manifest, kept in <cache>/trees/<id>,
 * lets any later lookup serve exactly that composition again.
 *
 * The id is the XXH3-128 of the canonical lines "NAME\tAT\tREV\n" sorted
 * by name, so two daemons composing the same revisions agree on it and a
 * manifest copied from elsewhere is checked against its name. The
 * manifest adds each member's snapshot id as a hint (snapshot ids differ
 * between daemons; the hint lets this one serve the very snapshot it
 * composed). It never decides what is retained: trees hold no snapshot.
 *
 * Format: "dagfs-tree 1\n", then "NAME\tAT\tREV\tSNAPID\n" per member in
 * name order, SNAPID "-" when unknown.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "sync.h"

#define TREE_MAGIC "dagfs-tree 1\n"
#define TREE_FILE_MAX (1 << 20)

static int member_cmp(const void *a, const void *b)
{
	return strcmp(((const struct tree_member *)a)->source,
		      ((const struct tree_member *)b)->source);
}

/* A field holds no tab, newline or other control character. */
static bool field_ok(const char *s, size_t max)
{
	size_t n = 0;

	for (; *s; s++, n++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return n <= max;
}

static bool member_ok(const struct tree_member *m)
{
	size_t at = strlen(m->at);

	return *m->source && field_ok(m->source, NAME_MAX) &&
	       field_ok(m->at, PATH_MAX) &&
	       (!at || !snap_path_check(m->at, at)) && field_ok(m->rev, 255) &&
	       (!*m->snap_id || strlen(m->snap_id) == DHASH_HEX - 1);
}

/* Id of members sorted by name; -EINVAL if two share a name. */
static int id_sorted(char out[DHASH_HEX], const struct tree_member *m, size_t n)
{
	XXH3_state_t *xs = XXH3_createState();
	XXH128_hash_t x;
	struct dhash h;

	if (!xs)
		return -ENOMEM;
	XXH3_128bits_reset(xs);
	for (size_t i = 0; i < n; i++) {
		if (!member_ok(&m[i]) ||
		    (i && strcmp(m[i - 1].source, m[i].source) >= 0)) {
			XXH3_freeState(xs);
			return -EINVAL;
		}
		XXH3_128bits_update(xs, m[i].source, strlen(m[i].source));
		XXH3_128bits_update(xs, "\t", 1);
		XXH3_128bits_update(xs, m[i].at, strlen(m[i].at));
		XXH3_128bits_update(xs, "\t", 1);
		XXH3_128bits_update(xs, m[i].rev, strlen(m[i].rev));
		XXH3_128bits_update(xs, "\n", 1);
	}
	x = XXH3_128bits_digest(xs);
	XXH3_freeState(xs);
	XXH128_canonicalFromHash((XXH128_canonical_t *)h.b, x);
	dhash_hex(out, &h);
	return 0;
}

/* A sorted copy of @m (the array only: strings stay borrowed). */
static struct tree_member *sorted_copy(const struct tree_member *m, size_t n)
{
	struct tree_member *v = malloc((n ? n : 1) * sizeof(*v));

	if (!v)
		return NULL;
	if (n) {
		memcpy(v, m, n * sizeof(*v));
		qsort(v, n, sizeof(*v), member_cmp);
	}
	return v;
}

int tree_id(char out[DHASH_HEX], const struct tree_member *m, size_t n)
{
	struct tree_member *v = sorted_copy(m, n);
	int rc;

	if (!v)
		return -ENOMEM;
	rc = id_sorted(out, v, n);
	free(v);
	return rc;
}

int tree_encode(const struct tree_member *m, size_t n, char **out, size_t *len)
{
	struct tree_member *v = sorted_copy(m, n);
	char id[DHASH_HEX];
	FILE *f;
	int rc;

	if (!v)
		return -ENOMEM;
	rc = id_sorted(id, v, n);
	f = rc ? NULL : open_memstream(out, len);
	if (!rc && !f)
		rc = -ENOMEM;
	if (f) {
		fputs(TREE_MAGIC, f);
		for (size_t i = 0; i < n; i++)
			fprintf(f, "%s\t%s\t%s\t%s\n", v[i].source, v[i].at,
				v[i].rev, *v[i].snap_id ? v[i].snap_id : "-");
		if (fclose(f))
			rc = -ENOMEM;
		else if (rc)
			free(*out);
	}
	free(v);
	return rc;
}

void tree_free(struct tree *t)
{
	if (!t)
		return;
	free(t->m);
	free(t->text);
	free(t);
}

/* Split line @l (NUL-terminated, no newline) into its four fields. */
static int line_parse(char *l, struct tree_member *m)
{
	char *f[4];

	for (int i = 0; i < 4; i++) {
		f[i] = l;
		l = strchr(l, '\t');
		if (i < 3 && !l)
			return -EBADMSG;
		if (l)
			*l++ = '\0';
	}
	if (l)
		return -EBADMSG; /* a fifth field */
	m->source = f[0];
	m->at = f[1];
	m->rev = f[2];
	m->snap_id = !strcmp(f[3], "-") ? "" : f[3];
	if (strcmp(f[3], "-")) { /* "-" or an id, nothing else */
		struct dhash h;

		if (dhash_parse(&h, m->snap_id))
			return -EBADMSG;
	}
	return 0;
}

int tree_decode(struct tree **out, const char *want_id, const void *buf,
		size_t len)
{
	struct tree *t = calloc(1, sizeof(*t));
	size_t ml = strlen(TREE_MAGIC), cap = 0;
	char *p, *nl;
	int rc = -EBADMSG;

	if (!t || !(t->text = malloc(len + 1))) {
		free(t);
		return -ENOMEM;
	}
	memcpy(t->text, buf, len);
	t->text[len] = '\0';
	if (len < ml || memcmp(t->text, TREE_MAGIC, ml) ||
	    strlen(t->text) != len || (len > ml && t->text[len - 1] != '\n'))
		goto err;
	for (p = t->text + ml; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		*nl = '\0';
		if (t->n == cap) {
			struct tree_member *g;

			cap = cap ? 2 * cap : 8;
			g = realloc(t->m, cap * sizeof(*g));
			if (!g) {
				rc = -ENOMEM;
				goto err;
			}
			t->m = g;
		}
		if (line_parse(p, &t->m[t->n]))
			goto err;
		t->n++;
	}
	rc = id_sorted(t->id, t->m, t->n);
	if (rc == -EINVAL || (!rc && want_id && strcmp(t->id, want_id)))
		rc = -EBADMSG;
	if (rc)
		goto err;
	*out = t;
	return 0;
err:
	tree_free(t);
	return rc;
}

/* ----------------------------------------------------------- the cache */

static int trees_dir(struct store *st, char *buf, size_t len)
{
	return path_fmt(buf, len, "%s/trees", store_dir(st));
}

static int id_ok(const char *id)
{
	struct dhash h;

	return dhash_parse(&h, id);
}

int tree_load(struct store *st, const char *id, struct tree **out)
{
	char path[PATH_MAX];
	struct stat sb;
	char *buf;
	ssize_t n;
	int fd, rc;

	if (id_ok(id) || trees_dir(st, path, sizeof(path)) ||
	    path_fmt(path + strlen(path), sizeof(path) - strlen(path), "/%s",
		     id))
		return -ENOENT;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) || sb.st_size > TREE_FILE_MAX) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc((size_t)sb.st_size + 1);
	n = buf ? pread(fd, buf, (size_t)sb.st_size, 0) : -1;
	close(fd);
	if (n != sb.st_size) {
		free(buf);
		return buf ? -EIO : -ENOMEM;
	}
	rc = tree_decode(out, id, buf, (size_t)n);
	free(buf);
	return rc;
}

struct tree_ent {
	char id[DHASH_HEX];
	int64_t mtime_ns;
};

static int ent_cmp(const void *a, const void *b)
{
	const struct tree_ent *x = a, *y = b;

	return x->mtime_ns < y->mtime_ns ? 1 :
	       x->mtime_ns > y->mtime_ns ? -1 :
					   strcmp(x->id, y->id);
}

/* Manifests in the cache, newest first; *@out malloc'd. Count or -errno. */
static int list_ents(struct store *st, struct tree_ent **out)
{
	char path[PATH_MAX];
	struct tree_ent *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	if (trees_dir(st, path, sizeof(path)))
		return -ENAMETOOLONG;
	d = opendir(path);
	if (!d) {
		*out = NULL;
		return errno == ENOENT ? 0 : -errno;
	}
	while ((de = readdir(d))) {
		struct stat sb;

		if (id_ok(de->d_name) ||
		    fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(sb.st_mode))
			continue;
		if (n == cap) {
			struct tree_ent *g;

			cap = cap ? 2 * cap : 64;
			g = realloc(v, cap * sizeof(*g));
			if (!g) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = g;
		}
		memcpy(v[n].id, de->d_name, DHASH_HEX);
		v[n].mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 +
				sb.st_mtim.tv_nsec;
		n++;
	}
	closedir(d);
	qsort(v, n, sizeof(*v), ent_cmp);
	*out = v;
	return (int)n;
}

int tree_list(struct store *st, char ***out)
{
	struct tree_ent *e;
	int n = list_ents(st, &e);
	char **v;

	if (n < 0)
		return n;
	v = calloc(n ? n : 1, sizeof(*v));
	for (int i = 0; v && i < n; i++) {
		if (!(v[i] = strdup(e[i].id))) {
			while (i--)
				free(v[i]);
			free(v);
			v = NULL;
		}
	}
	free(e);
	if (!v)
		return -ENOMEM;
	*out = v;
	return n;
}

/* Keep the newest @keep manifests (and @id, just recorded). */
static void trim(struct store *st, const char *id, unsigned keep)
{
	char dir[PATH_MAX];
	struct tree_ent *e;
	int n = list_ents(st, &e);

	if (n <= (int)keep || trees_dir(st, dir, sizeof(dir))) {
		free(n > 0 ? e : NULL);
		return;
	}
	for (int i = (int)keep; i < n; i++) {
		char p[PATH_MAX];

		if (strcmp(e[i].id, id) &&
		    !path_fmt(p, sizeof(p), "%s/%s", dir, e[i].id))
			unlink(p);
	}
	free(e);
}

/* True if @dir/@id holds exactly @buf; then its mtime is set to now. */
static bool same_file(const char *dir, const char *id, const void *buf,
		      size_t len)
{
	char p[PATH_MAX], *have;
	bool same = false;
	ssize_t n;
	int fd;

	if (path_fmt(p, sizeof(p), "%s/%s", dir, id))
		return false;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	have = malloc(len + 1);
	n = have ? pread(fd, have, len + 1, 0) : -1;
	close(fd);
	same = n == (ssize_t)len && !memcmp(have, buf, len) &&
	       !utimensat(AT_FDCWD, p, NULL, 0);
	free(have);
	return same;
}

int tree_put(struct store *st, const char *id, const void *buf, size_t len,
	     unsigned keep)
{
	char dir[PATH_MAX], tmp[PATH_MAX];
	struct tree *t;
	int rc = tree_decode(&t, id, buf, len);

	if (rc)
		return rc;
	tree_free(t);
	if (trees_dir(st, dir, sizeof(dir)) ||
	    path_fmt(tmp, sizeof(tmp), "%s/tmp", store_dir(st)))
		return -ENAMETOOLONG;
	if (mkdir(dir, 0755) && errno != EEXIST)
		return -errno;
	/* the same bytes already there: make them the newest (trim order)
	 * rather than write them again */
	if (same_file(dir, id, buf, len)) {
		trim(st, id, keep);
		return 0;
	}
	rc = pub_write_file(dir, tmp, id, buf, len);
	if (!rc)
		trim(st, id, keep);
	return rc;
}

int tree_record(struct store *st, const struct tree_member *m, size_t n,
		unsigned keep, char id_out[DHASH_HEX])
{
	char *buf = NULL;
	size_t len = 0;
	int rc = tree_encode(m, n, &buf, &len);

	if (!rc)
		rc = tree_id(id_out, m, n);
	if (!rc)
		rc = tree_put(st, id_out, buf, len, keep ? keep : 1);
	free(buf);
	return rc;
}

/* --------------------------------------------------------- status JSON */

static void json_time(FILE *f, int64_t ns)
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;
	char buf[32];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(f, "\"%s.%03dZ\"", buf, (int)(ns % 1000000000 / 1000000));
}

/* @s as a JSON string, or null. */
static void str_or_null(FILE *f, const char *s)
{
	if (s)
		json_put_str(f, s);
	else
		fputs("null", f);
}

void tree_json_put(FILE *f, const char *id, const struct tree_json_src *v,
		   size_t n)
{
	fputs("{\"tree\": ", f);
	str_or_null(f, id && *id ? id : NULL);
	fputs(", \"sources\": {", f);
	for (size_t i = 0; i < n; i++) {
		const struct snap *s = v[i].snap;

		fputs(i ? ",\n  " : "\n  ", f);
		json_put_str(f, v[i].source);
		fputs(": {\"at\": ", f);
		json_put_str(f, v[i].at);
		if (v[i].type) {
			fputs(", \"type\": ", f);
			json_put_str(f, v[i].type);
			fprintf(f, ", \"keep\": %u", v[i].keep);
		}
		if (v[i].url) {
			fputs(", \"url\": ", f);
			json_put_str(f, v[i].url);
			fputs(", \"ref\": ", f);
			str_or_null(f, v[i].ref);
		}
		fputs(", \"revision\": ", f);
		str_or_null(f, s ? s->rev : NULL);
		fputs(", \"published\": ", f);
		if (s)
			json_time(f, s->published_ns);
		else
			fputs("null", f);
		fprintf(f, ", \"published_ns\": %lld}",
			s ? (long long)s->published_ns : 0LL);
	}
	fputs("\n}}\n", f);
}
