/*
 * The threads of a snapshot as a person sees them: symbolized stacks with
 * inline frames, and the role each thread plays.
 *
 * Roles come from the stack (tokio's worker loop, its blocking pool) until the
 * runtime plugins (plugins/) fill them from the runtime's own structures.
 */
#ifndef TD_MODEL_THREADS_H
#define TD_MODEL_THREADS_H

#include <stdbool.h>
#include <stddef.h>

#include "debuginfo/symbolize.h"
#include "snapshot/snapshot.h"
#include "snapshot/unwind.h"

enum td_thread_role { TD_ROLE_OTHER, TD_ROLE_MAIN, TD_ROLE_WORKER, TD_ROLE_BLOCKING };

struct td_thread_view {
	const struct td_snapshot_thread *thread;
	struct td_frame *frames;     /* innermost first; strings owned by the list */
	size_t nframes;
	enum td_thread_role role;
	long syscall;                /* blocking system call, or -1 (see below) */
	long long task;              /* id of the async task it polls now, or -1 */
	const char *unwind_error;    /* why the stack ends early, or NULL */
	bool truncated;
};

struct td_thread_list {
	struct td_thread_view *threads;
	size_t count;
	struct td_symbolizer *sym;
	const struct td_stack *stacks;   /* the snapshot's */
};

/* Unwinds and symbolizes every thread of snap, which must outlive the list. */
/* A thread and the async task it polls now (from the runtime plugin's model). */
struct td_task_on {
	int tid;
	long long task;
};

struct td_error *td_thread_list_build(struct td_snapshot *snap, struct td_thread_list **ret);

void td_thread_list_destroy(struct td_thread_list *list);

const char *td_thread_role_name(enum td_thread_role role);

/*
 * Whether the thread is polling an async task now (not a spawn_blocking
 * closure or a worker loop, which tokio also runs as tasks), from its stack.
 */
bool td_thread_polls_async_task(const struct td_thread_view *v);

#endif
