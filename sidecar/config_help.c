/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config_help.c - `--help` and dagfs(1)'s option list, both generated from
 * the option table (config.c), so neither can drift from what is parsed.
 * Only prints; reads no configuration.
 */
#include <stdio.h>
#include <string.h>

#include "sidecar_i.h"

/* Print @text wrapped at 79 columns, continuation lines indented 31. */
static void help_wrap(FILE *f, const char *text)
{
	size_t col = 31;

	while (*text) {
		size_t word = strcspn(text, " ");

		if (col > 31 && col + 1 + word > 79) {
			fprintf(f, "\n%31s", "");
			col = 31;
		} else if (col > 31) {
			fputc(' ', f);
			col++;
		}
		fprintf(f, "%.*s", (int)word, text);
		col += word;
		text += word;
		text += strspn(text, " ");
	}
	fputc('\n', f);
}

void config_help(FILE *f, unsigned cmd)
{
	char left[64], env[64], text[512];
	size_t n;
	const struct cfg_option *options = cfg_options(&n);

	fprintf(f, "Options; each is also DAGFS_NAME in the environment and "
		   "'name = value'\nin the config file. A flag wins over the "
		   "environment, which wins over the\nfile. DAGFS_SOURCE "
		   "holds one SPEC per line.\n");
	for (size_t i = 0; i < n; i++) {
		const struct cfg_option *o = &options[i];

		if (!(o->cmds & cmd))
			continue;
		snprintf(left, sizeof(left), "--%s%s%s", o->name,
			 o->arg ? "=" : "", o->arg ? o->arg : "");
		cfg_env_name(env, sizeof(env), o);
		if (o->def && *o->def)
			snprintf(text, sizeof(text), "%s (default %s; %s)",
				 o->help, o->def, env);
		else
			snprintf(text, sizeof(text), "%s (%s)", o->help, env);
		fprintf(f, "  %-28s", left);
		if (strlen(left) > 28)
			fprintf(f, "\n%31s", "");
		else
			fputc(' ', f);
		help_wrap(f, text);
	}
	fprintf(f, "  %-28s %s\n", "--help", "show this help");
	fprintf(f, "  %-28s %s\n", "--version", "print the version");
}

/* @s in roff: '-' as \-, a leading '.' or '\'' escaped, '\\' as \e. */
static void roff_text(FILE *f, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", f);
	for (; *s; s++) {
		if (*s == '-')
			fputs("\\-", f);
		else if (*s == '\\')
			fputs("\\e", f);
		else
			fputc(*s, f);
	}
}

void config_man(FILE *f, unsigned cmd)
{
	char env[64];
	size_t n;
	const struct cfg_option *options = cfg_options(&n);

	for (size_t i = 0; i < n; i++) {
		const struct cfg_option *o = &options[i];

		if (!(o->cmds & cmd))
			continue;
		cfg_env_name(env, sizeof(env), o);
		fprintf(f, ".TP\n.B \\-\\-");
		roff_text(f, o->name);
		if (o->arg)
			fprintf(f, "=\\fI%s\\fR", o->arg);
		fputs("\n", f);
		roff_text(f, o->help);
		fputs(".\n", f);
		if (o->def && *o->def) {
			fputs("Default: ", f);
			roff_text(f, o->def);
			fputs(". ", f);
		}
		fputs("Environment: ", f);
		roff_text(f, env);
		fputs("; in the config file: ", f);
		roff_text(f, o->name);
		fputs(" = ...\n", f);
	}
}
