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

struct td_stack {
	uint64_t *pcs;
	bool *activation;   /* the pc is where the thread is, not a return address */
	size_t count;
	bool truncated;     /* hit TD_MAX_FRAMES */
	char *error;        /* why the unwind stopped early, or NULL */
};

/*
 * Unwinds every thread; ret gets one stack per snapshot thread, in the same
 * order. Free with td_stacks_destroy.
 */
struct td_error *td_unwind_all(struct td_snapshot *snap, struct td_stack **ret);

void td_stacks_destroy(struct td_stack *stacks, size_t count);

#endif
