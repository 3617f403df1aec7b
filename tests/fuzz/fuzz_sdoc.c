/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_sdoc.c - the served store's snapshot statement parser (what a
 * mirror reads from the network, possibly through a hostile cache) on
 * arbitrary bytes; what parses is checked for its invariants and handed
 * to the signature check and the snapshot check, which must refuse it
 * (the fuzzer cannot sign with a key it never sees).
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sync.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sdoc_key *pub;

/* A public key of a fresh Ed25519 pair, through the file the daemon reads. */
static void load_key(void)
{
	char path[] = "/tmp/fuzz-sdoc-XXXXXX", err[256];
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	int fd = mkstemp(path);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	if (!k || !f || !PEM_write_PUBKEY(f, k))
		abort();
	fclose(f);
	EVP_PKEY_free(k);
	if (sdoc_key_load(&pub, path, false, err, sizeof(err)))
		abort();
	unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sdoc d;

	log_setup(LOG_LVL_ERR - 1, false);
	if (!pub)
		load_key();
	if (sdoc_parse(&d, (const char *)data, size))
		return 0;
	if (strlen(d.snapshot) != 32 || strlen(d.sha256) != 64 ||
	    d.signed_len > size || !d.source[0] || !d.rev[0] ||
	    d.published_ns < 0)
		abort();
	if (!sdoc_verify(&d, (const char *)data, pub))
		abort(); /* a forgery accepted */
	if (!sdoc_check_snapshot(&d, data, size))
		abort(); /* the statement would be its own snapshot */
	return 0;
}
