/* SPDX-License-Identifier: Apache-2.0 */
/*
 * provision_i.h - private to k8s/: the options of dagfs-provision and the
 * renderers of the Kubernetes and VM targets. No daemon logic lives here:
 * sources are only parsed (sync.h's parser) to be checked and written out.
 */
#ifndef DAGFS_PROVISION_I_H
#define DAGFS_PROVISION_I_H

#include <stdbool.h>
#include <stdio.h>

#include "log.h"
#include "sync.h"

/* The chart release rendered for and validated against by default. */
#define PROV_CHART_VERSION "1.21.0"
#define PROV_AIRFLOW_VERSION "3.2.0"
/* The volume dagfs shares with the Airflow containers: not "dags", which
 * the chart itself declares for dags.persistence and gitSync. */
#define PROV_DAGS_VOLUME "dagfs-dags"
/* Where the ConfigMap dagfs-airflow puts the dagfs_airflow package, on
 * PYTHONPATH in every Airflow container. */
#define PROV_BUNDLE_DIR "/opt/dagfs-airflow"
#define PROV_SECRETS_DIR "/etc/dagfs/secrets"
/* The Service in front of the dag-processors' dagfs, for pinned workers. */
#define PROV_PIN_SERVICE "dagfs-dag-processor"

/** Everything the command line says; strings are borrowed from argv. */
struct prov {
	const char *command; /* render, apply */
	const char *outdir;
	bool dry_run;
	const char *target; /* k8s, vm */
	const char *chart_version, *airflow_version;
	bool chart_validated;	   /* a release whose schema the tests check */
	bool chart_legacy_workers; /* 1.18.0: workers.extra*, no .kubernetes */
	bool no_admin_user;
	const char *bundle; /* source, tree, none: DagfsDagBundle entries */
	bool node_level; /* --mode node: one dagfs per node (mode is "fuse") */
	bool prometheus_operator;
	const char *prometheus_release; /* the label its Prometheus selects */
	unsigned stale_periods;
	const char *ns, *release, *image, *mode, *sidecar, *executor;
	const char *git_ssh_key, *git_known_hosts, *git_password_file;
	const char *s3_credentials_file;
	const char *fernet_key_file, *webserver_secret_file, *db_password_file;
	const char *jwt_secret_file, *admin_password_file;
	const char *db_user, *db_name;
	const char *storage, *storage_class, *host_path, *node;
	const char *logs_size, *db_size;
	const char *service, *timezone;
	const char *worker;  /* sidecar, pinned: the chart's podTemplate */
	const char *pin_url; /* the scheduler's dagfs /metrics */
	char pin_url_buf[512];
	unsigned node_port, scheduler_replicas, http_port;
	/* VM target */
	const char *airflow_home, *kubeconfig, *db_host, *dagfs_bin;
	const char *airflow_bin, *api_url;
	const char *dagfs_deb; /* the package install.sh installs */
	bool airflow_venv; /* install.sh installs Airflow in AIRFLOW_HOME/venv */
	char airflow_bin_buf[512];
	unsigned db_port, webserver_port;

	size_t nsources;
	struct source_spec **sources;
	const char **source_text;

	/* filled by prov_secrets(): never printed */
	char fernet[64], websecret[64], dbpass[80], jwt[80], adminpass[40];
	/* --mode node: the publisher's token and signing key (PEM) */
	char serve_token[80], serve_key[512], serve_pub[256];
};

/** Write @text as the lines of a YAML block scalar at @ind spaces. */
void prov_yaml_block(FILE *f, const char *text, int ind);
/** Write @s as a double-quoted YAML scalar. */
void y_str(FILE *f, const char *s);
/** Percent-encode @s for the user or password part of a URL into @out. */
void prov_url_escape(char *out, size_t len, const char *s);
/** Open @dir/@name for writing with @mode (0600 for secrets). */
FILE *prov_open(const struct prov *p, const char *name, int mode);
/** Close, reporting a write error; 0 or -1. */
int prov_close(FILE *f, const char *name);

/** The dagfs config file (INI) for the sidecar, from the sources. */
void prov_dagfs_conf(FILE *f, const struct prov *p);
/**
 * The dagfs container at @indent spaces, as a list item ("- name: dagfs").
 * @native: a native sidecar (restartPolicy Always); @oneshot: the init
 * container that materialises one pinned revision and exits.
 */
void prov_dagfs_container(FILE *f, const struct prov *p, int indent,
			  bool native, bool oneshot);
/** Volumes the dagfs container needs, list items at @indent. */
void prov_dagfs_volumes(FILE *f, const struct prov *p, int indent);
/** The DAG folder as Airflow containers see it. */
const char *prov_dags_folder(const struct prov *p);
/** The Airflow image of the chosen Airflow version, e.g. apache/airflow:3.2.0. */
void prov_airflow_image(char *out, size_t len, const struct prov *p);
/** Whether a logs PersistentVolumeClaim is rendered (hostPath, or a named
 *  StorageClass: a ReadWriteMany volume the cluster's default class may
 *  not offer). */
bool prov_logs_claim(const struct prov *p);
/** Whether the chart's PostgreSQL runs (no external --db-host). */
bool prov_chart_db(const struct prov *p);
/** Whether @executor (a comma list) names @name. */
bool prov_executor_has(const struct prov *p, const char *name);
/** A KubernetesExecutor pod template with dagfs (@oneshot: pinned). */
void prov_pod_template(FILE *f, const struct prov *p, bool oneshot);

/** What both targets put in the cluster: namespace, storage, the dagfs
 *  ConfigMap and the secrets. */
int prov_render_cluster(const struct prov *p) WUR;
int prov_render_k8s(const struct prov *p) WUR;
int prov_render_vm(const struct prov *p) WUR;
/** Whether DagfsDagBundle is registered (--bundle source or tree). */
bool prov_bundles(const struct prov *p);
/** dagProcessor.dagBundleConfigList at @ind spaces. */
void prov_bundle_list_yaml(FILE *f, const struct prov *p, int ind);
/** The same list as the JSON of [dag_processor] dag_bundle_config_list,
 *  the bundles finding the mount at @mount. */
void prov_bundle_list_json(FILE *f, const struct prov *p, const char *mount);
/** The mount the bundles read in a pod (FUSE mount or materialise dir). */
const char *prov_bundle_mount(const struct prov *p);
/** The ConfigMap dagfs-airflow with the dagfs_airflow package. */
int prov_render_bundle(const struct prov *p) WUR;
/** --mode node: the hostPath of the node's dagfs, with @what appended. */
void prov_node_hostpath(char *out, size_t len, const struct prov *p,
			const char *what);
/** --mode node: the publisher Deployment, the DaemonSet and their
 *  ConfigMap (dagfs-node.yaml); 0 and nothing otherwise. */
int prov_render_node(const struct prov *p) WUR;
/** --mode node: the publisher's Service (dagfs-service.yaml). */
void prov_node_service(FILE *f, const struct prov *p);
/** The Grafana dashboard, the alerting rules and, with
 *  --prometheus-operator, PrometheusRule, metrics Services, ServiceMonitor. */
int prov_render_obs(const struct prov *p) WUR;

/* The image rendered without --image (not published anywhere). */
#define PROV_DEFAULT_IMAGE "dagfs/dagfs:0.1.0"

/* The command's steps, in main's order (provision.c). */
/** "dagfs-provision: " + the message on stderr, one line; returns -1. */
int prov_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/** --help's text, from the option table (provision_opts.c). */
void prov_usage(FILE *f);
/** Every option's default into @p (provision_opts.c). */
void prov_defaults(struct prov *p);
/** `render|apply DIR [--option[=]value]...` into @p; 0 or -1, said. */
int prov_parse_args(struct prov *p, int argc, char **argv) WUR;
/** Check every value of @p (provision_check.c); 0 or -1, said. */
int prov_validate(struct prov *p) WUR;
/** Parse, complete and check the --source specs into p->sources. */
int prov_prepare_sources(struct prov *p) WUR;
/** A one-line secret from @path into @out: 0, or -1 if unreadable or
 *  empty (provision_secrets.c). */
int prov_secret_line(const char *path, char *out, size_t len) WUR;
/** Read, or generate once and keep, every secret into @p; 0 or -1. */
int prov_prepare_secrets(struct prov *p) WUR;
/** `apply`: kubectl and helm on the rendered files (provision_apply.c). */
int prov_apply(const struct prov *p) WUR;

#endif
