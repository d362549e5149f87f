/*
 * Whose time a sample is: the path a flame graph shows for one thread's
 * stack, rooted in the async task the thread polls (not in the scheduler
 * frames under it), as the runtime plugin's declared frames tell.
 *
 *   task NAME ; the task's frames inside its poll ...      an async task
 *   [scheduler] ; worker frames ...                         a worker between polls
 *   [blocking] NAME ; closure frames ...                    a spawn_blocking closure
 *   [thread NAME] ; frames ...                              any other thread
 *   [cut short] ; frames ...                                a worker whose stack copy
 *                                                           ends before its loop or a poll
 *
 * A sample in a system call ends in "[syscall NAME]". A thread in a system
 * call outside any task's or closure's code is idle (parked).
 */
#ifndef TD_PROFILE_ATTRIBUTE_H
#define TD_PROFILE_ATTRIBUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "model/threads.h"

enum td_sample_kind { TD_SAMPLE_TASK, TD_SAMPLE_SCHEDULER, TD_SAMPLE_BLOCKING, TD_SAMPLE_THREAD };

struct td_sample_path {
	enum td_sample_kind kind;
	bool idle;              /* parked: left out of profiles unless asked for */
	bool harness;           /* in a task's poll, but in the runtime's code around its future */
	bool cut_short;         /* a worker's stack copy that ends before its loop or a poll: "[cut short]" */
	const char **frames;    /* root first; borrowed from the path's buffers and the symbolizer */
	size_t n, cap;
	char root[320];         /* frames[0]'s text */
	char name[256];         /* the task's (or closure's, thread's) name, for `top` */
	char leaf[48];          /* "[syscall NAME]" when in one */
};

/*
 * The path of the thread v (frames innermost first, its role and system call
 * set). rf: the plugin's declared frames (NULL: no runtime). Returns false
 * only when memory runs out. Free with td_sample_path_clear.
 */
bool td_sample_attribute(const struct td_runtime_frames *rf, const struct td_thread_view *v,
			 struct td_sample_path *out);
void td_sample_path_clear(struct td_sample_path *p);

/*
 * Renames the root: "task NAME" for a harness sample whose task is known by
 * other samples, or "[scheduler]" (the runtime's own work around a poll).
 */
void td_sample_set_root(struct td_sample_path *p, enum td_sample_kind kind, const char *name);

/* "a::f::{async_fn#0}" -> "a::f": what a person calls an async fn's task. */
void td_sample_task_name(const char *function, char *buf, size_t size);

#endif
