/* SPDX-License-Identifier: Apache-2.0 */
/*
 * source.c - a source as an object: the registry of source types,
 * validation of the keys every source shares, construction and freeing,
 * and the accessors other threads use (current snapshot, status, kick).
 *
 * The thread that syncs is source_loop.c; the spec text is source_spec.c.
 * A source type (dir/, git/, s3/) never sleeps, publishes or counts
 * failures itself.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "source_i.h"

static const struct source_ops *const source_types[] = {
	&source_dir_ops,
	&source_git_ops,
	&source_s3_ops,
	&source_dagfs_ops,
};

static const char *const common_keys[] = {
	"name", "at", "period", "max-failures", "keep", "validate", NULL
};

const char *source_type_name(size_t i)
{
	return i < sizeof(source_types) / sizeof(*source_types) ?
		       source_types[i]->type :
		       NULL;
}

const char *const *source_type_keys(const char *type)
{
	if (!type)
		return common_keys;
	for (size_t i = 0; i < sizeof(source_types) / sizeof(*source_types);
	     i++)
		if (!strcmp(source_types[i]->type, type))
			return source_types[i]->keys;
	return NULL;
}

static bool key_known(const struct source_ops *ops, const char *key)
{
	for (size_t i = 0; common_keys[i]; i++)
		if (!strcmp(key, common_keys[i]))
			return true;
	for (size_t i = 0; ops->keys && ops->keys[i]; i++)
		if (!strcmp(key, ops->keys[i]))
			return true;
	return false;
}

static int common_keys_parse(struct source *src, char *err, size_t errlen)
{
	const struct source_spec *sp = src->spec;
	const char *v;
	int ms, rc;

	for (size_t i = 0; i < sp->nkeys; i++) {
		if (!key_known(src->ops, sp->keys[i])) {
			snprintf(err, errlen, "%s source %s: unknown key '%s'",
				 sp->type, src->name, sp->keys[i]);
			return -EINVAL;
		}
	}
	rc = source_spec_at(&src->at, sp);
	if (rc == -EINVAL)
		snprintf(err, errlen, "%s source %s: bad at= '%s'", sp->type,
			 src->name, source_spec_get(sp, "at"));
	if (rc)
		return rc;
	if ((v = source_spec_get(sp, "period"))) {
		if (parse_duration_ms(v, &ms) || ms < 100) {
			snprintf(err, errlen,
				 "%s source %s: bad period '%s' "
				 "(e.g. 10s, 500ms; at least 100ms)",
				 sp->type, src->name, v);
			return -EINVAL;
		}
		src->period_ms = ms;
	}
	src->keep = 5;
	src->max_failures = 5;
	if ((v = source_spec_get(sp, "keep")) &&
	    (sscanf(v, "%u", &src->keep) != 1 || !src->keep)) {
		snprintf(err, errlen, "%s source %s: bad keep '%s'", sp->type,
			 src->name, v);
		return -EINVAL;
	}
	if ((v = source_spec_get(sp, "validate")) &&
	    !(src->validate = strdup(v)))
		return -ENOMEM;
	if ((v = source_spec_get(sp, "max-failures")) &&
	    (sscanf(v, "%u", &src->max_failures) != 1 || !src->max_failures)) {
		snprintf(err, errlen, "%s source %s: bad max-failures '%s'",
			 sp->type, src->name, v);
		return -EINVAL;
	}
	return 0;
}

int source_new(struct source **out, const struct source_spec *spec,
	       struct store *st, char *err, size_t errlen)
{
	struct source *src = calloc(1, sizeof(*src));
	char name[SOURCE_NAME_MAX + 1];
	int rc = -EINVAL, bad_name;

	if (!src)
		return -ENOMEM;
	pthread_condattr_t ca;

	src->wakefd = -1;
	pthread_mutex_init(&src->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&src->demand_cond, &ca);
	pthread_condattr_destroy(&ca);
	for (size_t i = 0; i < sizeof(source_types) / sizeof(*source_types);
	     i++)
		if (!strcmp(source_types[i]->type, spec->type))
			src->ops = source_types[i];
	if (!src->ops) {
		snprintf(err, errlen,
			 "unknown source type '%s' (expected dir, "
			 "git, s3 or dagfs)",
			 spec->type);
		goto err;
	}
	src->spec = source_spec_copy(spec);
	bad_name = source_spec_name(name, spec);
	src->name = strdup(name);
	src->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!src->spec || !src->name || src->wakefd < 0) {
		rc = -ENOMEM;
		goto err;
	}
	if (bad_name) {
		snprintf(err, errlen,
			 "%s source: bad name '%s' (letters, "
			 "digits, '-', '_', '.'; at most 64)",
			 spec->type, source_spec_get(spec, "name"));
		goto err;
	}
	snprintf(src->tag, sizeof(src->tag), "%s source %s", spec->type,
		 src->name);
	src->store = st;
	src->period_ms = 10000;
	rc = common_keys_parse(src, err, errlen);
	if (!rc)
		rc = src->ops->init(src, err, errlen);
	if (rc)
		goto err;
	src->st.max_failures = src->max_failures;
	*out = src;
	return 0;
err:
	src->ops = NULL; /* a failed init cleans up after itself */
	source_free(src);
	return rc;
}

void source_free(struct source *src)
{
	if (!src)
		return;
	source_stop(src);
	if (src->ops && src->ops->fini)
		src->ops->fini(src);
	snap_unref(src->current);
	source_spec_free(src->spec);
	if (src->wakefd >= 0)
		close(src->wakefd);
	pthread_cond_destroy(&src->demand_cond);
	pthread_mutex_destroy(&src->lock);
	free(src->name);
	free(src->at);
	free(src->validate);
	free(src);
}

const char *source_name(const struct source *src)
{
	return src->name;
}

const char *source_at(const struct source *src)
{
	return src->at;
}

const char *source_type(const struct source *src)
{
	return src->ops->type;
}

unsigned source_keep(const struct source *src)
{
	return src->keep;
}

void source_origin(const struct source *src, char *url, size_t urllen,
		   char *ref, size_t reflen)
{
	const char *loc = src->spec->location, *v, *s, *at, *slash;

	url[0] = ref[0] = '\0';
	if (strcmp(src->ops->type, "git"))
		return;
	v = source_spec_get(src->spec, "ref");
	snprintf(ref, reflen, "%s", v ? v : "");
	/* scheme://[userinfo@]host/... and [user@]host:path (scp-like):
	 * the userinfo goes */
	s = strstr(loc, "://");
	if (s) {
		at = strchr(s + 3, '@');
		slash = strchr(s + 3, '/');
		if (at && (!slash || at < slash))
			snprintf(url, urllen, "%.*s%s", (int)(s + 3 - loc), loc,
				 at + 1);
		else
			snprintf(url, urllen, "%s", loc);
		return;
	}
	at = strchr(loc, '@');
	slash = strchr(loc, ':');
	snprintf(url, urllen, "%s", at && slash && at < slash ? at + 1 : loc);
}

struct snap *source_current(struct source *src)
{
	struct snap *s;

	pthread_mutex_lock(&src->lock);
	s = snap_ref(src->current);
	pthread_mutex_unlock(&src->lock);
	return s;
}

void source_wake(struct source *src)
{
	uint64_t one = 1;

	if (write(src->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_err(src->tag, "wake: %s", strerror(errno));
}

void source_kick(struct source *src)
{
	pthread_mutex_lock(&src->lock);
	src->kicked = true;
	pthread_mutex_unlock(&src->lock);
	source_wake(src);
}

void source_get_status(struct source *src, struct source_status *out)
{
	pthread_mutex_lock(&src->lock);
	*out = src->st;
	pthread_mutex_unlock(&src->lock);
}

bool source_healthy(const struct source_status *st)
{
	return st->rev[0] && st->failures < st->max_failures;
}

void source_count_fetch(struct source *src, uint64_t bytes, uint64_t objects)
{
	pthread_mutex_lock(&src->lock);
	src->st.bytes_fetched += bytes;
	src->st.objects_fetched += objects;
	if (src->st.progress.active && !src->progress_absolute) {
		src->st.progress.bytes += bytes;
		src->st.progress.objects += objects;
	}
	pthread_mutex_unlock(&src->lock);
}

void source_progress_total(struct source *src, uint64_t objects, uint64_t bytes)
{
	pthread_mutex_lock(&src->lock);
	if (src->st.progress.active) {
		src->st.progress.objects_total = objects;
		src->st.progress.bytes_total = bytes;
	}
	pthread_mutex_unlock(&src->lock);
}

void source_progress_set(struct source *src, uint64_t objects,
			 uint64_t objects_total, uint64_t bytes)
{
	pthread_mutex_lock(&src->lock);
	if (src->st.progress.active) {
		src->progress_absolute = true;
		src->st.progress.objects = objects;
		src->st.progress.objects_total = objects_total;
		src->st.progress.bytes = bytes;
	}
	pthread_mutex_unlock(&src->lock);
}

int source_sleep(struct source *src, int ms)
{
	int64_t end = mono_ns() + (int64_t)ms * 1000000;

	for (;;) {
		int64_t left = end - mono_ns();

		if (source_stopping(src))
			return -ECANCELED;
		if (left <= 0)
			return 0;
		source_poll_wake(src, -1, (int)((left + 999999) / 1000000));
	}
}

int source_poll_wake(struct source *src, int extra_fd, int timeout_ms)
{
	struct pollfd p[2] = { { .fd = src->wakefd, .events = POLLIN },
			       { .fd = extra_fd, .events = POLLIN } };
	uint64_t v;

	if (poll(p, extra_fd >= 0 ? 2 : 1, timeout_ms) < 0)
		return 0;
	if (p[0].revents & POLLIN && read(src->wakefd, &v, sizeof(v)) < 0)
		v = 0;
	return extra_fd >= 0 && (p[1].revents & POLLIN);
}
