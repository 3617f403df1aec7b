/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3_xml.c - the XML S3 and STS answer with, parsed with expat:
 * ListObjectsV2 pages, <Error> bodies, AssumeRoleWithWebIdentity
 * credentials. Only the elements dagfs uses are read; anything malformed
 * fails the whole response (-EBADMSG), never part of it.
 */
#include <errno.h>
#include <expat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "s3_i.h"

#define XML_DEPTH 8
#define TEXT_MAX 4096

/* The Contents element being read: its text is copied into the
 * listing's strings only once the element is whole. */
struct cur_object {
	char key[TEXT_MAX + 1];
	size_t klen;
	bool has_key;
	char etag[S3_ETAG_MAX + 1];
	uint64_t size;
	int64_t mtime_ns;
};

struct xml_state {
	char stack[XML_DEPTH][48];
	int depth; /* may exceed XML_DEPTH: deeper elements are ignored */
	char text[TEXT_MAX + 1];
	size_t tlen;
	bool overflow;
	/* what to do with each closed element */
	void (*leaf)(struct xml_state *x, const char *parent, const char *name);
	void *out;
	int err;
	struct cur_object cur;
};

static void XMLCALL on_start(void *ud, const XML_Char *name,
			     const XML_Char **attrs)
{
	struct xml_state *x = ud;

	(void)attrs;
	if (x->depth < XML_DEPTH)
		snprintf(x->stack[x->depth], sizeof(x->stack[0]), "%s", name);
	x->depth++;
	x->tlen = 0;
	x->overflow = false;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
	struct xml_state *x = ud;

	(void)name;
	x->depth--;
	x->text[x->tlen] = '\0';
	if (x->depth < XML_DEPTH && !x->overflow)
		x->leaf(x, x->depth ? x->stack[x->depth - 1] : "",
			x->stack[x->depth]);
	else if (x->overflow)
		x->err = -EBADMSG;
	x->tlen = 0;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
	struct xml_state *x = ud;

	if (x->tlen + (size_t)len > TEXT_MAX) {
		x->overflow = true;
		return;
	}
	memcpy(x->text + x->tlen, s, (size_t)len);
	x->tlen += (size_t)len;
}

/* Copy a field that must fit whole: a cut key or token is a wrong one. */
static void take(struct xml_state *x, char *dst, size_t cap, const char *src,
		 size_t n)
{
	if (n >= cap) {
		x->err = -EBADMSG;
		return;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static XML_Parser xml_new(struct xml_state *x)
{
	XML_Parser p = XML_ParserCreate("UTF-8");

	if (!p)
		return NULL;
	XML_SetUserData(p, x);
	XML_SetElementHandler(p, on_start, on_end);
	XML_SetCharacterDataHandler(p, on_text);
	return p;
}

static int xml_run(struct xml_state *x, const char *xml, size_t len)
{
	XML_Parser p = xml_new(x);
	int rc = 0;

	if (!p)
		return -ENOMEM;
	if (len > (size_t)1 << 30 ||
	    XML_Parse(p, xml, (int)len, 1) != XML_STATUS_OK)
		rc = -EBADMSG;
	XML_ParserFree(p);
	return rc ? rc : x->err;
}

int s3_time_parse(const char *s, int64_t *out)
{
	struct tm tm = { 0 };
	const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	long frac = 0, scale = 1000000000;

	if (!rest)
		return -EINVAL;
	if (*rest == '.') {
		for (rest++; *rest >= '0' && *rest <= '9'; rest++)
			if (scale > 1) {
				scale /= 10;
				frac += (*rest - '0') * scale;
			}
	}
	time_t t;

	if (strcmp(rest, "Z") && strcmp(rest, "+00:00") && *rest)
		return -EINVAL;
	t = timegm(&tm);
	if (t < 0 || t >= INT64_MAX / 1000000000) /* 1970 to 2262: ns fit */
		return -EINVAL;
	*out = (int64_t)t * 1000000000 + frac;
	return 0;
}

/* Keys and ETags of a listing are cut from 64 KiB blocks, freed
 * together with it: no allocation (and its overhead) per key. */
#define STRINGS_BLOCK (64u << 10)
_Static_assert(TEXT_MAX + 1 + S3_ETAG_MAX + 1 <= STRINGS_BLOCK,
	       "a key and its ETag fit one block");

struct s3_strings {
	struct s3_strings *next;
	size_t used, cap;
	char data[];
};

static char *strings_alloc(struct s3_strings **head, size_t n)
{
	struct s3_strings *b = *head;

	if (!b || b->cap - b->used < n) {
		b = malloc(sizeof(*b) + STRINGS_BLOCK);
		if (!b)
			return NULL;
		b->next = *head;
		b->used = 0;
		b->cap = STRINGS_BLOCK;
		*head = b;
	}
	b->used += n;
	return b->data + b->used - n;
}

/* Append the object just read (the array grows by s3_grown()). */
static int page_push(struct s3_page *pg, const struct cur_object *c)
{
	size_t elen = strlen(c->etag);
	char *text;

	if (pg->n == pg->cap) {
		size_t cap = s3_grown(pg->cap);
		struct s3_object *v = realloc(pg->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		pg->v = v;
		pg->cap = cap;
	}
	text = strings_alloc(&pg->strings, c->klen + 1 + elen + 1);
	if (!text)
		return -ENOMEM;
	memcpy(text, c->key, c->klen + 1);
	memcpy(text + c->klen + 1, c->etag, elen + 1);
	pg->v[pg->n++] = (struct s3_object){ .key = text,
					     .etag = text + c->klen + 1,
					     .klen = c->klen,
					     .size = c->size,
					     .mtime_ns = c->mtime_ns };
	return 0;
}

static void list_leaf(struct xml_state *x, const char *parent, const char *name)
{
	struct s3_page *pg = x->out;
	struct cur_object *c = &x->cur;

	if (!strcmp(parent, "Contents")) {
		if (!strcmp(name, "Key")) {
			memcpy(c->key, x->text, x->tlen + 1);
			c->klen = x->tlen;
			c->has_key = true;
		} else if (!strcmp(name, "ETag")) {
			const char *t = x->text;
			size_t n = strlen(t);

			if (n >= 2 && t[0] == '"' && t[n - 1] == '"') {
				t++;
				n -= 2;
			}
			take(x, c->etag, sizeof(c->etag), t, n);
		} else if (!strcmp(name, "Size")) {
			char *end;

			c->size = strtoull(x->text, &end, 10);
			if (*end || end == x->text)
				x->err = -EBADMSG;
		} else if (!strcmp(name, "LastModified")) {
			if (s3_time_parse(x->text, &c->mtime_ns))
				x->err = -EBADMSG;
		}
		return;
	}
	if (strcmp(parent, "ListBucketResult"))
		return;
	if (!strcmp(name, "Contents")) {
		if (!c->has_key) {
			x->err = -EBADMSG;
			return;
		}
		if (!x->err) {
			int rc = page_push(pg, c);

			if (rc)
				x->err = rc;
		}
		c->has_key = false;
		c->klen = 0;
		c->etag[0] = '\0';
		c->size = 0;
		c->mtime_ns = 0;
	} else if (!strcmp(name, "EncodingType")) {
		pg->url_encoded = !strcmp(x->text, "url");
	} else if (!strcmp(name, "IsTruncated")) {
		pg->truncated = !strcmp(x->text, "true");
	} else if (!strcmp(name, "NextContinuationToken")) {
		free(pg->next_token);
		pg->next_token = strdup(x->text);
		if (!pg->next_token)
			x->err = -ENOMEM;
	}
}

static int hexdig(char c)
{
	return c >= '0' && c <= '9' ? c - '0' :
	       c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 :
				      -1;
}

/* Undo encoding-type=url in place ('+' is a space; %XX a byte, NUL too:
 * klen keeps the length so the sanitiser sees and refuses it). */
static int url_decode(struct s3_object *o)
{
	size_t w = 0;

	for (size_t r = 0; r < o->klen; r++) {
		char c = o->key[r];

		if (c == '%') {
			int hi, lo;

			if (r + 2 >= o->klen)
				return -EBADMSG;
			hi = hexdig(o->key[r + 1]);
			lo = hexdig(o->key[r + 2]);
			if (hi < 0 || lo < 0)
				return -EBADMSG;
			c = (char)(hi << 4 | lo);
			r += 2;
		} else if (c == '+') {
			c = ' ';
		}
		o->key[w++] = c;
	}
	o->key[w] = '\0';
	o->klen = w;
	return 0;
}

/* A listing page is 1,000 keys, well under a megabyte: more is no
 * listing (the limit a whole response had in memory before). */
#define PAGE_XML_MAX (64u << 20)

struct s3_list_parser {
	XML_Parser p;
	struct s3_page *out;
	size_t first; /* out->n when the page began */
	size_t fed;
	struct xml_state x;
};

int s3_list_begin(struct s3_list_parser **lpp, struct s3_page *out)
{
	struct s3_list_parser *lp = calloc(1, sizeof(*lp));

	*lpp = NULL;
	if (!lp)
		return -ENOMEM;
	lp->x.leaf = list_leaf;
	lp->x.out = out;
	lp->out = out;
	lp->first = out->n;
	lp->p = xml_new(&lp->x);
	if (!lp->p) {
		free(lp);
		return -ENOMEM;
	}
	out->truncated = false;
	free(out->next_token);
	out->next_token = NULL;
	out->url_encoded = false;
	*lpp = lp;
	return 0;
}

static int list_done(struct s3_list_parser *lp)
{
	struct s3_page *out = lp->out;
	int rc = 0;

	for (size_t i = lp->first; !rc && out->url_encoded && i < out->n; i++)
		rc = url_decode(&out->v[i]);
	if (!rc && out->truncated && (!out->next_token || !*out->next_token))
		rc = -EBADMSG; /* truncated without a way to go on */
	return rc;
}

int s3_list_feed(struct s3_list_parser *lp, const char *data, size_t len,
		 bool final)
{
	int rc = 0;

	lp->fed += len;
	if (lp->fed > PAGE_XML_MAX ||
	    XML_Parse(lp->p, data, (int)len, final) != XML_STATUS_OK)
		rc = -EBADMSG;
	if (!rc)
		rc = lp->x.err;
	if (!rc && final)
		rc = list_done(lp);
	if (rc)
		lp->out->n = lp->first; /* none of this page */
	return rc;
}

void s3_list_end(struct s3_list_parser *lp)
{
	if (!lp)
		return;
	XML_ParserFree(lp->p);
	free(lp);
}

int s3_list_parse(struct s3_page *out, const char *xml, size_t len)
{
	struct s3_list_parser *lp;
	int rc = s3_list_begin(&lp, out);

	if (!rc) /* s3_list_feed refuses more than PAGE_XML_MAX */
		rc = s3_list_feed(lp, xml, len, true);
	s3_list_end(lp);
	return rc;
}

void s3_page_drop_objects(struct s3_page *p)
{
	while (p->strings) {
		struct s3_strings *next = p->strings->next;

		free(p->strings);
		p->strings = next;
	}
	p->n = 0;
}

void s3_page_free(struct s3_page *p)
{
	s3_page_drop_objects(p);
	free(p->v);
	free(p->next_token);
	memset(p, 0, sizeof(*p));
}

struct err_out {
	char *code, *msg;
	size_t clen, mlen;
};

static void error_leaf(struct xml_state *x, const char *parent,
		       const char *name)
{
	struct err_out *e = x->out;

	if (strcmp(parent, "Error"))
		return;
	if (!strcmp(name, "Code"))
		take(x, e->code, e->clen, x->text, x->tlen);
	else if (!strcmp(name, "Message"))
		take(x, e->msg, e->mlen, x->text,
		     x->tlen < e->mlen ? x->tlen : e->mlen - 1);
}

void s3_error_parse(const char *xml, size_t len, char *code, size_t clen,
		    char *msg, size_t mlen)
{
	struct err_out e = { code, msg, clen, mlen };
	struct xml_state *x = calloc(1, sizeof(*x));

	code[0] = msg[0] = '\0';
	if (!x)
		return;
	x->leaf = error_leaf;
	x->out = &e;
	if (xml_run(x, xml, len))
		code[0] = msg[0] = '\0';
	for (char *c = msg; *c; c++) /* one line */
		if (*c < 0x20)
			*c = ' ';
	free(x);
}

static void sts_leaf(struct xml_state *x, const char *parent, const char *name)
{
	struct s3_creds *c = x->out;

	if (strcmp(parent, "Credentials"))
		return;
	if (!strcmp(name, "AccessKeyId"))
		take(x, c->access_key, sizeof(c->access_key), x->text, x->tlen);
	else if (!strcmp(name, "SecretAccessKey"))
		take(x, c->secret_key, sizeof(c->secret_key), x->text, x->tlen);
	else if (!strcmp(name, "SessionToken"))
		take(x, c->token, sizeof(c->token), x->text, x->tlen);
	else if (!strcmp(name, "Expiration") &&
		 s3_time_parse(x->text, &c->expires_ns))
		x->err = -EBADMSG;
}

int s3_sts_parse(struct s3_creds *out, const char *xml, size_t len)
{
	struct xml_state *x = calloc(1, sizeof(*x));
	int rc;

	if (!x)
		return -ENOMEM;
	memset(out, 0, sizeof(*out));
	x->leaf = sts_leaf;
	x->out = out;
	rc = xml_run(x, xml, len);
	free(x);
	if (!rc && (!out->access_key[0] || !out->secret_key[0]))
		rc = -EBADMSG;
	return rc;
}
