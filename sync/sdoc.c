/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sdoc.c - the served store's snapshot statement: a few lines of text
 * saying "revision R of source S is snapshot ID, whose bytes have SHA-256
 * X, published at T", optionally signed with Ed25519 (OpenSSL). A
 * publisher serves one per source as `current` and one per retained
 * revision; a mirror parses it, checks the signature against the public
 * key it was given, then checks the snapshot's bytes against both the id
 * (XXH3-128) and the SHA-256 before it trusts a single entry.
 *
 * The id alone would not do against a forger: XXH3 is not collision
 * resistant. The signature covers the SHA-256 of the snapshot, so a
 * cache in the middle cannot swap the listing. It must not know HTTP.
 *
 *   dagfs-snapshot 1
 *   source team-a
 *   rev 3f2c...
 *   snapshot 9a0b...             (32 hex: XXH3-128 of the bytes)
 *   sha256 5e88...               (64 hex)
 *   published 1764670000000000000
 *   sig ed25519 <128 hex>        (optional; covers every line above)
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sync.h"

#define SDOC_MAGIC "dagfs-snapshot 1\n"

struct sdoc_key {
	EVP_PKEY *k;
	bool secret;
};

int sdoc_key_load(struct sdoc_key **out, const char *path, bool secret,
		  char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	struct sdoc_key *key;
	EVP_PKEY *k;

	if (!f) {
		snprintf(err, errlen, "%s key file %s: %s",
			 secret ? "signing" : "public", path, strerror(errno));
		return -errno;
	}
	k = secret ? PEM_read_PrivateKey(f, NULL, NULL, NULL) :
		     PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if (!k || EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
		snprintf(err, errlen,
			 "%s key file %s: not a PEM Ed25519 %s key "
			 "(make one with: openssl genpkey -algorithm ed25519%s)",
			 secret ? "signing" : "public", path,
			 secret ? "private" : "public",
			 secret ? "" : " | openssl pkey -pubout");
		EVP_PKEY_free(k);
		return -EINVAL;
	}
	key = calloc(1, sizeof(*key));
	if (!key) {
		EVP_PKEY_free(k);
		return -ENOMEM;
	}
	key->k = k;
	key->secret = secret;
	*out = key;
	return 0;
}

void sdoc_key_free(struct sdoc_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->k);
	free(k);
}

static void hexify(char *out, const unsigned char *b, size_t n)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int unhex(unsigned char *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int v = 0;

		for (int j = 0; j < 2; j++) {
			char c = s[2 * i + j];

			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= c - '0';
			else if (c >= 'a' && c <= 'f')
				v |= c - 'a' + 10;
			else
				return -EINVAL;
		}
		out[i] = (unsigned char)v;
	}
	return 0;
}

void sdoc_sha256(char out[65], const void *buf, size_t len)
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL);
	hexify(out, md, 32);
}

/* Ed25519 over @len bytes of @buf; 0 or -EIO. */
static int sign(unsigned char sig[64], const struct sdoc_key *key,
		const void *buf, size_t len)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	size_t slen = 64;
	int ok = c && EVP_DigestSignInit(c, NULL, NULL, NULL, key->k) == 1 &&
		 EVP_DigestSign(c, sig, &slen, buf, len) == 1 && slen == 64;

	EVP_MD_CTX_free(c);
	return ok ? 0 : -EIO;
}

int sdoc_format(char **out, size_t *len, const struct snap *s,
		const void *snapbytes, size_t snaplen,
		const struct sdoc_key *key)
{
	char sha[65], *text = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&text, &n);
	unsigned char sig[64];
	char sighex[129];

	if (!f)
		return -ENOMEM;
	sdoc_sha256(sha, snapbytes, snaplen);
	fprintf(f,
		SDOC_MAGIC "source %s\nrev %s\nsnapshot %s\nsha256 %s\n"
			   "published %lld\n",
		s->source, s->rev, s->id, sha, (long long)s->published_ns);
	if (fclose(f) || !text) {
		free(text);
		return -ENOMEM;
	}
	if (key && key->secret) {
		char *t;

		if (sign(sig, key, text, n)) {
			free(text);
			return -EIO;
		}
		hexify(sighex, sig, 64);
		t = realloc(text, n + 13 + 128 + 1 + 1);
		if (!t) {
			free(text);
			return -ENOMEM;
		}
		text = t;
		n += (size_t)sprintf(text + n, "sig ed25519 %s\n", sighex);
	}
	*out = text;
	*len = n;
	return 0;
}

/* The next line of @buf from *@off; its length without '\n', or -1. */
static ssize_t line(const char *buf, size_t len, size_t *off,
		    const char **start)
{
	const char *nl;

	if (*off >= len)
		return -1;
	*start = buf + *off;
	nl = memchr(*start, '\n', len - *off);
	if (!nl)
		return -1;
	*off = (size_t)(nl - buf) + 1;
	return nl - *start;
}

/* "KEY VALUE" with VALUE of printable ASCII, no spaces, 1..@cap-1 long. */
static int field(const char *l, ssize_t n, const char *key, char *val,
		 size_t cap)
{
	size_t kl = strlen(key), vl;

	if (n < 0 || (size_t)n <= kl + 1 || memcmp(l, key, kl) || l[kl] != ' ')
		return -EINVAL;
	vl = (size_t)n - kl - 1;
	if (vl >= cap)
		return -EINVAL;
	for (size_t i = 0; i < vl; i++)
		if (l[kl + 1 + i] <= ' ' || l[kl + 1 + i] > '~')
			return -EINVAL;
	memcpy(val, l + kl + 1, vl);
	val[vl] = '\0';
	return 0;
}

int sdoc_parse(struct sdoc *out, const char *buf, size_t len)
{
	char num[24];
	const char *l = NULL;
	size_t off = strlen(SDOC_MAGIC);
	ssize_t n;
	char *end;
	long long v;

	memset(out, 0, sizeof(*out));
	if (len > SDOC_MAX || len < off || memcmp(buf, SDOC_MAGIC, off))
		return -EBADMSG;
	struct {
		const char *key;
		char *val;
		size_t cap;
	} f[] = { { "source", out->source, sizeof(out->source) },
		  { "rev", out->rev, sizeof(out->rev) },
		  { "snapshot", out->snapshot, sizeof(out->snapshot) },
		  { "sha256", out->sha256, sizeof(out->sha256) },
		  { "published", num, sizeof(num) } };

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		n = line(buf, len, &off, &l);
		if (field(l, n, f[i].key, f[i].val, f[i].cap))
			return -EBADMSG;
	}
	if (!hex_ok(out->snapshot, 32) || !hex_ok(out->sha256, 64))
		return -EBADMSG;
	errno = 0;
	v = strtoll(num, &end, 10);
	if (errno || *end || end == num || v < 0)
		return -EBADMSG;
	out->published_ns = v;
	out->signed_len = off;
	if (off == len)
		return 0;
	n = line(buf, len, &off, &l);
	if (n != 12 + 128 || off != len || memcmp(l, "sig ed25519 ", 12) ||
	    unhex(out->sig, l + 12, 64))
		return -EBADMSG;
	out->is_signed = true;
	return 0;
}

int sdoc_verify(const struct sdoc *d, const char *buf,
		const struct sdoc_key *pub)
{
	EVP_MD_CTX *c;
	int ok;

	if (!d->is_signed)
		return -EPERM;
	c = EVP_MD_CTX_new();
	ok = c && EVP_DigestVerifyInit(c, NULL, NULL, NULL, pub->k) == 1 &&
	     EVP_DigestVerify(c, d->sig, 64, (const unsigned char *)buf,
			      d->signed_len) == 1;
	EVP_MD_CTX_free(c);
	return ok ? 0 : -EPERM;
}

int sdoc_check_snapshot(const struct sdoc *d, const void *buf, size_t len)
{
	char hex[DHASH_HEX], sha[65];
	struct dhash h;

	dhash_buf(&h, buf, len);
	dhash_hex(hex, &h);
	if (strcmp(hex, d->snapshot))
		return -EBADMSG;
	sdoc_sha256(sha, buf, len);
	return strcmp(sha, d->sha256) ? -EBADMSG : 0;
}
