/* SPDX-License-Identifier: Apache-2.0 */
/*
 * provision.c - dagfs-provision: main. Parses (provision_opts.c), validates
 * (provision_check.c), prepares secrets (provision_secrets.c), renders
 * (render_*.c) and, for `apply`, applies (provision_apply.c); and the one
 * error reporter of the command.
 *
 * It must not print a secret: only `admin-password DIR` shows one, the
 * generated admin password, on stdout, at the operator's request.
 */

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provision_i.h"

int prov_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("dagfs-provision: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

/* `admin-password DIR`: the one place the generated password is shown. */
static int show_admin_password(const char *dir)
{
	char path[4096], pw[128];

	snprintf(path, sizeof(path), "%s/.secrets/admin-password", dir);
	if (prov_secret_line(path, pw, sizeof(pw)))
		return prov_fail("%s: no admin password was generated there "
				 "(render first, without --no-admin-user)",
				 path);
	printf("%s\n", pw);
	OPENSSL_cleanse(pw, sizeof(pw));
	return 0;
}

int main(int argc, char **argv)
{
	struct prov p = { 0 };
	int rc = 2;

	if (argc > 1 &&
	    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		prov_usage(stdout);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "admin-password"))
		return show_admin_password(argv[2]) ? 1 : 0;
	prov_defaults(&p);
	log_setup(LOG_LVL_ERR, false);
	if (prov_parse_args(&p, argc, argv) || prov_validate(&p) ||
	    prov_prepare_sources(&p) || prov_prepare_secrets(&p))
		goto out;
	if (!p.pin_url) { /* the dag-processors' dagfs, which parse the DAGs */
		snprintf(p.pin_url_buf, sizeof(p.pin_url_buf),
			 "http://%s-%s.%s.svc:%u/metrics", p.release,
			 PROV_PIN_SERVICE, p.ns, p.http_port);
		p.pin_url = p.pin_url_buf;
	}
	rc = 1;
	if ((!strcmp(p.target, "vm") ? prov_render_vm(&p) :
				       prov_render_k8s(&p)) ||
	    prov_render_bundle(&p) || prov_render_node(&p) ||
	    prov_render_obs(&p))
		goto out;
	printf("rendered %s target into %s (chart %s, Airflow %s, %s mode)\n",
	       p.target, p.outdir, p.chart_version, p.airflow_version,
	       p.node_level ? "node" : p.mode);
	if (!strcmp(p.image, PROV_DEFAULT_IMAGE))
		fprintf(stderr,
			"dagfs-provision: note: --image not given: %s is "
			"not published anywhere; build sidecar/Dockerfile, "
			"push it where the nodes pull from and pass "
			"--image (README, Kubernetes step 1)\n",
			PROV_DEFAULT_IMAGE);
	if (!strcmp(p.command, "apply") && prov_apply(&p))
		goto out;
	rc = 0;
out:
	OPENSSL_cleanse(p.fernet, sizeof(p.fernet));
	OPENSSL_cleanse(p.websecret, sizeof(p.websecret));
	OPENSSL_cleanse(p.dbpass, sizeof(p.dbpass));
	OPENSSL_cleanse(p.jwt, sizeof(p.jwt));
	OPENSSL_cleanse(p.adminpass, sizeof(p.adminpass));
	OPENSSL_cleanse(p.serve_token, sizeof(p.serve_token));
	OPENSSL_cleanse(p.serve_key, sizeof(p.serve_key));
	for (size_t i = 0; p.sources && i < p.nsources; i++)
		source_spec_free(p.sources[i]);
	free(p.sources);
	free(p.source_text);
	return rc;
}
