/*
 * The variables of one stack frame: every local and parameter in scope at
 * the frame's pc (in its function and in the functions inlined there), with
 * where its value is now, from the DWARF location description and the
 * registers the unwinder recovered for that frame.
 *
 * A value in memory (on the stack, a static) is reported at its address; one
 * kept in registers or computed (DW_OP_piece, DW_OP_stack_value) is
 * assembled into the snapshot's scratch space (td_snapshot_scratch) so that
 * it reads like any other value. A variable whose location needs a register
 * the unwinder could not recover, or an operation not supported here
 * (DW_OP_entry_value, ...), is left out: taskdbg does not guess.
 */
#ifndef TD_DEBUGINFO_LOCALS_H
#define TD_DEBUGINFO_LOCALS_H

#include <elfutils/libdw.h>
#include <stdint.h>

#include "debuginfo/symbolize.h"
#include "snapshot/snapshot.h"
#include "snapshot/unwind.h"

struct td_local {
	const char *name;      /* DWARF name (borrowed from the debug info) */
	Dwarf_Die type;        /* the variable's type */
	uint64_t addr;         /* where its value is: target memory or scratch */
	int depth;             /* 0: the innermost (inlined) function at the pc */
	const char *function;  /* DW_AT_name of that function (borrowed), or NULL */
};

/* Returns nonzero to stop the walk. */
typedef int (*td_local_fn)(const struct td_local *local, void *arg);

/*
 * Calls fn for every variable of frame `frame` of `stack`; the frame's
 * caller (frame + 1), if unwound, gives the canonical frame address.
 * Returns the number of variables reported.
 */
int td_frame_locals(struct td_snapshot *snap, struct td_symbolizer *sym, const struct td_stack *stack,
		    size_t frame, td_local_fn fn, void *arg);

#endif
