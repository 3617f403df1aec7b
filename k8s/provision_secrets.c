/* SPDX-License-Identifier: Apache-2.0 */
/*
 * provision_secrets.c - dagfs-provision's secrets (OpenSSL): read from
 * the files given, or generated once and kept in DIR/.secrets/ (0600) so
 * a re-run renders the same keys: upgrading must not rotate the Fernet
 * key under encrypted connections.
 *
 * It must not print or log a secret: they are written only into 0600
 * files, and held in struct prov until main wipes them.
 */

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "provision_i.h"

/* A one-line secret from @path into @out: 0, or -1 if unreadable or
 * empty (read_secret, the one reader of secret files). */
int prov_secret_line(const char *path, char *out, size_t len)
{
	return read_secret(out, len, path) > 0 ? 0 : -1;
}

static int gen_fernet(char *out)
{
	unsigned char raw[32];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -EIO;
	EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
	for (char *c = out; *c; c++) /* URL-safe alphabet, as Fernet wants */
		*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

static int gen_hex(char *out, size_t bytes)
{
	unsigned char raw[64];

	if (RAND_bytes(raw, (int)bytes) != 1)
		return -EIO;
	for (size_t i = 0; i < bytes; i++)
		sprintf(out + 2 * i, "%02x", raw[i]);
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

/*
 * A secret from --@flag's file, else from DIR/.secrets/NAME of an earlier
 * run, else generated and kept there (0600). @kind: 0 a Fernet key, else
 * that many random bytes in hex.
 */
static int secret(const struct prov *p, const char *flag, const char *given,
		  const char *name, char *out, size_t len, int kind)
{
	char kept[4096];
	int fd;

	if (given)
		return prov_secret_line(given, out, len) ?
			       prov_fail("--%s: secret file %s is unreadable or "
					 "empty",
					 flag, given) :
			       0;
	snprintf(kept, sizeof(kept), "%s/.secrets/%s", p->outdir, name);
	if (!prov_secret_line(kept, out, len))
		return 0;
	if ((kind == 0 ? gen_fernet(out) : gen_hex(out, (size_t)kind)))
		return prov_fail("%s: the OpenSSL random generator failed",
				 name);
	fd = open(kept, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, out, strlen(out)) != (ssize_t)strlen(out)) {
		if (fd >= 0)
			close(fd);
		return prov_fail("%s: %s", kept, strerror(errno));
	}
	close(fd);
	return 0;
}

/*
 * --mode node: the Ed25519 key the publisher signs its statements with
 * (the mirrors check them with the public half), generated once with
 * OpenSSL and kept in DIR/.secrets/serve-key.pem like the other secrets.
 */
static int serve_key(struct prov *p)
{
	char path[4096];
	EVP_PKEY *k = NULL;
	BIO *b;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/.secrets/serve-key.pem", p->outdir);
	f = fopen(path, "re");
	if (f) {
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		if (!k || EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
			EVP_PKEY_free(k);
			return prov_fail("%s: not an Ed25519 private key",
					 path);
		}
	} else {
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			      0600);

		k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		f = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (!k || !f ||
		    !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) ||
		    fclose(f)) {
			EVP_PKEY_free(k);
			return prov_fail("%s: cannot write the signing key",
					 path);
		}
	}
	b = BIO_new(BIO_s_mem());
	n = b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) ?
		    BIO_read(b, p->serve_key, sizeof(p->serve_key) - 1) :
		    -1;
	p->serve_key[n > 0 ? n : 0] = '\0';
	BIO_free(b);
	b = BIO_new(BIO_s_mem());
	n = b && PEM_write_bio_PUBKEY(b, k) ?
		    BIO_read(b, p->serve_pub, sizeof(p->serve_pub) - 1) :
		    -1;
	p->serve_pub[n > 0 ? n : 0] = '\0';
	BIO_free(b);
	EVP_PKEY_free(k);
	return p->serve_key[0] && p->serve_pub[0] ?
		       0 :
		       prov_fail("%s: the OpenSSL key encoding failed", path);
}

/*
 * The JWT secret is generated here once rather than by the chart, whose
 * secrets/jwt-secret.yaml draws a new randAlphaNum at every render: each
 * `helm upgrade` would rotate it under running pods, and the next restart
 * would break the tasks' authentication to the API server.
 */
int prov_prepare_secrets(struct prov *p)
{
	char dir[4096];

	if ((mkdir(p->outdir, 0755) && errno != EEXIST))
		return prov_fail("%s: %s", p->outdir, strerror(errno));
	snprintf(dir, sizeof(dir), "%s/.secrets", p->outdir);
	if ((mkdir(dir, 0700) && errno != EEXIST) || chmod(dir, 0700))
		return prov_fail("%s: %s", dir, strerror(errno));
	return secret(p, "fernet-key-file", p->fernet_key_file, "fernet-key",
		      p->fernet, sizeof(p->fernet), 0) ||
	       secret(p, "webserver-secret-key-file", p->webserver_secret_file,
		      "webserver-secret-key", p->websecret,
		      sizeof(p->websecret), 16) ||
	       secret(p, "db-password-file", p->db_password_file, "db-password",
		      p->dbpass, sizeof(p->dbpass), 24) ||
	       secret(p, "jwt-secret-file", p->jwt_secret_file, "jwt-secret",
		      p->jwt, sizeof(p->jwt), 32) ||
	       (!p->no_admin_user &&
		secret(p, "admin-password-file", p->admin_password_file,
		       "admin-password", p->adminpass, sizeof(p->adminpass),
		       12)) ||
	       (p->node_level &&
		(secret(p, "serve-token", NULL, "serve-token", p->serve_token,
			sizeof(p->serve_token), 32) ||
		 serve_key(p)));
}
