/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.h - the one logger of dagfs: syslog levels, one line per event on
 * stderr as text or JSON, the level tested before anything is formatted.
 *
 * Every folder logs through this header. Never pass secrets, tokens or
 * signed URLs; nothing above debug on the FUSE read path.
 */
#ifndef DAGFS_LOG_H
#define DAGFS_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level {
	LOG_LVL_ERR = 3,
	LOG_LVL_WARN = 4,
	LOG_LVL_NOTICE = 5,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

/*
 * The only process-wide settings: written at start-up and by a reload
 * (SIGHUP) while other threads log, so read and written atomically.
 */
extern int log_threshold;

/**
 * Configure logging. @level is the most verbose level printed; @json
 * selects one JSON object per line instead of text. Thread-safe.
 */
void log_setup(int level, bool json);

/** Parse "error", "warn", "notice", "info", "debug"; -EINVAL if unknown. */
int log_level_parse(const char *name) __attribute__((warn_unused_result));

/**
 * Emit one line on stderr. @tag names the module or source
 * ("store", "fs", "source team-a"). Never pass secrets.
 */
void log_emit(int level, const char *tag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vemit(int level, const char *tag, const char *fmt, va_list ap);

/**
 * Show @line (no newline; NULL or "" clears it) as the one updating line
 * at the bottom of a terminal on stderr: log lines printed meanwhile go
 * above it and it is drawn again under them. Only for a stderr that is a
 * terminal (the caller checks); thread-safe.
 */
void log_tty_line(const char *line);

#define log_at(lvl, tag, ...)                                                  \
	do {                                                                   \
		if ((lvl) <=                                                   \
		    __atomic_load_n(&log_threshold, __ATOMIC_RELAXED))         \
			log_emit((lvl), (tag), __VA_ARGS__);                   \
	} while (0)
#define log_err(tag, ...) log_at(LOG_LVL_ERR, tag, __VA_ARGS__)
#define log_warn(tag, ...) log_at(LOG_LVL_WARN, tag, __VA_ARGS__)
#define log_notice(tag, ...) log_at(LOG_LVL_NOTICE, tag, __VA_ARGS__)
#define log_info(tag, ...) log_at(LOG_LVL_INFO, tag, __VA_ARGS__)
#define log_debug(tag, ...) log_at(LOG_LVL_DEBUG, tag, __VA_ARGS__)

#endif
