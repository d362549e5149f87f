#include "target/live.h"
#include "util/clock.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "target/procfs.h"

/* A thread that has not stopped this long after PTRACE_INTERRUPT never will soon. */
#define TD_STOP_DEADLINE_MS 250

/* The attached process, for the emergency path. Written only with signals blocked. */
static struct td_live *volatile active_live;

static void block_signals(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, old);
}

static void restore_signals(const sigset_t *old)
{
	sigprocmask(SIG_SETMASK, old, NULL);
}

static struct td_live_thread *find_thread(struct td_live *live, pid_t tid)
{
	for (size_t i = 0; i < live->count; i++)
		if (live->threads[i].tid == tid)
			return &live->threads[i];
	return NULL;
}

/* Grows the thread array with signals blocked, so a handler never sees it half-moved. */
static struct td_error *add_thread(struct td_live *live, pid_t tid, struct td_live_thread **ret)
{
	if (live->count == live->capacity) {
		size_t cap = live->capacity ? 2 * live->capacity : 64;
		struct td_live_thread *grown = malloc(cap * sizeof(*grown));
		if (!grown)
			return &td_enomem;
		if (live->count)
			memcpy(grown, live->threads, live->count * sizeof(*grown));
		sigset_t old;
		block_signals(&old);
		struct td_live_thread *prev = live->threads;
		live->threads = grown;
		live->capacity = cap;
		restore_signals(&old);
		free(prev);
	}
	struct td_live_thread *t = &live->threads[live->count];
	*t = (struct td_live_thread){ .tid = tid };
	live->count++;
	*ret = t;
	return NULL;
}

/*
 * Why seizing tid failed. The kernel answers EPERM for a thread that is
 * exiting, too: a thread that is dying or gone is not an error (*gone).
 */
static struct td_error *seize_error(struct td_live *live, pid_t tid, int err, bool *gone)
{
	struct td_proc_status st;
	*gone = !td_proc_read_status(live->pid, tid, &st) || st.state == 'Z' || st.state == 'X';
	if (*gone)
		return NULL;
	/* The first thread seized is the main one: the process-wide checks fit. */
	struct td_error *why = tid == live->pid ? td_proc_check(live->pid, NULL) : NULL;
	if (why)
		return why;
	if (st.tracer_pid && st.tracer_pid != getpid())
		return td_error_format(TD_ERR_TARGET,
			"thread %d of process %d is traced by process %d\n"
			"Only one debugger can trace a process at a time: detach that one first.",
			(int)tid, (int)live->pid, (int)st.tracer_pid);
	if (err == EPERM)
		return td_error_format(TD_ERR_TARGET,
			"permission denied to trace process %d (%s, owned by uid %u)\n"
			"Run taskdbg as the same user as the process, or as root "
			"(or with CAP_SYS_PTRACE); check /proc/sys/kernel/yama/ptrace_scope.",
			(int)live->pid, st.name, (unsigned)st.uid);
	return td_error_format(TD_ERR_TARGET, "cannot trace thread %d of process %d: %s",
			       (int)tid, (int)live->pid, strerror(err));
}

/* Records what waitpid said of a tracee. Returns true once it is stopped or gone. */
static bool note_status(struct td_live_thread *t, int status)
{
	if (WIFEXITED(status) || WIFSIGNALED(status)) {
		t->exited = true;
		t->seized = false;
		return true;
	}
	if (!WIFSTOPPED(status))
		return false;
	int event = status >> 16;
	int sig = WSTOPSIG(status);
	t->stopped = true;
	if (event == PTRACE_EVENT_STOP) {
		/* An interrupt stop reports SIGTRAP; a group-stop its stop signal. */
		if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
			t->group_stop = true;
	} else if (event == 0) {
		/*
		 * Signal-delivery-stop: a signal arrived before our interrupt.
		 * It is stopped now; the signal goes back in at detach.
		 */
		t->pending_signal = sig;
	}
	return true;
}

/*
 * Collects the stops of threads [first, count), in whatever order they come
 * (waitpid(-1): a zombie leader is reported only after its threads, so
 * waiting on one tid at a time could wait forever). A thread that does not
 * stop by the deadline (uninterruptible sleep: vfork, FUSE, NFS) is left
 * out, so it cannot hold the others stopped: it is marked not stopped, its
 * pending interrupt is cleared when taskdbg detaches or exits.
 */
static void wait_stops(struct td_live *live, size_t first)
{
	size_t pending = 0;
	for (size_t i = first; i < live->count; i++)
		if (live->threads[i].seized && !live->threads[i].stopped)
			pending++;
	uint64_t deadline = td_now_ns() + TD_STOP_DEADLINE_MS * 1000000ull;
	while (pending > 0) {
		int status;
		pid_t tid = waitpid(-1, &status, __WALL | WNOHANG);
		if (tid > 0) {
			struct td_live_thread *t = find_thread(live, tid);
			if (t && !t->stopped && !t->exited && note_status(t, status))
				pending--;
			continue;
		}
		if (tid < 0 && errno != EINTR)
			break;  /* ECHILD: nothing left to wait for */
		if (td_now_ns() > deadline)
			break;
		struct timespec nap = { 0, 20000 };
		nanosleep(&nap, NULL);
	}
}

/* Waits (bounded) for one thread, as when undoing an attach. */
static void wait_stopped(struct td_live_thread *t)
{
	uint64_t deadline = td_now_ns() + TD_STOP_DEADLINE_MS * 1000000ull;
	for (;;) {
		int status;
		pid_t r = waitpid(t->tid, &status, __WALL | WNOHANG);
		if (r > 0 && note_status(t, status))
			return;
		if ((r < 0 && errno != EINTR) || td_now_ns() > deadline) {
			if (r < 0 && errno == ECHILD)
				t->exited = true;
			return;
		}
		struct timespec nap = { 0, 20000 };
		nanosleep(&nap, NULL);
	}
}

static void detach_thread(struct td_live_thread *t)
{
	if (!t->seized)
		return;
	if (ptrace(PTRACE_DETACH, t->tid, NULL, (void *)(long)t->pending_signal) == 0 ||
	    errno != ESRCH) {
		t->seized = false;
		return;
	}
	/*
	 * ESRCH: seized but not stopped yet (an error path), or gone. PTRACE_DETACH
	 * needs a stopped tracee: stop it, then detach.
	 */
	if (ptrace(PTRACE_INTERRUPT, t->tid, NULL, NULL) == 0) {
		wait_stopped(t);
		if (!t->exited)
			ptrace(PTRACE_DETACH, t->tid, NULL, (void *)(long)t->pending_signal);
	}
	t->seized = false;
}

static struct td_error *seize(struct td_live *live, pid_t tid)
{
	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0) {
		if (errno == ESRCH)  /* exited between listing and seizing */
			return NULL;
		bool gone;
		return seize_error(live, tid, errno, &gone);
	}
	struct td_live_thread *t;
	struct td_error *err = add_thread(live, tid, &t);
	if (err) {
		/* Not registered, so undo by hand: a running tracee detaches only when stopped. */
		struct td_live_thread tmp = { .tid = tid, .seized = true };
		detach_thread(&tmp);
		return err;
	}
	t->seized = true;
	return NULL;
}

struct td_error *td_live_stop(pid_t pid, struct td_live **ret)
{
	struct td_live *live = calloc(1, sizeof(*live));
	if (!live)
		return &td_enomem;
	live->pid = pid;
	/*
	 * Job control must not suspend taskdbg while the target waits on it
	 * (Ctrl-Z would leave both stopped): held off until the detach.
	 */
	sigset_t job_control;
	sigemptyset(&job_control);
	sigaddset(&job_control, SIGTSTP);
	sigaddset(&job_control, SIGTTIN);
	sigaddset(&job_control, SIGTTOU);
	sigprocmask(SIG_BLOCK, &job_control, &live->saved_mask);
	live->mask_saved = true;
	{
		sigset_t old;
		block_signals(&old);
		active_live = live;
		restore_signals(&old);
	}

	struct td_error *err = NULL;
	/*
	 * Threads can be created until every thread is stopped. Re-list until a
	 * listing finds nothing new: once all are stopped, none can appear.
	 */
	bool settled = false;
	for (int round = 0; round < 64 && !settled; round++) {
		pid_t *tids;
		size_t n;
		err = td_proc_list_threads(pid, &tids, &n);
		if (err)
			goto fail;
		size_t first_new = live->count;
		/* Seizing does not stop a thread: seize all first, so the stop is short. */
		for (size_t i = 0; i < n; i++) {
			if (find_thread(live, tids[i]))
				continue;
			err = seize(live, tids[i]);
			if (err) {
				free(tids);
				goto fail;
			}
		}
		free(tids);
		if (first_new == live->count) {
			settled = true;
			break;
		}
		for (size_t i = first_new; i < live->count; i++) {
			struct td_live_thread *t = &live->threads[i];
			if (ptrace(PTRACE_INTERRUPT, t->tid, NULL, NULL) < 0) {
				t->seized = false;
				t->exited = true;
			}
		}
		wait_stops(live, first_new);
	}

	if (!settled) {
		err = td_error_format(TD_ERR_TARGET,
			"process %d creates threads faster than taskdbg can stop them; "
			"nothing was left stopped\nTry again in a quieter moment.", (int)pid);
		goto fail;
	}
	/* Drop threads that exited while we attached. */
	size_t kept = 0;
	for (size_t i = 0; i < live->count; i++)
		if (!live->threads[i].exited)
			live->threads[kept++] = live->threads[i];
	live->count = kept;
	if (kept == 0) {
		err = td_error_format(TD_ERR_TARGET, "process %d exited while taskdbg attached to it",
				      (int)pid);
		goto fail;
	}
	*ret = live;
	return NULL;

fail:
	td_live_destroy(live);
	return err;
}

struct td_error *td_live_get_regs(struct td_live *live, size_t index,
				  struct user_regs_struct *ret)
{
	struct td_live_thread *t = &live->threads[index];
	if (ptrace(PTRACE_GETREGS, t->tid, NULL, ret) < 0)
		return td_error_format(TD_ERR_TARGET, "cannot read the registers of thread %d: %s",
				       (int)t->tid, strerror(errno));
	return NULL;
}

struct td_error *td_live_get_regset(struct td_live *live, size_t index, unsigned type,
				    void *buf, size_t *len)
{
	struct td_live_thread *t = &live->threads[index];
	struct iovec io = { buf, *len };
	if (ptrace(PTRACE_GETREGSET, t->tid, (void *)(uintptr_t)type, &io) < 0)
		return td_error_format(TD_ERR_TARGET, "cannot read register set %u of thread %d: %s",
				       type, (int)t->tid, strerror(errno));
	*len = io.iov_len;
	return NULL;
}

void td_live_detach(struct td_live *live)
{
	if (!live)
		return;
	for (size_t i = 0; i < live->count; i++)
		detach_thread(&live->threads[i]);
	if (live->mask_saved) {
		sigprocmask(SIG_SETMASK, &live->saved_mask, NULL);
		live->mask_saved = false;
	}
}

void td_live_destroy(struct td_live *live)
{
	if (!live)
		return;
	td_live_detach(live);
	sigset_t old;
	block_signals(&old);
	if (active_live == live)
		active_live = NULL;
	restore_signals(&old);
	free(live->threads);
	free(live);
}

void td_live_emergency_detach(void)
{
	struct td_live *live = active_live;
	if (!live)
		return;
	int saved = errno;
	for (size_t i = 0; i < live->count; i++) {
		struct td_live_thread *t = &live->threads[i];
		/*
		 * A thread that is seized but still running cannot be detached
		 * (ESRCH); the kernel detaches it when taskdbg exits, clearing our
		 * pending interrupt.
		 */
		if (t->seized && ptrace(PTRACE_DETACH, t->tid, NULL, (void *)(long)t->pending_signal) == 0)
			t->seized = false;
	}
	errno = saved;
}

size_t td_live_read(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = { buf, len };
	struct iovec remote = { (void *)(uintptr_t)addr, len };
	ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
	return n < 0 ? 0 : (size_t)n;
}
