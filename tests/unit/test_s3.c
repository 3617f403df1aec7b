/* SPDX-License-Identifier: Apache-2.0 */
/* test_s3.c - S3 parsers: keys to paths, listings, errors, credentials. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "s3_i.h"

static void test_s3__keys_to_paths(void)
{
	char out[4096];
	const char *why;

	CHECK(s3_key_to_path("p/a/b.py", 8, "p/", out, sizeof(out), &why) == 0);
	CHECK(!strcmp(out, "a/b.py"));
	CHECK(s3_key_to_path("p/dir/", 6, "p/", out, sizeof(out), &why) == 1);
	CHECK(!strcmp(out, "dir"));
	CHECK(s3_key_to_path("p/", 2, "p/", out, sizeof(out), &why) == 2);
	CHECK(s3_key_to_path("a.py", 4, "", out, sizeof(out), &why) == 0);
}

static void test_s3__hostile_keys_are_refused(void)
{
	static const char *const bad[] = { "p/../x",  "p/./x",	     "p//x",
					   "p/..",    "p/a/../../x", "p/\x01x",
					   "p/\x7fx", "q/x",	     "p//" };
	char out[4096], longkey[300];
	const char *why;

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		CHECK(s3_key_to_path(bad[i], strlen(bad[i]), "p/", out,
				     sizeof(out), &why) == -EINVAL);
		CHECK(why != NULL);
	}
	CHECK(s3_key_to_path("p/a\0b", 5, "p/", out, sizeof(out), &why) ==
	      -EINVAL);
	memset(longkey, 'x', sizeof(longkey));
	memcpy(longkey, "p/", 2);
	CHECK(s3_key_to_path(longkey, sizeof(longkey), "p/", out, sizeof(out),
			     &why) == -EINVAL);
}

static void test_s3__listing_pages_and_url_encoding(void)
{
	static const char xml[] =
		"<?xml version=\"1.0\"?><ListBucketResult><EncodingType>url"
		"</EncodingType><Contents><Key>p%2Fa+b%2Bc.py</Key>"
		"<LastModified>2026-11-24T09:57:34.147Z</LastModified>"
		"<ETag>&quot;dee5c46989f5ec092311188f4fe829c3&quot;</ETag>"
		"<Size>9</Size></Contents><Contents><Key>p%2F%01x</Key>"
		"<ETag>\"e\"</ETag><Size>1</Size><LastModified>"
		"2026-11-24T09:57:34Z</LastModified></Contents>"
		"<IsTruncated>true</IsTruncated><NextContinuationToken>p/z"
		"</NextContinuationToken></ListBucketResult>";
	struct s3_page pg = { 0 };

	CHECK(!s3_list_parse(&pg, xml, sizeof(xml) - 1));
	CHECK(pg.n == 2 && pg.truncated && !strcmp(pg.next_token, "p/z"));
	CHECK(!strcmp(pg.v[0].key, "p/a b+c.py") && pg.v[0].size == 9);
	CHECK(!strcmp(pg.v[0].etag, "dee5c46989f5ec092311188f4fe829c3"));
	CHECK(pg.v[0].mtime_ns == 1795514254147000000LL);
	CHECK(pg.v[1].klen == 4 && pg.v[1].key[2] == 1);
	s3_page_free(&pg);
	CHECK(s3_list_parse(&pg,
			    "<ListBucketResult><IsTruncated>true"
			    "</IsTruncated></ListBucketResult>",
			    64) == -EBADMSG);
	s3_page_free(&pg);
	CHECK(s3_list_parse(&pg, "<List", 5) == -EBADMSG);
	s3_page_free(&pg);
}

/* Three pages of 1,000 long keys: more text than one block of the
 * listing's strings holds, and an array grown several times; every key
 * and ETag must come out whole, in order, after the parse of later pages. */
static void test_s3__a_listing_of_many_pages_keeps_every_key(void)
{
	const size_t pages = 3, per = 1000, cap = 600 << 10;
	char *xml = malloc(cap), pad[201], key[256];
	struct s3_page pg = { 0 };
	size_t len = 0;

	memset(pad, 'k', 200);
	pad[200] = '\0';
	for (size_t p = 0; p < pages; p++) {
		len = 0;
		len += (size_t)snprintf(xml + len, cap - len,
					"<ListBucketResult><EncodingType>url"
					"</EncodingType>");
		for (size_t i = 0; i < per; i++)
			len += (size_t)
				snprintf(xml + len, cap - len,
					 "<Contents><ETag>\"%032zx\"</ETag>"
					 "<Key>d/%s%%2F%05zu.py</Key><Size>%zu</Size>"
					 "<LastModified>2026-11-24T09:57:34Z"
					 "</LastModified></Contents>",
					 p * per + i, pad, p * per + i, i);
		len += (size_t)snprintf(xml + len, cap - len,
					"<IsTruncated>%s</IsTruncated>"
					"<NextContinuationToken>t%zu"
					"</NextContinuationToken>"
					"</ListBucketResult>",
					p + 1 < pages ? "true" : "false", p);
		CHECK(len < cap);
		CHECK(!s3_list_parse(&pg, xml, len));
	}
	CHECK(pg.n == pages * per && !pg.truncated);
	for (size_t i = 0; i < pg.n; i++) {
		char etag[40];

		snprintf(key, sizeof(key), "d/%s/%05zu.py", pad, i);
		snprintf(etag, sizeof(etag), "%032zx", i);
		CHECK(!strcmp(pg.v[i].key, key));
		CHECK(pg.v[i].klen == strlen(key));
		CHECK(!strcmp(pg.v[i].etag, etag));
		CHECK(pg.v[i].size == i % per);
	}
	/* the same page fed as a response arrives, 7 bytes at a time */
	s3_page_drop_objects(&pg);
	{
		struct s3_list_parser *lp;

		CHECK(!s3_list_begin(&lp, &pg));
		for (size_t o = 0; o < len; o += 7)
			CHECK(!s3_list_feed(lp, xml + o,
					    len - o < 7 ? len - o : 7, false));
		CHECK(!s3_list_feed(lp, NULL, 0, true));
		s3_list_end(lp);
		CHECK(pg.n == per);
		snprintf(key, sizeof(key), "d/%s/%05zu.py", pad,
			 (pages - 1) * per + per - 1);
		CHECK(!strcmp(pg.v[per - 1].key, key));
		/* a page cut short adds nothing */
		CHECK(!s3_list_begin(&lp, &pg));
		CHECK(!s3_list_feed(lp, xml, len / 2, false));
		CHECK(s3_list_feed(lp, "<<", 2, true) == -EBADMSG);
		s3_list_end(lp);
		CHECK(pg.n == per);
	}
	/* a poll drops each page once hashed: the next still parses whole */
	s3_page_drop_objects(&pg);
	CHECK(pg.n == 0 && !pg.strings && pg.v);
	CHECK(!s3_list_parse(&pg, xml, len) && pg.n == per);
	snprintf(key, sizeof(key), "d/%s/%05zu.py", pad, (pages - 1) * per);
	CHECK(!strcmp(pg.v[0].key, key));
	s3_page_free(&pg);
	CHECK(pg.n == 0 && !pg.v && !pg.strings);
	free(xml);
}

static void test_s3__error_bodies(void)
{
	static const char xml[] = "<Error><Code>SignatureDoesNotMatch</Code>"
				  "<Message>bad\nsig</Message></Error>";
	char code[64], msg[64];

	s3_error_parse(xml, sizeof(xml) - 1, code, sizeof(code), msg,
		       sizeof(msg));
	CHECK(!strcmp(code, "SignatureDoesNotMatch") &&
	      !strcmp(msg, "bad sig"));
	s3_error_parse("garbage", 7, code, sizeof(code), msg, sizeof(msg));
	CHECK(!code[0] && !msg[0]);
}

static void test_s3__credentials_file_profiles(void)
{
	static const char text[] =
		"[default]\naws_access_key_id = A1\n"
		"aws_secret_access_key = S1\n[prod]\n"
		"aws_access_key_id=A2\naws_secret_access_key=S2\n"
		"aws_session_token = T2\n";
	struct s3_creds c;

	CHECK(!s3_creds_parse_file(&c, text, "default"));
	CHECK(!strcmp(c.access_key, "A1") && !strcmp(c.secret_key, "S1"));
	CHECK(!s3_creds_parse_file(&c, text, "prod") && !strcmp(c.token, "T2"));
	CHECK(s3_creds_parse_file(&c, text, "nope") == -ENOENT);
}

static void test_s3__sts_and_imds_answers(void)
{
	static const char sts[] =
		"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentity"
		"Result><Credentials><AccessKeyId>ASIA1</AccessKeyId>"
		"<SecretAccessKey>sk</SecretAccessKey><SessionToken>tok"
		"</SessionToken><Expiration>2026-11-24T10:57:34Z</Expiration>"
		"</Credentials></AssumeRoleWithWebIdentityResult>"
		"</AssumeRoleWithWebIdentityResponse>";
	static const char imds[] =
		"{\"Code\":\"Success\",\"AccessKeyId\" : \"ASIA2\",\n"
		"\"SecretAccessKey\":\"s\\/k\",\"Token\":\"t\","
		"\"Expiration\":\"2026-11-24T10:57:34Z\"}";
	struct s3_creds c;

	CHECK(!s3_sts_parse(&c, sts, sizeof(sts) - 1));
	CHECK(!strcmp(c.access_key, "ASIA1") && !strcmp(c.token, "tok"));
	CHECK(c.expires_ns == 1795517854LL * 1000000000);
	CHECK(!s3_imds_parse(&c, imds));
	CHECK(!strcmp(c.secret_key, "s/k") && !strcmp(c.access_key, "ASIA2"));
	CHECK(s3_imds_parse(&c, "{\"AccessKeyId\":\"x\"}") == -EBADMSG);
}

int main(void)
{
	static const struct harness_case cases[] = {
		{ "test_s3__keys_to_paths", test_s3__keys_to_paths },
		{ "test_s3__hostile_keys_are_refused",
		  test_s3__hostile_keys_are_refused },
		{ "test_s3__listing_pages_and_url_encoding",
		  test_s3__listing_pages_and_url_encoding },
		{ "test_s3__a_listing_of_many_pages_keeps_every_key",
		  test_s3__a_listing_of_many_pages_keeps_every_key },
		{ "test_s3__error_bodies", test_s3__error_bodies },
		{ "test_s3__credentials_file_profiles",
		  test_s3__credentials_file_profiles },
		{ "test_s3__sts_and_imds_answers",
		  test_s3__sts_and_imds_answers },
		{ NULL, NULL },
	};

	return harness_run(cases);
}
