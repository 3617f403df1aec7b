/* SPDX-License-Identifier: Apache-2.0 */
/*
 * git_remote.c - the network side of the git source: connecting with our
 * credential and host-key callbacks, listing the remote's refs, fetching
 * only what a refspec names, and checking ssh host keys against a
 * known_hosts file (plain and hashed names, [host]:port, @revoked).
 *
 * Secrets are read from their files at the moment libgit2 asks for them
 * and wiped after; they are never logged nor put into error messages.
 * This file does not build snapshots nor touch the blob store.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "git_i.h"

#define SECRET_MAX 4096

/* ----------------------------------------------------------------- URLs */

static void copy_part(char *dst, size_t len, const char *s, size_t n)
{
	if (n >= len)
		n = len - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* Parse "[user@]host[:port]" or "[user@][v6]:port" up to @end. */
static int parse_authority(struct gitsrc_url *u, const char *s, const char *end,
			   bool port_allowed)
{
	const char *at = memchr(s, '@', (size_t)(end - s)), *colon;

	if (at) {
		copy_part(u->user, sizeof(u->user), s, (size_t)(at - s));
		s = at + 1;
	}
	if (*s == '[') {
		const char *rb = memchr(s, ']', (size_t)(end - s));

		if (!rb)
			return -EINVAL;
		copy_part(u->host, sizeof(u->host), s + 1,
			  (size_t)(rb - s - 1));
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(s, ':', (size_t)(end - s));
		copy_part(u->host, sizeof(u->host), s,
			  (size_t)((colon ? colon : end) - s));
	}
	if (colon && port_allowed) {
		char *e;
		long p = strtol(colon + 1, &e, 10);

		if (e != end || p <= 0 || p > 65535)
			return -EINVAL;
		u->port = (int)p;
	}
	return u->host[0] ? 0 : -EINVAL;
}

int gitsrc_url_parse(struct gitsrc_url *out, const char *url)
{
	static const char *const ssh_schemes[] = { "ssh://", "ssh+git://",
						   "git+ssh://", NULL };
	const char *scheme = strstr(url, "://"), *s, *end;

	memset(out, 0, sizeof(*out));
	out->port = 22;
	for (size_t i = 0; ssh_schemes[i]; i++) {
		size_t n = strlen(ssh_schemes[i]);

		if (strncmp(url, ssh_schemes[i], n))
			continue;
		out->ssh = true;
		s = url + n;
		end = strchr(s, '/');
		return parse_authority(out, s, end ? end : s + strlen(s), true);
	}
	if (scheme)
		return 0; /* http(s), git, file: no host key to check */
	/* scp-like [user@]host:path, where the ':' comes before any '/' */
	end = strchr(url, ':');
	if (!end || (strchr(url, '/') && strchr(url, '/') < end))
		return 0; /* a local path */
	if (url[0] == '[') {
		end = strstr(url, "]:");
		if (!end)
			return -EINVAL;
		end++;
	}
	out->ssh = true;
	return parse_authority(out, url, end, false);
}

/* ----------------------------------------------------------- known_hosts */

static int b64_decode(unsigned char *out, size_t outlen, const char *in,
		      size_t inlen)
{
	int n, pad = 0;

	if (!inlen || inlen % 4 || inlen / 4 * 3 > outlen)
		return -EINVAL;
	n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)inlen);
	if (n < 0)
		return -EINVAL;
	while (pad < 2 && in[inlen - 1 - pad] == '=')
		pad++;
	return n - pad;
}

/* Does one hashed "|1|salt|hash" pattern name @name? */
static bool hashed_match(const char *pat, size_t len, const char *name)
{
	unsigned char salt[64], want[64], got[EVP_MAX_MD_SIZE];
	const char *bar = memchr(pat + 3, '|', len - 3);
	unsigned int gotlen = 0;
	int sl, wl;

	if (!bar)
		return false;
	sl = b64_decode(salt, sizeof(salt), pat + 3, (size_t)(bar - pat - 3));
	wl = b64_decode(want, sizeof(want), bar + 1,
			(size_t)(pat + len - bar - 1));
	if (sl <= 0 || wl != 20)
		return false;
	if (!HMAC(EVP_sha1(), salt, sl, (const unsigned char *)name,
		  strlen(name), got, &gotlen))
		return false;
	return gotlen == 20 && !memcmp(got, want, 20);
}

/*
 * OpenSSH host patterns: '*' and '?' only ('[' is literal: "[h]:port").
 * Iterative, backtracking only to the last '*': linear in practice and
 * never exponential, whatever the known_hosts file holds.
 */
static bool glob_match(const char *p, const char *s)
{
	const char *star = NULL, *resume = NULL;

	while (*s) {
		if (*p == '*') {
			star = p++;
			resume = s;
		} else if (*p && (*p == '?' || *p == *s)) {
			p++;
			s++;
		} else if (star) {
			p = star + 1;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return !*p;
}

/* Does the comma-separated pattern list @pats name @name? */
static bool hosts_match(const char *pats, const char *name)
{
	bool yes = false;

	if (!strncmp(pats, "|1|", 3))
		return hashed_match(pats, strlen(pats), name);
	for (const char *p = pats; *p;) {
		size_t n = strcspn(p, ",");
		char one[300];
		bool neg = *p == '!';

		copy_part(one, sizeof(one), p + neg, n - neg);
		if (glob_match(one, name)) {
			if (neg)
				return false; /* a negated match wins */
			yes = true;
		}
		p += n + (p[n] == ',');
	}
	return yes;
}

/* The key type at the start of a wire-format key ("ssh-ed25519"...). */
static void key_type(char *out, size_t len, const unsigned char *k, size_t n)
{
	uint32_t tl;

	out[0] = '\0';
	if (n < 4)
		return;
	tl = (uint32_t)k[0] << 24 | k[1] << 16 | k[2] << 8 | k[3];
	if (tl <= n - 4)
		copy_part(out, len, (const char *)k + 4, tl);
}

struct kh_state {
	const char *name;
	const unsigned char *key;
	size_t keylen;
	char type[64];
	bool found, other, revoked;
};

/* Look at one known_hosts line. */
static void kh_line(struct kh_state *st, char *line)
{
	char *save = NULL, *f1, *f2, *f3;
	unsigned char blob[4096];
	bool revoked = false;
	int n;

	f1 = strtok_r(line, " \t\r\n", &save);
	if (!f1 || *f1 == '#')
		return;
	if (*f1 == '@') {
		if (strcmp(f1, "@revoked"))
			return; /* @cert-authority: certificates unsupported */
		revoked = true;
		f1 = strtok_r(NULL, " \t\r\n", &save);
	}
	f2 = strtok_r(NULL, " \t\r\n", &save);
	f3 = strtok_r(NULL, " \t\r\n", &save);
	if (!f1 || !f2 || !f3 || !hosts_match(f1, st->name))
		return;
	n = b64_decode(blob, sizeof(blob), f3, strlen(f3));
	if (n <= 0)
		return;
	if ((size_t)n == st->keylen && !memcmp(blob, st->key, st->keylen)) {
		if (revoked)
			st->revoked = true;
		else
			st->found = true;
	} else if (!revoked && !strcmp(f2, st->type)) {
		st->other = true;
	}
}

int gitsrc_known_hosts_check(const char *file, const char *host, int port,
			     const unsigned char *key, size_t keylen, char *why,
			     size_t whylen)
{
	struct kh_state st = { .key = key, .keylen = keylen };
	char name[300], *line = NULL;
	size_t cap = 0;
	FILE *f;

	if (port == 22)
		snprintf(name, sizeof(name), "%s", host);
	else
		snprintf(name, sizeof(name), "[%s]:%d", host, port);
	st.name = name;
	key_type(st.type, sizeof(st.type), key, keylen);
	f = fopen(file, "re");
	if (!f) {
		int e = errno;

		snprintf(why, whylen, "known-hosts file %s: %s", file,
			 strerror(e));
		return -e;
	}
	while (getline(&line, &cap, f) > 0)
		kh_line(&st, line);
	free(line);
	fclose(f);
	if (st.revoked) {
		snprintf(why, whylen,
			 "host key for %s is marked @revoked in "
			 "%s",
			 name, file);
		return -EKEYREJECTED;
	}
	if (st.found)
		return 0;
	if (st.other) {
		snprintf(why, whylen,
			 "host key for %s does not match "
			 "known_hosts %s (changed %s key)",
			 name, file, st.type);
		return -EKEYREJECTED;
	}
	snprintf(why, whylen, "host key for %s not in known_hosts %s (%s key)",
		 name, file, st.type);
	return -ENOENT;
}

/* ------------------------------------------------------------ callbacks */

static int cert_cb(git_cert *cert, int valid, const char *host, void *payload)
{
	struct gitsrc_cb *cb = payload;
	const git_cert_hostkey *hk = (const git_cert_hostkey *)cert;

	if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2) {
		if (valid)
			return 0;
		snprintf(cb->why, sizeof(cb->why),
			 "TLS certificate of %s is "
			 "not trusted",
			 host);
		return GIT_ECERTIFICATE;
	}
	if (cb->g->insecure)
		return 0;
	if (!(hk->type & GIT_CERT_SSH_RAW)) {
		snprintf(cb->why, sizeof(cb->why), "no raw host key from %s",
			 host);
		return GIT_ECERTIFICATE;
	}
	if (gitsrc_known_hosts_check(cb->g->known_hosts, host, cb->url.port,
				     (const unsigned char *)hk->hostkey,
				     hk->hostkey_len, cb->why, sizeof(cb->why)))
		return GIT_ECERTIFICATE;
	return 0;
}

static int cred_ssh(git_credential **out, struct gitsrc_cb *cb,
		    const char *user)
{
	struct gitsrc *g = cb->g;
	char pass[SECRET_MAX];
	int rc;

	if (!g->ssh_key) {
		snprintf(cb->why, sizeof(cb->why),
			 "the ssh server wants a "
			 "key and the source has no ssh-key=");
		return GIT_EAUTH;
	}
	pass[0] = '\0';
	if (g->ssh_pass_file &&
	    read_secret(pass, sizeof(pass), g->ssh_pass_file) < 0) {
		snprintf(cb->why, sizeof(cb->why),
			 "cannot read "
			 "ssh-passphrase-file %s",
			 g->ssh_pass_file);
		return GIT_EAUTH;
	}
	rc = git_credential_ssh_key_new(out, user, NULL, g->ssh_key,
					pass[0] ? pass : NULL);
	explicit_bzero(pass, sizeof(pass));
	return rc;
}

static int cred_userpass(git_credential **out, struct gitsrc_cb *cb,
			 const char *user)
{
	struct gitsrc *g = cb->g;
	const char *file = g->password_file ? g->password_file : g->token_file;
	char secret[SECRET_MAX];
	int rc;

	if (!file) {
		snprintf(cb->why, sizeof(cb->why),
			 "the server wants "
			 "credentials and the source has no password-file= "
			 "or token-file=");
		return GIT_EAUTH;
	}
	if (read_secret(secret, sizeof(secret), file) < 0) {
		snprintf(cb->why, sizeof(cb->why), "cannot read %s %s",
			 g->password_file ? "password-file" : "token-file",
			 file);
		return GIT_EAUTH;
	}
	if (g->username)
		user = g->username;
	else if (!user || !*user)
		user = g->token_file ? "x-access-token" : "git";
	rc = git_credential_userpass_plaintext_new(out, user, secret);
	explicit_bzero(secret, sizeof(secret));
	return rc;
}

static int cred_cb(git_credential **out, const char *url,
		   const char *user_from_url, unsigned int allowed,
		   void *payload)
{
	struct gitsrc_cb *cb = payload;
	const char *user = user_from_url && *user_from_url ? user_from_url :
			   cb->g->username		   ? cb->g->username :
							     "git";

	(void)url;
	if (allowed & GIT_CREDENTIAL_USERNAME)
		return git_credential_username_new(out, user);
	if (++cb->cred_tries > 1) {
		snprintf(cb->why, sizeof(cb->why),
			 "authentication failed "
			 "(credentials refused by the server)");
		return GIT_EAUTH;
	}
	if (allowed & GIT_CREDENTIAL_SSH_KEY)
		return cred_ssh(out, cb, user);
	if (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT)
		return cred_userpass(out, cb, user_from_url);
	snprintf(cb->why, sizeof(cb->why),
		 "the server wants an "
		 "authentication method dagfs does not offer");
	return GIT_EAUTH;
}

/* Report the transfer's progress; let source_stop() cancel it. */
static int progress_cb(const git_indexer_progress *stats, void *payload)
{
	struct gitsrc_cb *cb = payload;

	source_progress_set(cb->g->src, stats->received_objects,
			    stats->total_objects, stats->received_bytes);
	if (__atomic_load_n(&cb->g->src->stop, __ATOMIC_ACQUIRE)) {
		snprintf(cb->why, sizeof(cb->why), "cancelled (stopping)");
		return -1;
	}
	return 0;
}

static void callbacks_init(git_remote_callbacks *cbs, struct gitsrc_cb *cb)
{
	git_remote_init_callbacks(cbs, GIT_REMOTE_CALLBACKS_VERSION);
	cbs->credentials = cred_cb;
	cbs->certificate_check = cert_cb;
	cbs->transfer_progress = progress_cb;
	cbs->payload = cb;
}

/* ------------------------------------------------------------- remote */

int gitsrc_connect(git_remote **out, struct gitsrc_cb *cb, git_repository *repo,
		   const char *url)
{
	git_remote_callbacks cbs;
	git_remote_create_options copts;
	git_proxy_options proxy;
	git_remote *r = NULL;
	int rc;

	git_proxy_options_init(&proxy, GIT_PROXY_OPTIONS_VERSION);
	if (gitsrc_url_parse(&cb->url, url)) {
		git_error_set_str(GIT_ERROR_INVALID, "cannot parse the URL");
		return GIT_EINVALIDSPEC;
	}
	callbacks_init(&cbs, cb);
	proxy.type = GIT_PROXY_AUTO;
	/* Skipping insteadOf also skips a config regex libgit2 1.5 leaks. */
	git_remote_create_options_init(&copts,
				       GIT_REMOTE_CREATE_OPTIONS_VERSION);
	copts.repository = repo;
	copts.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF |
		      GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	rc = git_remote_create_with_opts(&r, url, &copts);
	if (!rc)
		rc = git_remote_connect(r, GIT_DIRECTION_FETCH, &cbs, &proxy,
					NULL);
	if (rc) {
		git_remote_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

static const git_remote_head *head_named(const git_remote_head **heads,
					 size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(heads[i]->name, name))
			return heads[i];
	return NULL;
}

/* The entry for @name and its peeled "^{}" companion, if listed. */
static int find_peeled(const git_remote_head **heads, size_t n,
		       const char *name, git_oid *tip, git_oid *commit)
{
	const git_remote_head *h = head_named(heads, n, name), *p;
	char peeled[GITSRC_REFNAME_MAX];

	if (!h)
		return GIT_ENOTFOUND;
	snprintf(peeled, sizeof(peeled), "%s^{}", name);
	p = head_named(heads, n, peeled);
	git_oid_cpy(tip, &h->oid);
	git_oid_cpy(commit, p ? &p->oid : &h->oid);
	return 0;
}

int gitsrc_ls_find(git_remote *r, const char *ref, char *name, size_t namelen,
		   git_oid *tip, git_oid *commit)
{
	const git_remote_head **heads;
	const char *prefixes[] = { "refs/heads/", "refs/tags/", "" };
	size_t n;
	int rc = git_remote_ls(&heads, &n, r);

	if (rc)
		return rc;
	if (!ref) {
		const git_remote_head *h = head_named(heads, n, "HEAD");

		if (!h) {
			git_error_set_str(GIT_ERROR_REFERENCE,
					  "the remote has "
					  "no HEAD (empty repository?)");
			return GIT_ENOTFOUND;
		}
		snprintf(name, namelen, "%s",
			 h->symref_target ? h->symref_target : "HEAD");
		git_oid_cpy(tip, &h->oid);
		git_oid_cpy(commit, &h->oid);
		return 0;
	}
	for (size_t i = 0; i < 3; i++) {
		if (!*prefixes[i] && strncmp(ref, "refs/", 5))
			continue;
		snprintf(name, namelen, "%s%s", prefixes[i], ref);
		if (!find_peeled(heads, n, name, tip, commit))
			return 0;
	}
	git_error_set(GIT_ERROR_REFERENCE, "ref '%s' not found on the remote",
		      ref);
	return GIT_ENOTFOUND;
}

bool gitsrc_shallow(const char *url)
{
	return GITSRC_SHALLOW &&
	       (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8));
}

int gitsrc_download(struct gitsrc_cb *cb, git_remote *r, const char **refspecs,
		    size_t n, int depth)
{
	git_fetch_options opts;
	struct gitsrc_roots roots = { 0 };
	git_strarray specs = { (char **)refspecs, n };
	const git_indexer_progress *st;
	int64_t t0 = mono_ns();
	int rc;

	git_fetch_options_init(&opts, GIT_FETCH_OPTIONS_VERSION);
	callbacks_init(&opts.callbacks, cb);
	opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	opts.prune = GIT_FETCH_NO_PRUNE;
	opts.update_fetchhead = 0;
	opts.proxy_opts.type = GIT_PROXY_AUTO;
	if (!gitsrc_shallow(git_remote_url(r)))
		depth = 0;
#if GITSRC_SHALLOW
	opts.depth = depth;
#endif
	rc = gitsrc_roots_read(&roots, git_remote_owner(r));
	if (rc) {
		git_error_set(GIT_ERROR_OS, "reading the shallow boundary: %s",
			      strerror(-rc));
		return GIT_ERROR;
	}
	rc = git_remote_download(r, &specs, &opts);
	if (!rc) {
		bool restored;
		int e = gitsrc_roots_keep(git_remote_owner(r), &roots,
					  &restored);

		if (e) {
			git_error_set(GIT_ERROR_OS,
				      "keeping the shallow boundary: %s",
				      strerror(-e));
			rc = GIT_ERROR;
		} else if (restored) {
			log_debug(cb->g->src->tag,
				  "shallow boundary put back after the fetch");
		}
	}
	gitsrc_roots_free(&roots);
	if (rc)
		return rc;
	st = git_remote_stats(r);
	source_count_fetch(cb->g->src, st->received_bytes,
			   st->received_objects);
	log_info(cb->g->src->tag, "fetched %u objects, %zu bytes in %.0f ms%s",
		 st->received_objects, st->received_bytes,
		 (double)(mono_ns() - t0) / 1e6,
		 depth > 0 && depth < GITSRC_UNSHALLOW ? " (shallow)" : "");
	return 0;
}
