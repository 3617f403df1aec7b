/* SPDX-License-Identifier: Apache-2.0 */
/*
 * provision_opts.c - dagfs-provision's command line: one table row per
 * option (name, kind, offset in struct prov, help) drives parsing and
 * --help; the defaults.
 *
 * It must not judge values beyond their kind (a number in range): that is
 * provision_check.c's, after every option is read.
 */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provision_i.h"

enum opt_kind { OPT_STR, OPT_UINT, OPT_FLAG, OPT_SOURCE };

struct opt {
	const char *name;
	enum opt_kind kind;
	size_t off;
	const char *help;
};

#define O(n, k, f, h)                                                          \
	{                                                                      \
		n, k, offsetof(struct prov, f), h                              \
	}

static const struct opt opts[] = {
	O("target", OPT_STR, target, "k8s (default) or vm"),
	O("chart-version", OPT_STR, chart_version,
	  "Airflow Helm chart release: " PROV_CHART_VERSION
	  " (default, validated) or 1.18.0; a newer one is rendered as for " PROV_CHART_VERSION
	  " but not validated here"),
	O("airflow-version", OPT_STR, airflow_version,
	  "Airflow version (default: the chart's own, " PROV_AIRFLOW_VERSION
	  " for " PROV_CHART_VERSION ")"),
	O("bundle", OPT_STR, bundle,
	  "DAG bundles (dagfs_airflow.DagfsDagBundle, versioned by dagfs revisions): source (default: one per source), tree (one for the whole mount) or none (Airflow's dags-folder bundle)"),
	O("no-admin-user", OPT_FLAG, no_admin_user,
	  "create no admin user (default: user admin, password generated into DIR/.secrets/admin-password; print it with 'dagfs-provision admin-password DIR')"),
	O("source", OPT_SOURCE, nsources,
	  "a dagfs source, as for dagfs mount; repeatable"),
	O("namespace", OPT_STR, ns, "Kubernetes namespace (default airflow)"),
	O("release", OPT_STR, release, "Helm release name (default airflow)"),
	O("executor", OPT_STR, executor,
	  "KubernetesExecutor (default), CeleryExecutor, LocalExecutor, CeleryKubernetesExecutor"),
	O("image", OPT_STR, image,
	  "dagfs image, built from sidecar/Dockerfile and pushed where the nodes pull (default " PROV_DEFAULT_IMAGE
	  ", which is not published: see README)"),
	O("mode", OPT_STR, mode,
	  "fuse (default: dagfs in each pod), materialize (no privileges) or node (one privileged dagfs per node mirroring a publisher; Airflow pods read its hostPath)"),
	O("sidecar", OPT_STR, sidecar,
	  "native (init container, Kubernetes >= 1.29; default) or classic"),
	O("worker", OPT_STR, worker,
	  "dagfs in the chart's worker pods: sidecar (native sidecar; default) or pinned (one-shot init container at the scheduler's revision)"),
	O("git-ssh-key", OPT_STR, git_ssh_key, "git SSH private key file"),
	O("git-known-hosts", OPT_STR, git_known_hosts,
	  "known_hosts file for the git host"),
	O("git-password-file", OPT_STR, git_password_file,
	  "git HTTPS password or token file"),
	O("s3-credentials-file", OPT_STR, s3_credentials_file,
	  "AWS shared credentials file"),
	O("fernet-key-file", OPT_STR, fernet_key_file,
	  "Fernet key file (default: generated)"),
	O("webserver-secret-key-file", OPT_STR, webserver_secret_file,
	  "webserver/API secret key file (default: generated)"),
	O("db-password-file", OPT_STR, db_password_file,
	  "metadata database password file (default: generated)"),
	O("jwt-secret-file", OPT_STR, jwt_secret_file,
	  "JWT signing secret file, shared by every Airflow component (default: generated once)"),
	O("admin-password-file", OPT_STR, admin_password_file,
	  "password of the admin user (default: generated)"),
	O("db-user", OPT_STR, db_user,
	  "metadata database user (default airflow)"),
	O("db-name", OPT_STR, db_name,
	  "metadata database name (default airflow)"),
	O("storage", OPT_STR, storage,
	  "class (default: the cluster's default StorageClass, or --storage-class) or hostpath (with --node; the default when --node is given)"),
	O("storage-class", OPT_STR, storage_class,
	  "StorageClass for PostgreSQL and a ReadWriteMany logs volume (default: the cluster's default class, PostgreSQL only)"),
	O("host-path", OPT_STR, host_path,
	  "hostPath base on the node (default /data/airflow)"),
	O("node", OPT_STR, node,
	  "node name for hostPath volumes (node affinity)"),
	O("logs-size", OPT_STR, logs_size, "logs volume size (default 10Gi)"),
	O("db-size", OPT_STR, db_size, "PostgreSQL volume size (default 8Gi)"),
	O("service", OPT_STR, service, "nodeport (default) or loadbalancer"),
	O("node-port", OPT_UINT, node_port,
	  "NodePort of the UI, 30000-32767 (default 30080)"),
	O("timezone", OPT_STR, timezone,
	  "timezone, e.g. Asia/Seoul (default UTC)"),
	O("scheduler-replicas", OPT_UINT, scheduler_replicas,
	  "scheduler replicas (default 1)"),
	O("dagfs-http-port", OPT_UINT, http_port,
	  "port of dagfs /healthz and /readyz (default 8081)"),
	O("pin-url", OPT_STR, pin_url,
	  "where pinned workers read the scheduler's revisions (default its dagfs /metrics through the " PROV_PIN_SERVICE
	  " Service)"),
	O("airflow-home", OPT_STR, airflow_home,
	  "VM: AIRFLOW_HOME (default /opt/airflow)"),
	O("kubeconfig", OPT_STR, kubeconfig,
	  "VM: kubeconfig for the executor (default /opt/airflow/.kube/config)"),
	O("db-host", OPT_STR, db_host,
	  "an external metadata database (PostgreSQL) host; Kubernetes: turns the chart's PostgreSQL off (VM default 127.0.0.1)"),
	O("db-port", OPT_UINT, db_port,
	  "metadata database port with --db-host (default 5432)"),
	O("webserver-port", OPT_UINT, webserver_port,
	  "VM: API server port (default 8080)"),
	O("dagfs-deb", OPT_STR, dagfs_deb,
	  "VM: the dagfs package (dagfs_VERSION_ARCH.deb, from dpkg-buildpackage -b) that install.sh installs"),
	O("dagfs-bin", OPT_STR, dagfs_bin,
	  "VM: dagfs binary (default /usr/bin/dagfs, the package's)"),
	O("airflow-bin", OPT_STR, airflow_bin,
	  "VM: an installed airflow binary (default: install.sh installs the pinned Airflow in AIRFLOW_HOME/venv)"),
	O("api-server-url", OPT_STR, api_url,
	  "VM: the API server as task pods reach it, e.g. http://10.0.0.120:8080 (sets execution_api_server_url)"),
	O("prometheus-operator", OPT_FLAG, prometheus_operator,
	  "also render a PrometheusRule, metrics Services and a ServiceMonitor (prometheus-operator.yaml; apply applies it)"),
	O("prometheus-release", OPT_STR, prometheus_release,
	  "label release=NAME on the PrometheusRule and ServiceMonitor, which kube-prometheus-stack's Prometheus selects by"),
	O("stale-periods", OPT_UINT, stale_periods,
	  "alert when a source has not synced for this many of its periods (default 6)"),
	O("dry-run", OPT_FLAG, dry_run,
	  "print the commands apply would run, run none"),
};

void prov_usage(FILE *f)
{
	fputs("Usage: dagfs-provision render DIR [OPTION]...\n"
	      "       dagfs-provision apply DIR [--dry-run] [OPTION]...\n"
	      "       dagfs-provision admin-password DIR\n"
	      "Install Apache Airflow with dagfs serving its DAGs: render writes "
	      "every\nmanifest, values file and secret into DIR; apply renders, "
	      "then runs\nkubectl and helm (create or upgrade).\n\nOptions:\n",
	      f);
	for (size_t i = 0; i < sizeof(opts) / sizeof(*opts); i++)
		fprintf(f, "  --%-26s %s\n", opts[i].name, opts[i].help);
}

void prov_defaults(struct prov *p)
{
	p->target = "k8s";
	p->ns = p->release = "airflow";
	p->executor = "KubernetesExecutor";
	p->chart_version = PROV_CHART_VERSION;
	p->bundle = "source";
	p->image = PROV_DEFAULT_IMAGE;
	p->mode = "fuse";
	p->sidecar = "native";
	p->worker = "sidecar";
	p->db_user = p->db_name = "airflow";
	p->storage = NULL; /* hostpath with --node, else class */
	p->host_path = "/data/airflow";
	p->logs_size = "10Gi";
	p->db_size = "8Gi";
	p->service = "nodeport";
	p->node_port = 30080;
	p->timezone = "UTC";
	p->scheduler_replicas = 1;
	p->http_port = 8081;
	p->stale_periods = 6;
	p->airflow_home = "/opt/airflow";
	p->kubeconfig = "/opt/airflow/.kube/config";
	p->db_port = 5432;
	p->webserver_port = 8080;
	p->dagfs_bin = "/usr/bin/dagfs";
}

static int set_opt(struct prov *p, const struct opt *o, const char *v)
{
	char *end;
	unsigned long u;

	switch (o->kind) {
	case OPT_STR:
		*(const char **)((char *)p + o->off) = v;
		return 0;
	case OPT_UINT:
		errno = 0;
		u = strtoul(v, &end, 10);
		if (errno || *end || end == v || u > 65535)
			return prov_fail("--%s: '%s' is not a number in range",
					 o->name, v);
		*(unsigned *)((char *)p + o->off) = (unsigned)u;
		return 0;
	case OPT_FLAG:
		*(bool *)((char *)p + o->off) = true;
		return 0;
	case OPT_SOURCE:
		p->source_text = realloc(p->source_text,
					 (p->nsources + 1) * sizeof(char *));
		if (!p->source_text)
			return prov_fail("out of memory");
		p->source_text[p->nsources++] = v;
		return 0;
	}
	return -1;
}

int prov_parse_args(struct prov *p, int argc, char **argv)
{
	if (argc < 3 || (strcmp(argv[1], "render") && strcmp(argv[1], "apply")))
		return prov_fail("expected 'render DIR', 'apply DIR' or "
				 "'admin-password DIR' (see --help)");
	p->command = argv[1];
	p->outdir = argv[2];
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i], *eq, *v;
		const struct opt *o = NULL;
		size_t n;

		if (strncmp(a, "--", 2))
			return prov_fail("unexpected argument '%s'", a);
		eq = strchr(a, '=');
		n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		for (size_t k = 0; k < sizeof(opts) / sizeof(*opts); k++)
			if (strlen(opts[k].name) == n &&
			    !strncmp(opts[k].name, a + 2, n))
				o = &opts[k];
		if (!o)
			return prov_fail("unknown option '%s' (see --help)", a);
		if (o->kind == OPT_FLAG)
			v = "1";
		else if (eq)
			v = eq + 1;
		else if (i + 1 < argc)
			v = argv[++i];
		else
			return prov_fail("--%s needs a value", o->name);
		if (set_opt(p, o, v))
			return -1;
	}
	return 0;
}
