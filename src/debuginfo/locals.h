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
 * (DW_OP_entry_value, ...), is left out: taskdbg does not guess, unless
 * the caller asks for those too (TD_LOCALS_UNLOCATED): then it is reported
 * with located false, so that a caller can look for it another way (a
 * pinned future in its frame, td.frame_locals in docs/plugins.md).
 */
#ifndef TD_DEBUGINFO_LOCALS_H
#define TD_DEBUGINFO_LOCALS_H

#include <elfutils/libdw.h>
#include <stdbool.h>
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
	bool located;          /* false: addr is 0, the location is unknown here */
	const char *decl_file; /* the file that declares it (borrowed), or NULL */
	uint64_t frame_sp;     /* the frame's stack pointer: its locals lie in */
	uint64_t frame_cfa;    /*   [frame_sp, frame_cfa); frame_cfa 0 if unknown */
};

enum { TD_LOCALS_UNLOCATED = 1 };

/* Returns nonzero to stop the walk. */
typedef int (*td_local_fn)(const struct td_local *local, void *arg);

/*
 * Calls fn for every variable of frame `frame` of `stack`; the frame's
 * caller (frame + 1), if unwound, gives the canonical frame address.
 * flags: TD_LOCALS_UNLOCATED to report variables without a known location.
 * Returns the number of variables reported.
 */
int td_frame_locals(struct td_snapshot *snap, struct td_symbolizer *sym, const struct td_stack *stack,
		    size_t frame, int flags, td_local_fn fn, void *arg);

#endif
