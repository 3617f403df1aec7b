/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3_creds.c - AWS credentials in the usual order: environment, shared
 * credentials file and profile, web identity (STS, as on EKS with IRSA),
 * instance metadata (IMDSv2). Secrets are copied into struct s3_creds
 * only; nothing here logs them or puts them in an error message.
 */
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "s3_i.h"

#define STS_DEFAULT "https://sts.amazonaws.com/"
#define IMDS_DEFAULT "http://169.254.169.254"

struct profile_ctx {
	struct s3_creds *c;
	const char *profile;
};

static int cred_field(char *dst, size_t cap, const char *v)
{
	size_t n = strlen(v);

	if (n >= cap)
		return 0;
	memcpy(dst, v, n + 1);
	return 1;
}

static int on_ini(void *user, const char *section, const char *name,
		  const char *value)
{
	struct profile_ctx *p = user;

	if (strcmp(section, p->profile))
		return 1;
	if (!strcmp(name, "aws_access_key_id"))
		return cred_field(p->c->access_key, sizeof(p->c->access_key),
				  value);
	if (!strcmp(name, "aws_secret_access_key"))
		return cred_field(p->c->secret_key, sizeof(p->c->secret_key),
				  value);
	if (!strcmp(name, "aws_session_token"))
		return cred_field(p->c->token, sizeof(p->c->token), value);
	return 1;
}

int s3_creds_parse_file(struct s3_creds *out, const char *text,
			const char *profile)
{
	struct profile_ctx p = { out, profile };

	memset(out, 0, sizeof(*out));
	if (ini_parse_string(text, on_ini, &p))
		return -EBADMSG;
	if (!out->access_key[0] || !out->secret_key[0])
		return -ENOENT;
	snprintf(out->origin, sizeof(out->origin), "credentials file");
	return 0;
}

static char *slurp(const char *path, size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf;
	ssize_t n;

	if (fd < 0)
		return NULL;
	buf = malloc(max + 1);
	n = buf ? read(fd, buf, max) : -1;
	close(fd);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* One small unsigned request; returns the HTTP status or -errno. */
static long request(const char *method, const char *url, const char *header,
		    const char *body, const char *ca_file, struct membody *out)
{
	struct curl_slist *h = header ? curl_slist_append(NULL, header) : NULL;
	CURL *c = curl_easy_init();
	long status = -EIO;

	if (!c)
		return -ENOMEM;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	if (ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s3_body_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	return status;
}

static int from_env(struct s3_creds *c)
{
	const char *a = getenv("AWS_ACCESS_KEY_ID");
	const char *s = getenv("AWS_SECRET_ACCESS_KEY");
	const char *t = getenv("AWS_SESSION_TOKEN");

	if (!a || !s || !*a || !*s)
		return -ENOENT;
	if (!cred_field(c->access_key, sizeof(c->access_key), a) ||
	    !cred_field(c->secret_key, sizeof(c->secret_key), s) ||
	    (t && !cred_field(c->token, sizeof(c->token), t)))
		return -EINVAL;
	snprintf(c->origin, sizeof(c->origin), "environment");
	return 0;
}

static int from_file(struct s3_creds *c, const struct s3_cred_opts *o,
		     char *err, size_t errlen)
{
	const char *path = o->credentials_file, *home = getenv("HOME");
	const char *profile = o->profile ? o->profile : getenv("AWS_PROFILE");
	char def[4096];
	char *text;
	int rc;

	if (!path)
		path = getenv("AWS_SHARED_CREDENTIALS_FILE");
	if (!path && home) {
		snprintf(def, sizeof(def), "%s/.aws/credentials", home);
		path = def;
	}
	if (!path)
		return -ENOENT;
	text = slurp(path, 1 << 20);
	if (!text) {
		if (o->credentials_file) {
			snprintf(err, errlen, "credentials file %s: %s", path,
				 strerror(errno));
			return -EACCES;
		}
		return -ENOENT;
	}
	rc = s3_creds_parse_file(c, text, profile ? profile : "default");
	memset(text, 0, strlen(text));
	free(text);
	if (rc && o->credentials_file) {
		snprintf(err, errlen,
			 "credentials file %s: no aws_access_key_id "
			 "and aws_secret_access_key in profile [%s]",
			 path, profile ? profile : "default");
		return -EINVAL;
	}
	return rc;
}

static void form_encode(char *out, size_t cap, const char *s)
{
	if (s3_uri_encode(out, cap, s, false))
		out[0] = '\0';
}

static int from_web_identity(struct s3_creds *c, const struct s3_cred_opts *o,
			     char *err, size_t errlen)
{
	const char *tf = getenv("AWS_WEB_IDENTITY_TOKEN_FILE");
	const char *role = getenv("AWS_ROLE_ARN");
	const char *ep = o->sts_endpoint ? o->sts_endpoint :
					   getenv("AWS_STS_ENDPOINT");
	char *token, *body, erole[1024];
	struct membody m = { 0 };
	size_t cap;
	long st;
	int rc;

	if (!tf || !role)
		return -ENOENT;
	token = slurp(tf, 64 * 1024);
	if (!token) {
		snprintf(err, errlen, "web identity token file %s: %s", tf,
			 strerror(errno));
		return -EACCES;
	}
	token[strcspn(token, "\r\n")] = '\0';
	cap = 3 * strlen(token) + 2048;
	body = malloc(cap);
	if (!body) {
		free(token);
		return -ENOMEM;
	}
	form_encode(erole, sizeof(erole), role);
	rc = snprintf(body, cap,
		      "Action=AssumeRoleWithWebIdentity&Version="
		      "2011-06-15&RoleSessionName=dagfs&RoleArn=%s&"
		      "WebIdentityToken=",
		      erole);
	form_encode(body + rc, cap - (size_t)rc, token);
	memset(token, 0, strlen(token));
	free(token);
	st = request("POST", ep ? ep : STS_DEFAULT,
		     "Content-Type: application/x-www-form-urlencoded", body,
		     o->ca_file, &m);
	memset(body, 0, cap);
	free(body);
	rc = st == 200 && m.p ? s3_sts_parse(c, m.p, m.len) : -EACCES;
	free(m.p);
	if (rc) {
		snprintf(err, errlen,
			 "web identity: STS AssumeRoleWithWebIdentity "
			 "for %s failed (HTTP %ld)",
			 role, st);
		return -EACCES;
	}
	snprintf(c->origin, sizeof(c->origin), "web identity");
	return 0;
}

/* Copy string member @key of @j into @out; -EBADMSG if absent or long. */
static int json_field(const struct json *j, const char *key, char *out,
		      size_t cap)
{
	const char *v = json_str(j, key, NULL);

	if (!v || strlen(v) >= cap)
		return -EBADMSG;
	strcpy(out, v);
	return 0;
}

int s3_imds_parse(struct s3_creds *c, const char *text)
{
	struct json *j;
	char exp[64];
	int rc;

	memset(c, 0, sizeof(*c));
	if (json_parse(&j, text, strlen(text)))
		return -EBADMSG;
	rc = j->type != JSON_OBJ ||
			     json_field(j, "AccessKeyId", c->access_key,
					sizeof(c->access_key)) ||
			     json_field(j, "SecretAccessKey", c->secret_key,
					sizeof(c->secret_key)) ||
			     json_field(j, "Token", c->token,
					sizeof(c->token)) ||
			     json_field(j, "Expiration", exp, sizeof(exp)) ||
			     s3_time_parse(exp, &c->expires_ns) ?
		     -EBADMSG :
		     0;
	json_free(j);
	if (!rc && (!c->access_key[0] || !c->secret_key[0]))
		rc = -EBADMSG;
	if (rc)
		explicit_bzero(c, sizeof(*c));
	return rc;
}

static int from_imds(struct s3_creds *c, const struct s3_cred_opts *o)
{
	const char *base = o->imds_endpoint ?
				   o->imds_endpoint :
				   getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	char url[1024], hdr[1024], role[256];
	struct membody tok = { 0 }, r = { 0 }, cr = { 0 };
	int rc = -ENOENT;

	if (!base)
		base = IMDS_DEFAULT;
	if (getenv("AWS_EC2_METADATA_DISABLED") &&
	    !strcmp(getenv("AWS_EC2_METADATA_DISABLED"), "true"))
		return -ENOENT;
	snprintf(url, sizeof(url), "%s/latest/api/token", base);
	if (request("PUT", url, "X-aws-ec2-metadata-token-ttl-seconds: 21600",
		    NULL, NULL, &tok) != 200 ||
	    !tok.p)
		goto out;
	snprintf(hdr, sizeof(hdr), "X-aws-ec2-metadata-token: %.900s", tok.p);
	snprintf(url, sizeof(url),
		 "%s/latest/meta-data/iam/security-credentials/", base);
	if (request("GET", url, hdr, NULL, NULL, &r) != 200 || !r.p)
		goto out;
	snprintf(role, sizeof(role), "%.*s", (int)strcspn(r.p, "\r\n"), r.p);
	if (!role[0] || strchr(role, '/'))
		goto out;
	snprintf(url, sizeof(url),
		 "%s/latest/meta-data/iam/security-credentials/%s", base, role);
	if (request("GET", url, hdr, NULL, NULL, &cr) == 200 && cr.p &&
	    !s3_imds_parse(c, cr.p)) {
		snprintf(c->origin, sizeof(c->origin), "instance metadata");
		rc = 0;
	}
out:
	free(tok.p);
	free(r.p);
	if (cr.p)
		memset(cr.p, 0, cr.len);
	free(cr.p);
	return rc;
}

int s3_creds_get(struct s3_creds *out, const struct s3_cred_opts *o, char *err,
		 size_t errlen)
{
	int rc;

	memset(out, 0, sizeof(*out));
	err[0] = '\0';
	if (!o->credentials_file && !from_env(out))
		return 0;
	rc = from_file(out, o, err, errlen);
	if (rc != -ENOENT)
		return rc;
	rc = from_web_identity(out, o, err, errlen);
	if (rc != -ENOENT)
		return rc;
	if (!from_imds(out, o))
		return 0;
	snprintf(err, errlen,
		 "no AWS credentials found (environment, "
		 "credentials file, web identity, instance metadata)");
	return -ENOENT;
}
