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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "git_i.h"

struct tstream {
	git_stream parent;
	char *host;
	char *port;
	int s; /* the fields above mirror libgit2's git_socket_stream */
	int timeout_ms;
};

static __thread int thread_timeout_ms = 30000;

void gitsrc_stream_timeout(int ms)
{
	thread_timeout_ms = ms;
}

static int net_fail(struct tstream *t, const char *what, int e)
{
	if (e == EAGAIN || e == EWOULDBLOCK || e == ETIMEDOUT)
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

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
				   SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) {
		e = errno;
	} else {
		p.fd = fd;
		e = poll(&p, 1, t->timeout_ms);
		e = e < 0 ? errno : !e ? ETIMEDOUT :
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
				  .ai_socktype = SOCK_STREAM }, *res, *ai;
	int rc = getaddrinfo(t->host, t->port, &hints, &res), fd = -ENOENT;

	if (rc) {
		git_error_set(GIT_ERROR_NET, "failed to resolve address for "
			      "%s: %s", t->host, gai_strerror(rc));
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

	if (t->s >= 0)
		close(t->s);
	t->s = -1;
	return 0;
}

static void ts_free(git_stream *st)
{
	struct tstream *t = (struct tstream *)st;

	ts_close(st);
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
	t->timeout_ms = thread_timeout_ms;
	t->parent.version = GIT_STREAM_VERSION;
	t->parent.connect = ts_connect;
	t->parent.read = ts_read;
	t->parent.write = ts_write;
	t->parent.close = ts_close;
	t->parent.free = ts_free;
	*out = &t->parent;
	return 0;
}

int gitsrc_stream_register(void)
{
	git_stream_registration reg = { .version = GIT_STREAM_VERSION,
					.init = ts_new };

	return git_stream_register(GIT_STREAM_STANDARD, &reg);
}
