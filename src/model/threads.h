/*
 * The threads of a snapshot as a person sees them: symbolized stacks with
 * inline frames, and the role each thread plays.
 *
 * Roles come from the stack: the runtime plugin declares the frames of its
 * worker loop, its blocking pool and its task polls (struct td_runtime_frames).
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

/*
 * What a runtime plugin declares of its threads' stacks (docs/plugins.md,
 * `frames`): function-name beginnings ("a::B::f" also matches the v0
 * demangling "<a::B>::f"), each list NULL-terminated or NULL.
 */
struct td_runtime_frames {
	char **worker;         /* a scheduler's worker loop: the thread is a worker */
	char **blocking;       /* a blocking pool's loop: a blocking thread, unless also a worker */
	char **drives;         /* a runtime driven from a thread of the program's (block_on): a worker */
	char **poll;           /* a task's poll: what runs under it is the task's */
	char **poll_async;     /* outside a poll: the task is async */
	char **poll_blocking;  /* outside a poll: the task is a blocking closure (or a worker loop) */
};

void td_runtime_frames_free(struct td_runtime_frames *f);

struct td_thread_list {
	struct td_thread_view *threads;
	size_t count;
	struct td_symbolizer *sym;
	const struct td_stack *stacks;   /* the snapshot's */
	const struct td_runtime_frames *frames;   /* borrowed; may be NULL */
};

/* A thread and the async task it polls now (from the runtime plugin's model). */
struct td_task_on {
	int tid;
	long long task;
};

/*
 * Unwinds and symbolizes every thread of snap, which must outlive the list,
 * as must frames (NULL: no runtime; roles are main and other).
 */
struct td_error *td_thread_list_build(struct td_snapshot *snap, const struct td_runtime_frames *frames,
				      struct td_thread_list **ret);

void td_thread_list_destroy(struct td_thread_list *list);

const char *td_thread_role_name(enum td_thread_role role);

/*
 * Whether the thread is polling an async task now (not a blocking closure or
 * a worker loop, which a runtime may also run as tasks), from its stack.
 */
bool td_thread_polls_async_task(const struct td_thread_list *list, const struct td_thread_view *v);

#endif
