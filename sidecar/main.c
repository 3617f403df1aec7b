/* SPDX-License-Identifier: Apache-2.0 */
/*
 * main.c - the dagfs entry point: pick the command, load its
 * configuration, print usage and version, and hand over. Each command
 * lives in its own file; this one only dispatches and sets up logging.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sidecar_i.h"

extern char **environ;

struct command {
	const char *name;
	unsigned cmd;
	const char *synopsis;
	const char *about;
};

static const struct command commands[] = {
	{ "mount", CMD_MOUNT,
	  "mount [--config FILE] [--source SPEC]... [OPTION]... MOUNTPOINT",
	  "Serve the sources on MOUNTPOINT in the foreground until SIGTERM,\n"
	  "SIGINT or an unmount (fusermount3 -u MOUNTPOINT)." },
	{ "status", CMD_STATUS, "status [--cache DIR] [--json]",
	  "Show each source's revision, last success, staleness and last\n"
	  "error from <cache>/status.json. Exit status 0 if all are healthy,\n"
	  "1 if one is not (or the daemon stopped), 2 without a status file." },
	{ "sync", CMD_SYNC,
	  "sync --once --materialize DIR [--revision NAME=REV]... [OPTION]...",
	  "Materialise the sources once into DIR (DIR/current -> .revs/<id>),\n"
	  "optionally at pinned revisions, and exit: for init containers and\n"
	  "CI. Exit status 0, or 1 with a one-line reason." },
	{ "fsck", CMD_FSCK, "fsck [--cache DIR] [--repair]",
	  "Verify every blob against its name and every snapshot against its\n"
	  "checksum and blobs. Exit status 0 clean, 1 errors repaired, 4\n"
	  "errors found (run with --repair, daemon stopped), 8 on failure." },
	{ "airflow-bundles", CMD_BUNDLES,
	  "airflow-bundles [--config FILE] [--source SPEC]... [--json] "
	  "[--whole-tree] [MOUNTPOINT]",
	  "Print Airflow 3's [dag_processor] dag_bundle_config_list for the\n"
	  "configured sources: one dagfs_airflow.DagfsDagBundle per source\n"
	  "(versioned by its revisions), or with --whole-tree one for the\n"
	  "whole tree (versioned by tree ids). Starts nothing." },
	{ "export", CMD_EXPORT,
	  "export [--cache DIR] [--serve-key-file FILE] DIR",
	  "Write what serve=true answers under /store/ as files in DIR\n"
	  "(objects/, snapshots/, sources/NAME/revs/REV, sources/NAME/current,\n"
	  "in that order), for a static HTTP server or a bucket that dagfs:\n"
	  "mirror sources poll. Exit status 0, or 1 with a one-line reason." },
	{ "check-config", CMD_CHECK, "check-config --config FILE [OPTION]...",
	  "Check a configuration as mount would (each source is built against\n"
	  "a scratch cache) and list every error with its file and line, or\n"
	  "print the options and sources the daemon would use." },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "Usage: dagfs COMMAND [OPTION]...\n"
		   "Serve Apache Airflow DAG files from git, S3 and local "
		   "directories\nthrough one read-only FUSE mount.\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  dagfs %s\n", commands[i].synopsis);
	fprintf(f, "\nRun 'dagfs COMMAND --help' for its options; "
		   "'dagfs --version' for the version;\n'dagfs --man' prints "
		   "the manual page.\n");
}

/* What a key's name does not say, in --help. */
static const char *key_note(const char *key)
{
	static const char *const notes[][2] = {
		{ "at", "sub-path in the mount" },
		{ "addressing", "path|virtual" },
		{ "source", "required" },
		{ "validate", "a command run on each new revision" },
	};

	for (size_t i = 0; i < sizeof(notes) / sizeof(*notes); i++)
		if (!strcmp(notes[i][0], key))
			return notes[i][1];
	return NULL;
}

/* "  TYPE:   k1, k2 (note), ..." wrapped at 78 columns. */
static void keys_line(FILE *f, const char *label, const char *const *keys)
{
	int col = fprintf(f, "  %-7s ", label);

	for (size_t i = 0; keys && keys[i]; i++) {
		char word[128];
		const char *note = key_note(keys[i]);
		int n = snprintf(word, sizeof(word), "%s%s%s%s", keys[i],
				 note ? " (" : "", note ? note : "",
				 note ? ")" : "");

		if (col + n + 2 > 78) {
			fputs(",\n          ", f);
			col = 10;
		} else if (i) {
			col += fprintf(f, ", ");
		}
		col += fprintf(f, "%s", word);
	}
	fputc('\n', f);
}

/* The key lists come from the source types' own tables (source_type_keys). */
static void sources_help(FILE *f)
{
	fprintf(f, "\nSPEC is TYPE:LOCATION[,key=value]... ('\\,' is a literal "
		   "comma). In a config file\neach source is a [source NAME] "
		   "section with type =, location = and the same keys.\n");
	keys_line(f, "common:", source_type_keys(NULL));
	for (size_t i = 0; source_type_name(i); i++) {
		char label[32];

		snprintf(label, sizeof(label), "%s:", source_type_name(i));
		keys_line(f, label, source_type_keys(source_type_name(i)));
	}
	fprintf(f,
		"Examples:\n"
		"  dagfs mount --source dir:/home/me/src/dags ./dags\n"
		"  dagfs mount --source 'git:https://github.com/org/dags.git,"
		"ref=main,at=team_a' \\\n"
		"              --uid 50000 --allow-other /opt/airflow/dags\n\n");
}

static void command_help(FILE *f, const struct command *c)
{
	fprintf(f, "Usage: dagfs %s\n%s\n", c->synopsis, c->about);
	if (c->cmd & (CMD_MOUNT | CMD_CHECK | CMD_SYNC | CMD_BUNDLES))
		sources_help(f);
	else
		fputc('\n', f);
	config_help(f, c->cmd);
}

static void roff_line(FILE *f, const char *text)
{
	for (const char *s = text; *s; s++)
		fputs(*s == '-'	 ? "\\-" :
		      *s == '\n' ? "\n.br\n" :
				   (char[]){ *s, 0 },
		      f);
	fputc('\n', f);
}

/*
 * `dagfs --man`: the manual page, dagfs(1), from the commands above and
 * the option table (config_man). The build writes it into the package.
 */
static void man_page(FILE *f)
{
	fprintf(f,
		".TH DAGFS 1 \"\" \"dagfs %s\" \"User Commands\"\n"
		".SH NAME\ndagfs \\- serve Apache Airflow DAG files from git, S3 "
		"and local directories through one read\\-only FUSE mount\n"
		".SH SYNOPSIS\n",
		DAGFS_VERSION);
	for (size_t i = 0; i < NCOMMANDS; i++) {
		fputs(".B dagfs\n", f);
		roff_line(f, commands[i].synopsis);
		fputs(".br\n", f);
	}
	fputs(".SH DESCRIPTION\nEvery option is also DAGFS_NAME in the "
	      "environment and \\fIname = value\\fR in the config file "
	      "(\\fB/etc/dagfs/dagfs.conf\\fR as installed); a flag wins over "
	      "the environment, which wins over the file. Sources are "
	      "\\fITYPE\\fR:\\fILOCATION\\fR[,key=value]... on the command "
	      "line, or [source NAME] sections in the file.\n"
	      ".PP\nAs a mount helper (\\fBmount \\-t fuse.dagfs\\fR, "
	      "/etc/fstab) dagfs takes the config file as the device:\n"
	      ".PP\n.nf\n/etc/dagfs/dagfs.conf /opt/airflow/dags fuse.dagfs "
	      "allow_other,uid=50000,_netdev 0 0\n.fi\n"
	      ".SH COMMANDS\n",
	      f);
	for (size_t i = 0; i < NCOMMANDS; i++) {
		fprintf(f, ".SS dagfs %s\n", commands[i].name);
		roff_line(f, commands[i].about);
		fputs(".PP\nOptions:\n", f);
		config_man(f, commands[i].cmd);
	}
	fputs(".SH FILES\n.TP\n/etc/dagfs/dagfs.conf\nthe configuration "
	      "(dagfs.service reads it)\n.TP\n/var/cache/dagfs\nthe content "
	      "store, snapshots and status.json\n"
	      ".SH SEE ALSO\n.BR mount.fuse3 (8),\n.BR fusermount3 (1)\n",
	      f);
}

static const struct command *command_find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static int run(const struct command *cmd, int argc, char **argv);

static int run_mount(int argc, char **argv)
{
	return run(command_find("mount"), argc, argv);
}

static int run(const struct command *cmd, int argc, char **argv)
{
	struct cfg_errors errs = { 0 };
	struct dagfs_config c;
	int rc, status;

	rc = config_load(&c, cmd->cmd, argc, argv, environ, &errs);
	if (c.help || c.version) {
		if (c.help)
			command_help(stdout, cmd);
		else
			printf("dagfs %s\n", DAGFS_VERSION);
		status = errs.n ? 2 : 0;
	} else if (cmd->cmd == CMD_CHECK) {
		log_setup(c.log_level, c.log_json);
		status = cmd_check_config(&c, &errs);
	} else if (rc) {
		cfg_errors_print(&errs, stderr);
		status = cmd->cmd == CMD_STATUS ? 2 :
			 cmd->cmd == CMD_FSCK	? 8 :
						  1;
	} else {
		log_setup(c.log_level, c.log_json);
		status = cmd->cmd == CMD_MOUNT	 ? cmd_mount(&c) :
			 cmd->cmd == CMD_SYNC	 ? cmd_sync(&c) :
			 cmd->cmd == CMD_FSCK	 ? cmd_fsck(&c) :
			 cmd->cmd == CMD_BUNDLES ? cmd_airflow_bundles(&c) :
			 cmd->cmd == CMD_EXPORT	 ? cmd_export(&c) :
						   cmd_status(&c);
	}
	config_free(&c);
	cfg_errors_clear(&errs);
	return status;
}

/*
 * glibc gives each thread that allocates an arena of its own, up to eight
 * per CPU: the inodes of each FUSE worker then sit in a heap of their own
 * beside that worker's free space. Two arenas keep 0.7 MiB less resident
 * at 10,000 files, with scans no slower (README, "Memory"). An explicit
 * MALLOC_ARENA_MAX or glibc.malloc tunable still decides.
 */
static void malloc_setup(void)
{
	const char *t = getenv("GLIBC_TUNABLES");

	if (getenv("MALLOC_ARENA_MAX") ||
	    (t && strstr(t, "glibc.malloc.arena_max")))
		return;
	mallopt(M_ARENA_MAX, 2);
}

int main(int argc, char **argv)
{
	const struct command *cmd;

	malloc_setup();
	log_setup(LOG_LVL_INFO, false);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("dagfs %s\n", DAGFS_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "--man")) {
		man_page(stdout);
		return 0;
	}
	cmd = command_find(argv[1]);
	if (!cmd && argc >= 3 && argv[1][0] != '-')
		return fstab_main(argc, argv, run_mount); /* mount.fuse3 */
	if (!cmd) {
		fprintf(stderr,
			"dagfs: unknown command '%s' (expected mount, "
			"status, check-config, fsck or airflow-bundles; see dagfs --help)\n",
			argv[1]);
		return 2;
	}
	return run(cmd, argc - 2, argv + 2);
}
