/*
 * Ctrl-C in an interactive session: it ends the running command, not taskdbg.
 * The SIGINT handler (cli/signals.c) only sets the flag while a session says
 * so; long work (Lua code through its hook, sampling loops, `watch`) checks
 * it and stops at the next safe point. A target is never left stopped: a
 * stop in progress finishes (it lasts milliseconds) and its detach happens.
 */
#ifndef TD_UTIL_INTERRUPT_H
#define TD_UTIL_INTERRUPT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* Set by SIGINT while interruptible; cleared by whoever handles it. */
extern volatile sig_atomic_t td_interrupted;
/* While set, SIGINT sets td_interrupted instead of ending taskdbg. */
extern volatile sig_atomic_t td_interruptible;

static inline bool td_interrupt_pending(void)
{
	return td_interrupted != 0;
}

/* Sleeps until deadline_ns (CLOCK_MONOTONIC); false if Ctrl-C in a session came first. */
bool td_sleep_until(uint64_t deadline_ns);

#endif
