/* SPDX-License-Identifier: Apache-2.0 */
/*
 * provision.c - dagfs-provision: the command line, input validation,
 * secret generation (OpenSSL), and `render` / `apply` / `--dry-run`.
 *
 * Secrets are read from the files given, or generated once and kept in
 * DIR/.secrets/ (0600) so a re-run renders the same keys: upgrading must
 * not rotate the Fernet key under encrypted connections. They are
 * written only into 0600 files and never printed.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "provision_i.h"

enum opt_kind { OPT_STR, OPT_UINT, OPT_FLAG, OPT_SOURCE };

struct opt {
	const char *name;
	enum opt_kind kind;
	size_t off;
	const char *help;
};

#define PROV_DEFAULT_IMAGE "dagfs/dagfs:0.1.0"

#define O(n, k, f, h) { n, k, offsetof(struct prov, f), h }

static const struct opt opts[] = {
	O("target", OPT_STR, target, "k8s (default) or vm"),
	O("chart-version", OPT_STR, chart_version, "Airflow Helm chart release: " PROV_CHART_VERSION " (default, validated) or 1.18.0; a newer one is rendered as for " PROV_CHART_VERSION " but not validated here"),
	O("airflow-version", OPT_STR, airflow_version, "Airflow version (default: the chart's own, " PROV_AIRFLOW_VERSION " for " PROV_CHART_VERSION ")"),
	O("bundle", OPT_STR, bundle, "DAG bundles (dagfs_airflow.DagfsDagBundle, versioned by dagfs revisions): source (default: one per source), tree (one for the whole mount) or none (Airflow's dags-folder bundle)"),
	O("no-admin-user", OPT_FLAG, no_admin_user, "create no admin user (default: user admin, password generated into DIR/.secrets/admin-password; print it with 'dagfs-provision admin-password DIR')"),
	O("source", OPT_SOURCE, nsources, "a dagfs source, as for dagfs mount; repeatable"),
	O("namespace", OPT_STR, ns, "Kubernetes namespace (default airflow)"),
	O("release", OPT_STR, release, "Helm release name (default airflow)"),
	O("executor", OPT_STR, executor, "KubernetesExecutor (default), CeleryExecutor, LocalExecutor, CeleryKubernetesExecutor"),
	O("image", OPT_STR, image, "dagfs image, built from sidecar/Dockerfile and pushed where the nodes pull (default " PROV_DEFAULT_IMAGE ", which is not published: see README)"),
	O("mode", OPT_STR, mode, "fuse (default: dagfs in each pod), materialize (no privileges) or node (one privileged dagfs per node mirroring a publisher; Airflow pods read its hostPath)"),
	O("sidecar", OPT_STR, sidecar, "native (init container, Kubernetes >= 1.29; default) or classic"),
	O("worker", OPT_STR, worker, "dagfs in the chart's worker pods: sidecar (native sidecar; default) or pinned (one-shot init container at the scheduler's revision)"),
	O("git-ssh-key", OPT_STR, git_ssh_key, "git SSH private key file"),
	O("git-known-hosts", OPT_STR, git_known_hosts, "known_hosts file for the git host"),
	O("git-password-file", OPT_STR, git_password_file, "git HTTPS password or token file"),
	O("s3-credentials-file", OPT_STR, s3_credentials_file, "AWS shared credentials file"),
	O("fernet-key-file", OPT_STR, fernet_key_file, "Fernet key file (default: generated)"),
	O("webserver-secret-key-file", OPT_STR, webserver_secret_file, "webserver/API secret key file (default: generated)"),
	O("db-password-file", OPT_STR, db_password_file, "metadata database password file (default: generated)"),
	O("jwt-secret-file", OPT_STR, jwt_secret_file, "JWT signing secret file, shared by every Airflow component (default: generated once)"),
	O("admin-password-file", OPT_STR, admin_password_file, "password of the admin user (default: generated)"),
	O("db-user", OPT_STR, db_user, "metadata database user (default airflow)"),
	O("db-name", OPT_STR, db_name, "metadata database name (default airflow)"),
	O("storage", OPT_STR, storage, "class (default: the cluster's default StorageClass, or --storage-class) or hostpath (with --node; the default when --node is given)"),
	O("storage-class", OPT_STR, storage_class, "StorageClass for PostgreSQL and a ReadWriteMany logs volume (default: the cluster's default class, PostgreSQL only)"),
	O("host-path", OPT_STR, host_path, "hostPath base on the node (default /data/airflow)"),
	O("node", OPT_STR, node, "node name for hostPath volumes (node affinity)"),
	O("logs-size", OPT_STR, logs_size, "logs volume size (default 10Gi)"),
	O("db-size", OPT_STR, db_size, "PostgreSQL volume size (default 8Gi)"),
	O("service", OPT_STR, service, "nodeport (default) or loadbalancer"),
	O("node-port", OPT_UINT, node_port, "NodePort of the UI, 30000-32767 (default 30080)"),
	O("timezone", OPT_STR, timezone, "timezone, e.g. Asia/Seoul (default UTC)"),
	O("scheduler-replicas", OPT_UINT, scheduler_replicas, "scheduler replicas (default 1)"),
	O("dagfs-http-port", OPT_UINT, http_port, "port of dagfs /healthz and /readyz (default 8081)"),
	O("pin-url", OPT_STR, pin_url, "where pinned workers read the scheduler's revisions (default its dagfs /metrics through the " PROV_PIN_SERVICE " Service)"),
	O("airflow-home", OPT_STR, airflow_home, "VM: AIRFLOW_HOME (default /opt/airflow)"),
	O("kubeconfig", OPT_STR, kubeconfig, "VM: kubeconfig for the executor (default /opt/airflow/.kube/config)"),
	O("db-host", OPT_STR, db_host, "an external metadata database (PostgreSQL) host; Kubernetes: turns the chart's PostgreSQL off (VM default 127.0.0.1)"),
	O("db-port", OPT_UINT, db_port, "metadata database port with --db-host (default 5432)"),
	O("webserver-port", OPT_UINT, webserver_port, "VM: API server port (default 8080)"),
	O("dagfs-deb", OPT_STR, dagfs_deb, "VM: the dagfs package (dagfs_VERSION_ARCH.deb, from dpkg-buildpackage -b) that install.sh installs"),
	O("dagfs-bin", OPT_STR, dagfs_bin, "VM: dagfs binary (default /usr/bin/dagfs, the package's)"),
	O("airflow-bin", OPT_STR, airflow_bin, "VM: an installed airflow binary (default: install.sh installs the pinned Airflow in AIRFLOW_HOME/venv)"),
	O("api-server-url", OPT_STR, api_url, "VM: the API server as task pods reach it, e.g. http://10.0.0.120:8080 (sets execution_api_server_url)"),
	O("prometheus-operator", OPT_FLAG, prometheus_operator, "also render a PrometheusRule, metrics Services and a ServiceMonitor (prometheus-operator.yaml; apply applies it)"),
	O("prometheus-release", OPT_STR, prometheus_release, "label release=NAME on the PrometheusRule and ServiceMonitor, which kube-prometheus-stack's Prometheus selects by"),
	O("stale-periods", OPT_UINT, stale_periods, "alert when a source has not synced for this many of its periods (default 6)"),
	O("dry-run", OPT_FLAG, dry_run, "print the commands apply would run, run none"),
};

static void usage(FILE *f)
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

static void defaults(struct prov *p)
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

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("dagfs-provision: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
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
			return fail("--%s: '%s' is not a number in range", o->name,
				    v);
		*(unsigned *)((char *)p + o->off) = (unsigned)u;
		return 0;
	case OPT_FLAG:
		*(bool *)((char *)p + o->off) = true;
		return 0;
	case OPT_SOURCE:
		p->source_text = realloc(p->source_text,
					 (p->nsources + 1) * sizeof(char *));
		if (!p->source_text)
			return fail("out of memory");
		p->source_text[p->nsources++] = v;
		return 0;
	}
	return -1;
}

static int parse_args(struct prov *p, int argc, char **argv)
{
	if (argc < 3 || (strcmp(argv[1], "render") && strcmp(argv[1], "apply")))
		return fail("expected 'render DIR', 'apply DIR' or "
			    "'admin-password DIR' (see --help)");
	p->command = argv[1];
	p->outdir = argv[2];
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i], *eq, *v;
		const struct opt *o = NULL;
		size_t n;

		if (strncmp(a, "--", 2))
			return fail("unexpected argument '%s'", a);
		eq = strchr(a, '=');
		n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		for (size_t k = 0; k < sizeof(opts) / sizeof(*opts); k++)
			if (strlen(opts[k].name) == n &&
			    !strncmp(opts[k].name, a + 2, n))
				o = &opts[k];
		if (!o)
			return fail("unknown option '%s' (see --help)", a);
		if (o->kind == OPT_FLAG)
			v = "1";
		else if (eq)
			v = eq + 1;
		else if (i + 1 < argc)
			v = argv[++i];
		else
			return fail("--%s needs a value", o->name);
		if (set_opt(p, o, v))
			return -1;
	}
	return 0;
}

static bool one_of(const char *v, const char *const *set)
{
	for (; *set; set++)
		if (!strcmp(v, *set))
			return true;
	return false;
}

/* RFC 1123 label: what Kubernetes accepts as a namespace name. */
static bool dns_label(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (!n || n > max || !isalnum((unsigned char)s[0]) ||
	    !isalnum((unsigned char)s[n - 1]))
		return false;
	for (; *s; s++)
		if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) ||
		      *s == '-'))
			return false;
	return true;
}

/* A PostgreSQL identifier that needs no quoting anywhere. */
static bool sql_name(const char *s)
{
	if (!*s || strlen(s) > 63 || isdigit((unsigned char)*s))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return false;
	return true;
}

static bool quantity(const char *s)
{
	char *end;

	if (strtoul(s, &end, 10) == 0 || end == s)
		return false;
	return one_of(end, (const char *const[]){ "Ki", "Mi", "Gi", "Ti", NULL });
}

static int check_file(const char *opt, const char *path)
{
	if (path && access(path, R_OK))
		return fail("--%s: missing key file %s: %s", opt, path,
			    strerror(errno));
	return 0;
}

/* X.Y.Z, numbers only, into @v; false otherwise. */
static bool semver(const char *s, unsigned v[3])
{
	char end;

	return sscanf(s, "%u.%u.%u%c", &v[0], &v[1], &v[2], &end) == 3 &&
	       strspn(s, "0123456789.") == strlen(s);
}

/*
 * The chart release: 1.18.0 and 1.21.0 are the ones whose schemas the
 * tests check the values against; 1.18.0 still has the workers' keys at
 * workers.* (1.21.0 moved them to workers.kubernetes/celery.*). A newer
 * release is rendered as for 1.21.0, said to be unchecked.
 */
static int choose_chart(struct prov *p)
{
	static const struct {
		const char *chart, *airflow;
		bool validated;
	} known[] = { { "1.18.0", "3.0.2", true },
		      { PROV_CHART_VERSION, PROV_AIRFLOW_VERSION, true },
		      { "1.22.0", "3.2.2", false } };
	const char *airflow = PROV_AIRFLOW_VERSION;
	unsigned v[3], a[3];

	if (!semver(p->chart_version, v))
		return fail("--chart-version: '%s' is not a version like %s",
			    p->chart_version, PROV_CHART_VERSION);
	if (v[0] != 1 || v[1] < 21) {
		if (strcmp(p->chart_version, "1.18.0"))
			return fail("--chart-version: %s is not supported "
				    "(1.18.0, %s, or a newer 1.x release)",
				    p->chart_version, PROV_CHART_VERSION);
		p->chart_legacy_workers = true;
	}
	for (size_t i = 0; i < sizeof(known) / sizeof(*known); i++)
		if (!strcmp(known[i].chart, p->chart_version)) {
			airflow = known[i].airflow;
			p->chart_validated = known[i].validated;
		}
	if (!p->airflow_version)
		p->airflow_version = airflow;
	if (!semver(p->airflow_version, a) || a[0] < 3)
		return fail("--airflow-version: '%s' is not an Airflow 3 "
			    "version like %s", p->airflow_version,
			    PROV_AIRFLOW_VERSION);
	if (!p->chart_validated)
		fprintf(stderr, "dagfs-provision: note: chart %s is rendered as "
				"for %s and not validated here (its "
				"values.schema.json is not in the tests)\n",
			p->chart_version, PROV_CHART_VERSION);
	return 0;
}

bool prov_logs_claim(const struct prov *p)
{
	return !strcmp(p->storage, "hostpath") || p->storage_class;
}

bool prov_chart_db(const struct prov *p)
{
	return strcmp(p->target, "vm") && !p->db_host;
}

static int validate(struct prov *p)
{
	static const char *const executors[] = {
		"KubernetesExecutor", "CeleryExecutor", "LocalExecutor",
		"CeleryKubernetesExecutor", NULL
	};

	if (!one_of(p->target, (const char *const[]){ "k8s", "vm", NULL }))
		return fail("--target: unknown target '%s' (expected k8s or vm)",
			    p->target);
	if (choose_chart(p))
		return -1;
	if (p->db_host && !*p->db_host)
		return fail("--db-host: empty host");
	if (!p->db_host && !strcmp(p->target, "vm"))
		p->db_host = "127.0.0.1";
	if (!one_of(p->executor, executors))
		return fail("--executor: unknown executor '%s' (expected KubernetesExecutor, "
			    "CeleryExecutor, LocalExecutor or "
			    "CeleryKubernetesExecutor)", p->executor);
	if (!dns_label(p->ns, 63))
		return fail("--namespace: invalid namespace name '%s' (lowercase letters, "
			    "digits and '-', at most 63, starting and ending "
			    "alphanumeric)", p->ns);
	if (!sql_name(p->db_user) || !sql_name(p->db_name))
		return fail("--db-user/--db-name: invalid database user or name '%s'/'%s' (letters, "
			    "digits and '_', at most 63)", p->db_user,
			    p->db_name);
	if (!dns_label(p->release, 53))
		return fail("--release: invalid release name '%s'", p->release);
	if (!one_of(p->mode, (const char *const[]){ "fuse", "materialize", "node",
						    NULL }))
		return fail("--mode: unknown mode '%s' (expected fuse, materialize "
			    "or node)", p->mode);
	if (!strcmp(p->mode, "node")) {
		if (!strcmp(p->target, "vm"))
			return fail("--mode node: the Kubernetes target only (a "
				    "VM mounts dagfs itself)");
		if (!strcmp(p->worker, "pinned"))
			return fail("--mode node: task pods read the node's "
				    "mount; not with --worker pinned");
		p->node_level = true;
		p->mode = "fuse"; /* what the Airflow containers see */
	}
	if (!one_of(p->sidecar, (const char *const[]){ "native", "classic", NULL }))
		return fail("--sidecar: unknown sidecar '%s' (expected native or classic)",
			    p->sidecar);
	if (!one_of(p->bundle, (const char *const[]){ "source", "tree", "none",
						      NULL }))
		return fail("--bundle: unknown bundle '%s' (expected source, "
			    "tree or none)", p->bundle);
	if (!one_of(p->worker, (const char *const[]){ "sidecar", "pinned", NULL }))
		return fail("--worker: unknown worker '%s' (expected sidecar or pinned)",
			    p->worker);
	if (!strcmp(p->worker, "pinned") && strcmp(p->bundle, "none"))
		return fail("--worker pinned: with DAG bundles each task already "
			    "runs the version its DAG run was parsed from; "
			    "give --bundle none or --worker sidecar");
	if (!strcmp(p->worker, "pinned") &&
	    strcmp(p->executor, "KubernetesExecutor"))
		return fail("--worker pinned needs --executor KubernetesExecutor "
			    "(a long-running worker would stay on one "
			    "revision)");
	if (!one_of(p->service, (const char *const[]){ "nodeport", "loadbalancer",
						       NULL }))
		return fail("--service: unknown service '%s' (expected nodeport or "
			    "loadbalancer)", p->service);
	if (p->node_port < 30000 || p->node_port > 32767)
		return fail("--node-port %u out of range (30000-32767)",
			    p->node_port);
	if (!p->http_port || !p->webserver_port || !p->db_port)
		return fail("--dagfs-http-port/--webserver-port/--db-port: port out of range (1-65535)");
	if (p->dagfs_deb && (strlen(p->dagfs_deb) < 5 ||
			     strcmp(p->dagfs_deb + strlen(p->dagfs_deb) - 4, ".deb") ||
			     strpbrk(p->dagfs_deb, "'\\\"$`\n")))
		return fail("--dagfs-deb: '%s' is not a .deb file name",
			    p->dagfs_deb);
	if (p->airflow_home[0] != '/' || strpbrk(p->airflow_home, " '\"$`\\"))
		return fail("--airflow-home: '%s' is not an absolute path "
			    "without quotes or spaces", p->airflow_home);
	if (!p->airflow_bin) {
		snprintf(p->airflow_bin_buf, sizeof(p->airflow_bin_buf),
			 "%s/venv/bin/airflow", p->airflow_home);
		p->airflow_bin = p->airflow_bin_buf;
		p->airflow_venv = true;
	}
	if (!p->stale_periods)
		return fail("--stale-periods must be at least 1");
	if (p->prometheus_release && !dns_label(p->prometheus_release, 63))
		return fail("--prometheus-release: invalid name '%s'",
			    p->prometheus_release);
	if (!p->scheduler_replicas)
		return fail("--scheduler-replicas must be at least 1");
	if (!p->storage)
		p->storage = p->node ? "hostpath" : "class";
	if (!strcmp(p->storage, "hostpath")) {
		if (!p->node || !*p->node)
			return fail("--storage hostpath needs --node NAME (the "
				    "node that holds the volumes)");
		if (p->host_path[0] != '/')
			return fail("--host-path must be absolute");
		if (p->storage_class)
			return fail("--storage-class: not with --storage "
				    "hostpath (its volumes have class "
				    "dagfs-local)");
	} else if (!strcmp(p->storage, "class")) {
		if (p->storage_class && !dns_label(p->storage_class, 253))
			return fail("--storage-class: invalid name '%s'",
				    p->storage_class);
		if (p->node)
			return fail("--node: only with --storage hostpath");
	} else {
		return fail("--storage: unknown storage '%s' (expected hostpath or class)",
			    p->storage);
	}
	if (!quantity(p->logs_size) || !quantity(p->db_size))
		return fail("--logs-size/--db-size: volume sizes look like 10Gi, 512Mi");
	if (p->api_url && strncmp(p->api_url, "http://", 7) &&
	    strncmp(p->api_url, "https://", 8))
		return fail("--api-server-url '%s' is not an http:// or "
			    "https:// URL", p->api_url);
	if (p->pin_url && strncmp(p->pin_url, "http://", 7) &&
	    strncmp(p->pin_url, "https://", 8))
		return fail("--pin-url '%s' is not an http:// or https:// URL",
			    p->pin_url);
	for (const char *c = p->timezone; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("_+-/", *c))
			return fail("--timezone: invalid timezone '%s'", p->timezone);
	return check_file("git-ssh-key", p->git_ssh_key) ||
	       check_file("git-known-hosts", p->git_known_hosts) ||
	       check_file("git-password-file", p->git_password_file) ||
	       check_file("s3-credentials-file", p->s3_credentials_file) ||
	       check_file("fernet-key-file", p->fernet_key_file) ||
	       check_file("webserver-secret-key-file", p->webserver_secret_file) ||
	       check_file("dagfs-deb", p->dagfs_deb) ||
	       check_file("db-password-file", p->db_password_file) ||
	       check_file("jwt-secret-file", p->jwt_secret_file) ||
	       check_file("admin-password-file", p->admin_password_file);
}

/* Set @k unless the user did: -ENOMEM is the only failure. */
static int spec_default(struct source_spec *s, const char *k, const char *v)
{
	int rc = source_spec_set(s, k, v);

	return rc == -EEXIST ? 0 : rc;
}

/* The daemon refuses sources of one name or overlapping sub-paths (the
 * same check: source_layout_conflict): say so before rendering. */
static int check_layout(const struct prov *p)
{
	const char **names = calloc(p->nsources + 1, sizeof(*names));
	char **ats = calloc(p->nsources + 1, sizeof(*ats));
	size_t i, j, n = 0;
	int rc = 0, kind = 0;

	for (; names && ats && n < p->nsources && !rc; n++) {
		names[n] = source_spec_get(p->sources[n], "name");
		rc = source_spec_at(&ats[n], p->sources[n]);
		if (rc == -EINVAL)
			rc = fail("--source %s: bad at= '%s'",
				  p->sources[n]->location,
				  source_spec_get(p->sources[n], "at"));
	}
	if (!names || !ats || rc == -ENOMEM)
		rc = fail("out of memory");
	if (!rc)
		kind = source_layout_conflict(&i, &j, names,
					      (const char *const *)ats, n);
	if (kind == SOURCE_SAME_NAME)
		rc = fail("--source %s: two sources are named %s; give one of "
			  "them name=", p->sources[j]->location, names[i]);
	else if (kind == SOURCE_OVERLAP)
		rc = fail("--source %s: at=/%s overlaps source %s (at=/%s); "
			  "give each source its own at=",
			  p->sources[j]->location, ats[j], names[i], ats[i]);
	while (ats && n--)
		free(ats[n]);
	free(ats);
	free(names);
	return rc;
}

/* Parse the sources; point their secrets at the mounted Secret. */
static int prepare_sources(struct prov *p)
{
	char err[512], name[SOURCE_NAME_MAX + 1];

	if (!p->nsources)
		return fail("no --source given (e.g. --source "
			    "'git:https://github.com/org/dags.git,ref=main')");
	p->sources = calloc(p->nsources, sizeof(*p->sources));
	if (!p->sources)
		return fail("out of memory");
	for (size_t i = 0; i < p->nsources; i++) {
		struct source_spec *s;
		bool ssh;
		int rc = 0;

		if (source_spec_parse(&p->sources[i], p->source_text[i], err,
				      sizeof(err)))
			return fail("--source: %s", err);
		s = p->sources[i];
		if (!one_of(s->type, (const char *const[]){ "git", "s3", "dir",
							    NULL }))
			return fail("--source: unknown source type '%s' "
				    "(expected git, s3 or dir)", s->type);
		if (!strcmp(s->type, "dir") && !strcmp(p->target, "k8s"))
			return fail("--source %s: a dir source reads a local "
				    "directory; in Kubernetes use git or s3",
				    s->location);
		if (source_spec_name(name, s))
			return fail("--source %s: invalid name '%s' (letters, "
				    "digits, '.', '_' and '-')", s->location,
				    source_spec_get(s, "name"));
		rc |= spec_default(s, "name", name);
		ssh = !strncmp(s->location, "ssh://", 6) ||
		      (strchr(s->location, '@') && !strstr(s->location, "://"));
		if (!strcmp(s->type, "git") && ssh && p->git_ssh_key)
			rc |= spec_default(s, "ssh-key", PROV_SECRETS_DIR "/ssh-key");
		if (!strcmp(s->type, "git") && ssh && p->git_known_hosts)
			rc |= spec_default(s, "known-hosts",
				       PROV_SECRETS_DIR "/known_hosts");
		if (!strcmp(s->type, "git") && !ssh && p->git_password_file)
			rc |= spec_default(s, "password-file",
				       PROV_SECRETS_DIR "/git-password");
		if (!strcmp(s->type, "s3") && p->s3_credentials_file)
			rc |= spec_default(s, "credentials-file",
				       PROV_SECRETS_DIR "/aws-credentials");
		if (rc)
			return fail("out of memory");
	}
	return check_layout(p);
}

/* A one-line secret from @path into @out: 0, or -1 if unreadable or
 * empty (read_secret, the one reader of secret files). */
static int secret_line(const char *path, char *out, size_t len)
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
		return secret_line(given, out, len) ?
			       fail("--%s: secret file %s is unreadable or "
				    "empty", flag, given) :
			       0;
	snprintf(kept, sizeof(kept), "%s/.secrets/%s", p->outdir, name);
	if (!secret_line(kept, out, len))
		return 0;
	if ((kind == 0 ? gen_fernet(out) : gen_hex(out, (size_t)kind)))
		return fail("%s: the OpenSSL random generator failed", name);
	fd = open(kept, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, out, strlen(out)) != (ssize_t)strlen(out)) {
		if (fd >= 0)
			close(fd);
		return fail("%s: %s", kept, strerror(errno));
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
			return fail("%s: not an Ed25519 private key", path);
		}
	} else {
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

		k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		f = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (!k || !f || !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL,
						      NULL) || fclose(f)) {
			EVP_PKEY_free(k);
			return fail("%s: cannot write the signing key", path);
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
	return p->serve_key[0] && p->serve_pub[0] ? 0 :
		       fail("%s: the OpenSSL key encoding failed", path);
}

/*
 * The JWT secret is generated here once rather than by the chart, whose
 * secrets/jwt-secret.yaml draws a new randAlphaNum at every render: each
 * `helm upgrade` would rotate it under running pods, and the next restart
 * would break the tasks' authentication to the API server.
 */
static int prepare_secrets(struct prov *p)
{
	char dir[4096];

	if ((mkdir(p->outdir, 0755) && errno != EEXIST))
		return fail("%s: %s", p->outdir, strerror(errno));
	snprintf(dir, sizeof(dir), "%s/.secrets", p->outdir);
	if ((mkdir(dir, 0700) && errno != EEXIST) || chmod(dir, 0700))
		return fail("%s: %s", dir, strerror(errno));
	return secret(p, "fernet-key-file", p->fernet_key_file, "fernet-key",
		      p->fernet, sizeof(p->fernet), 0) ||
	       secret(p, "webserver-secret-key-file", p->webserver_secret_file,
		      "webserver-secret-key", p->websecret,
		      sizeof(p->websecret), 16) ||
	       secret(p, "db-password-file", p->db_password_file,
		      "db-password", p->dbpass, sizeof(p->dbpass), 24) ||
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

/* Print (dry run) or run one command; its arguments hold no secrets. */
static int run(const struct prov *p, const char *const argv[])
{
	int status;
	pid_t pid;

	for (int i = 0; argv[i]; i++)
		printf("%s%s", i ? " " : "+ ", argv[i]);
	putchar('\n');
	fflush(stdout);
	if (p->dry_run)
		return 0;
	pid = fork();
	if (pid < 0)
		return fail("fork: %s", strerror(errno));
	if (pid == 0) {
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "dagfs-provision: %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		return fail("'%s' failed; fix the cause and run apply again "
			    "(it creates or upgrades)", argv[0]);
	return 0;
}

/* hostPath volumes: their owners must be set before PostgreSQL starts. */
static int wait_volumes(const struct prov *p)
{
	char job[128], file[4096];

	if (strcmp(p->storage, "hostpath"))
		return 0;
	snprintf(job, sizeof(job), "job/%s-dagfs-volumes", p->release);
	snprintf(file, sizeof(file), "%s/volumes-job.yaml", p->outdir);
	return run(p, (const char *const[]){ "kubectl", "delete", "-n", p->ns,
					     "-f", file, "--ignore-not-found",
					     "--wait", NULL }) ||
	       run(p, (const char *const[]){ "kubectl", "apply", "-n", p->ns,
					     "-f", file, NULL }) ||
	       run(p, (const char *const[]){ "kubectl", "wait", "-n", p->ns,
					     "--for=condition=complete", job,
					     "--timeout=5m", NULL });
}

/*
 * The chart's migration and user Jobs are plain Jobs here (helm --wait),
 * and a Job's pod template is immutable: an upgrade that changes their
 * image (a new --airflow-version) would fail. They are one-shot, so
 * apply deletes the finished ones first and helm creates them anew.
 */
static int delete_chart_jobs(const struct prov *p)
{
	char sel[256];

	snprintf(sel, sizeof(sel),
		 "tier=airflow,release=%s,component in "
		 "(run-airflow-migrations,create-user-job)",
		 p->release);
	return run(p, (const char *const[]){ "kubectl", "delete", "job", "-n",
					     p->ns, "-l", sel,
					     "--ignore-not-found", "--wait",
					     NULL });
}

/* The dagfs_airflow package, before any pod that imports it. */
static int apply_bundle(const struct prov *p)
{
	char file[4096];

	if (!prov_bundles(p))
		return 0;
	snprintf(file, sizeof(file), "%s/dagfs-airflow.yaml", p->outdir);
	return run(p, (const char *const[]){ "kubectl", "apply", "-n", p->ns,
					     "-f", file, NULL });
}

/* --mode node: the publisher and the DaemonSet, before the Airflow pods. */
static int apply_node(const struct prov *p)
{
	char file[4096];

	if (!p->node_level)
		return 0;
	snprintf(file, sizeof(file), "%s/dagfs-node.yaml", p->outdir);
	return run(p, (const char *const[]){ "kubectl", "apply", "-n", p->ns,
					     "-f", file, NULL });
}

/* The Prometheus Operator's objects (its CRDs must be installed). */
static int apply_monitoring(const struct prov *p)
{
	char file[4096];

	if (!p->prometheus_operator)
		return 0;
	snprintf(file, sizeof(file), "%s/prometheus-operator.yaml", p->outdir);
	return run(p, (const char *const[]){ "kubectl", "apply", "-n", p->ns,
					     "-f", file, NULL });
}

static int apply(const struct prov *p)
{
	char f[8][4096];
	static const char *const files[] = { "namespace.yaml", "storage.yaml",
					     "secrets.yaml", "dagfs-config.yaml",
					     "values.yaml", "install.sh",
					     "dagfs-service.yaml", "rbac.yaml" };

	for (int i = 0; i < 8; i++)
		snprintf(f[i], sizeof(f[i]), "%s/%s", p->outdir, files[i]);
	if (run(p, (const char *const[]){ "kubectl", "apply", "-f", f[0], NULL }) ||
	    run(p, (const char *const[]){ "kubectl", "apply", "-f", f[1], NULL }) ||
	    wait_volumes(p) || apply_bundle(p) ||
	    run(p, (const char *const[]){ "kubectl", "apply", "-n", p->ns,
				    "-f", f[2], NULL }) ||
	    run(p, (const char *const[]){ "kubectl", "apply", "-n", p->ns,
				    "-f", f[3], NULL }))
		return -1;
	if (!strcmp(p->target, "vm")) {
		char cfg[4096];

		snprintf(cfg, sizeof(cfg), "%s/airflow-config.yaml", p->outdir);
		return run(p, (const char *const[]){ "kubectl", "apply", "-n",
					     p->ns, "-f", cfg, NULL }) ||
		       run(p, (const char *const[]){ "kubectl", "apply", "-n",
					     p->ns, "-f", f[7], NULL }) ||
		       apply_monitoring(p) ||
		       run(p, (const char *const[]){ "sh", f[5], NULL });
	}
	if (run(p, (const char *const[]){ "kubectl", "apply", "-n", p->ns, "-f",
				    f[6], NULL }) ||
	    apply_node(p) || apply_monitoring(p) || delete_chart_jobs(p))
		return -1;
	return run(p, (const char *const[]){
			      "helm", "upgrade", "--install", p->release,
			      "airflow", "--repo", "https://airflow.apache.org",
			      "--version", p->chart_version, "--namespace",
			      p->ns, "--values", f[4], "--wait",
			      "--timeout", "20m", NULL });
}

/* `admin-password DIR`: the one place the generated password is shown. */
static int show_admin_password(const char *dir)
{
	char path[4096], pw[128];

	snprintf(path, sizeof(path), "%s/.secrets/admin-password", dir);
	if (secret_line(path, pw, sizeof(pw)))
		return fail("%s: no admin password was generated there "
			    "(render first, without --no-admin-user)", path);
	printf("%s\n", pw);
	OPENSSL_cleanse(pw, sizeof(pw));
	return 0;
}

int main(int argc, char **argv)
{
	struct prov p = { 0 };
	int rc = 2;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "admin-password"))
		return show_admin_password(argv[2]) ? 1 : 0;
	defaults(&p);
	log_setup(LOG_LVL_ERR, false);
	if (parse_args(&p, argc, argv) || validate(&p) || prepare_sources(&p) ||
	    prepare_secrets(&p))
		goto out;
	if (!p.pin_url) { /* the dag-processors' dagfs, which parse the DAGs */
		snprintf(p.pin_url_buf, sizeof(p.pin_url_buf),
			 "http://%s-%s.%s.svc:%u/metrics", p.release,
			 PROV_PIN_SERVICE, p.ns, p.http_port);
		p.pin_url = p.pin_url_buf;
	}
	rc = 1;
	if ((!strcmp(p.target, "vm") ? prov_render_vm(&p) : prov_render_k8s(&p)) ||
	    prov_render_bundle(&p) || prov_render_node(&p) ||
	    prov_render_obs(&p))
		goto out;
	printf("rendered %s target into %s (chart %s, Airflow %s, %s mode)\n",
	       p.target, p.outdir, p.chart_version, p.airflow_version,
	       p.node_level ? "node" : p.mode);
	if (!strcmp(p.image, PROV_DEFAULT_IMAGE))
		fprintf(stderr, "dagfs-provision: note: --image not given: %s is "
				"not published anywhere; build sidecar/Dockerfile, "
				"push it where the nodes pull from and pass "
				"--image (README, Kubernetes step 1)\n",
			PROV_DEFAULT_IMAGE);
	if (!strcmp(p.command, "apply") && apply(&p))
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
