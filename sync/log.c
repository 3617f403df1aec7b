/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.c - one event per line on stderr, as text or JSON (and, on a
 * terminal, one updating progress line under them: log_tty_line). The level is
 * tested before formatting (see log_at in sync.h). Callers never pass
 * secrets; this module cannot tell them apart.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "util.h"

int log_threshold = LOG_LVL_INFO;
static bool log_json;
/* The terminal's updating line (log_tty_line), "" if none shown; it and
 * every write to stderr below are under tty_lock. */
static pthread_mutex_t tty_lock = PTHREAD_MUTEX_INITIALIZER;
static char tty_line[512];

static const char *const level_names[] = {
	[LOG_LVL_ERR] = "error",     [LOG_LVL_WARN] = "warn",
	[LOG_LVL_NOTICE] = "notice", [LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

void log_setup(int level, bool json)
{
	__atomic_store_n(&log_threshold, level, __ATOMIC_RELAXED);
	__atomic_store_n(&log_json, json, __ATOMIC_RELAXED);
}

int log_level_parse(const char *name)
{
	for (int i = LOG_LVL_ERR; i <= LOG_LVL_DEBUG; i++)
		if (!strcasecmp(name, level_names[i]))
			return i;
	if (!strcasecmp(name, "warning"))
		return LOG_LVL_WARN;
	return -EINVAL;
}

void log_vemit(int level, const char *tag, const char *fmt, va_list ap)
{
	char msg[2048], line[4608], ts[96];
	struct timespec now;
	struct tm tm;
	int lvl = level < LOG_LVL_ERR	? LOG_LVL_ERR :
		  level > LOG_LVL_DEBUG ? LOG_LVL_DEBUG :
					  level;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One event, one line: fold embedded newlines. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
	if (__atomic_load_n(&log_json, __ATOMIC_RELAXED)) {
		char etag[256], emsg[4096 - 256];

		json_quote(etag, sizeof(etag), tag);
		json_quote(emsg, sizeof(emsg), msg);
		snprintf(line, sizeof(line),
			 "{\"time\":\"%s\",\"level\":\"%s\",\"tag\":%s,"
			 "\"msg\":%s}\n",
			 ts, level_names[lvl], etag, emsg);
	} else {
		snprintf(line, sizeof(line), "%s dagfs %s: %s%s%s\n", ts,
			 level_names[lvl], tag ? tag : "", tag ? ": " : "",
			 msg);
	}
	pthread_mutex_lock(&tty_lock);
	if (tty_line[0])
		fputs("\r\033[K", stderr);
	fputs(line, stderr);
	if (tty_line[0])
		fputs(tty_line, stderr);
	pthread_mutex_unlock(&tty_lock);
}

void log_tty_line(const char *line)
{
	pthread_mutex_lock(&tty_lock);
	snprintf(tty_line, sizeof(tty_line), "%s", line ? line : "");
	fputs("\r\033[K", stderr);
	fputs(tty_line, stderr);
	fflush(stderr);
	pthread_mutex_unlock(&tty_lock);
}

void log_emit(int level, const char *tag, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(level, tag, fmt, ap);
	va_end(ap);
}
