/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_sdoc.c - the served store's snapshot statements: format, parse,
 * sign and verify, and what must be refused (another key, no signature,
 * a changed line, a snapshot that is not the one named).
 */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"
#include "sync.h"

static char dir[] = "/tmp/test-sdoc-XXXXXX";
static struct sdoc_key *sk, *pk, *other;

/* A fresh Ed25519 pair written as the PEM files the daemon reads. */
static void keypair(struct sdoc_key **secret, struct sdoc_key **pub,
		    const char *name)
{
	char sp[256], pp[256], err[256];
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	FILE *f;

	snprintf(sp, sizeof(sp), "%s/%s.pem", dir, name);
	snprintf(pp, sizeof(pp), "%s/%s.pub", dir, name);
	f = fopen(sp, "w");
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	f = fopen(pp, "w");
	PEM_write_PUBKEY(f, k);
	fclose(f);
	EVP_PKEY_free(k);
	if (secret && sdoc_key_load(secret, sp, true, err, sizeof(err)))
		abort();
	if (sdoc_key_load(pub, pp, false, err, sizeof(err)))
		abort();
}

/* A one-file snapshot, its encoding in *@bytes. */
static struct snap *snapshot(void **bytes, size_t *len)
{
	struct snap_builder *b;
	struct snap *s;
	struct dhash h, id;

	dhash_buf(&h, "x", 1);
	if (snap_builder_new(&b, "team-a") ||
	    snap_builder_add_file(b, "a.py", 0644, 1, 0, &h) ||
	    snap_builder_finish(b, "rev-1", &s) || snap_encode(s, bytes, len))
		abort();
	dhash_buf(&id, *bytes, *len);
	dhash_hex(s->id, &id);
	return s;
}

static void test_sdoc__signed_round_trip(void)
{
	void *raw;
	size_t len, dl;
	struct snap *s = snapshot(&raw, &len);
	struct sdoc d;
	char *doc;

	CHECK(!sdoc_format(&doc, &dl, s, raw, len, sk));
	CHECK(!sdoc_parse(&d, doc, dl));
	CHECK(d.is_signed && !strcmp(d.source, "team-a"));
	CHECK(!strcmp(d.rev, "rev-1") && !strcmp(d.snapshot, s->id));
	CHECK(!sdoc_verify(&d, doc, pk));
	CHECK(sdoc_verify(&d, doc, other) == -EPERM);
	CHECK(!sdoc_check_snapshot(&d, raw, len));
	((char *)raw)[len / 2] ^= 1;
	CHECK(sdoc_check_snapshot(&d, raw, len) == -EBADMSG);
	free(doc);
	free(raw);
	snap_unref(s);
}

static void test_sdoc__tampering_is_refused(void)
{
	void *raw;
	size_t len, dl;
	struct snap *s = snapshot(&raw, &len);
	struct sdoc d;
	char *doc, *p;

	CHECK(!sdoc_format(&doc, &dl, s, raw, len, sk));
	p = strstr(doc, "rev rev-1");
	CHECK(p);
	p[8] = '2'; /* "rev rev-2": still well-formed */
	CHECK(!sdoc_parse(&d, doc, dl));
	CHECK(sdoc_verify(&d, doc, pk) == -EPERM);
	free(doc);
	CHECK(!sdoc_format(&doc, &dl, s, raw, len, NULL));
	CHECK(!sdoc_parse(&d, doc, dl) && !d.is_signed);
	CHECK(sdoc_verify(&d, doc, pk) == -EPERM);
	free(doc);
	free(raw);
	snap_unref(s);
}

static void test_sdoc__malformed_is_refused(void)
{
	static const char *const bad[] = {
		"",
		"dagfs-snapshot 2\n",
		"dagfs-snapshot 1\nsource a\nrev r\nsnapshot 00\nsha256 00\n"
		"published 1\n",
		"dagfs-snapshot 1\nsource a b\nrev r\nsnapshot "
		"00000000000000000000000000000000\nsha256 "
		"0000000000000000000000000000000000000000000000000000000000000000"
		"\npublished 1\n",
		"dagfs-snapshot 1\nsource a\nrev r\nsnapshot "
		"00000000000000000000000000000000\nsha256 "
		"0000000000000000000000000000000000000000000000000000000000000000"
		"\npublished -1\n",
		"dagfs-snapshot 1\nsource a\nrev r\nsnapshot "
		"00000000000000000000000000000000\nsha256 "
		"0000000000000000000000000000000000000000000000000000000000000000"
		"\npublished 1\nsig ed25519 00\n",
		"dagfs-snapshot 1\nsource a\nrev r\nsnapshot "
		"00000000000000000000000000000000\nsha256 "
		"0000000000000000000000000000000000000000000000000000000000000000"
		"\npublished 1",
	};
	struct sdoc d;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(sdoc_parse(&d, bad[i], strlen(bad[i])) == -EBADMSG);
}

int main(void)
{
	static const struct harness_case cases[] = {
		{ "test_sdoc__signed_round_trip",
		  test_sdoc__signed_round_trip },
		{ "test_sdoc__tampering_is_refused",
		  test_sdoc__tampering_is_refused },
		{ "test_sdoc__malformed_is_refused",
		  test_sdoc__malformed_is_refused },
		{ NULL, NULL },
	};
	char cmd[64];
	int rc;

	log_setup(LOG_LVL_ERR, false);
	if (!mkdtemp(dir))
		return 1;
	keypair(&sk, &pk, "good");
	keypair(NULL, &other, "other");
	rc = harness_run(cases);
	sdoc_key_free(sk);
	sdoc_key_free(pk);
	sdoc_key_free(other);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		rc = 1;
	return rc;
}
