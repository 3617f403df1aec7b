/* SPDX-License-Identifier: Apache-2.0 */
/* test_util.c - sync/ helpers: the JSON string writer, secret files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "sync.h"

/* json_put_str of @s into a malloc'd string, which must equal @want. */
static int put_is(const char *s, const char *want)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int ok;

	if (!f)
		return 0;
	json_put_str(f, s);
	fclose(f);
	ok = len == strlen(want) && !memcmp(buf, want, len);
	if (!ok)
		fprintf(stderr, "json_put_str: got [%s], want [%s]\n", buf,
			want);
	free(buf);
	return ok;
}

/* Both writers give @want for @s when nothing is cut. */
static int quoted_is(const char *s, const char *want)
{
	char buf[256];

	if (json_quote(buf, sizeof(buf), s) != strlen(want) ||
	    strcmp(buf, want)) {
		fprintf(stderr, "json_quote: got [%s], want [%s]\n", buf, want);
		return 0;
	}
	return put_is(s, want);
}

/* read_secret() of a temporary file holding @text (then removed). */
static int secret_of(const char *text, char *buf, size_t len)
{
	char path[] = "/tmp/dagfs-test-secret-XXXXXX";
	int fd = mkstemp(path), rc = -1;

	if (fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text))
		rc = read_secret(buf, len, path);
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	return rc;
}

static void test_util__read_secret_cuts_newlines_and_refuses_too_long(void)
{
	char buf[8];

	CHECK(secret_of("s3cret\r\n\n", buf, sizeof(buf)) == 6 &&
	      !strcmp(buf, "s3cret"));
	CHECK(secret_of("1234567\n", buf, sizeof(buf)) == 7); /* just fits */
	CHECK(secret_of("12345678", buf, sizeof(buf)) == -EFBIG && !buf[0]);
	CHECK(secret_of("1234567\nX", buf, sizeof(buf)) == -EFBIG);
	CHECK(secret_of("\n", buf, sizeof(buf)) == 0 && !buf[0]);
	CHECK(read_secret(buf, sizeof(buf), "/nonexistent/secret") == -ENOENT);
}

static void test_util__json_escapes_quote_backslash_controls(void)
{
	CHECK(quoted_is("", "\"\""));
	CHECK(quoted_is(NULL, "\"\""));
	CHECK(quoted_is("plain dags/a.py", "\"plain dags/a.py\""));
	CHECK(quoted_is("say \"hi\" \\o/", "\"say \\\"hi\\\" \\\\o/\""));
	CHECK(quoted_is("a\tb\x01\x1f\x7f", "\"a\\u0009b\\u0001\\u001f\x7f\""));
}

static void test_util__json_copies_valid_utf8(void)
{
	/* two-, three- and four-byte forms and the edges of each range */
	CHECK(quoted_is("caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80",
			"\"caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80\""));
	CHECK(quoted_is("\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"
			"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf",
			"\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"
			"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\""));
}

static void test_util__json_replaces_ill_formed_utf8(void)
{
	/* one U+FFFD per maximal subpart, as Python's errors="replace" */
	CHECK(quoted_is("a\x80z", "\"a\\ufffdz\""));
	CHECK(quoted_is("\xff\xfe", "\"\\ufffd\\ufffd\""));
	CHECK(quoted_is("\xc0\xaf", "\"\\ufffd\\ufffd\"")); /* overlong */
	CHECK(quoted_is("\xe0\x9f\xbf",
			"\"\\ufffd\\ufffd\\ufffd\"")); /* overlong */
	CHECK(quoted_is("\xed\xa0\x80",
			"\"\\ufffd\\ufffd\\ufffd\"")); /* surrogate */
	CHECK(quoted_is("\xf4\x90\x80\x80",
			"\"\\ufffd\\ufffd\\ufffd\\ufffd\"")); /* past U+10FFFF */
	CHECK(quoted_is("\xe2\x82z", "\"\\ufffdz\""));	      /* truncated */
	CHECK(quoted_is("x\xf0\x9f\x98", "\"x\\ufffd\"")); /* cut at the end */
	CHECK(quoted_is("\xc3\"", "\"\\ufffd\\\"\""));
}

static void test_util__json_quote_cuts_whole_characters(void)
{
	char buf[16];

	memset(buf, 'X', sizeof(buf));
	CHECK(json_quote(buf, 5, "ab") == 4 && !strcmp(buf, "\"ab\""));
	CHECK(json_quote(buf, 5, "abc") == 4 && !strcmp(buf, "\"ab\""));
	CHECK(json_quote(buf, 3, "abc") == 2 && !strcmp(buf, "\"\""));
	CHECK(json_quote(buf, 11, "abc\x01") == 5 && !strcmp(buf, "\"abc\""));
	CHECK(json_quote(buf, 12, "abc\x01") == 11 &&
	      !strcmp(buf, "\"abc\\u0001\""));
	CHECK(json_quote(buf, 5, "a\xc3\xa9") == 3 && !strcmp(buf, "\"a\""));
	memset(buf, 'X', sizeof(buf));
	CHECK(json_quote(buf, 6, "a\xc3\xa9") == 5 &&
	      !strcmp(buf, "\"a\xc3\xa9\""));
	CHECK(buf[6] == 'X'); /* nothing written past the NUL */
}

int main(void)
{
	static const struct harness_case cases[] = {
		{ "test_util__read_secret_cuts_newlines_and_refuses_too_long",
		  test_util__read_secret_cuts_newlines_and_refuses_too_long },
		{ "test_util__json_escapes_quote_backslash_controls",
		  test_util__json_escapes_quote_backslash_controls },
		{ "test_util__json_copies_valid_utf8",
		  test_util__json_copies_valid_utf8 },
		{ "test_util__json_replaces_ill_formed_utf8",
		  test_util__json_replaces_ill_formed_utf8 },
		{ "test_util__json_quote_cuts_whole_characters",
		  test_util__json_quote_cuts_whole_characters },
		{ NULL, NULL },
	};

	return harness_run(cases);
}
