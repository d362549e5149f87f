#include "model/threads.h"

#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#include "util/timing.h"

const char *td_thread_role_name(enum td_thread_role role)
{
	switch (role) {
	case TD_ROLE_MAIN: return "main";
	case TD_ROLE_WORKER: return "worker";
	case TD_ROLE_BLOCKING: return "blocking";
	default: return "other";
	}
}

/*
 * Whether a frame's function is path: "a::B::f" matches the legacy demangling
 * "a::B::f" and the v0 one "<a::B>::f" alike.
 */
static bool has_prefix(const char *s, const char *prefix)
{
	if (!s)
		return false;
	for (;;) {
		while (*s == '<' || *s == '>')
			s++;
		while (*prefix == '<' || *prefix == '>')
			prefix++;
		if (!*prefix)
			return true;
		if (*s++ != *prefix++)
			return false;
	}
}

bool td_frame_matches(const char *fn, char *const *prefixes)
{
	for (size_t i = 0; fn && prefixes && prefixes[i]; i++)
		if (has_prefix(fn, prefixes[i]))
			return true;
	return false;
}

void td_runtime_frames_free(struct td_runtime_frames *f)
{
	char **lists[] = { f->worker, f->blocking, f->drives, f->poll, f->poll_async, f->poll_blocking,
			   f->future };
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		for (size_t j = 0; lists[i] && lists[i][j]; j++)
			free(lists[i][j]);
		free(lists[i]);
	}
	*f = (struct td_runtime_frames){ 0 };
}

enum td_poll_kind td_thread_poll_kind(const struct td_runtime_frames *rf, const struct td_thread_view *v,
				      size_t *poll_at)
{
	/*
	 * The innermost task poll decides: under a scheduler's run of an async
	 * task it is one; under the blocking pool's, a blocking closure or a
	 * worker loop.
	 */
	if (!rf)
		return TD_POLL_NONE;
	bool in_poll = false;
	for (size_t i = 0; i < v->nframes; i++) {
		const char *fn = v->frames[i].function;
		if (!fn)
			continue;
		if (!in_poll) {
			in_poll = td_frame_matches(fn, rf->poll);
			if (in_poll && poll_at)
				*poll_at = i;
			continue;
		}
		if (td_frame_matches(fn, rf->poll_blocking))
			return TD_POLL_BLOCKING;
		if (td_frame_matches(fn, rf->poll_async))
			return TD_POLL_ASYNC;
	}
	return TD_POLL_NONE;
}

bool td_thread_polls_async_task(const struct td_thread_list *list, const struct td_thread_view *v)
{
	return td_thread_poll_kind(list->frames, v, NULL) == TD_POLL_ASYNC;
}

/*
 * A runtime may run its workers on blocking-pool threads, so a worker's
 * stack can have both loops: the worker loop decides.
 */
enum td_thread_role td_thread_guess_role(pid_t pid, const struct td_runtime_frames *rf,
					 const struct td_thread_view *v)
{
	bool pool = false, drives = false;
	for (size_t i = 0; rf && i < v->nframes; i++) {
		const char *fn = v->frames[i].function;
		if (td_frame_matches(fn, rf->worker))
			return TD_ROLE_WORKER;
		pool = pool || td_frame_matches(fn, rf->blocking);
		drives = drives || td_frame_matches(fn, rf->drives);
	}
	if (pool)
		return TD_ROLE_BLOCKING;
	if (v->thread->tid == pid)
		return TD_ROLE_MAIN;
	/* The thread driving a current-thread runtime is its one worker. */
	if (drives)
		return TD_ROLE_WORKER;
	return TD_ROLE_OTHER;
}

/*
 * A sleep or wait that was interrupted once (by any debugger's stop) goes on
 * as restart_syscall, which says nothing. The libc wrapper on top of the stack
 * still names the call the program made.
 */
long td_thread_resolve_syscall(const struct td_thread_view *v)
{
	static const struct { const char *symbol; long nr; } wrappers[] = {
		{ "clock_nanosleep", SYS_clock_nanosleep },
		{ "nanosleep", SYS_nanosleep },
		{ "futex", SYS_futex },
		{ "ppoll", SYS_ppoll },
		{ "poll", SYS_poll },
	};
	long nr = v->thread->syscall;
	if (nr != SYS_restart_syscall)
		return nr;
	/* The wrapper may sit under glibc's generic syscall() (Rust parks so). */
	for (size_t f = 0; f < v->nframes && f < 3; f++) {
		const char *fn = v->frames[f].function;
		for (size_t i = 0; fn && i < sizeof(wrappers) / sizeof(wrappers[0]); i++)
			if (strstr(fn, wrappers[i].symbol))
				return wrappers[i].nr;
	}
	return nr;
}

struct td_error *td_thread_view_frames(struct td_symbolizer *sym, const struct td_stack *s,
				      struct td_thread_view *v)
{
	size_t cap = 0;
	for (size_t j = 0; j < s->count; j++) {
		const struct td_frame *frames;
		size_t n = td_symbolize(sym, s->pcs[j], s->activation[j], &frames);
		if (v->nframes + n > cap) {
			size_t ncap = cap ? cap * 2 : 64;
			while (ncap < v->nframes + n)
				ncap *= 2;
			struct td_frame *grown = realloc(v->frames, ncap * sizeof(*grown));
			if (!grown)
				return &td_enomem;
			v->frames = grown;
			cap = ncap;
		}
		for (size_t k = 0; k < n; k++) {
			v->frames[v->nframes] = frames[k];
			/* The physical frame's own pc, not that of a cache twin. */
			v->frames[v->nframes].pc = s->pcs[j];
			v->nframes++;
		}
	}
	v->unwind_error = s->error;
	v->truncated = s->truncated;
	return NULL;
}

/* Symbolizes every address of every stack at once (shared libraries on a helper thread). */
static void prefetch(struct td_symbolizer *sym, const struct td_snapshot *snap, const struct td_stack *stacks)
{
	size_t total = 0, at = 0;
	for (size_t i = 0; i < snap->nthreads; i++)
		total += stacks[i].count;
	uint64_t *pcs = malloc((total ? total : 1) * sizeof(*pcs));
	bool *act = malloc((total ? total : 1) * sizeof(*act));
	if (pcs && act) {
		for (size_t i = 0; i < snap->nthreads; i++)
			for (size_t j = 0; j < stacks[i].count; j++, at++) {
				pcs[at] = stacks[i].pcs[j];
				act[at] = stacks[i].activation[j];
			}
		td_symbolize_prefetch(sym, snap->exe_module, pcs, act, total);
	}
	free(pcs);
	free(act);
}

struct td_error *td_thread_list_build_with(struct td_snapshot *snap, const struct td_runtime_frames *declared,
					   struct td_symbolizer *sym, struct td_thread_list **ret)
{
	struct td_error *err;
	struct td_thread_list *list = calloc(1, sizeof(*list));
	if (!list)
		return &td_enomem;
	list->threads = calloc(snap->nthreads ? snap->nthreads : 1, sizeof(*list->threads));
	if (!list->threads) {
		err = &td_enomem;
		goto fail;
	}
	list->count = snap->nthreads;
	list->frames = declared;
	if ((err = td_unwind_all(snap, &list->stacks)))
		goto fail;
	td_timing_mark("unwind");
	list->sym = sym;
	list->sym_borrowed = sym != NULL;
	if (!sym && (err = td_symbolizer_create(snap->dwfl, &list->sym)))
		goto fail;
	prefetch(list->sym, snap, list->stacks);
	for (size_t i = 0; i < snap->nthreads; i++) {
		struct td_thread_view *v = &list->threads[i];
		v->thread = &snap->threads[i];
		if ((err = td_thread_view_frames(list->sym, &list->stacks[i], v)))
			goto fail;
		v->role = td_thread_guess_role(snap->pid, declared, v);
		v->syscall = td_thread_resolve_syscall(v);
		v->task = -1;
	}
	td_timing_mark("symbolize");
	*ret = list;
	return NULL;
fail:
	td_thread_list_destroy(list);
	return err;
}

struct td_error *td_thread_list_build(struct td_snapshot *snap, const struct td_runtime_frames *declared,
				      struct td_thread_list **ret)
{
	return td_thread_list_build_with(snap, declared, NULL, ret);
}

void td_thread_list_destroy(struct td_thread_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->count; i++)
		free(list->threads[i].frames);
	free(list->threads);
	if (!list->sym_borrowed)
		td_symbolizer_destroy(list->sym);
	free(list);
}
