/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3.c - the `s3` source: ListObjectsV2 (all pages, each parsed as it
 * arrives) signed with libcurl's AWS Signature V4, many GETs in flight
 * on one curl multi handle, each body streamed into the store and
 * checked (length, MD5 when the ETag is one, the GET's ETag against the
 * listing's). A key whose listing entry is unchanged is never fetched
 * again: a map key -> (ETag, size, hash) persists in <cache>/s3/<name>/map,
 * read only in a round whose listing changed (a poll that finds nothing
 * new keeps just the listing).
 *
 * Publication is all or nothing: one failed or changed object fails the
 * round and the last good revision stays. With marker=KEY, a revision is
 * taken only when the marker's ETag moves, and the listing is read after
 * the marker, so a pipeline that uploads everything and then the marker
 * switches every reader at once.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "s3_i.h"
#include "source_i.h"

struct s3_entry {	  /* one known key: the persistent map */
	char *key;	  /* one allocation: the key, then its ETag */
	const char *etag; /* in @key's allocation */
	uint64_t size;
	int64_t mtime_ns;
	struct dhash hash;
};

static const char *const s3_keys[] = {
	"endpoint",	"region",	 "addressing", "ca-file",
	"marker",	"profile",	 "parallel",   "credentials-file",
	"sts-endpoint", "imds-endpoint", NULL
};

/* ------------------------------------------------------------ listing */

/* A listing's revision hashes each object's key, ETag and size, in
 * order: the same bytes whether the objects are kept or not. */
static void listing_hash(XXH3_state_t *xs, const struct s3_page *pg,
			 size_t from)
{
	for (size_t i = from; i < pg->n; i++) {
		XXH3_128bits_update(xs, pg->v[i].key, pg->v[i].klen + 1);
		XXH3_128bits_update(xs, pg->v[i].etag,
				    strlen(pg->v[i].etag) + 1);
		XXH3_128bits_update(xs, &pg->v[i].size, sizeof(pg->v[i].size));
	}
}

static void listing_rev(char *out, size_t len, XXH3_state_t *xs)
{
	XXH128_canonical_t c;
	struct dhash h;
	char hex[DHASH_HEX];

	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(xs));
	memcpy(h.b, c.digest, 16);
	dhash_hex(hex, &h);
	snprintf(out, len, "s3-%s", hex);
}

/* A listing page parsed as it arrives (s3_get_stream's sink). */
struct page_sink {
	struct s3_page *pg;
	size_t first; /* pg->n before the page */
	struct s3_list_parser *lp;
};

static int page_write(void *ud, const char *data, size_t len)
{
	struct page_sink *ps = ud;

	return s3_list_feed(ps->lp, data, len, false);
}

static int page_reset(void *ud)
{
	struct page_sink *ps = ud;

	s3_list_end(ps->lp); /* an earlier attempt's, cut short */
	ps->pg->n = ps->first;
	return s3_list_begin(&ps->lp, ps->pg);
}

/* One page: the GET, parsed on the fly, its objects appended to @pg. */
static int list_page(struct source *src, const char *url, struct s3_page *pg,
		     char *err, size_t errlen)
{
	struct page_sink ps = { .pg = pg, .first = pg->n };
	const struct s3_sink sink = { page_write, page_reset, &ps };
	struct hdrs h;
	int rc;

	rc = s3_get_stream(src, url, "listing", S3_EMPTY_SHA256, &sink, &h, err,
			   errlen);
	if (!rc)
		rc = s3_list_feed(ps.lp, NULL, 0, true);
	if (rc == -EBADMSG)
		snprintf(err, errlen,
			 "%s: listing: malformed ListObjectsV2 response",
			 src->tag);
	if (rc)
		pg->n = ps.first;
	s3_list_end(ps.lp);
	return rc;
}

/*
 * Every page of the listing, its revision into @rev. With @keep, the
 * objects are appended to @pg; without, each page is hashed and dropped,
 * so a poll that finds nothing new holds one page (1,000 objects) however
 * large the bucket, and only a changed listing is read again to be kept.
 */
static int list_all(struct source *src, struct s3_page *pg, bool keep,
		    char *rev, size_t revlen, char *err, size_t errlen)
{
	struct s3_src *s = src->priv;
	char *url = malloc(8192), *query = malloc(8192);
	char etok[3072], epre[3072];
	XXH3_state_t *xs = XXH3_createState();
	int rc = 0;

	if (!url || !query || !xs) {
		rc = -ENOMEM;
		goto out;
	}
	XXH3_128bits_reset(xs);
	if (s3_uri_encode(epre, sizeof(epre), s->prefix, false)) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	do {
		size_t first = pg->n;

		/* canonical order: curl 7.88 signs the query as given */
		if (pg->next_token &&
		    s3_uri_encode(etok, sizeof(etok), pg->next_token, false)) {
			rc = -ENAMETOOLONG;
			break;
		}
		/* encoding-type=url: keys with control characters would
		 * otherwise make the XML itself invalid */
		rc = path_fmt(query, 8192,
			      "%s%s%sencoding-type=url&list-type=2&prefix=%s",
			      pg->next_token ? "continuation-token=" : "",
			      pg->next_token ? etok : "",
			      pg->next_token ? "&" : "", epre);
		if (!rc)
			rc = s3_make_url(s, url, 8192, NULL, query);
		if (!rc)
			rc = list_page(src, url, pg, err, errlen);
		if (!rc)
			listing_hash(xs, pg, first);
		if (!rc && !keep)
			s3_page_drop_objects(pg);
	} while (!rc && pg->truncated);
	if (!rc)
		listing_rev(rev, revlen, xs);
out:
	XXH3_freeState(xs);
	free(url);
	free(query);
	return rc;
}

/* ---------------------------------------------------------------- map */

static int map_cmp(const void *a, const void *b)
{
	return strcmp(((const struct s3_entry *)a)->key,
		      ((const struct s3_entry *)b)->key);
}

/* Entry of @key among the first @n (sorted) entries of @m, or NULL. */
static struct s3_entry *map_find_in(struct s3_entry *m, size_t n,
				    const char *key)
{
	struct s3_entry k = { .key = (char *)key };

	return n ? bsearch(&k, m, n, sizeof(k), map_cmp) : NULL;
}

static const struct s3_entry *map_find(const struct s3_src *s, const char *key)
{
	return map_find_in(s->map, s->nmap, key);
}

static void map_free(struct s3_entry *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i].key);
	free(m);
}

/* Fill @e from a key and an ETag, both copied; -ENOMEM. */
static int entry_set(struct s3_entry *e, const char *key, const char *etag,
		     uint64_t size, int64_t mtime_ns, const struct dhash *hash)
{
	size_t kl = strlen(key), el = strlen(etag);
	char *text = malloc(kl + 1 + el + 1);

	if (!text)
		return -ENOMEM;
	memcpy(text, key, kl + 1);
	memcpy(text + kl + 1, etag, el + 1);
	free(e->key);
	*e = (struct s3_entry){ .key = text,
				.etag = text + kl + 1,
				.size = size,
				.mtime_ns = mtime_ns,
				.hash = *hash };
	return 0;
}

/* Free the map: it is read again when a listing next changes. */
static void map_unload(struct s3_src *s)
{
	map_free(s->map, s->nmap);
	s->map = NULL;
	s->nmap = 0;
}

/* Lines "etag \t size \t mtime \t hash \t key"; bad lines are skipped:
 * the map only saves work, the store decides what is present. */
static void map_load(struct s3_src *s)
{
	FILE *f = fopen(s->map_path, "re");
	char *line = NULL;
	size_t cap = 0, mcap = 0;

	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		char etag[S3_ETAG_MAX + 1], hex[DHASH_HEX + 1], *key;
		struct s3_entry e = { 0 };
		unsigned long long size;
		struct dhash hash;
		long long mt;
		int off = 0;

		if (sscanf(line, "%79[^\t]\t%llu\t%lld\t%32s\t%n", etag, &size,
			   &mt, hex, &off) != 4 ||
		    !off || dhash_parse(&hash, hex))
			continue;
		key = line + off;
		key[strcspn(key, "\n")] = '\0';
		if (!*key || entry_set(&e, key, etag, size, mt, &hash))
			continue;
		if (s->nmap == mcap) {
			size_t c = s3_grown(mcap);
			struct s3_entry *v = realloc(s->map, c * sizeof(*v));

			if (!v) {
				free(e.key);
				break;
			}
			s->map = v;
			mcap = c;
		}
		s->map[s->nmap++] = e;
	}
	free(line);
	fclose(f);
	qsort(s->map, s->nmap, sizeof(*s->map), map_cmp);
}

static int map_save(struct s3_src *s)
{
	char tmp[PATH_MAX + 8];
	FILE *f;
	int rc = 0;

	if (path_fmt(tmp, sizeof(tmp), "%s.tmp", s->map_path))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	for (size_t i = 0; i < s->nmap; i++) {
		char hex[DHASH_HEX];

		dhash_hex(hex, &s->map[i].hash);
		fprintf(f, "%s\t%llu\t%lld\t%s\t%s\n", s->map[i].etag,
			(unsigned long long)s->map[i].size,
			(long long)s->map[i].mtime_ns, hex, s->map[i].key);
	}
	if (ferror(f))
		rc = -EIO;
	if (fclose(f) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, s->map_path))
		rc = -errno;
	return rc;
}

/* ------------------------------------------------------------- source */

static int creds_fresh(struct source *src, char *err, size_t errlen)
{
	struct s3_src *s = src->priv;
	char why[384];
	int rc;

	if (s->creds.access_key[0] &&
	    (!s->creds.expires_ns ||
	     now_ns() < s->creds.expires_ns - 300 * 1000000000LL))
		return 0;
	rc = s3_creds_get(&s->creds, &s->co, why, sizeof(why));
	if (rc) {
		snprintf(err, errlen, "%s: %s", src->tag, why);
		return rc;
	}
	log_info(src->tag, "credentials from the %s%s", s->creds.origin,
		 s->creds.expires_ns ? " (temporary)" : "");
	return 0;
}

/* Read the marker; 0 and the revision it names, or -errno. */
static int marker_rev(struct source *src, char *rev, size_t len, char *err,
		      size_t errlen)
{
	struct s3_src *s = src->priv;
	struct membody body = { 0 };
	char url[8192], key[2048];
	struct hdrs h;
	int rc;

	snprintf(key, sizeof(key), "%s%s", s->prefix, s->marker);
	rc = s3_make_url(s, url, sizeof(url), key, NULL);
	if (!rc)
		rc = s3_get_small(src, url, "marker", "UNSIGNED-PAYLOAD", &body,
				  &h, err, errlen);
	free(body.p);
	if (rc == -ENOENT)
		snprintf(err, errlen,
			 "%s: marker s3://%s/%s not found: nothing "
			 "is published until the upload writes it",
			 src->tag, s->bucket, key);
	if (!rc)
		snprintf(rev, len, "marker-%s", h.etag[0] ? h.etag : "none");
	return rc;
}

/* Sort the listing into files to fetch or reuse, and directories. */
static int plan(struct source *src, struct s3_page *pg, struct snap_builder *b,
		struct job **jobs, size_t *njobs, struct s3_entry **keep)
{
	struct s3_src *s = src->priv;
	char *path = malloc(PATH_MAX), mkey[2048];
	size_t nj = 0;

	*jobs = calloc(pg->n ? pg->n : 1, sizeof(**jobs));
	*keep = calloc(pg->n ? pg->n : 1, sizeof(**keep));
	if (!path || !*jobs || !*keep) {
		free(path);
		return -ENOMEM;
	}
	snprintf(mkey, sizeof(mkey), "%s%s", s->prefix,
		 s->marker ? s->marker : "");
	for (size_t i = 0; i < pg->n; i++) {
		const struct s3_object *o = &pg->v[i];
		const struct s3_entry *known;
		const char *why;
		int kind = s3_key_to_path(o->key, o->klen, s->prefix, path,
					  PATH_MAX, &why);

		if (kind < 0) {
			log_err(src->tag,
				"object key '%.200s' refused: %s; "
				"left out",
				o->key, why);
			continue;
		}
		if (kind == 2 || (s->marker && !strcmp(o->key, mkey)))
			continue;
		if (kind == 1) {
			int rc = snap_builder_add_dir(b, path, 0755,
						      o->mtime_ns);

			if (rc) {
				free(path);
				return rc;
			}
			continue;
		}
		known = map_find(s, o->key);
		(*jobs)[nj].o = o;
		if (known && !strcmp(known->etag, o->etag) &&
		    known->size == o->size &&
		    store_has(src->store, &known->hash))
			(*jobs)[nj].hash = known->hash,
			(*jobs)[nj].attempt = -1;
		nj++;
	}
	free(path);
	*njobs = nj;
	return 0;
}

/* Fetch what plan() could not reuse; hashes land back in @jobs. */
static int fetch_missing(struct source *src, struct job *jobs, size_t n,
			 char *err, size_t errlen)
{
	struct job *f = calloc(n ? n : 1, sizeof(*f));
	size_t *idx = calloc(n ? n : 1, sizeof(*idx)), nf = 0;
	int rc = 0;

	if (!f || !idx) {
		free(f);
		free(idx);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (jobs[i].attempt == -1)
			continue;
		idx[nf] = i;
		f[nf++].o = jobs[i].o;
	}
	if (nf) {
		uint64_t bytes = 0;

		for (size_t i = 0; i < nf; i++)
			bytes += f[i].o->size;
		source_progress_total(src, nf, bytes);
		log_info(src->tag, "fetching %zu of %zu objects", nf, n);
		rc = s3_download(src, f, nf, err, errlen);
	}
	/* Hashes of what arrived, even when the round failed: the caller
	 * remembers them so the next round fetches only the rest. */
	for (size_t i = 0; i < nf; i++) {
		jobs[idx[i]].hash = f[i].hash;
		jobs[idx[i]].attempt = dhash_eq(&f[i].hash,
						&(struct dhash){ 0 }) ?
					       0 :
					       -1;
	}
	free(f);
	free(idx);
	return rc;
}

/* After a failed round: add what did arrive to the map (and save it). */
static void map_remember(struct s3_src *s, const struct job *jobs, size_t n)
{
	size_t add = 0;
	struct s3_entry *v;

	for (size_t i = 0; i < n; i++)
		add += jobs[i].attempt == -1 && !map_find(s, jobs[i].o->key);
	v = realloc(s->map, (s->nmap + add + 1) * sizeof(*v));
	if (!v)
		return;
	s->map = v;
	/* New entries go past the sorted part that map_find searches (a
	 * listing names each key once); one sort at the end. */
	for (size_t i = 0, sorted = s->nmap; i < n; i++) {
		const struct s3_object *o = jobs[i].o;
		struct s3_entry *e;

		if (jobs[i].attempt != -1)
			continue;
		e = map_find_in(s->map, sorted, o->key);
		if (!e) {
			e = &s->map[s->nmap];
			*e = (struct s3_entry){ 0 };
		}
		if (entry_set(e, o->key, o->etag, o->size, o->mtime_ns,
			      &jobs[i].hash))
			continue;
		if (e == &s->map[s->nmap])
			s->nmap++;
	}
	qsort(s->map, s->nmap, sizeof(*s->map), map_cmp);
	if (map_save(s))
		log_warn("s3", "could not save %s", s->map_path);
}

/*
 * Fresh credentials, then the listing into @pg and its revision into @rev,
 * unless nothing moved: 1 if @rev differs from @prev_rev, 0 if not (with
 * marker=, the bucket is then not even listed), or -errno. Without a
 * marker, a source that has a revision first lists without keeping the
 * objects (list_all): a change costs a second listing, a poll no memory.
 */
static int list_if_changed(struct source *src, const char *prev_rev,
			   struct s3_page *pg, char *rev, size_t revlen,
			   char *err, size_t errlen)
{
	struct s3_src *s = src->priv;
	char listed[160];
	int rc;

	rc = creds_fresh(src, err, errlen);
	if (!rc && s->marker) {
		rc = marker_rev(src, rev, revlen, err, errlen);
		if (!rc && !strcmp(rev, prev_rev))
			return 0; /* the marker did not move: nothing to do */
	}
	if (!rc && !s->marker && prev_rev[0]) {
		rc = list_all(src, pg, false, listed, sizeof(listed), err,
			      errlen);
		if (!rc && !strcmp(listed, prev_rev))
			return 0; /* unchanged, nothing downloaded */
		s3_page_free(pg);
	}
	if (!rc)
		rc = list_all(src, pg, true, listed, sizeof(listed), err,
			      errlen);
	if (rc)
		return rc;
	if (!s->marker) {
		snprintf(rev, revlen, "%s", listed);
		if (!strcmp(rev, prev_rev))
			return 0; /* changed back between the two listings */
	}
	return 1;
}

/* Add every fetched file of @jobs to @b and its map entry to @keep. */
static int add_files(struct source *src, struct snap_builder *b,
		     const struct job *jobs, size_t njobs,
		     struct s3_entry *keep, size_t *nkeep)
{
	struct s3_src *s = src->priv;
	int rc = 0;

	for (size_t i = 0; !rc && i < njobs; i++) {
		char path[PATH_MAX];
		const char *why;
		const struct s3_object *o = jobs[i].o;

		if (s3_key_to_path(o->key, o->klen, s->prefix, path,
				   sizeof(path), &why) != 0)
			continue;
		rc = snap_builder_add_file(b, path, 0644, o->size, o->mtime_ns,
					   &jobs[i].hash);
		if (!rc)
			rc = entry_set(&keep[*nkeep], o->key, o->etag, o->size,
				       o->mtime_ns, &jobs[i].hash);
		if (!rc)
			(*nkeep)++;
	}
	return rc;
}

/* After a published round: @keep (now owned) is the map, and is saved
 * (s3_sync frees it when the round ends). */
static void map_replace(struct source *src, struct s3_entry *keep, size_t n)
{
	struct s3_src *s = src->priv;

	map_free(s->map, s->nmap);
	s->map = keep;
	s->nmap = n;
	qsort(s->map, s->nmap, sizeof(*s->map), map_cmp);
	if (map_save(s))
		log_warn(src->tag,
			 "could not save %s; unchanged objects may be "
			 "fetched again after a restart",
			 s->map_path);
}

static int s3_sync(struct source *src, const char *prev_rev, struct snap **out,
		   char *err, size_t errlen)
{
	struct s3_page pg = { 0 };
	struct snap_builder *b = NULL;
	struct s3_entry *keep = NULL;
	struct job *jobs = NULL;
	size_t njobs = 0, nkeep = 0;
	char rev[160];
	int rc;

	rc = list_if_changed(src, prev_rev, &pg, rev, sizeof(rev), err, errlen);
	if (rc <= 0)
		goto out; /* an error, or 0: unchanged */
	map_load(src->priv);
	rc = snap_builder_new(&b, src->name);
	if (!rc)
		rc = plan(src, &pg, b, &jobs, &njobs, &keep);
	if (!rc) {
		rc = fetch_missing(src, jobs, njobs, err, errlen);
		if (rc)
			map_remember(src->priv, jobs, njobs);
	}
	if (!rc)
		rc = add_files(src, b, jobs, njobs, keep, &nkeep);
	if (rc)
		goto out;
	rc = snap_builder_finish(b, rev, out);
	b = NULL;
	if (rc) {
		snprintf(err, errlen, "%s: building snapshot: %s", src->tag,
			 strerror(-rc));
		goto out;
	}
	map_replace(src, keep, nkeep);
	keep = NULL;
	nkeep = 0;
	rc = 1;
out:
	map_unload(src->priv);
	map_free(keep, nkeep);
	free(jobs);
	snap_builder_free(b);
	s3_page_free(&pg);
	return rc;
}

static int mkdirs_for(const char *path)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s", path);
	for (char *c = p + 1; *c; c++) {
		if (*c != '/')
			continue;
		*c = '\0';
		if (mkdir(p, 0755) && errno != EEXIST)
			return -errno;
		*c = '/';
	}
	return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int s3_parse_location(struct s3_src *s, const char *loc)
{
	const char *slash = strchr(loc, '/');
	size_t bl = slash ? (size_t)(slash - loc) : strlen(loc);
	const char *prefix = slash ? slash + 1 : "";
	size_t pl = strlen(prefix);

	if (bl < 3 || bl > 63)
		return -EINVAL;
	for (size_t i = 0; i < bl; i++)
		if (!isalnum((unsigned char)loc[i]) && !strchr(".-_", loc[i]))
			return -EINVAL;
	s->bucket = strndup(loc, bl);
	s->prefix = malloc(pl + 2);
	if (!s->bucket || !s->prefix)
		return -ENOMEM;
	snprintf(s->prefix, pl + 2, "%s%s", prefix,
		 pl && prefix[pl - 1] != '/' ? "/" : "");
	return 0;
}

static int s3_opts(struct source *src, struct s3_src *s, char *err,
		   size_t errlen)
{
	const struct source_spec *sp = src->spec;
	const char *v, *env;

	v = source_spec_get(sp, "region");
	env = getenv("AWS_REGION") ? getenv("AWS_REGION") :
				     getenv("AWS_DEFAULT_REGION");
	s->region = strdup(v ? v : env ? env : "us-east-1");
	v = source_spec_get(sp, "endpoint");
	if (v) {
		s->endpoint = strdup(v);
	} else if (s->region) {
		s->endpoint = malloc(128);
		if (s->endpoint)
			snprintf(s->endpoint, 128,
				 "https://s3.%.64s.amazonaws.com", s->region);
	}
	if (!s->region || !s->endpoint)
		return -ENOMEM;
	if (strncmp(s->endpoint, "https://", 8) &&
	    strncmp(s->endpoint, "http://", 7)) {
		snprintf(err, errlen,
			 "%s: endpoint '%s' must start with "
			 "http:// or https://",
			 src->tag, s->endpoint);
		return -EINVAL;
	}
	while (strlen(s->endpoint) > 8 &&
	       s->endpoint[strlen(s->endpoint) - 1] == '/')
		s->endpoint[strlen(s->endpoint) - 1] = '\0';
	v = source_spec_get(sp, "addressing");
	s->virtual_host = v ? !strcmp(v, "virtual") :
			      !source_spec_get(sp, "endpoint");
	if (v && strcmp(v, "virtual") && strcmp(v, "path")) {
		snprintf(err, errlen, "%s: addressing must be path or virtual",
			 src->tag);
		return -EINVAL;
	}
	v = source_spec_get(sp, "parallel");
	s->parallel = v ? strtol(v, NULL, 10) : 16;
	if (s->parallel < 1 || s->parallel > 256) {
		snprintf(err, errlen, "%s: parallel must be 1-256", src->tag);
		return -EINVAL;
	}
	if ((v = source_spec_get(sp, "marker")) && !(s->marker = strdup(v)))
		return -ENOMEM;
	if ((v = source_spec_get(sp, "ca-file"))) {
		if (access(v, R_OK)) {
			snprintf(err, errlen, "%s: ca-file %s: %s", src->tag, v,
				 strerror(errno));
			return -errno;
		}
		s->ca_file = strdup(v);
	}
	s->co.credentials_file = source_spec_get(sp, "credentials-file");
	if (s->co.credentials_file && access(s->co.credentials_file, R_OK)) {
		snprintf(err, errlen, "%s: credentials-file %s: %s", src->tag,
			 s->co.credentials_file, strerror(errno));
		return -errno;
	}
	s->co.profile = source_spec_get(sp, "profile");
	s->co.sts_endpoint = source_spec_get(sp, "sts-endpoint");
	s->co.imds_endpoint = source_spec_get(sp, "imds-endpoint");
	s->co.region = s->region;
	s->co.ca_file = s->ca_file;
	snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%.60s:s3", s->region);
	return 0;
}

static void s3_fini(struct source *src)
{
	struct s3_src *s = src->priv;

	if (!s)
		return;
	map_free(s->map, s->nmap);
	curl_easy_cleanup(s->e);
	curl_multi_cleanup(s->m);
	free(s->bucket);
	free(s->prefix);
	free(s->endpoint);
	free(s->region);
	free(s->marker);
	free(s->ca_file);
	memset(&s->creds, 0, sizeof(s->creds));
	free(s);
	src->priv = NULL;
}

static int s3_init(struct source *src, char *err, size_t errlen)
{
	struct s3_src *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	pthread_once(&curl_once, curl_init_once);
	src->priv = s;
	s->src = src;
	rc = s3_parse_location(s, src->spec->location);
	if (rc == -EINVAL)
		snprintf(err, errlen,
			 "%s: location '%s' is not BUCKET[/PREFIX]", src->tag,
			 src->spec->location);
	if (!rc)
		rc = s3_opts(src, s, err, errlen);
	if (!rc && path_fmt(s->map_path, sizeof(s->map_path), "%s/s3/%s/map",
			    store_dir(src->store), src->name))
		rc = -ENAMETOOLONG;
	if (!rc)
		rc = mkdirs_for(s->map_path);
	if (!rc && (!(s->e = curl_easy_init()) || !(s->m = curl_multi_init())))
		rc = -ENOMEM;
	if (rc) {
		if (rc != -EINVAL && !err[0])
			snprintf(err, errlen, "%s: %s", src->tag,
				 strerror(-rc));
		s3_fini(src);
		return rc;
	}
	return 0;
}

const struct source_ops source_s3_ops = {
	.type = "s3",
	.init = s3_init,
	.sync = s3_sync,
	.fini = s3_fini,
	.keys = s3_keys,
};
