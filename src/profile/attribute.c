#include "profile/attribute.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "target/syscalls.h"

void td_sample_task_name(const char *fn, char *buf, size_t size)
{
	snprintf(buf, size, "%s", fn ? fn : "?");
	/* A trailing "::{async_fn#N}" is the body of the fn the task runs. */
	char *tail = strstr(buf, "::{async_fn#");
	if (tail && strchr(tail, '}') && strchr(tail, '}')[1] == '\0')
		*tail = '\0';
}

static bool push(struct td_sample_path *p, const char *s)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		const char **grown = realloc(p->frames, cap * sizeof(*grown));
		if (!grown)
			return false;
		p->frames = grown;
		p->cap = cap;
	}
	p->frames[p->n++] = s;
	return true;
}

static const char *label(const struct td_frame *f)
{
	return f->function ? f->function : "[unknown]";
}

/* Frames from index from (outermost shown) down to the innermost, then the leaf. */
static bool push_frames(struct td_sample_path *p, const struct td_thread_view *v, size_t from)
{
	for (size_t i = from + 1; i-- > 0;)
		if (!push(p, label(&v->frames[i])))
			return false;
	return !p->leaf[0] || push(p, p->leaf);
}

static bool is_async_body(const char *fn)
{
	return fn && (strstr(fn, "{async_fn#") || strstr(fn, "{async_block#"));
}

/*
 * Inside a poll at poll_at: the first frame of the future's own code (inside
 * the innermost declared `future` frame), or the one just inside the poll.
 */
static size_t future_start(const struct td_runtime_frames *rf, const struct td_thread_view *v, size_t poll_at,
			   bool *harness)
{
	for (size_t i = 0; i < poll_at; i++)
		if (rf && td_frame_matches(v->frames[i].function, rf->future))
			return i ? i - 1 : 0;
	/* The plugin says where futures are called, and this is not inside one. */
	*harness = rf && rf->future;
	return poll_at ? poll_at - 1 : 0;
}

/*
 * What to call the code from frame start inward: the outermost async fn of
 * the program's own, else the outermost own frame, else the outermost async
 * body, else the outermost frame.
 */
static void name_of(const struct td_thread_view *v, size_t start, char *buf, size_t size)
{
	const char *own_async = NULL, *own = NULL, *any_async = NULL;
	for (size_t i = start + 1; i-- > 0;) {
		const char *fn = v->frames[i].function;
		if (!fn)
			continue;
		if (v->frames[i].own && is_async_body(fn) && !own_async)
			own_async = fn;
		if (v->frames[i].own && !own)
			own = fn;
		if (is_async_body(fn) && !any_async)
			any_async = fn;
	}
	const char *fn = own_async ? own_async : own ? own : any_async ? any_async : v->frames[start].function;
	td_sample_task_name(fn, buf, size);
}

/* The outermost frame of the worker loop (or of the runtime driven on this thread), or none. */
static bool loop_start(const struct td_runtime_frames *rf, const struct td_thread_view *v, size_t *at)
{
	for (size_t i = v->nframes; i-- > 0;)
		if (td_frame_matches(v->frames[i].function, rf->worker) ||
		    td_frame_matches(v->frames[i].function, rf->drives)) {
			*at = i;
			return true;
		}
	return false;
}

bool td_sample_attribute(const struct td_runtime_frames *rf, const struct td_thread_view *v,
			 struct td_sample_path *p)
{
	p->n = 0;
	p->root[0] = p->name[0] = p->leaf[0] = '\0';
	p->idle = p->harness = p->cut_short = false;
	if (v->syscall >= 0) {
		const char *call = td_syscall_name(v->syscall);
		if (call)
			snprintf(p->leaf, sizeof(p->leaf), "[syscall %s]", call);
		else
			snprintf(p->leaf, sizeof(p->leaf), "[syscall %ld]", v->syscall);
	}
	if (v->nframes == 0) {
		p->kind = TD_SAMPLE_THREAD;
		snprintf(p->name, sizeof(p->name), "%s", v->thread && v->thread->has_name ? v->thread->name : "?");
		snprintf(p->root, sizeof(p->root), "[thread %s]", p->name);
		p->idle = v->syscall >= 0;
		return push(p, p->root) && (!p->leaf[0] || push(p, p->leaf));
	}
	size_t poll_at = 0;
	enum td_poll_kind kind = td_thread_poll_kind(rf, v, &poll_at);
	/*
	 * A poll with neither kind of caller outside it: the stack was cut short
	 * (a perf sample copies only its top), so the thread's role tells.
	 */
	if (kind == TD_POLL_NONE) {
		for (size_t i = 0; rf && i < v->nframes; i++)
			if (td_frame_matches(v->frames[i].function, rf->poll)) {
				poll_at = i;
				kind = v->role == TD_ROLE_BLOCKING ? TD_POLL_BLOCKING : TD_POLL_ASYNC;
				break;
			}
	}
	/* A worker loop run as a blocking task (tokio does): between polls, the scheduler's. */
	for (size_t i = 0; kind == TD_POLL_BLOCKING && i < poll_at; i++)
		if (td_frame_matches(v->frames[i].function, rf->worker))
			kind = TD_POLL_NONE;
	if (kind == TD_POLL_ASYNC || kind == TD_POLL_BLOCKING) {
		size_t start = future_start(rf, v, poll_at, &p->harness);
		name_of(v, start, p->name, sizeof(p->name));
		p->kind = kind == TD_POLL_ASYNC ? TD_SAMPLE_TASK : TD_SAMPLE_BLOCKING;
		snprintf(p->root, sizeof(p->root), kind == TD_POLL_ASYNC ? "task %s" : "[blocking] %s", p->name);
		return push(p, p->root) && push_frames(p, v, start);
	}
	/* Not in a task: idle if it waits in the kernel. */
	p->idle = v->syscall >= 0;
	size_t loop;
	if (v->role == TD_ROLE_WORKER && rf && loop_start(rf, v, &loop)) {
		p->kind = TD_SAMPLE_SCHEDULER;
		snprintf(p->name, sizeof(p->name), "scheduler");
		snprintf(p->root, sizeof(p->root), "[scheduler]");
		return push(p, p->root) && push_frames(p, v, loop);
	}
	if ((v->role == TD_ROLE_WORKER || v->role == TD_ROLE_BLOCKING) && rf) {
		/* Neither a poll nor the loop: the copy of the stack ended before either. */
		p->kind = TD_SAMPLE_THREAD;
		p->cut_short = true;
		snprintf(p->name, sizeof(p->name), "cut short");
		snprintf(p->root, sizeof(p->root), "[cut short]");
		return push(p, p->root) && push_frames(p, v, v->nframes - 1);
	}
	p->kind = TD_SAMPLE_THREAD;
	snprintf(p->name, sizeof(p->name), "%s", v->thread && v->thread->has_name ? v->thread->name : "?");
	snprintf(p->root, sizeof(p->root), "[thread %s]", p->name);
	return push(p, p->root) && push_frames(p, v, v->nframes - 1);
}

void td_sample_set_root(struct td_sample_path *p, enum td_sample_kind kind, const char *name)
{
	p->kind = kind;
	if (kind == TD_SAMPLE_SCHEDULER) {
		snprintf(p->name, sizeof(p->name), "scheduler");
		snprintf(p->root, sizeof(p->root), "[scheduler]");
	} else {
		snprintf(p->name, sizeof(p->name), "%s", name);
		snprintf(p->root, sizeof(p->root), "task %s", name);
	}
}

void td_sample_path_clear(struct td_sample_path *p)
{
	free(p->frames);
	p->frames = NULL;
	p->n = p->cap = 0;
}
