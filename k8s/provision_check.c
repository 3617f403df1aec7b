/* SPDX-License-Identifier: Apache-2.0 */
/*
 * provision_check.c - dagfs-provision's validation of the command line: each
 * value against its allowed set or shape (DNS labels, SQL names, sizes,
 * versions), the chart release chosen, the files named readable, and the
 * --source specs parsed, completed and checked for a clashing layout.
 *
 * It must not write anything nor read a secret's contents (only that the
 * file is there): provision_secrets.c does.
 */

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "provision_i.h"

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
		if (!(islower((unsigned char)*s) ||
		      isdigit((unsigned char)*s) || *s == '-'))
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
	return one_of(end,
		      (const char *const[]){ "Ki", "Mi", "Gi", "Ti", NULL });
}

static int check_file(const char *opt, const char *path)
{
	if (path && access(path, R_OK))
		return prov_fail("--%s: missing key file %s: %s", opt, path,
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
		return prov_fail("--chart-version: '%s' is not a version like %s",
				 p->chart_version, PROV_CHART_VERSION);
	if (v[0] != 1 || v[1] < 21) {
		if (strcmp(p->chart_version, "1.18.0"))
			return prov_fail("--chart-version: %s is not supported "
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
		return prov_fail("--airflow-version: '%s' is not an Airflow 3 "
				 "version like %s",
				 p->airflow_version, PROV_AIRFLOW_VERSION);
	if (!p->chart_validated)
		fprintf(stderr,
			"dagfs-provision: note: chart %s is rendered as "
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

int prov_validate(struct prov *p)
{
	static const char *const executors[] = {
		"KubernetesExecutor", "CeleryExecutor", "LocalExecutor",
		"CeleryKubernetesExecutor", NULL
	};

	if (!one_of(p->target, (const char *const[]){ "k8s", "vm", NULL }))
		return prov_fail(
			"--target: unknown target '%s' (expected k8s or vm)",
			p->target);
	if (choose_chart(p))
		return -1;
	if (p->db_host && !*p->db_host)
		return prov_fail("--db-host: empty host");
	if (!p->db_host && !strcmp(p->target, "vm"))
		p->db_host = "127.0.0.1";
	if (!one_of(p->executor, executors))
		return prov_fail("--executor: unknown executor '%s' (expected KubernetesExecutor, "
				 "CeleryExecutor, LocalExecutor or "
				 "CeleryKubernetesExecutor)",
				 p->executor);
	if (!dns_label(p->ns, 63))
		return prov_fail(
			"--namespace: invalid namespace name '%s' (lowercase letters, "
			"digits and '-', at most 63, starting and ending "
			"alphanumeric)",
			p->ns);
	if (!sql_name(p->db_user) || !sql_name(p->db_name))
		return prov_fail("--db-user/--db-name: invalid database user or name '%s'/'%s' (letters, "
				 "digits and '_', at most 63)",
				 p->db_user, p->db_name);
	if (!dns_label(p->release, 53))
		return prov_fail("--release: invalid release name '%s'",
				 p->release);
	if (!one_of(p->mode, (const char *const[]){ "fuse", "materialize",
						    "node", NULL }))
		return prov_fail("--mode: unknown mode '%s' (expected fuse, materialize "
				 "or node)",
				 p->mode);
	if (!strcmp(p->mode, "node")) {
		if (!strcmp(p->target, "vm"))
			return prov_fail(
				"--mode node: the Kubernetes target only (a "
				"VM mounts dagfs itself)");
		if (!strcmp(p->worker, "pinned"))
			return prov_fail(
				"--mode node: task pods read the node's "
				"mount; not with --worker pinned");
		p->node_level = true;
		p->mode = "fuse"; /* what the Airflow containers see */
	}
	if (!one_of(p->sidecar,
		    (const char *const[]){ "native", "classic", NULL }))
		return prov_fail(
			"--sidecar: unknown sidecar '%s' (expected native or classic)",
			p->sidecar);
	if (!one_of(p->bundle,
		    (const char *const[]){ "source", "tree", "none", NULL }))
		return prov_fail("--bundle: unknown bundle '%s' (expected source, "
				 "tree or none)",
				 p->bundle);
	if (!one_of(p->worker,
		    (const char *const[]){ "sidecar", "pinned", NULL }))
		return prov_fail(
			"--worker: unknown worker '%s' (expected sidecar or pinned)",
			p->worker);
	if (!strcmp(p->worker, "pinned") && strcmp(p->bundle, "none"))
		return prov_fail(
			"--worker pinned: with DAG bundles each task already "
			"runs the version its DAG run was parsed from; "
			"give --bundle none or --worker sidecar");
	if (!strcmp(p->worker, "pinned") &&
	    strcmp(p->executor, "KubernetesExecutor"))
		return prov_fail(
			"--worker pinned needs --executor KubernetesExecutor "
			"(a long-running worker would stay on one "
			"revision)");
	if (!one_of(p->service,
		    (const char *const[]){ "nodeport", "loadbalancer", NULL }))
		return prov_fail("--service: unknown service '%s' (expected nodeport or "
				 "loadbalancer)",
				 p->service);
	if (p->node_port < 30000 || p->node_port > 32767)
		return prov_fail("--node-port %u out of range (30000-32767)",
				 p->node_port);
	if (!p->http_port || !p->webserver_port || !p->db_port)
		return prov_fail(
			"--dagfs-http-port/--webserver-port/--db-port: port out of range (1-65535)");
	if (p->dagfs_deb &&
	    (strlen(p->dagfs_deb) < 5 ||
	     strcmp(p->dagfs_deb + strlen(p->dagfs_deb) - 4, ".deb") ||
	     strpbrk(p->dagfs_deb, "'\\\"$`\n")))
		return prov_fail("--dagfs-deb: '%s' is not a .deb file name",
				 p->dagfs_deb);
	if (p->airflow_home[0] != '/' || strpbrk(p->airflow_home, " '\"$`\\"))
		return prov_fail("--airflow-home: '%s' is not an absolute path "
				 "without quotes or spaces",
				 p->airflow_home);
	if (!p->airflow_bin) {
		snprintf(p->airflow_bin_buf, sizeof(p->airflow_bin_buf),
			 "%s/venv/bin/airflow", p->airflow_home);
		p->airflow_bin = p->airflow_bin_buf;
		p->airflow_venv = true;
	}
	if (!p->stale_periods)
		return prov_fail("--stale-periods must be at least 1");
	if (p->prometheus_release && !dns_label(p->prometheus_release, 63))
		return prov_fail("--prometheus-release: invalid name '%s'",
				 p->prometheus_release);
	if (!p->scheduler_replicas)
		return prov_fail("--scheduler-replicas must be at least 1");
	if (!p->storage)
		p->storage = p->node ? "hostpath" : "class";
	if (!strcmp(p->storage, "hostpath")) {
		if (!p->node || !*p->node)
			return prov_fail(
				"--storage hostpath needs --node NAME (the "
				"node that holds the volumes)");
		if (p->host_path[0] != '/')
			return prov_fail("--host-path must be absolute");
		if (p->storage_class)
			return prov_fail("--storage-class: not with --storage "
					 "hostpath (its volumes have class "
					 "dagfs-local)");
	} else if (!strcmp(p->storage, "class")) {
		if (p->storage_class && !dns_label(p->storage_class, 253))
			return prov_fail("--storage-class: invalid name '%s'",
					 p->storage_class);
		if (p->node)
			return prov_fail(
				"--node: only with --storage hostpath");
	} else {
		return prov_fail(
			"--storage: unknown storage '%s' (expected hostpath or class)",
			p->storage);
	}
	if (!quantity(p->logs_size) || !quantity(p->db_size))
		return prov_fail(
			"--logs-size/--db-size: volume sizes look like 10Gi, 512Mi");
	if (p->api_url && strncmp(p->api_url, "http://", 7) &&
	    strncmp(p->api_url, "https://", 8))
		return prov_fail("--api-server-url '%s' is not an http:// or "
				 "https:// URL",
				 p->api_url);
	if (p->pin_url && strncmp(p->pin_url, "http://", 7) &&
	    strncmp(p->pin_url, "https://", 8))
		return prov_fail("--pin-url '%s' is not an http:// or https:// URL",
				 p->pin_url);
	for (const char *c = p->timezone; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("_+-/", *c))
			return prov_fail("--timezone: invalid timezone '%s'",
					 p->timezone);
	return check_file("git-ssh-key", p->git_ssh_key) ||
	       check_file("git-known-hosts", p->git_known_hosts) ||
	       check_file("git-password-file", p->git_password_file) ||
	       check_file("s3-credentials-file", p->s3_credentials_file) ||
	       check_file("fernet-key-file", p->fernet_key_file) ||
	       check_file("webserver-secret-key-file",
			  p->webserver_secret_file) ||
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
			rc = prov_fail("--source %s: bad at= '%s'",
				       p->sources[n]->location,
				       source_spec_get(p->sources[n], "at"));
	}
	if (!names || !ats || rc == -ENOMEM)
		rc = prov_fail("out of memory");
	if (!rc)
		kind = source_layout_conflict(&i, &j, names,
					      (const char *const *)ats, n);
	if (kind == SOURCE_SAME_NAME)
		rc = prov_fail("--source %s: two sources are named %s; give one of "
			       "them name=",
			       p->sources[j]->location, names[i]);
	else if (kind == SOURCE_OVERLAP)
		rc = prov_fail("--source %s: at=/%s overlaps source %s (at=/%s); "
			       "give each source its own at=",
			       p->sources[j]->location, ats[j], names[i],
			       ats[i]);
	while (ats && n--)
		free(ats[n]);
	free(ats);
	free(names);
	return rc;
}

/* Parse the sources; point their secrets at the mounted Secret. */
int prov_prepare_sources(struct prov *p)
{
	char err[512], name[SOURCE_NAME_MAX + 1];

	if (!p->nsources)
		return prov_fail(
			"no --source given (e.g. --source "
			"'git:https://github.com/org/dags.git,ref=main')");
	p->sources = calloc(p->nsources, sizeof(*p->sources));
	if (!p->sources)
		return prov_fail("out of memory");
	for (size_t i = 0; i < p->nsources; i++) {
		struct source_spec *s;
		bool ssh;
		int rc = 0;

		if (source_spec_parse(&p->sources[i], p->source_text[i], err,
				      sizeof(err)))
			return prov_fail("--source: %s", err);
		s = p->sources[i];
		if (!one_of(s->type,
			    (const char *const[]){ "git", "s3", "dir", NULL }))
			return prov_fail("--source: unknown source type '%s' "
					 "(expected git, s3 or dir)",
					 s->type);
		if (!strcmp(s->type, "dir") && !strcmp(p->target, "k8s"))
			return prov_fail("--source %s: a dir source reads a local "
					 "directory; in Kubernetes use git or s3",
					 s->location);
		if (source_spec_name(name, s))
			return prov_fail("--source %s: invalid name '%s' (letters, "
					 "digits, '.', '_' and '-')",
					 s->location,
					 source_spec_get(s, "name"));
		rc |= spec_default(s, "name", name);
		ssh = !strncmp(s->location, "ssh://", 6) ||
		      (strchr(s->location, '@') && !strstr(s->location, "://"));
		if (!strcmp(s->type, "git") && ssh && p->git_ssh_key)
			rc |= spec_default(s, "ssh-key",
					   PROV_SECRETS_DIR "/ssh-key");
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
			return prov_fail("out of memory");
	}
	return check_layout(p);
}
