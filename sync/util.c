/* SPDX-License-Identifier: Apache-2.0 */
/*
 * util.c - small shared helpers of sync/: hashes, clocks, mkdir -p, the
 * parsers of durations and booleans used by every source's options, and
 * the one JSON string writer used by the log, fs/ generated files and
 * sidecar/.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "sync.h"

static const char hex_digits[] = "0123456789abcdef";

void dhash_hex(char out[DHASH_HEX], const struct dhash *h)
{
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex_digits[h->b[i] >> 4];
		out[2 * i + 1] = hex_digits[h->b[i] & 15];
	}
	out[32] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool hex_ok(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (hexval(s[i]) < 0)
			return false;
	return true;
}

int dhash_parse(struct dhash *out, const char *hex)
{
	for (int i = 0; i < 16; i++) {
		int hi = hexval(hex[2 * i]), lo;

		if (hi < 0)
			return -EINVAL;
		lo = hexval(hex[2 * i + 1]);
		if (lo < 0)
			return -EINVAL;
		out->b[i] = (uint8_t)(hi << 4 | lo);
	}
	return hex[32] == '\0' ? 0 : -EINVAL;
}

void dhash_buf(struct dhash *out, const void *buf, size_t len)
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits(buf, len));
	memcpy(out->b, c.digest, 16);
}

int dhash_fd(struct dhash *out, uint64_t *size, int fd)
{
	XXH3_state_t *xs = XXH3_createState();
	XXH128_canonical_t c;
	char buf[131072];
	uint64_t off = 0;
	ssize_t n;

	if (!xs)
		return -ENOMEM;
	XXH3_128bits_reset(xs);
	while ((n = pread(fd, buf, sizeof(buf), (off_t)off)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			XXH3_freeState(xs);
			return -EIO;
		}
		XXH3_128bits_update(xs, buf, (size_t)n);
		off += (uint64_t)n;
	}
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(xs));
	XXH3_freeState(xs);
	memcpy(out->b, c.digest, 16);
	if (size)
		*size = off;
	return 0;
}

bool dhash_eq(const struct dhash *a, const struct dhash *b)
{
	return !memcmp(a->b, b->b, 16);
}

int path_fmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];

	if (path_fmt(buf, sizeof(buf), "%s", path))
		return -ENAMETOOLONG;
	for (char *p = buf; *p; p++) {
		if (*p != '/' || p == buf)
			continue;
		*p = '\0';
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return mkdir(buf, mode) && errno != EEXIST ? -errno : 0;
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t now_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

int64_t mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

int read_secret(char *out, size_t len, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0;
	ssize_t r = 1;
	int rc = 0;

	if (fd < 0)
		return -errno;
	while (n < len && (r = read(fd, out + n, len - n)) > 0)
		n += (size_t)r;
	if (r < 0) {
		rc = -errno;
	} else if (n == len) { /* full: only newlines may follow */
		char c;

		while ((r = read(fd, &c, 1)) == 1 && (c == '\n' || c == '\r'))
			;
		if (r != 0)
			rc = r < 0 ? -errno : -EFBIG;
	}
	close(fd);
	while (!rc && n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		n--;
	if (!rc && n >= len)
		rc = -EFBIG;
	if (rc) {
		explicit_bzero(out, len);
		return rc;
	}
	out[n] = '\0';
	return (int)n;
}

int parse_duration_ms(const char *text, int *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (errno || end == text || v < 0 || *text == '-' || *text == '+')
		return -EINVAL;
	if (!strcmp(end, "ms"))
		;
	else if (!*end || !strcmp(end, "s"))
		v *= 1000;
	else if (!strcmp(end, "m"))
		v *= 60000;
	else if (!strcmp(end, "h"))
		v *= 3600000;
	else
		return -EINVAL;
	if (v > 86400000.0 * 7)
		return -ERANGE;
	*out = (int)v;
	return 0;
}

int parse_bool(const char *text, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };

	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(text, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(text, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Longest escaped form of one character: "\u001f" or "\ufffd". */
#define JSON_CHAR_MAX 6

/*
 * 1 if @s starts a well-formed UTF-8 sequence of two to four bytes
 * (Unicode table 3-7: no overlong forms, surrogates or code points past
 * U+10FFFF), else 0. *@used is its length, or the length of the maximal
 * subpart to replace by one U+FFFD, as Unicode and Python's "replace"
 * do. Stops at the terminating NUL, which is never a continuation byte.
 */
static int utf8_seq(const unsigned char *s, size_t *used)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t need, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		need = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		need = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		need = 4;
	else
		need = 1; /* a stray continuation byte, C0, C1 or F5-FF */
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	for (i = 1; i < need; i++, lo = 0x80, hi = 0xbf)
		if (s[i] < lo || s[i] > hi)
			break;
	*used = i;
	return need > 1 && i == need;
}

/* Escape the character at *@s into @out (no NUL) and step past it. */
static size_t json_char(char out[JSON_CHAR_MAX], const char **s)
{
	const unsigned char *p = (const unsigned char *)*s;
	size_t len = 1;
	int valid;

	if (*p < 0x80) {
		*s += 1;
		if (*p == '"' || *p == '\\') {
			out[0] = '\\';
			out[1] = (char)*p;
			return 2;
		}
		if (*p < 0x20) {
			memcpy(out, "\\u00", 4);
			out[4] = hex_digits[*p >> 4];
			out[5] = hex_digits[*p & 15];
			return 6;
		}
		out[0] = (char)*p;
		return 1;
	}
	valid = utf8_seq(p, &len);
	*s += len;
	if (!valid) {
		memcpy(out, "\\ufffd", 6);
		return 6;
	}
	memcpy(out, p, len);
	return len;
}

void json_put_str(FILE *f, const char *s)
{
	char buf[JSON_CHAR_MAX];

	fputc('"', f);
	while (s && *s)
		fwrite(buf, 1, json_char(buf, &s), f);
	fputc('"', f);
}

size_t json_quote(char *out, size_t cap, const char *s)
{
	char buf[JSON_CHAR_MAX];
	size_t n = 1, len;

	assert(cap >= 3);
	out[0] = '"';
	while (s && *s) {
		len = json_char(buf, &s);
		if (n + len + 2 > cap) /* keep room for the quote and NUL */
			break;
		memcpy(out + n, buf, len);
		n += len;
	}
	out[n++] = '"';
	out[n] = '\0';
	return n;
}
