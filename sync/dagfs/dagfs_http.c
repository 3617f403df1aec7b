/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dagfs_http.c - the dagfs source's HTTP: GETs on the source's curl multi
 * handle (interruptible by src->wakefd), retries, and the one translation
 * of curl results and HTTP statuses into -errno and a one-line reason.
 *
 * It must not check what it fetched (dagfs_verify.c does) and never puts
 * a secret in a URL or a message: the token travels in a header.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "dagfs_i.h"

/* -------------------------------------------------------------- errors */

/* The one translation of curl results and HTTP statuses; no URL with a
 * secret ever reaches it (the token travels in a header). */
int dg_fail(struct source *src, char *err, size_t errlen, const char *what,
	    CURLcode cc, long status)
{
	if (cc != CURLE_OK) {
		snprintf(err, errlen, "%s: %s: %s", src->tag, what,
			 curl_easy_strerror(cc));
		return cc == CURLE_PEER_FAILED_VERIFICATION ? -EPERM : -EIO;
	}
	snprintf(err, errlen, "%s: %s: HTTP %ld%s", src->tag, what, status,
		 status == 401 || status == 403 ? " (check token-file=)" :
		 status == 404			? " (not on the upstream)" :
						  "");
	return status == 401 || status == 403 ? -EACCES :
	       status == 404		      ? -ENOENT :
						-EIO;
}

bool dg_retryable(CURLcode cc, long status)
{
	if (cc == CURLE_OK)
		return status >= 500 || status == 429 || status == 408;
	return cc != CURLE_PEER_FAILED_VERIFICATION &&
	       cc != CURLE_URL_MALFORMAT && cc != CURLE_UNSUPPORTED_PROTOCOL;
}

/* ------------------------------------------------------------- curl */

size_t dg_body_write(char *data, size_t sz, size_t n, void *ud)
{
	struct body *b = ud;
	size_t len = sz * n;
	char *p;

	if (b->len + len > b->max) {
		b->too_big = true;
		return 0;
	}
	p = realloc(b->p, b->len + len + 1);
	if (!p)
		return 0;
	b->p = p;
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return len;
}

static size_t poll_header(char *line, size_t sz, size_t n, void *ud)
{
	bool *waited = ud;

	if (sz * n >= 17 && !strncasecmp(line, "X-Dagfs-Long-Poll:", 17))
		*waited = true;
	return sz * n;
}

void dg_easy_setup(struct dg *g, CURL *e, const char *url, long timeout_s)
{
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, timeout_s);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	if (g->auth)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, g->auth);
	if (g->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, g->ca_file);
}

/*
 * One GET into @b on the multi handle. With @intr, src->wakefd ends it
 * early: returns 1 (the event is drained). Else 0 for a 200, or -errno
 * with the reason in @err. *@waited says whether the upstream long-polled.
 */
int dg_get(struct source *src, CURL *e, const char *url, const char *what,
	   struct body *b, long timeout_s, bool intr, bool *waited, char *err,
	   size_t errlen)
{
	struct dg *g = src->priv;
	struct curl_waitfd wfd = { .fd = src->wakefd,
				   .events = CURL_WAIT_POLLIN };
	CURLcode cc = CURLE_OK;
	long status = 0;
	bool done = false, interrupted = false, w = false;
	int running;

	curl_easy_reset(e);
	dg_easy_setup(g, e, url, timeout_s);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, dg_body_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, poll_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &w);
	if (curl_multi_add_handle(g->m, e) != CURLM_OK)
		return -ENOMEM;
	while (!done) {
		CURLMsg *msg;
		int q, nfd = 0;

		curl_multi_perform(g->m, &running);
		while ((msg = curl_multi_info_read(g->m, &q))) {
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == e) {
				cc = msg->data.result;
				done = true;
			}
		}
		if (done)
			break;
		curl_multi_poll(g->m, intr ? &wfd : NULL, intr ? 1 : 0, 1000,
				&nfd);
		if (intr && (wfd.revents & CURL_WAIT_POLLIN)) {
			interrupted = true;
			break;
		}
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(g->m, e);
	if (!interrupted)
		g->unreachable = cc == CURLE_COULDNT_CONNECT ||
				 cc == CURLE_COULDNT_RESOLVE_HOST ||
				 cc == CURLE_GOT_NOTHING ||
				 cc == CURLE_RECV_ERROR;
	if (waited)
		*waited = w;
	if (interrupted) {
		source_poll_wake(src, -1, 0); /* drain */
		return 1;
	}
	if (b->too_big) {
		snprintf(err, errlen, "%s: %s: larger than %zu bytes", src->tag,
			 what, b->max);
		return -EFBIG;
	}
	if (cc != CURLE_OK || status != 200)
		return dg_fail(src, err, errlen, what, cc, status);
	return 0;
}

/* GET with retries for what is not the long-poll. */
int dg_get_retry(struct source *src, const char *url, const char *what,
		 struct body *b, char *err, size_t errlen)
{
	CURL *e = curl_easy_init();
	int rc = -ENOMEM;

	for (int i = 0; e && i < TRIES; i++) {
		b->len = 0;
		b->too_big = false;
		rc = dg_get(src, e, url, what, b, 60, false, NULL, err, errlen);
		if (rc != -EIO)
			break;
		usleep(100000u << i);
	}
	curl_easy_cleanup(e);
	return rc;
}
