/*
 * Unwinding every thread of a snapshot, from the copied registers and stack,
 * with libdwfl's CFI unwinder (dwfl_attach_state with our own callbacks).
 */
#ifndef TD_SNAPSHOT_UNWIND_H
#define TD_SNAPSHOT_UNWIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/snapshot.h"

/* Frames beyond this depth are cut: a garbage or cyclic stack ends here. */
#define TD_MAX_FRAMES 512

/* DWARF registers of x86_64 (rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp, r8-r15, rip). */
#define TD_FRAME_REGS 17

/* A frame's registers as the unwinder recovered them; known: bit n for register n. */
struct td_frame_regs {
	uint64_t r[TD_FRAME_REGS];
	uint32_t known;
};

struct td_stack {
	uint64_t *pcs;
	bool *activation;   /* the pc is where the thread is, not a return address */
	struct td_frame_regs *regs;   /* per frame, for frame-local variables */
	size_t count;
	bool truncated;     /* hit TD_MAX_FRAMES */
	char *error;        /* why the unwind stopped early, or NULL */
};

/*
 * Every thread's stack, one per snapshot thread in the same order, unwound
 * once per stop: the stacks belong to the snapshot, which frees them when it
 * is taken again or destroyed (so the thread list and frame-local variables
 * share one unwind).
 */
struct td_error *td_unwind_all(struct td_snapshot *snap, const struct td_stack **ret);

/*
 * Unwinds one thread from registers and a copy of the top of its stack taken
 * without a stop (a perf sample): memory beyond the copy is not read. out's
 * arrays are the caller's to free (td_stack_clear).
 */
struct td_error *td_unwind_sample(struct td_snapshot *snap, pid_t tid, const struct user_regs_struct *regs,
				   uint64_t stack_addr, const unsigned char *stack, size_t len,
				   struct td_stack *out);
void td_stack_clear(struct td_stack *stack);

void td_stacks_destroy(struct td_stack *stacks, size_t count);

#endif
