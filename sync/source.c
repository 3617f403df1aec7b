/* SPDX-License-Identifier: Apache-2.0 */
/*
 * source.c - what every source shares: the TYPE:LOCATION,k=v spec
 * parser, validation of the common keys, and the polling loop (one thread
 * per source) with backoff, health and publication.
 *
 * A source type (dir.c, git.c, s3.c) only builds the current revision;
 * it never publishes, sleeps or counts failures itself.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "source_i.h"

#define BACKOFF_MAX_MS (5 * 60 * 1000)

static const struct source_ops *const source_types[] = {
	&source_dir_ops,
	&source_git_ops,
	&source_s3_ops,
	&source_dagfs_ops,
};

static const char *const common_keys[] = { "name", "at", "period",
					   "max-failures", "keep", "validate",
					   NULL };

/* --------------------------------------------------------------- specs */

void source_spec_free(struct source_spec *spec)
{
	if (!spec)
		return;
	for (size_t i = 0; i < spec->nkeys; i++) {
		free(spec->keys[i]);
		free(spec->values[i]);
	}
	free(spec->keys);
	free(spec->values);
	free(spec->type);
	free(spec->location);
	free(spec);
}

const char *source_spec_get(const struct source_spec *spec, const char *key)
{
	for (size_t i = 0; i < spec->nkeys; i++)
		if (!strcmp(spec->keys[i], key))
			return spec->values[i];
	return NULL;
}

/* Next comma-separated field of *@p with "\," and "\\" unescaped. */
static char *next_field(const char **p)
{
	const char *s = *p;
	char *out = malloc(strlen(s) + 1), *w = out;

	if (!out)
		return NULL;
	for (; *s && *s != ','; s++) {
		if (*s == '\\' && (s[1] == ',' || s[1] == '\\'))
			s++;
		*w++ = *s;
	}
	*w = '\0';
	*p = *s ? s + 1 : NULL;
	return out;
}

static int spec_add_key(struct source_spec *sp, char *field, char *err,
			size_t errlen)
{
	char *eq = strchr(field, '='), **k, **v;

	if (!eq || eq == field) {
		snprintf(err, errlen, "expected key=value, got '%s'", field);
		return -EINVAL;
	}
	*eq = '\0';
	for (const char *c = field; *c; c++) {
		if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) &&
		    *c != '-') {
			snprintf(err, errlen, "bad key '%s'", field);
			return -EINVAL;
		}
	}
	if (source_spec_get(sp, field)) {
		snprintf(err, errlen, "key '%s' given twice", field);
		return -EINVAL;
	}
	k = realloc(sp->keys, (sp->nkeys + 1) * sizeof(*k));
	if (k)
		sp->keys = k;
	v = realloc(sp->values, (sp->nkeys + 1) * sizeof(*v));
	if (v)
		sp->values = v;
	if (!k || !v || !(sp->keys[sp->nkeys] = strdup(field)))
		return -ENOMEM;
	if (!(sp->values[sp->nkeys] = strdup(eq + 1))) {
		free(sp->keys[sp->nkeys]);
		return -ENOMEM;
	}
	sp->nkeys++;
	return 0;
}

int source_spec_parse(struct source_spec **out, const char *text, char *err,
		      size_t errlen)
{
	struct source_spec *sp = calloc(1, sizeof(*sp));
	const char *colon = strchr(text, ':'), *p;
	int rc = -EINVAL;

	if (!sp)
		return -ENOMEM;
	if (!colon || colon == text) {
		snprintf(err, errlen, "malformed source '%.200s': expected "
			 "TYPE:LOCATION[,key=value]...", text);
		goto err;
	}
	sp->type = strndup(text, (size_t)(colon - text));
	for (const char *c = sp->type; c && *c; c++) {
		if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c)) {
			snprintf(err, errlen, "malformed source '%.200s': bad "
				 "type", text);
			goto err;
		}
	}
	p = colon + 1;
	sp->location = next_field(&p);
	if (!sp->type || !sp->location) {
		rc = -ENOMEM;
		goto err;
	}
	if (!*sp->location) {
		snprintf(err, errlen, "malformed source '%.200s': empty "
			 "location", text);
		goto err;
	}
	while (p) {
		char *field = next_field(&p);
		char why[160];

		if (!field) {
			rc = -ENOMEM;
			goto err;
		}
		rc = spec_add_key(sp, field, why, sizeof(why));
		free(field);
		if (rc) {
			snprintf(err, errlen, "malformed source '%.200s': %s",
				 text, why);
			goto err;
		}
	}
	*out = sp;
	return 0;
err:
	source_spec_free(sp);
	return rc;
}

static struct source_spec *spec_copy(const struct source_spec *s)
{
	struct source_spec *c = calloc(1, sizeof(*c));
	bool ok = c && (c->type = strdup(s->type)) &&
		  (c->location = strdup(s->location)) &&
		  (c->keys = calloc(s->nkeys + 1, sizeof(char *))) &&
		  (c->values = calloc(s->nkeys + 1, sizeof(char *)));

	for (size_t i = 0; ok && i < s->nkeys; i++, c->nkeys++)
		ok = (c->keys[i] = strdup(s->keys[i])) &&
		     (c->values[i] = strdup(s->values[i]));
	if (!ok) {
		source_spec_free(c);
		return NULL;
	}
	return c;
}

/* ------------------------------------------------------------ sources */

/* A default name from the location's last meaningful part. */
static char *derive_name(const char *location)
{
	char buf[65], *copy = strdup(location), *base, *dot;
	size_t n = 0;

	if (!copy)
		return NULL;
	while (strlen(copy) > 1 && (copy[strlen(copy) - 1] == '/'))
		copy[strlen(copy) - 1] = '\0';
	base = strrchr(copy, '/');
	base = base ? base + 1 : copy;
	if (strrchr(base, ':'))
		base = strrchr(base, ':') + 1;
	dot = strstr(base, ".git");
	if (dot && dot[4] == '\0')
		*dot = '\0';
	for (const char *c = base; *c && n < 64; c++)
		buf[n++] = isalnum((unsigned char)*c) || *c == '-' ||
					   *c == '_' || *c == '.' ?
				   *c :
				   '-';
	buf[n] = '\0';
	free(copy);
	return strdup(n && strcmp(buf, ".") && strcmp(buf, "..") ? buf : "root");
}

static bool name_ok(const char *name)
{
	size_t n = strlen(name);

	if (!n || n > 64 || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (; *name; name++)
		if (!isalnum((unsigned char)*name) && !strchr("-_.", *name))
			return false;
	return true;
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

/* Normalise at= to "a/b" (no leading or trailing slash). */
static int at_normalise(char **out, const char *at)
{
	char *s;
	size_t n;

	while (*at == '/')
		at++;
	s = strdup(at);
	if (!s)
		return -ENOMEM;
	n = strlen(s);
	while (n && s[n - 1] == '/')
		s[--n] = '\0';
	if (n && snap_path_check(s, n)) {
		free(s);
		return -EINVAL;
	}
	*out = s;
	return 0;
}

static int common_keys_parse(struct source *src, char *err, size_t errlen)
{
	const struct source_spec *sp = src->spec;
	const char *v;
	int ms;

	for (size_t i = 0; i < sp->nkeys; i++) {
		if (!key_known(src->ops, sp->keys[i])) {
			snprintf(err, errlen, "%s source %s: unknown key '%s'",
				 sp->type, src->name, sp->keys[i]);
			return -EINVAL;
		}
	}
	if (at_normalise(&src->at, (v = source_spec_get(sp, "at")) ? v : "")) {
		snprintf(err, errlen, "%s source %s: bad at= '%s'", sp->type,
			 src->name, v);
		return -EINVAL;
	}
	if ((v = source_spec_get(sp, "period"))) {
		if (parse_duration_ms(v, &ms) || ms < 100) {
			snprintf(err, errlen, "%s source %s: bad period '%s' "
				 "(e.g. 10s, 500ms; at least 100ms)", sp->type,
				 src->name, v);
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
	if ((v = source_spec_get(sp, "validate")) && !(src->validate = strdup(v)))
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
	const char *name;
	int rc = -EINVAL;

	if (!src)
		return -ENOMEM;
	src->wakefd = -1;
	pthread_mutex_init(&src->lock, NULL);
	for (size_t i = 0; i < sizeof(source_types) / sizeof(*source_types); i++)
		if (!strcmp(source_types[i]->type, spec->type))
			src->ops = source_types[i];
	if (!src->ops) {
		snprintf(err, errlen, "unknown source type '%s' (expected dir, "
			 "git, s3 or dagfs)", spec->type);
		goto err;
	}
	src->spec = spec_copy(spec);
	name = source_spec_get(spec, "name");
	src->name = name ? strdup(name) : derive_name(spec->location);
	src->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!src->spec || !src->name || src->wakefd < 0) {
		rc = -ENOMEM;
		goto err;
	}
	if (!name_ok(src->name)) {
		snprintf(err, errlen, "%s source: bad name '%s' (letters, "
			 "digits, '-', '_', '.'; at most 64)", spec->type,
			 src->name);
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

struct snap *source_current(struct source *src)
{
	struct snap *s;

	pthread_mutex_lock(&src->lock);
	s = snap_ref(src->current);
	pthread_mutex_unlock(&src->lock);
	return s;
}

static void wake(struct source *src)
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
	wake(src);
}

void source_get_status(struct source *src, struct source_status *out)
{
	pthread_mutex_lock(&src->lock);
	*out = src->st;
	pthread_mutex_unlock(&src->lock);
}

void source_count_fetch(struct source *src, uint64_t bytes, uint64_t objects)
{
	pthread_mutex_lock(&src->lock);
	src->st.bytes_fetched += bytes;
	src->st.objects_fetched += objects;
	pthread_mutex_unlock(&src->lock);
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

/* ---------------------------------------------------------------- loop */

static void publish_to_reader(struct source *src, struct snap *snap)
{
	struct snap *old;

	pthread_mutex_lock(&src->lock);
	old = src->current;
	src->current = snap_ref(snap);
	snprintf(src->st.rev, sizeof(src->st.rev), "%s", snap->rev);
	src->st.published_ns = snap->published_ns;
	pthread_mutex_unlock(&src->lock);
	snap_unref(old);
	if (src->cb)
		src->cb(src, snap, src->cb_payload);
}

/* Run the gate command in @dir; 0 if it exits 0, else the reason in @why. */
static int gate_run(struct source *src, const char *dir, char *why,
		    size_t whylen)
{
	char script[4096], out[200];
	size_t got = 0;
	int pfd[2], status;
	ssize_t n;
	pid_t pid;

	snprintf(script, sizeof(script), "%s \"$1\"", src->validate);
	if (pipe2(pfd, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) { /* only async-signal-safe calls until exec */
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		if (chdir(dir) == 0)
			execl("/bin/sh", "sh", "-c", script, "sh", dir,
			      (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	/* Keep the tail of the output: that is where errors are. */
	while ((n = read(pfd[0], out + got, sizeof(out) - 1 - got)) > 0) {
		got += (size_t)n;
		if (got == sizeof(out) - 1) {
			memmove(out, out + got / 2, got - got / 2);
			got -= got / 2;
		}
	}
	close(pfd[0]);
	out[got] = '\0';
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	for (char *p = out; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	snprintf(why, whylen, "validate command %s (%s)",
		 WIFEXITED(status) ? "failed" : "was killed",
		 out[0] ? out : "no output");
	return -EINVAL;
}

/* The publish gate: materialise @snap in a temporary directory (copies,
 * so the command cannot touch the store) and run validate= on it. */
static int gate(struct source *src, struct snap *snap, char *err, size_t errlen)
{
	char dir[PATH_MAX], why[256] = "";
	int rc;

	if (!src->validate)
		return 0;
	if (!strcmp(src->rejected_rev, snap->rev)) {
		snprintf(err, errlen, "%s: revision %s refused: %s", src->tag,
			 snap->rev, src->rejected_why);
		return -EINVAL;
	}
	snprintf(dir, sizeof(dir), "%s/tmp/validate-%s-XXXXXX",
		 store_dir(src->store), src->name);
	if (!mkdtemp(dir))
		return -errno;
	rc = mat_snap(src->store, snap, dir, true);
	if (!rc)
		rc = gate_run(src, dir, why, sizeof(why));
	mat_remove(dir);
	if (rc == -EINVAL) {
		snprintf(src->rejected_rev, sizeof(src->rejected_rev), "%s",
			 snap->rev);
		snprintf(src->rejected_why, sizeof(src->rejected_why), "%s",
			 why);
		snprintf(err, errlen, "%s: revision %s refused: %s", src->tag,
			 snap->rev, why);
	} else if (rc) {
		snprintf(err, errlen, "%s: publish gate: %s", src->tag,
			 strerror(-rc));
	}
	return rc;
}

/* One sync attempt: build, publish, collect. Returns 0 or -errno. */
static int attempt(struct source *src, char *err, size_t errlen)
{
	char prev[128];
	struct snap *snap = NULL;
	int64_t t0 = mono_ns();
	int rc;

	pthread_mutex_lock(&src->lock);
	snprintf(prev, sizeof(prev), "%s", src->st.rev);
	src->st.last_attempt_ns = now_ns();
	pthread_mutex_unlock(&src->lock);
	err[0] = '\0';
	store_sync_begin(src->store);
	rc = src->ops->sync(src, prev, &snap, err, errlen);
	if (rc == 1)
		rc = gate(src, snap, err, errlen) ?: 1;
	if (rc == 1) {
		rc = pub_publish(src->store, snap, src->keep);
		if (rc)
			snprintf(err, errlen, "%s: publishing snapshot: %s",
				 src->tag, strerror(-rc));
	}
	store_sync_end(src->store);
	if (rc < 0) {
		snap_unref(snap);
		if (!err[0])
			snprintf(err, errlen, "%s: %s", src->tag, strerror(-rc));
		return rc;
	}
	if (snap) {
		log_notice(src->tag, "published revision %s (%u entries, %.0f "
			   "ms)", snap->rev, snap->n,
			   (double)(mono_ns() - t0) / 1e6);
		publish_to_reader(src, snap);
		snap_unref(snap);
		rc = pub_gc(src->store);
		if (rc > 0)
			log_info(src->tag, "collected %d unused blobs", rc);
	}
	return 0;
}

const double source_duration_bounds[10] = { 0.05, 0.1, 0.25, 0.5, 1,
					    2.5,  5,   10,	 30,  60 };

/* Count one attempt's duration; src->lock held. */
static void duration_observe(struct source_status *st, double s)
{
	size_t i = 0;

	while (i < 10 && s > source_duration_bounds[i])
		i++;
	st->dur_buckets[i]++;
	st->dur_sum += s;
}

static int next_delay_ms(const struct source *src, unsigned failures)
{
	double d = src->period_ms;

	for (unsigned i = 1; i < failures && d < BACKOFF_MAX_MS; i++)
		d *= 2;
	if (failures) {
		if (d > BACKOFF_MAX_MS)
			d = BACKOFF_MAX_MS;
		d *= 0.8 + 0.4 * ((double)random() / RAND_MAX); /* jitter */
		if (d < src->period_ms)
			d = src->period_ms;
	}
	return (int)d;
}

static void *source_thread(void *arg)
{
	struct source *src = arg;
	char err[512];

	for (;;) {
		unsigned failures;
		int64_t t0;
		int rc;

		pthread_mutex_lock(&src->lock);
		if (src->stop) {
			pthread_mutex_unlock(&src->lock);
			break;
		}
		src->kicked = false;
		pthread_mutex_unlock(&src->lock);
		t0 = mono_ns();
		rc = attempt(src, err, sizeof(err));
		pthread_mutex_lock(&src->lock);
		src->st.syncs++;
		duration_observe(&src->st, (double)(mono_ns() - t0) / 1e9);
		if (rc) {
			failures = ++src->st.failures;
			snprintf(src->st.error, sizeof(src->st.error), "%s", err);
		} else {
			failures = src->st.failures = 0;
			src->st.error[0] = '\0';
			src->st.last_success_ns = now_ns();
		}
		pthread_mutex_unlock(&src->lock);
		if (rc)
			log_err(src->tag, "sync failed (%u in a row%s): %s",
				failures,
				failures >= src->max_failures ? ", unhealthy" :
								"",
				err);
		if (__atomic_load_n(&src->stop, __ATOMIC_ACQUIRE))
			break;
		if (src->ops->wait)
			src->ops->wait(src, next_delay_ms(src, failures));
		else
			source_poll_wake(src, -1, next_delay_ms(src, failures));
	}
	return NULL;
}

int source_sync_once(struct source *src, struct snap **out, char *err,
		     size_t errlen)
{
	struct snap *cached;
	int rc;

	if (!pub_load_current(src->store, src->name, &cached)) {
		publish_to_reader(src, cached);
		snap_unref(cached);
	}
	rc = attempt(src, err, errlen);
	if (rc)
		return rc;
	*out = source_current(src);
	if (!*out) {
		snprintf(err, errlen, "%s: nothing published", src->tag);
		return -ENOENT;
	}
	return 0;
}

/*
 * Whether the cached snapshot was built from the same specification. A
 * revision id names what the remote holds (a commit), not what dagfs made
 * of it (subpath=, submodules=...): after a change the cached snapshot is
 * still served, but the first sync must rebuild rather than answer
 * "unchanged". The digest lives in sources/<name>/spec.
 */
static bool spec_unchanged(struct source *src)
{
	const struct source_spec *sp = src->spec;
	char path[PATH_MAX], want[32], have[32] = "";
	uint64_t acc = XXH64(sp->type, strlen(sp->type), 0) ^
		       XXH64(sp->location, strlen(sp->location), 1);
	ssize_t n = -1;
	int fd;

	for (size_t i = 0; i < sp->nkeys; i++) /* in any order */
		acc += XXH64(sp->keys[i], strlen(sp->keys[i]), 2) ^
		       XXH64(sp->values[i], strlen(sp->values[i]), 3);
	snprintf(want, sizeof(want), "%016llx", (unsigned long long)acc);
	if (path_fmt(path, sizeof(path), "%s/sources/%s", store_dir(src->store),
		     src->name))
		return false;
	mkdir(path, 0755);
	strcat(path, "/spec");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, have, sizeof(have) - 1);
		close(fd);
	}
	have[n > 0 ? n : 0] = '\0';
	if (!strcmp(have, want))
		return true;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, want, strlen(want)) < 0)
			log_warn(src->tag, "%s: %s", path, strerror(errno));
		close(fd);
	}
	return false;
}

int source_start(struct source *src, source_publish_fn cb, void *payload)
{
	struct snap *cached;
	int rc;

	src->cb = cb;
	src->cb_payload = payload;
	if (!pub_load_current(src->store, src->name, &cached)) {
		log_info(src->tag, "serving cached revision %s", cached->rev);
		publish_to_reader(src, cached);
		snap_unref(cached);
		if (!spec_unchanged(src)) {
			log_info(src->tag, "options changed since the cached "
				 "revision: rebuilding it");
			pthread_mutex_lock(&src->lock);
			src->st.rev[0] = '\0';
			pthread_mutex_unlock(&src->lock);
		}
	} else {
		spec_unchanged(src); /* records the digest */
	}
	rc = -pthread_create(&src->thread, NULL, source_thread, src);
	if (!rc)
		src->started = true;
	return rc;
}

void source_stop(struct source *src)
{
	if (!src->started)
		return;
	pthread_mutex_lock(&src->lock);
	src->stop = true;
	pthread_mutex_unlock(&src->lock);
	wake(src);
	pthread_join(src->thread, NULL);
	src->started = false;
}
