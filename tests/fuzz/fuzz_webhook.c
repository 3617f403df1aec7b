/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_webhook.c - the X-Hub-Signature-256 check on arbitrary headers and
 * bodies: input is "header\nbody"; a header built from the real HMAC must
 * verify, any other must not crash.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char secret[] = "s3cret";
	const uint8_t *nl = memchr(data, '\n', size);
	size_t hl = nl ? (size_t)(nl - data) : size;
	const uint8_t *body = nl ? nl + 1 : data + size;
	size_t blen = size - hl - (nl ? 1 : 0);
	char *header = malloc(hl + 1), good[72];
	unsigned char mac[32];
	unsigned int mlen;

	if (!header)
		return 0;
	memcpy(header, data, hl);
	header[hl] = '\0';
	(void)!http_verify_signature(secret, 6, body, blen, header);
	HMAC(EVP_sha256(), secret, 6, body, blen, mac, &mlen);
	memcpy(good, "sha256=", 7);
	for (int i = 0; i < 32; i++)
		snprintf(good + 7 + 2 * i, 3, "%02x", mac[i]);
	if (http_verify_signature(secret, 6, body, blen, good))
		abort();
	free(header);
	return 0;
}
