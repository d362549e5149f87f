/*
 * Sampling a process without stopping it: one perf event per thread (a
 * software CPU clock, so a thread is sampled only while it runs user code),
 * each sample carrying the thread's user registers and a copy of the top of
 * its stack (PERF_SAMPLE_REGS_USER | PERF_SAMPLE_STACK_USER), which the
 * caller unwinds later, as a snapshot's copy is.
 */
#ifndef TD_PROFILE_PERF_H
#define TD_PROFILE_PERF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "util/error.h"

struct td_perf_sample {
	pid_t tid;
	uint64_t time_ns;             /* CLOCK_MONOTONIC */
	struct user_regs_struct regs; /* the general registers (segment bases are 0) */
	uint64_t stack_addr;          /* = regs.rsp */
	const unsigned char *stack;   /* valid only during the callback */
	size_t stack_len;
};

struct td_perf;

/*
 * Opens a sampling event on every thread of pid at rate_hz per second of each
 * thread's CPU time. Fails with TD_ERR_TARGET when the kernel does not permit
 * it (the message says why: perf_event_paranoid, no permission), so the
 * caller can fall back to ptrace stops.
 */
struct td_error *td_perf_open(pid_t pid, unsigned rate_hz, size_t stack_bytes, struct td_perf **ret);

/* Opens events on threads born since (call a few times a second). */
void td_perf_rescan(struct td_perf *perf);

/* Calls fn for each sample recorded since the last drain; returns how many. */
size_t td_perf_drain(struct td_perf *perf, void (*fn)(const struct td_perf_sample *s, void *arg), void *arg);

/* Samples the kernel dropped (a full buffer) so far, as it reports them. */
uint64_t td_perf_lost(const struct td_perf *perf);

/* Threads born while sampling that could not be given an event (they are not sampled). */
size_t td_perf_unsampled(const struct td_perf *perf);

void td_perf_close(struct td_perf *perf);

#endif
