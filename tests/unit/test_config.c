/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_config.c - sidecar configuration: defaults, precedence (flag > env
 * > file > default), combined sources, file:line errors, escaped commas,
 * unknown options and keys, value ranges, and the status file's JSON.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "sidecar_i.h"

static char dir[] = "/tmp/dagfs-test-config-XXXXXX";
static char path[4200];

/* Write @text to a config file; its path is in @path. */
static int write_conf(const char *text)
{
	FILE *f;

	snprintf(path, sizeof(path), "%s/dagfs.conf", dir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static int load(struct dagfs_config *c, unsigned cmd, const char *const *argv,
		const char *const *envp, struct cfg_errors *errs)
{
	int argc = 0;

	while (argv && argv[argc])
		argc++;
	return config_load(c, cmd, argc, (char **)argv, (char **)envp, errs);
}

/* 1 if some error line contains @needle. */
static int has_error(const struct cfg_errors *e, const char *needle)
{
	for (size_t i = 0; i < e->n; i++)
		if (strstr(e->msg[i], needle))
			return 1;
	return 0;
}

static const struct cfg_source *source_named(const struct dagfs_config *c,
					     const char *name)
{
	for (size_t i = 0; i < c->nsources; i++) {
		const char *n = source_spec_get(&c->sources[i].spec, "name");

		if (n && !strcmp(n, name))
			return &c->sources[i];
	}
	return NULL;
}

static unsigned char origin_of(const struct dagfs_config *c, const char *opt)
{
	size_t n;
	const struct cfg_option *all = cfg_options(&n);

	return c->origin[cfg_option_find(opt) - all];
}

static void test_config__defaults(void)
{
	struct cfg_errors e = { 0 };
	struct dagfs_config c;

	CHECK(load(&c, CMD_STATUS, NULL, NULL, &e) == 0 && e.n == 0);
	CHECK(!strcmp(c.cache, "/var/cache/dagfs"));
	CHECK(c.umask == 022 && c.keep == 5 && c.uid == -1 && c.gid == -1);
	CHECK(c.log_level == LOG_LVL_INFO && !c.log_json && !c.allow_other);
	CHECK(c.status_interval_ms == 5000 && c.threads == 10);
	CHECK(c.http && !*c.http && !c.config);
	CHECK(origin_of(&c, "cache") == CFG_DEFAULT);
	config_free(&c);
}

static void test_config__precedence_flag_env_file_default(void)
{
	const char *argv[] = { "--cache=/flag", "--log-level", "debug", "/mnt",
			       NULL };
	const char *envp[] = { "DAGFS_CACHE=/env", "DAGFS_UID=2",
			       "DAGFS_LOG_LEVEL=warn", NULL };
	char conf[5000];
	struct cfg_errors e = { 0 };
	struct dagfs_config c;

	CHECK(!write_conf("[dagfs]\ncache = /file\nuid = 1\ngid = 3\n"
			  "umask = 027\nsource = dir:/srv/a\n"));
	snprintf(conf, sizeof(conf), "DAGFS_CONFIG=%s", path);
	{
		const char *env2[] = { envp[0], envp[1], envp[2], conf, NULL };

		CHECK(load(&c, CMD_MOUNT, argv, env2, &e) == 0);
	}
	CHECK(!strcmp(c.cache, "/flag") && origin_of(&c, "cache") == CFG_FLAG);
	CHECK(c.uid == 2 && origin_of(&c, "uid") == CFG_ENV);
	CHECK(c.gid == 3 && origin_of(&c, "gid") == CFG_FILE);
	CHECK(c.umask == 027);
	CHECK(c.log_level == LOG_LVL_DEBUG);
	CHECK(c.keep == 5 && origin_of(&c, "keep") == CFG_DEFAULT);
	CHECK(!strcmp(c.config, path));
	CHECK(c.npos == 1 && !strcmp(c.pos[0], "/mnt"));
	config_free(&c);
}

static void test_config__config_flag_beats_env(void)
{
	const char *argv[5] = { "--config", path, NULL };
	const char *envp[] = { "DAGFS_CONFIG=/nonexistent/dagfs.conf", NULL };
	struct cfg_errors e = { 0 };
	struct dagfs_config c;

	CHECK(!write_conf("cache = /from-file\n"));
	CHECK(load(&c, CMD_STATUS, argv, envp, &e) == 0 && e.n == 0);
	CHECK(!strcmp(c.cache, "/from-file"));
	config_free(&c);

	CHECK(load(&c, CMD_STATUS, NULL, envp, &e) == -EINVAL);
	CHECK(has_error(&e, "config /nonexistent/dagfs.conf: No such file"));
	config_free(&c);
	cfg_errors_clear(&e);
}

static void test_config__sources_combine_from_everywhere(void)
{
	const char *argv[] = { "--source", "dir:/srv/flag,name=flag", NULL };
	const char *envp[] = { "DAGFS_SOURCE=dir:/srv/e1,name=e1\n\n"
			       "  dir:/srv/e2,name=e2  \n",
			       NULL };
	const struct cfg_source *s;
	struct cfg_errors e = { 0 };
	struct dagfs_config c;
	char conf[5000];

	CHECK(!write_conf("[dagfs]\nkeep = 7\n"
			  "source = dir:/srv/g,name=g,keep=2\n"
			  "\n[source team-a]\ntype = dir\n"
			  "location = /srv/a\nat = team_a\n"));
	snprintf(conf, sizeof(conf), "DAGFS_CONFIG=%s", path);
	{
		const char *env2[] = { envp[0], conf, NULL };

		CHECK(load(&c, CMD_MOUNT, argv, env2, &e) == 0);
	}
	CHECK(c.nsources == 5);
	s = source_named(&c, "team-a");
	CHECK(s && !strcmp(s->spec.type, "dir"));
	CHECK(!strcmp(s->spec.location, "/srv/a"));
	CHECK(!strcmp(source_spec_get(&s->spec, "at"), "team_a"));
	CHECK(!strcmp(source_spec_get(&s->spec, "keep"), "7"));
	snprintf(conf, sizeof(conf), "%s:5", path);
	CHECK(!strcmp(s->origin, conf));
	s = source_named(&c, "g");
	CHECK(s && !strcmp(source_spec_get(&s->spec, "keep"), "2"));
	snprintf(conf, sizeof(conf), "%s:3", path);
	CHECK(!strcmp(s->origin, conf));
	CHECK(source_named(&c, "e1") && source_named(&c, "e2"));
	CHECK(!strcmp(source_named(&c, "e2")->spec.location, "/srv/e2"));
	CHECK(!strcmp(source_named(&c, "e1")->origin, "DAGFS_SOURCE"));
	CHECK(!strcmp(source_named(&c, "flag")->origin, "--source"));
	config_free(&c);
}

static void test_config__escaped_commas(void)
{
	const char *argv[] = { "--source", "dir:/srv/a\\,b,name=x,at=p\\,q",
			       NULL };
	const struct cfg_source *s;
	struct cfg_errors e = { 0 };
	struct dagfs_config c;
	char conf[5000];

	CHECK(!write_conf("source = dir:/srv/c\\,d,name=y\n"
			  "[source z]\ntype = dir\nlocation = /srv/e,f\n"));
	snprintf(conf, sizeof(conf), "DAGFS_CONFIG=%s", path);
	{
		const char *envp[] = { conf, NULL };

		CHECK(load(&c, CMD_MOUNT, argv, envp, &e) == 0);
	}
	s = source_named(&c, "x");
	CHECK(s && !strcmp(s->spec.location, "/srv/a,b"));
	CHECK(!strcmp(source_spec_get(&s->spec, "at"), "p,q"));
	s = source_named(&c, "y");
	CHECK(s && !strcmp(s->spec.location, "/srv/c,d"));
	/* A section's values are taken as written: no escapes needed. */
	s = source_named(&c, "z");
	CHECK(s && !strcmp(s->spec.location, "/srv/e,f"));
	config_free(&c);
}

static void test_config__file_errors_carry_file_and_line(void)
{
	const char *argv[] = { "--source", "dir:/srv/x", NULL };
	struct cfg_errors e = { 0 };
	struct dagfs_config c;
	char want[5000];
	const char *envp[2] = { want, NULL };

	CHECK(!write_conf("# comment\n"
			  "[dagfs]\n"
			  "bogus = 1\n"		 /* 3 */
			  "uid = root\n"	 /* 4 */
			  "umask = 0999\n"	 /* 5 */
			  "this line is wrong\n" /* 6 */
			  "[nonsense]\n"	 /* 7 */
			  "ignored = 1\n"	 /* 8: not reported */
			  "[source a]\n"	 /* 9: no location */
			  "type = dir\n"	 /* 10 */
			  "type = git\n"	 /* 11 */
			  "name = b\n"		 /* 12 */
			  "[dagfs]\n"		 /* 13 */
			  "log-level = loud\n"	 /* 14 */
			  "cache = /a\n"	 /* 15 */
			  "cache = /b\n"	 /* 16 */
			  "config = /x\n"	 /* 17 */
			  "[source a]\n"	 /* 18 */
			  "[source bad name]\n"	 /* 19 */
			  "[dagfs\n"));		 /* 20 */
	snprintf(want, sizeof(want), "DAGFS_CONFIG=%s", path);
	CHECK(load(&c, CMD_CHECK, argv, envp, &e) == -EINVAL);
#define EXPECT(line, text)                                                     \
	do {                                                                   \
		snprintf(want, sizeof(want), "%s:%d: %s", path, line, text);   \
		CHECK(has_error(&e, want));                                    \
	} while (0)
	EXPECT(3, "unknown option 'bogus'");
	EXPECT(4, "uid: expected a numeric id, got 'root'");
	EXPECT(5, "umask: expected an octal mask");
	EXPECT(6, "expected 'name = value' or a [section]");
	EXPECT(7, "unknown section [nonsense]");
	EXPECT(9, "[source a] has no location");
	EXPECT(11, "type set twice in [source a]");
	EXPECT(12, "name is given by the header [source a]");
	EXPECT(14, "log-level: expected error, warn");
	EXPECT(16, "cache set twice (first on line 15)");
	EXPECT(17, "config cannot be set in a config file");
	EXPECT(18, "[source a] given twice (first on line 9)");
	EXPECT(19, "bad source name 'bad name'");
	EXPECT(20, "section header without ']'");
#undef EXPECT
	CHECK(e.n == 14);
	config_free(&c);
	cfg_errors_clear(&e);
}

static void test_config__long_lines(void)
{
	size_t n = 20000;
	char *text = malloc(n + 64), conf[5000];
	const char *envp[] = { conf, NULL };
	struct cfg_errors e = { 0 };
	struct dagfs_config c;

	CHECK(text);
	/* 10,000 bytes fit (inih's default of 200 would not)... */
	strcpy(text, "cache = /");
	memset(text + 9, 'a', 10000);
	strcpy(text + 10009, "\nuid = 5\n");
	CHECK(!write_conf(text));
	snprintf(conf, sizeof(conf), "DAGFS_CONFIG=%s", path);
	CHECK(load(&c, CMD_STATUS, NULL, envp, &e) == 0);
	CHECK(strlen(c.cache) == 10001);
	config_free(&c);
	/* ...20,000 do not, and the next line is still read. */
	memset(text, 'b', n);
	strcpy(text + n, "\ncache = /ok\nbogus = 2\n");
	CHECK(!write_conf(text));
	CHECK(load(&c, CMD_STATUS, NULL, envp, &e) == -EINVAL);
	snprintf(conf, sizeof(conf), "%s:1: line longer than", path);
	CHECK(has_error(&e, conf));
	snprintf(conf, sizeof(conf), "%s:3: unknown option 'bogus'", path);
	CHECK(has_error(&e, conf));
	CHECK(e.n == 2 && !strcmp(c.cache, "/ok"));
	config_free(&c);
	cfg_errors_clear(&e);
	free(text);
}

static void test_config__unknown_flags_and_env(void)
{
	const char *argv[] = { "--bogus=1", "-x", "--uid", NULL };
	const char *envp[] = { "DAGFS_SERVICE_HOST=10.0.0.1", "DAGFS_PORT=1",
			       NULL };
	const char *st_argv[] = { "--uid=5", NULL };
	struct cfg_errors e = { 0 };
	struct dagfs_config c;

	CHECK(load(&c, CMD_MOUNT, argv, envp, &e) == -EINVAL);
	CHECK(has_error(&e, "unknown option --bogus"));
	CHECK(has_error(&e, "unknown option -x"));
	CHECK(has_error(&e, "option --uid needs a value"));
	/* Kubernetes service variables are not options and not errors. */
	CHECK(!has_error(&e, "DAGFS_"));
	CHECK(e.n == 3);
	config_free(&c);
	cfg_errors_clear(&e);

	CHECK(load(&c, CMD_STATUS, st_argv, NULL, &e) == -EINVAL);
	CHECK(has_error(&e, "option --uid does not apply to dagfs status"));
	config_free(&c);
	cfg_errors_clear(&e);
}

static void test_config__values_and_ranges(void)
{
	static const struct {
		const char *arg, *error; /* error NULL: accepted */
	} cases[] = {
		{ "--umask=0777", NULL },
		{ "--umask=0", NULL },
		{ "--umask=1000", "--umask: expected an octal mask" },
		{ "--umask=8", "--umask: expected an octal mask" },
		{ "--uid=50000", NULL },
		{ "--uid=-1", "--uid: expected a numeric id, got '-1'" },
		{ "--gid=4294967295", "--gid: expected a numeric id" },
		{ "--keep=0", "--keep: expected a number from 1" },
		{ "--keep=5x", "--keep: expected a number from 1" },
		{ "--threads=1001",
		  "--threads: expected a number from 1 to 1000" },
		{ "--log-format=xml", "--log-format: expected text or json" },
		{ "--log-format=json", NULL },
		{ "--http=127.0.0.1:8080", NULL },
		{ "--http=[::1]:8080", NULL },
		{ "--http=localhost", "--http: expected ADDR:PORT" },
		{ "--http=127.0.0.1:0", "--http: port must be 1-65535" },
		{ "--period=2m", NULL },
		{ "--period=0", "--period: expected a duration" },
		{ "--period=10 s", "--period: expected a duration" },
		{ "--allow-other=maybe",
		  "--allow-other: expected true or false" },
		{ "--source=dir", "--source: malformed source 'dir'" },
		{ "--source=dir:/x,ref", "--source: malformed source" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[] = { cases[i].arg, "--source=dir:/srv/x",
				       NULL };
		struct cfg_errors e = { 0 };
		struct dagfs_config c;
		int rc = load(&c, CMD_MOUNT, argv, NULL, &e);

		if (cases[i].error) {
			if (rc != -EINVAL || !has_error(&e, cases[i].error))
				fprintf(stderr, "case %s: %s\n", cases[i].arg,
					e.n ? e.msg[0] : "accepted");
			CHECK(rc == -EINVAL && e.n == 1);
			CHECK(has_error(&e, cases[i].error));
		} else {
			if (rc)
				fprintf(stderr, "case %s: %s\n", cases[i].arg,
					e.msg[0]);
			CHECK(rc == 0);
		}
		config_free(&c);
		cfg_errors_clear(&e);
	}
}

static void test_config__bool_flags_and_values(void)
{
	const char *argv[] = {
		"--allow-other", "--period", "90s", "--source=dir:/srv/x", "--",
		"--mnt",	 NULL
	};
	const char *argv2[] = { "--allow-other=no",
				"--source=dir:/srv/x",
				"--max-failures",
				"3",
				"m",
				NULL };
	struct cfg_errors e = { 0 };
	struct dagfs_config c;

	CHECK(load(&c, CMD_MOUNT, argv, NULL, &e) == 0);
	CHECK(c.allow_other && c.period_ms == 90000);
	CHECK(c.npos == 1 && !strcmp(c.pos[0], "--mnt"));
	/* The global period reaches sources without their own. */
	CHECK(!strcmp(source_spec_get(&c.sources[0].spec, "period"),
		      "90000ms"));
	config_free(&c);
	CHECK(load(&c, CMD_MOUNT, argv2, NULL, &e) == 0);
	CHECK(!c.allow_other && c.max_failures == 3);
	CHECK(!strcmp(source_spec_get(&c.sources[0].spec, "max-failures"),
		      "3"));
	CHECK(!source_spec_get(&c.sources[0].spec, "period"));
	config_free(&c);
}

static void test_config__no_sources_is_an_error(void)
{
	struct cfg_errors e = { 0 };
	struct dagfs_config c;

	CHECK(load(&c, CMD_MOUNT, NULL, NULL, &e) == -EINVAL);
	CHECK(has_error(&e, "no sources"));
	config_free(&c);
	cfg_errors_clear(&e);
}

static void test_config__help_skips_validation(void)
{
	const char *argv[] = { "--help", "--uid=x", NULL };
	struct cfg_errors e = { 0 };
	struct dagfs_config c;

	CHECK(load(&c, CMD_MOUNT, argv, NULL, &e) == 0 && c.help);
	config_free(&c);
}

static void test_config__layout_overlap_and_names(void)
{
	const char *names[] = { "a", "b", "c" };
	const char *ok[] = { "team_a", "team_b", "shared/x" };
	const char *nested[] = { "team", "team/b", "x" };
	const char *root[] = { "", "b", "c" };
	const char *prefix[] = { "team", "teams", "x" };
	const char *dup[] = { "a", "a" };
	char err[256];

	CHECK(cfg_check_layout(names, ok, 3, err, sizeof(err)) == 0);
	CHECK(cfg_check_layout(names, prefix, 3, err, sizeof(err)) == 0);
	CHECK(cfg_check_layout(names, nested, 3, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "sources a (at /team) and b (at /team/b) overlap"));
	CHECK(cfg_check_layout(names, root, 3, err, sizeof(err)) == -EINVAL);
	CHECK(cfg_check_layout(names, root, 1, err, sizeof(err)) == 0);
	CHECK(cfg_check_layout(dup, ok, 2, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "two sources are named a"));
}

static void test_config__check_reports_source_errors(void)
{
	char conf[5000], src[4300], text[16384];
	const char *envp[] = { conf, NULL };
	struct cfg_errors e = { 0 };
	struct dagfs_config c;

	snprintf(src, sizeof(src), "%s/dags", dir);
	CHECK(!mkdir(src, 0755) || errno == EEXIST);
	snprintf(text, sizeof(text),
		 "[source good]\ntype = dir\nlocation = %s\n"
		 "[source typo]\ntype = dir\nlocation = %s\nat = x\n"
		 "debounse = 1s\n"
		 "[source gone]\ntype = dir\nlocation = %s/missing\nat = y\n",
		 src, src, src);
	CHECK(!write_conf(text));
	snprintf(conf, sizeof(conf), "DAGFS_CONFIG=%s", path);
	CHECK(load(&c, CMD_CHECK, NULL, envp, &e) == 0);
	CHECK(cmd_check_config(&c, &e) == 1);
	snprintf(text, sizeof(text),
		 "%s:4: dir source typo: unknown key "
		 "'debounse'",
		 path);
	CHECK(has_error(&e, text));
	snprintf(text, sizeof(text), "%s:9: dir source gone:", path);
	CHECK(has_error(&e, text));
	CHECK(e.n == 2);
	config_free(&c);
	cfg_errors_clear(&e);
}

static void test_config__json_round_trip(void)
{
	static const char text[] =
		" {\"a\": [1, -2.5, true, false, null, \"x\\\"\\u00e9\\n\"],"
		" \"n\": 1790000000123456789, \"o\": {}} ";
	const struct json *a;
	struct json *j;

	CHECK(json_parse(&j, text, strlen(text)) == 0);
	a = json_get(j, "a");
	CHECK(a && a->type == JSON_ARR && a->n == 6);
	CHECK(a->items[0].i == 1 && a->items[1].num == -2.5);
	CHECK(a->items[2].b && !a->items[3].b);
	CHECK(a->items[4].type == JSON_NULL);
	CHECK(!strcmp(a->items[5].str, "x\"\xc3\xa9\n"));
	CHECK(json_int(j, "n", 0) == 1790000000123456789LL);
	CHECK(json_get(j, "o")->type == JSON_OBJ);
	json_free(j);
	CHECK(json_parse(&j, "{\"a\":1,}", 8) == -EINVAL);
	CHECK(json_parse(&j, "[1] x", 5) == -EINVAL);
	CHECK(json_parse(&j, "\"abc", 4) == -EINVAL);
	CHECK(json_parse(&j, "{\"a\"", 4) == -EINVAL);
}

int main(void)
{
	static const struct harness_case cases[] = {
		{ "test_config__defaults", test_config__defaults },
		{ "test_config__precedence_flag_env_file_default",
		  test_config__precedence_flag_env_file_default },
		{ "test_config__config_flag_beats_env",
		  test_config__config_flag_beats_env },
		{ "test_config__sources_combine_from_everywhere",
		  test_config__sources_combine_from_everywhere },
		{ "test_config__escaped_commas", test_config__escaped_commas },
		{ "test_config__file_errors_carry_file_and_line",
		  test_config__file_errors_carry_file_and_line },
		{ "test_config__long_lines", test_config__long_lines },
		{ "test_config__unknown_flags_and_env",
		  test_config__unknown_flags_and_env },
		{ "test_config__values_and_ranges",
		  test_config__values_and_ranges },
		{ "test_config__bool_flags_and_values",
		  test_config__bool_flags_and_values },
		{ "test_config__no_sources_is_an_error",
		  test_config__no_sources_is_an_error },
		{ "test_config__help_skips_validation",
		  test_config__help_skips_validation },
		{ "test_config__layout_overlap_and_names",
		  test_config__layout_overlap_and_names },
		{ "test_config__json_round_trip",
		  test_config__json_round_trip },
		{ "test_config__check_reports_source_errors",
		  test_config__check_reports_source_errors },
		{ NULL, NULL },
	};
	log_setup(LOG_LVL_ERR - 1, false);
	return harness_run_in(dir, cases, "TMPDIR");
}
