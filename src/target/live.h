/*
 * A live process under ptrace: stop every thread, read registers and memory,
 * and detach leaving it as it was (running, no signal lost or added). As with
 * every ptrace stop, system calls that cannot be restarted (epoll_wait,
 * sigtimedwait, ...) return EINTR in the target; programs retry them.
 * A thread in uninterruptible sleep that does not stop within 250 ms is left
 * out (stopped == false) rather than holding the others stopped.
 *
 * Only one struct td_live is active at a time, so that the emergency path
 * (td_live_emergency_detach, called from signal handlers) can find it.
 */
#ifndef TD_TARGET_LIVE_H
#define TD_TARGET_LIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include "util/error.h"

struct td_live_thread {
	pid_t tid;
	bool seized;
	bool stopped;
	bool group_stop;     /* it was in a job-control stop: it stays stopped */
	int pending_signal;  /* caught in signal-delivery-stop: re-injected at detach */
	bool exited;
};

struct td_live {
	pid_t pid;
	struct td_live_thread *threads;
	size_t count, capacity;
	sigset_t saved_mask;   /* before job-control signals were held off */
	bool mask_saved;
};

/*
 * Seizes and interrupts every thread of pid, including threads created while
 * this runs, and waits until all are stopped. On failure nothing stays
 * attached. *ret is owned by the caller: td_live_destroy.
 */
struct td_error *td_live_stop(pid_t pid, struct td_live **ret);

/* Registers of a stopped thread (user_regs_struct includes fs_base). */
struct td_error *td_live_get_regs(struct td_live *live, size_t index,
				  struct user_regs_struct *ret);

/*
 * A register set of a stopped thread by its note type (NT_PRFPREG,
 * NT_X86_XSTATE, ...: PTRACE_GETREGSET): at most *len bytes into buf, *len
 * set to the size the kernel gave.
 */
struct td_error *td_live_get_regset(struct td_live *live, size_t index, unsigned type,
				    void *buf, size_t *len);

/* Detaches every thread, re-injecting the signals it caught. Idempotent. */
void td_live_detach(struct td_live *live);

/* Detaches (if still attached) and frees. NULL is fine. */
void td_live_destroy(struct td_live *live);

/*
 * Async-signal-safe: detaches every stopped thread of the active td_live,
 * re-injecting caught signals. For signal handlers and fatal errors.
 */
void td_live_emergency_detach(void);

/*
 * Reads target memory with process_vm_readv; works attached or not.
 * Returns the number of bytes read (short at the first unreadable byte).
 */
size_t td_live_read(pid_t pid, uint64_t addr, void *buf, size_t len);

#endif
