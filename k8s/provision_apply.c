/* SPDX-License-Identifier: Apache-2.0 */
/*
 * provision_apply.c - dagfs-provision's `apply`: kubectl and helm run in order
 * on what render wrote (or only printed, with --dry-run).
 *
 * It must not render or hold a secret on a command line: every secret
 * travels in the rendered files.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "provision_i.h"

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
		return prov_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "dagfs-provision: %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		return prov_fail("'%s' failed; fix the cause and run apply again "
				 "(it creates or upgrades)",
				 argv[0]);
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
	return run(p, (const char *const[]){
			      "kubectl", "delete", "job", "-n", p->ns, "-l",
			      sel, "--ignore-not-found", "--wait", NULL });
}

/* kubectl apply -n NS -f DIR/@name, when @wanted; 0 when not. */
static int apply_file(const struct prov *p, bool wanted, const char *name)
{
	char file[4096];

	if (!wanted)
		return 0;
	snprintf(file, sizeof(file), "%s/%s", p->outdir, name);
	return run(p, (const char *const[]){ "kubectl", "apply", "-n", p->ns,
					     "-f", file, NULL });
}

/* The dagfs_airflow package, before any pod that imports it. */
static int apply_bundle(const struct prov *p)
{
	return apply_file(p, prov_bundles(p), "dagfs-airflow.yaml");
}

/* --mode node: the publisher and the DaemonSet, before the Airflow pods. */
static int apply_node(const struct prov *p)
{
	return apply_file(p, p->node_level, "dagfs-node.yaml");
}

/* The Prometheus Operator's objects (its CRDs must be installed). */
static int apply_monitoring(const struct prov *p)
{
	return apply_file(p, p->prometheus_operator,
			  "prometheus-operator.yaml");
}

int prov_apply(const struct prov *p)
{
	char f[8][4096];
	static const char *const files[] = {
		"namespace.yaml",     "storage.yaml", "secrets.yaml",
		"dagfs-config.yaml",  "values.yaml",  "install.sh",
		"dagfs-service.yaml", "rbac.yaml"
	};

	for (int i = 0; i < 8; i++)
		snprintf(f[i], sizeof(f[i]), "%s/%s", p->outdir, files[i]);
	if (run(p, (const char *const[]){ "kubectl", "apply", "-f", f[0],
					  NULL }) ||
	    run(p, (const char *const[]){ "kubectl", "apply", "-f", f[1],
					  NULL }) ||
	    wait_volumes(p) || apply_bundle(p) ||
	    run(p, (const char *const[]){ "kubectl", "apply", "-n", p->ns, "-f",
					  f[2], NULL }) ||
	    run(p, (const char *const[]){ "kubectl", "apply", "-n", p->ns, "-f",
					  f[3], NULL }))
		return -1;
	if (!strcmp(p->target, "vm")) {
		char cfg[4096];

		snprintf(cfg, sizeof(cfg), "%s/airflow-config.yaml", p->outdir);
		return run(p,
			   (const char *const[]){ "kubectl", "apply", "-n",
						  p->ns, "-f", cfg, NULL }) ||
		       run(p,
			   (const char *const[]){ "kubectl", "apply", "-n",
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
			      p->ns, "--values", f[4], "--wait", "--timeout",
			      "20m", NULL });
}
