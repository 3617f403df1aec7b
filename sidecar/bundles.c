/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bundles.c - `dagfs airflow-bundles`: print Airflow 3's
 * [dag_processor] dag_bundle_config_list for the configured sources, one
 * dagfs_airflow.DagfsDagBundle per source (or one for the whole tree).
 * It reads the same configuration as `mount` and starts nothing: no
 * source is built, the cache is not touched.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sidecar_i.h"

#define BUNDLE_CLASS "dagfs_airflow.DagfsDagBundle"

/* The path the bundles read, absolute, into @out; -EINVAL if none. */
static int bundle_mount(const struct dagfs_config *c, char *out, size_t len)
{
	const char *p = c->bundle_mount ? c->bundle_mount :
			c->materialize	? c->materialize :
			c->npos == 1	? c->pos[0] :
					  NULL;
	char cwd[PATH_MAX];

	if (!p || !*p)
		return -EINVAL;
	if (*p == '/' || !getcwd(cwd, sizeof(cwd)))
		snprintf(out, len, "%s", p);
	else
		snprintf(out, len, "%s/%s", cwd, p);
	return 0;
}

static void bundle_put(FILE *f, const char *name, const char *mount,
		       const char *source)
{
	fputs("{\"name\": ", f);
	json_put_str(f, name);
	fputs(", \"classpath\": \"" BUNDLE_CLASS "\", \"kwargs\": {\"mount\": ",
	      f);
	json_put_str(f, mount);
	if (source) {
		fputs(", \"source\": ", f);
		json_put_str(f, source);
	}
	fputs("}}", f);
}

/* The JSON list on @f; 0, or -EINVAL with the reason on stderr. */
static int bundles_put(FILE *f, const struct dagfs_config *c, const char *mount)
{
	char name[SOURCE_NAME_MAX + 1];

	fputc('[', f);
	if (c->whole_tree)
		bundle_put(f, "dagfs", mount, NULL);
	for (size_t i = 0; !c->whole_tree && i < c->nsources; i++) {
		if (source_spec_name(name, &c->sources[i].spec)) {
			fprintf(stderr, "dagfs: bad source name '%s'\n", name);
			return -EINVAL;
		}
		if (i)
			fputs(", ", f);
		bundle_put(f, name, mount, name);
	}
	fputs("]\n", f);
	return 0;
}

int cmd_airflow_bundles(const struct dagfs_config *c)
{
	char mount[PATH_MAX + 1];

	if (bundle_mount(c, mount, sizeof(mount))) {
		fprintf(stderr,
			"dagfs: airflow-bundles needs the mount path: "
			"MOUNTPOINT, --materialize DIR or --mount PATH\n");
		return 1;
	}
	if (!c->nsources && !c->whole_tree) {
		fprintf(stderr,
			"dagfs: airflow-bundles: no source configured "
			"(--source, DAGFS_SOURCE or [source NAME] in --config)\n");
		return 1;
	}
	if (!c->json) {
		printf("# %s; or AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST "
		       "in the environment\n[dag_processor]\n"
		       "dag_bundle_config_list = ",
		       "airflow.cfg");
	}
	return bundles_put(stdout, c, mount) ? 1 : 0;
}
