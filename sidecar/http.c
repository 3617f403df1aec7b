/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http.c - the health, readiness, metrics and webhook endpoints on
 * libmicrohttpd's own polling thread (epoll where there is one), and the
 * served store's /store/ requests handed to serve.c. It knows HTTP and
 * HMAC only; what the answers say comes from the daemon's callbacks. The webhook secret
 * is read from a file once and never logged.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_i.h"

#define BODY_MAX (1 << 20)
#define SECRET_MAX 4096

struct http {
	struct MHD_Daemon *d;
	struct http_handlers h;
	char secret[SECRET_MAX];
	size_t slen; /* 0: no signature required */
};

struct upload {
	int kind; /* HTTP_CONN_UPLOAD */
	char *buf;
	size_t len;
	bool too_big;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int http_verify_signature(const void *secret, size_t slen, const void *body,
			  size_t blen, const char *header)
{
	unsigned char want[EVP_MAX_MD_SIZE], got[32];
	unsigned int wlen = 0;

	if (!header || strncmp(header, "sha256=", 7) || strlen(header) != 71)
		return -EINVAL;
	for (int i = 0; i < 32; i++) {
		int hi = hexval(header[7 + 2 * i]),
		    lo = hexval(header[8 + 2 * i]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		got[i] = (unsigned char)(hi << 4 | lo);
	}
	if (!HMAC(EVP_sha256(), secret, (int)slen, body, blen, want, &wlen) ||
	    wlen != 32)
		return -EIO;
	return CRYPTO_memcmp(want, got, 32) ? -EPERM : 0;
}

static enum MHD_Result reply(struct MHD_Connection *c, int status, char *body,
			     const char *type)
{
	const char *text = body ? body : "";
	struct MHD_Response *r =
		MHD_create_response_from_buffer(strlen(text), (void *)text,
						MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	free(body);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	ret = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

static char *text(const char *s)
{
	return strdup(s);
}

static enum MHD_Result do_sync(struct http *http, struct MHD_Connection *c,
			       struct upload *u)
{
	const char *src = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
						      "source");
	const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						      "X-Hub-Signature-256");
	char *body = NULL;
	int rc, status;

	if (u->too_big)
		return reply(c, 413, text("body too large\n"), "text/plain");
	if (http->slen) {
		rc = http_verify_signature(http->secret, http->slen,
					   u->buf ? u->buf : "", u->len, sig);
		if (rc) {
			log_warn("http", "POST /sync refused: %s signature",
				 !sig	      ? "missing" :
				 rc == -EPERM ? "wrong" :
						"malformed");
			return reply(c, 401,
				     text(!sig ? "signature missing\n" :
						 "signature invalid\n"),
				     "text/plain");
		}
	}
	status = http->h.sync(http->h.payload, src, &body);
	return reply(c, status, body, "text/plain");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *data,
			      size_t *data_size, void **con_cls)
{
	struct http *http = cls;
	struct upload *u = *con_cls;
	char *body = NULL;
	int status;

	(void)version;
	if (!strcmp(method, "POST") && !strcmp(url, "/sync")) {
		if (!u) { /* first call: headers only */
			*con_cls = u = calloc(1, sizeof(*u));
			if (u)
				u->kind = HTTP_CONN_UPLOAD;
			return u ? MHD_YES : MHD_NO;
		}
		if (*data_size) {
			if (u->len + *data_size > BODY_MAX) {
				u->too_big = true;
			} else {
				char *nb = realloc(u->buf,
						   u->len + *data_size + 1);

				if (!nb)
					return MHD_NO;
				u->buf = nb;
				memcpy(u->buf + u->len, data, *data_size);
				u->len += *data_size;
				u->buf[u->len] = '\0';
			}
			*data_size = 0;
			return MHD_YES;
		}
		return do_sync(http, c, u);
	}
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply(c, 405, text("method not allowed\n"),
			     "text/plain");
	if (http->h.store && !strncmp(url, "/store/", 7))
		return http->h.store(http->h.payload, c, url, con_cls);
	if (!strcmp(url, "/healthz"))
		status = http->h.healthz(http->h.payload, &body);
	else if (!strcmp(url, "/readyz"))
		status = http->h.readyz(http->h.payload, &body);
	else if (!strcmp(url, "/metrics")) {
		status = http->h.metrics(http->h.payload, &body);
		return reply(c, status, body,
			     "text/plain; version=0.0.4; charset=utf-8");
	} else
		return reply(c, 404, text("not found\n"), "text/plain");
	return reply(c, status, body, "text/plain");
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode why)
{
	struct http *http = cls;
	struct upload *u = *con_cls;

	(void)c;
	(void)why;
	if (u && u->kind == HTTP_CONN_STORE) {
		http->h.store_done(http->h.payload, u);
		*con_cls = NULL;
	} else if (u) {
		free(u->buf);
		free(u);
		*con_cls = NULL;
	}
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	log_vemit(LOG_LVL_WARN, "http", fmt, ap);
}

/* "host:port", "[v6]:port" or ":port" into a socket address. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, char *err,
		      size_t errlen)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_PASSIVE |
					      AI_NUMERICSERV,
				  .ai_socktype = SOCK_STREAM },
			*res = NULL;
	size_t hl;
	long port;
	char *end;

	if (!colon)
		goto bad;
	port = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || port < 1 || port > 65535)
		goto bad;
	hl = (size_t)(colon - addr);
	if (hl >= sizeof(host))
		goto bad;
	memcpy(host, addr, hl);
	host[hl] = '\0';
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	if (getaddrinfo(hl ? host : NULL, colon + 1, &hints, &res) || !res)
		goto bad;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
bad:
	snprintf(err, errlen,
		 "http: bad address '%s' (expected ADDR:PORT, "
		 "e.g. 127.0.0.1:8080 or [::]:8080)",
		 addr);
	return -EINVAL;
}

static int webhook_secret(struct http *http, const char *path, char *err,
			  size_t errlen)
{
	int n = read_secret(http->secret, sizeof(http->secret), path);

	if (n < 0) {
		snprintf(err, errlen, "webhook secret file %s: %s", path,
			 strerror(-n));
		return n;
	}
	if (n == 0) {
		snprintf(err, errlen, "webhook secret file %s is empty", path);
		return -EINVAL;
	}
	http->slen = (size_t)n;
	return 0;
}

int http_start(struct http **out, const char *addr, const char *secret_file,
	       const struct http_handlers *h, char *err, size_t errlen)
{
	struct http *http = calloc(1, sizeof(*http));
	struct sockaddr_storage ss = { 0 };
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
	int rc;

	if (!http)
		return -ENOMEM;
	http->h = *h;
	rc = parse_addr(addr, &ss, err, errlen);
	if (!rc && secret_file && *secret_file)
		rc = webhook_secret(http, secret_file, err, errlen);
	if (rc)
		goto err;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (h->store) /* long-polls: suspended, many at once */
		flags |= MHD_ALLOW_SUSPEND_RESUME;
	http->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, http,
				   MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				   MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				   MHD_OPTION_NOTIFY_COMPLETED, completed, http,
				   MHD_OPTION_CONNECTION_TIMEOUT, 30u,
				   MHD_OPTION_CONNECTION_LIMIT,
				   h->store ? 4096u : 64u, MHD_OPTION_END);
	if (!http->d) {
		snprintf(err, errlen,
			 "http: cannot listen on %s (address in "
			 "use or not local?)",
			 addr);
		rc = -EADDRINUSE;
		goto err;
	}
	*out = http;
	return 0;
err:
	OPENSSL_cleanse(http->secret, sizeof(http->secret));
	free(http);
	return rc;
}

void http_stop(struct http *http)
{
	if (!http)
		return;
	if (http->h.quiesce)
		http->h.quiesce(http->h.payload);
	MHD_stop_daemon(http->d);
	OPENSSL_cleanse(http->secret, sizeof(http->secret));
	free(http);
}
