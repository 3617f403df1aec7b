/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3_key.c - object keys to snapshot paths, and URI encoding. An S3 key
 * is any UTF-8 string up to 1024 bytes; a path must be safe to serve.
 * Hostile keys are refused here, before anything is fetched.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "s3_i.h"

int s3_key_to_path(const char *key, size_t klen, const char *prefix, char *out,
		   size_t outlen, const char **why)
{
	size_t pl = strlen(prefix), n, seg = 0;
	const char *rel;
	int dir = 0;

	*why = NULL;
	if (klen < pl || memcmp(key, prefix, pl)) {
		*why = "outside the prefix";
		return -EINVAL;
	}
	rel = key + pl;
	n = klen - pl;
	if (n == 0)
		return 2;
	if (rel[n - 1] == '/') {
		dir = 1;
		n--;
		if (n == 0) {
			*why = "empty path segment or leading '/'";
			return -EINVAL;
		}
	}
	if (n >= outlen || n >= PATH_MAX) {
		*why = "longer than PATH_MAX";
		return -EINVAL;
	}
	for (size_t i = 0; i <= n; i++) {
		unsigned char c = i < n ? (unsigned char)rel[i] : '/';

		if (c == '/') {
			if (seg == 0)
				*why = "empty path segment or leading '/'";
			else if (seg > NAME_MAX)
				*why = "a segment longer than NAME_MAX";
			else if ((seg == 1 && rel[i - 1] == '.') ||
				 (seg == 2 && rel[i - 1] == '.' &&
				  rel[i - 2] == '.'))
				*why = "a '.' or '..' segment";
			if (*why)
				return -EINVAL;
			seg = 0;
			continue;
		}
		if (c < 0x20 || c == 0x7f) {
			*why = "a control character or NUL";
			return -EINVAL;
		}
		seg++;
	}
	memcpy(out, rel, n);
	out[n] = '\0';
	return dir;
}

int s3_uri_encode(char *out, size_t outlen, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t w = 0;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			     (c >= '0' && c <= '9') || c == '-' || c == '_' ||
			     c == '.' || c == '~' || (keep_slash && c == '/');

		if (w + 4 > outlen)
			return -ENAMETOOLONG;
		if (plain) {
			out[w++] = (char)c;
		} else {
			out[w++] = '%';
			out[w++] = hex[c >> 4];
			out[w++] = hex[c & 15];
		}
	}
	out[w] = '\0';
	return 0;
}
