/* SPDX-License-Identifier: Apache-2.0 */
/*
 * git_stream.c - the TCP stream under every libgit2 transport (git://,
 * http://, https:// beneath OpenSSL, and ssh:// beneath libssh2), with
 * the time limits libgit2 1.5 lacks: a connect that gives up, reads and
 * writes that give up when the peer stays silent, and TCP keepalive so a
 * peer that vanished is noticed. Without it one dead remote would hold its
 * source's thread (and a clean shutdown) forever.
 *
 * The limit is per thread (each source polls in its own thread): the git
 * source sets it before each remote operation. This file knows nothing
 * else of sources.
 *
 * A per-read limit does not bound a fetch: a server that trickles a byte
 * a second, or an ssh peer that stalls inside libssh2 (which reads the
 * socket itself and retries on a timeout), holds the thread forever. So
 * each thread also sets a deadline for its remote work and a stop flag,
 * and every live stream is on one list that a watchdog thread scans
 * every 100 ms: past the deadline, or once stopped, it shuts the socket
 * down, which ends any read or write in whatever transport sits above.
 * The list lock also guards close(), so the watchdog never shuts down a
 * descriptor number already reused.
 *
 * Layout: libgit2 1.5's ssh transport reaches into its standard stream
 * for the socket (struct git_socket_stream: parent, host, port, socket),
 * so struct tstream begins with exactly those fields.
 */
#include <errno.h>
#include <fcntl.h>
#include <git2/sys/stream.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "git_i.h"

/* One thread's limits; its streams point here while they live. */
struct limits {
	int io_ms;
	int64_t deadline_ns; /* mono_ns(); 0: none */
	int deadline_ms;
	const bool *stop; /* atomic; NULL: none */
	int expired;	  /* atomic: enum gitsrc_expiry */
};

struct tstream {
	git_stream parent;
	char *host;
	char *port;
	int s; /* the fields above mirror libgit2's git_socket_stream */
	int timeout_ms;
	struct limits *lim;
	struct tstream *prev, *next; /* on the live list (live_lock) */
};

static __thread struct limits thread_limits = { .io_ms = 30000 };

/* Every live stream of the process, for the watchdog. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tstream *live;
static pthread_once_t watch_once = PTHREAD_ONCE_INIT;

void gitsrc_stream_limits(int io_ms, int deadline_ms, const bool *stop)
{
	thread_limits.io_ms = io_ms;
	thread_limits.deadline_ms = deadline_ms;
	thread_limits.deadline_ns = deadline_ms > 0 ?
					    mono_ns() + (int64_t)deadline_ms *
								1000000 :
					    0;
	thread_limits.stop = stop;
	__atomic_store_n(&thread_limits.expired, 0, __ATOMIC_RELAXED);
}

int gitsrc_stream_expired(int *deadline_ms)
{
	*deadline_ms = thread_limits.deadline_ms;
	return __atomic_load_n(&thread_limits.expired, __ATOMIC_ACQUIRE);
}

static void *watchdog(void *arg)
{
	(void)arg;
	for (;;) {
		int64_t now;

		usleep(100000);
		now = mono_ns();
		pthread_mutex_lock(&live_lock);
		for (struct tstream *t = live; t; t = t->next) {
			struct limits *l = t->lim;
			int why = l->stop && __atomic_load_n(l->stop,
							     __ATOMIC_ACQUIRE) ?
					  GITSRC_STOPPED :
				  l->deadline_ns && now > l->deadline_ns ?
					  GITSRC_DEADLINE :
					  0;

			if (why && t->s >= 0) {
				__atomic_store_n(&l->expired, why,
						 __ATOMIC_RELEASE);
				shutdown(t->s, SHUT_RDWR);
			}
		}
		pthread_mutex_unlock(&live_lock);
	}
	return NULL;
}

static void watch_start(void)
{
	pthread_t t;
	pthread_attr_t a;

	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, watchdog, NULL))
		log_err("git",
			"no fetch watchdog: fetch deadlines not enforced");
	pthread_attr_destroy(&a);
}

static int net_fail(struct tstream *t, const char *what, int e)
{
	int why = __atomic_load_n(&t->lim->expired, __ATOMIC_ACQUIRE);

	if (why == GITSRC_DEADLINE)
		git_error_set(GIT_ERROR_NET, "fetch took longer than %d s",
			      t->lim->deadline_ms / 1000);
	else if (why == GITSRC_STOPPED)
		git_error_set(GIT_ERROR_NET, "stopped");
	else if (e == EAGAIN || e == EWOULDBLOCK || e == ETIMEDOUT)
		git_error_set(GIT_ERROR_NET, "%s %s:%s: no answer in %d s",
			      what, t->host, t->port, t->timeout_ms / 1000);
	else
		git_error_set(GIT_ERROR_NET, "%s %s:%s: %s", what, t->host,
			      t->port, strerror(e));
	return -1;
}

/* Connect one address within the time limit; the socket ends blocking. */
static int connect_one(struct tstream *t, const struct addrinfo *ai)
{
	struct timeval tv = { t->timeout_ms / 1000,
			      (t->timeout_ms % 1000) * 1000 };
	struct pollfd p = { .events = POLLOUT };
	int fd, e = 0, one = 1, idle = 30, intvl = 10, cnt = 3;
	socklen_t el = sizeof(e);

	fd = socket(ai->ai_family,
		    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    ai->ai_protocol);
	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) {
		e = errno;
	} else {
		p.fd = fd;
		e = poll(&p, 1, t->timeout_ms);
		e = e < 0					  ? errno :
		    !e						  ? ETIMEDOUT :
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) ? errno :
								    e;
	}
	if (e) {
		close(fd);
		return -e;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int ts_connect(git_stream *st)
{
	struct tstream *t = (struct tstream *)st;
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM },
			*res, *ai;
	int rc = getaddrinfo(t->host, t->port, &hints, &res), fd = -ENOENT;

	if (rc) {
		git_error_set(GIT_ERROR_NET,
			      "failed to resolve address for "
			      "%s: %s",
			      t->host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next)
		if ((fd = connect_one(t, ai)) >= 0)
			break;
	freeaddrinfo(res);
	if (fd < 0)
		return net_fail(t, "failed to connect to", -fd);
	t->s = fd;
	return 0;
}

static ssize_t ts_read(git_stream *st, void *buf, size_t len)
{
	struct tstream *t = (struct tstream *)st;
	ssize_t n;

	do
		n = recv(t->s, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n == 0 && __atomic_load_n(&t->lim->expired, __ATOMIC_ACQUIRE))
		return net_fail(t, "reading from", ECONNABORTED);
	return n < 0 ? net_fail(t, "reading from", errno) : n;
}

static ssize_t ts_write(git_stream *st, const char *buf, size_t len, int flags)
{
	struct tstream *t = (struct tstream *)st;
	ssize_t n;

	(void)flags;
	do
		n = send(t->s, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? net_fail(t, "writing to", errno) : n;
}

static int ts_close(git_stream *st)
{
	struct tstream *t = (struct tstream *)st;

	pthread_mutex_lock(&live_lock); /* not while the watchdog looks */
	if (t->s >= 0)
		close(t->s);
	t->s = -1;
	pthread_mutex_unlock(&live_lock);
	return 0;
}

static void ts_free(git_stream *st)
{
	struct tstream *t = (struct tstream *)st;

	ts_close(st);
	pthread_mutex_lock(&live_lock);
	if (t->prev)
		t->prev->next = t->next;
	else
		live = t->next;
	if (t->next)
		t->next->prev = t->prev;
	pthread_mutex_unlock(&live_lock);
	free(t->host);
	free(t->port);
	free(t);
}

static int ts_new(git_stream **out, const char *host, const char *port)
{
	struct tstream *t = calloc(1, sizeof(*t));

	if (!t || !(t->host = strdup(host)) || !(t->port = strdup(port))) {
		if (t)
			free(t->host);
		free(t);
		git_error_set_oom();
		return -1;
	}
	t->s = -1;
	t->timeout_ms = thread_limits.io_ms;
	t->lim = &thread_limits;
	t->parent.version = GIT_STREAM_VERSION;
	t->parent.connect = ts_connect;
	t->parent.read = ts_read;
	t->parent.write = ts_write;
	t->parent.close = ts_close;
	t->parent.free = ts_free;
	pthread_once(&watch_once, watch_start);
	pthread_mutex_lock(&live_lock);
	t->next = live;
	if (live)
		live->prev = t;
	live = t;
	pthread_mutex_unlock(&live_lock);
	*out = &t->parent;
	return 0;
}

int gitsrc_stream_register(void)
{
	git_stream_registration reg = { .version = GIT_STREAM_VERSION,
					.init = ts_new };

	return git_stream_register(GIT_STREAM_STANDARD, &reg);
}
