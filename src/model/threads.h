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
	char **future;         /* inside a poll, where the task's own future (or closure) is called */
};

void td_runtime_frames_free(struct td_runtime_frames *f);
/* Whether fn begins with one of prefixes (NULL-terminated; "a::B::f" matches "<a::B>::f" too). */
bool td_frame_matches(const char *fn, char *const *prefixes);

struct td_thread_list {
	struct td_thread_view *threads;
	size_t count;
	struct td_symbolizer *sym;
	const struct td_stack *stacks;   /* the snapshot's */
	const struct td_runtime_frames *frames;   /* borrowed; may be NULL */
	bool sym_borrowed;               /* sym is the caller's (td_thread_list_build_with) */
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

/* The same with the caller's symbolizer (its cache kept across stops: a profiler's). */
struct td_error *td_thread_list_build_with(struct td_snapshot *snap, const struct td_runtime_frames *frames,
					   struct td_symbolizer *sym, struct td_thread_list **ret);
void td_thread_list_destroy(struct td_thread_list *list);

/* v's frames (appended) from one unwound stack, and its unwind error and truncation. */
struct td_error *td_thread_view_frames(struct td_symbolizer *sym, const struct td_stack *stack,
				      struct td_thread_view *v);
/* A thread's role from its frames (the main thread is the one whose tid is pid). */
enum td_thread_role td_thread_guess_role(pid_t pid, const struct td_runtime_frames *frames,
					 const struct td_thread_view *v);
/* The system call v sits in, with restart_syscall named after the libc wrapper on top. */
long td_thread_resolve_syscall(const struct td_thread_view *v);

enum td_poll_kind { TD_POLL_NONE, TD_POLL_ASYNC, TD_POLL_BLOCKING };
/*
 * What the thread polls, from its stack: an async task, a blocking closure
 * (or a worker loop run as one), or nothing; *poll_at (if not NULL) gets the
 * index of the innermost frames.poll frame.
 */
enum td_poll_kind td_thread_poll_kind(const struct td_runtime_frames *frames, const struct td_thread_view *v,
				      size_t *poll_at);

const char *td_thread_role_name(enum td_thread_role role);

/*
 * Whether the thread is polling an async task now (not a blocking closure or
 * a worker loop, which a runtime may also run as tasks), from its stack.
 */
bool td_thread_polls_async_task(const struct td_thread_list *list, const struct td_thread_view *v);

#endif
