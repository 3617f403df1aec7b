/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loop.c - the multi-threaded loop that serves the FUSE session: libfuse
 * 3.14's fuse_session_loop_mt (the same thread limits: a worker starts
 * when the last idle one takes a request, up to max(threads, 10), and
 * one ends when more than `threads` are idle), plus what keeps a round
 * trip cheap on a VM whose idle vCPUs halt. It must not touch the tree.
 *
 * Why: on a VM (cpuidle haltpoll with guest_halt_poll_ns=0, as on
 * Firecracker) a vCPU with nothing to run halts at once, and waking it
 * goes through the host. A reader that does some work between two
 * requests (a DAG-folder scan: one ioctl per open()) finds the worker's
 * vCPU halted, and while it waits for the answer its own vCPU halts too:
 * two host wake-ups per round trip, 40-300 µs instead of ~12 µs. Two
 * levers, each only while requests arrive closely (an EWMA of the gaps
 * between arrivals, each gap counted as at most 4 windows, below the
 * window), so nothing runs when requests are rare:
 *
 *  fuse-awake=US  hold a zero CPU-latency request (/dev/cpu_dma_latency)
 *                 until no request came for US: idle vCPUs poll instead
 *                 of halting, on both sides of the round trip. Dropped
 *                 by the loop's own thread when the window passes, so
 *                 at rest the CPUs halt as before. Needs the device
 *                 (root); without it this lever is off, said once.
 *  fuse-spin=US   one worker at a time, after answering, polls
 *                 /dev/fuse without sleeping for up to US after the
 *                 last arrival, then blocks in read() as the others do.
 *
 * Exit: a worker whose read ends (unmount: ENODEV, or the exit flag)
 * wakes the loop's thread, which cancels the workers still blocked in
 * read() and joins them; requests being answered finish first (cancel
 * is disabled while a request is processed), as in libfuse.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs_i.h"
#include "log.h"

#define MIN_MAX_THREADS 10 /* libfuse's default max_threads */
#define QOS_DEV "/dev/cpu_dma_latency"

struct worker {
	struct worker *prev, *next; /* loop.lock */
	pthread_t tid;
	struct fuse_buf fbuf;
	struct loop *lp;
};

struct loop {
	struct fs *fs;
	struct fuse_session *se;
	int fd;
	unsigned max_idle, max_threads;
	int64_t spin_ns, awake_ns;
	int64_t cap_ns; /* a gap counts at most this: 4 windows */

	pthread_mutex_t lock; /* all below but the atomics */
	pthread_cond_t cond;  /* done, qos_held: wakes the loop's thread */
	struct worker head;   /* ring of joinable workers */
	unsigned numworker, numavail;
	bool done, exiting;
	int error;
	int qos_fd;    /* -1: no zero-latency lever */
	bool qos_held; /* a zero latency is requested */

	int64_t last_ns; /* atomic: the latest arrival */
	int64_t ewma_ns; /* atomic: smoothed gap between arrivals */
	int spinning;	 /* atomic: a worker polls /dev/fuse */
};

static void qos_set(struct loop *lp, bool hold)
{
	/* PM QoS: a value of at least the default drops the constraint */
	int32_t v = hold ? 0 : 2000000000;

	if (write(lp->qos_fd, &v, sizeof(v)) != sizeof(v))
		log_debug("fs", "%s: %s", QOS_DEV, strerror(errno));
	lp->qos_held = hold;
	__atomic_store_n(&lp->fs->loop_stats.awake_held, hold,
			 __ATOMIC_RELAXED);
}

/* Note an arrival; lp->lock held. Smoothing 1/8, as TCP's srtt. */
static void arrived(struct loop *lp)
{
	int64_t t = mono_ns(),
		last = __atomic_load_n(&lp->last_ns, __ATOMIC_RELAXED);
	int64_t gap = t - last < lp->cap_ns ? t - last : lp->cap_ns;
	int64_t e = __atomic_load_n(&lp->ewma_ns, __ATOMIC_RELAXED);

	e += (gap - e) / 8;
	__atomic_store_n(&lp->ewma_ns, e, __ATOMIC_RELAXED);
	__atomic_store_n(&lp->last_ns, t, __ATOMIC_RELAXED);
	if (lp->qos_fd >= 0 && !lp->qos_held && e < lp->awake_ns) {
		qos_set(lp, true);
		__atomic_add_fetch(&lp->fs->loop_stats.awake_holds, 1,
				   __ATOMIC_RELAXED);
		pthread_cond_signal(&lp->cond);
	}
}

/*
 * Poll /dev/fuse without sleeping while requests come closely and the
 * window since the last arrival lasts; true when one is waiting. One
 * worker at a time; the others sleep in read() as before.
 */
static bool spin(struct loop *lp)
{
	struct pollfd p = { .fd = lp->fd, .events = POLLIN };
	int64_t until;
	bool got = false;

	if (!lp->spin_ns ||
	    __atomic_load_n(&lp->ewma_ns, __ATOMIC_RELAXED) >= lp->spin_ns ||
	    __atomic_exchange_n(&lp->spinning, 1, __ATOMIC_ACQUIRE))
		return false;
	until = __atomic_load_n(&lp->last_ns, __ATOMIC_RELAXED) + lp->spin_ns;
	while (!fuse_session_exited(lp->se) && mono_ns() < until) {
		if (poll(&p, 1, 0) > 0) {
			__atomic_add_fetch(&lp->fs->loop_stats.spin_hits, 1,
					   __ATOMIC_RELAXED);
			got = true;
			break;
		}
		sched_yield(); /* a reader on this CPU goes first */
		until = __atomic_load_n(&lp->last_ns, __ATOMIC_RELAXED) +
			lp->spin_ns;
	}
	__atomic_store_n(&lp->spinning, 0, __ATOMIC_RELEASE);
	return got;
}

static int worker_start(struct loop *lp);

/* After a request: true if this worker is one idle too many and ends
 * (detached); lp->lock held. */
static bool worker_retire(struct loop *lp, struct worker *w)
{
	if (lp->numavail <= lp->max_idle || lp->numworker <= 1 || lp->exiting)
		return false;
	w->prev->next = w->next;
	w->next->prev = w->prev;
	lp->numavail--;
	lp->numworker--;
	pthread_detach(w->tid);
	return true;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct loop *lp = w->lp;
	bool forget;
	int rc = 0;

	while (!fuse_session_exited(lp->se)) {
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		spin(lp);
		rc = fuse_session_receive_buf(lp->se, &w->fbuf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (rc == -EINTR || rc == -EAGAIN)
			continue;
		if (rc < 0)
			fuse_session_exit(lp->se);
		if (rc <= 0)
			break;
		pthread_mutex_lock(&lp->lock);
		if (lp->exiting) {
			pthread_mutex_unlock(&lp->lock);
			return NULL;
		}
		arrived(lp);
		/* as libfuse: a burst of forgets starts no threads */
		forget = !(w->fbuf.flags & FUSE_BUF_IS_FD) &&
			 (((struct fuse_in_header *)w->fbuf.mem)->opcode ==
				  FUSE_FORGET ||
			  ((struct fuse_in_header *)w->fbuf.mem)->opcode ==
				  FUSE_BATCH_FORGET);
		if (!forget)
			lp->numavail--;
		if (!lp->numavail && lp->numworker < lp->max_threads)
			(void)worker_start(lp);
		pthread_mutex_unlock(&lp->lock);

		fuse_session_process_buf(lp->se, &w->fbuf);

		pthread_mutex_lock(&lp->lock);
		if (!forget)
			lp->numavail++;
		if (worker_retire(lp, w)) {
			pthread_mutex_unlock(&lp->lock);
			free(w->fbuf.mem);
			free(w);
			return NULL;
		}
		pthread_mutex_unlock(&lp->lock);
	}
	pthread_mutex_lock(&lp->lock);
	if (rc < 0 && !lp->error)
		lp->error = rc;
	lp->done = true;
	pthread_cond_signal(&lp->cond);
	pthread_mutex_unlock(&lp->lock);
	return NULL;
}

/* lp->lock held. */
static int worker_start(struct loop *lp)
{
	struct worker *w = calloc(1, sizeof(*w));
	sigset_t all, old;
	int rc;

	if (!w)
		return -ENOMEM;
	w->lp = lp;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&w->tid, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		log_err("fs", "cannot start a FUSE worker: %s", strerror(rc));
		free(w);
		return -rc;
	}
	w->next = &lp->head;
	w->prev = lp->head.prev;
	lp->head.prev->next = w;
	lp->head.prev = w;
	lp->numworker++;
	lp->numavail++;
	return 0;
}

/* The loop's thread: drop the zero latency once no request came for
 * fuse-awake, until a worker is done. lp->lock held. */
static void keep(struct loop *lp)
{
	while (!lp->done) {
		int64_t due;
		struct timespec ts;

		if (!lp->qos_held) {
			pthread_cond_wait(&lp->cond, &lp->lock);
			continue;
		}
		due = __atomic_load_n(&lp->last_ns, __ATOMIC_RELAXED) +
		      lp->awake_ns;
		if (mono_ns() >= due) {
			qos_set(lp, false);
			continue;
		}
		ts.tv_sec = due / 1000000000;
		ts.tv_nsec = due % 1000000000;
		pthread_cond_timedwait(&lp->cond, &lp->lock, &ts);
	}
}

static void loop_init(struct loop *lp, struct fs *fs)
{
	pthread_condattr_t ca;

	memset(lp, 0, sizeof(*lp));
	lp->fs = fs;
	lp->se = fs->se;
	lp->fd = fuse_session_fd(fs->se);
	lp->max_idle = fs->o.threads;
	lp->max_threads = fs->o.threads > MIN_MAX_THREADS ? fs->o.threads :
							    MIN_MAX_THREADS;
	lp->spin_ns = (int64_t)fs->o.spin_us * 1000;
	lp->awake_ns = (int64_t)fs->o.awake_us * 1000;
	lp->last_ns = mono_ns();
	lp->cap_ns = 4 *
		     (lp->spin_ns > lp->awake_ns ? lp->spin_ns : lp->awake_ns);
	lp->ewma_ns = lp->cap_ns; /* as after a long rest */
	lp->head.next = lp->head.prev = &lp->head;
	pthread_mutex_init(&lp->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&lp->cond, &ca);
	pthread_condattr_destroy(&ca);
	lp->qos_fd = -1;
	if (!lp->awake_ns)
		return;
	lp->qos_fd = open(QOS_DEV, O_WRONLY | O_CLOEXEC);
	if (lp->qos_fd < 0)
		log_notice("fs", "fuse-awake is off: cannot open %s: %s",
			   QOS_DEV, strerror(errno));
}

void fs_get_loop_stats(struct fs *fs, struct fs_loop_stats *out)
{
	out->spin_hits = __atomic_load_n(&fs->loop_stats.spin_hits,
					 __ATOMIC_RELAXED);
	out->awake_holds = __atomic_load_n(&fs->loop_stats.awake_holds,
					   __ATOMIC_RELAXED);
	out->awake_held = __atomic_load_n(&fs->loop_stats.awake_held,
					  __ATOMIC_RELAXED);
	out->prefetched = __atomic_load_n(&fs->loop_stats.prefetched,
					  __ATOMIC_RELAXED);
}

int fs_loop_serve(struct fs *fs)
{
	struct loop lp;
	int rc;

	loop_init(&lp, fs);
	pthread_mutex_lock(&lp.lock);
	rc = worker_start(&lp);
	if (!rc)
		keep(&lp);
	for (struct worker *w = lp.head.next; w != &lp.head; w = w->next)
		pthread_cancel(w->tid);
	lp.exiting = true;
	if (lp.qos_held)
		qos_set(&lp, false);
	pthread_mutex_unlock(&lp.lock);
	while (lp.head.next != &lp.head) {
		struct worker *w = lp.head.next;

		pthread_join(w->tid, NULL);
		w->prev->next = w->next;
		w->next->prev = w->prev;
		free(w->fbuf.mem);
		free(w);
	}
	if (lp.qos_fd >= 0)
		close(lp.qos_fd);
	pthread_cond_destroy(&lp.cond);
	pthread_mutex_destroy(&lp.lock);
	fuse_session_reset(fs->se);
	return rc ? rc : lp.error;
}
