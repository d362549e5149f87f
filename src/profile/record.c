#include "profile/record.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "debuginfo/symbolize.h"
#include "profile/perf.h"
#include "snapshot/unwind.h"
#include "target/procfs.h"
#include "util/clock.h"
#include "util/interrupt.h"
#include "util/map.h"

/* Stack copied per thread and sample, in both modes: enough to reach a task's poll. */
#define TD_RECORD_STACK (32 * 1024)
/* How often perf's buffers are read, and the thread list looked at again. */
#define TD_RECORD_DRAIN_NS (10 * 1000000ull)
#define TD_RECORD_RESCAN_NS (250 * 1000000ull)
#define TD_RECORD_STOPS_KEPT 8192
/* Task names learnt from samples: forgotten (and learnt again) past this many. */
#define TD_RECORD_NAMES_MAX 65536

/* What is known of a thread between samples: its name, and its role from a full stack. */
struct known_thread {
	pid_t tid;
	char name[16];
	enum td_thread_role role;
};

struct td_recorder {
	struct td_snapshot *snap;
	const struct td_runtime_frames *frames;
	struct td_record_options opts;
	struct td_record_stats stats;
	struct td_perf *perf;
	struct td_symbolizer *sym;
	struct known_thread *threads;
	size_t nthreads, cap;
	uint64_t stop_ns[TD_RECORD_STOPS_KEPT];   /* ptrace: the last stops' lengths, for the median */
	uint64_t nstops;
	uint64_t start_ns, cpu_start_ns, next_ns, last_rescan_ns;
	uint64_t jitter;            /* xorshift state of the ptrace mode's jitter */
	struct td_sample_path path;
	struct td_map task_names;   /* task id -> index + 1 in names: learnt from samples inside its future */
	struct td_map loop_ids;     /* ids seen on threads in the scheduler loop: the loops' own */
	char (*names)[256];
	size_t nnames, names_cap;
	struct td_record_sample sample;
	void (*fn)(const struct td_record_sample *s, void *arg);
	void *arg;
};

const char *td_record_mode_name(enum td_record_mode mode)
{
	switch (mode) {
	case TD_RECORD_PERF: return "perf events";
	case TD_RECORD_PTRACE: return "ptrace stops";
	default: return "auto";
	}
}

/* The CPU time (user and system) all of pid's threads have had, in ns. */
static uint64_t process_cpu_ns(pid_t pid)
{
	pid_t *tids = NULL;
	size_t n = 0;
	uint64_t total = 0;
	struct td_error *err = td_proc_list_threads(pid, &tids, &n);
	if (err) {
		td_error_destroy(err);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid, (int)tids[i]);
		FILE *f = fopen(path, "r");
		unsigned long long ns;
		if (f && fscanf(f, "%llu", &ns) == 1)
			total += ns;
		if (f)
			fclose(f);
	}
	free(tids);
	return total;
}

static struct known_thread *known(struct td_recorder *rec, pid_t tid, bool add)
{
	for (size_t i = 0; i < rec->nthreads; i++)
		if (rec->threads[i].tid == tid)
			return &rec->threads[i];
	if (!add)
		return NULL;
	if (rec->nthreads == rec->cap) {
		size_t cap = rec->cap ? rec->cap * 2 : 32;
		struct known_thread *grown = realloc(rec->threads, cap * sizeof(*grown));
		if (!grown)
			return NULL;
		rec->threads = grown;
		rec->cap = cap;
	}
	struct known_thread *k = &rec->threads[rec->nthreads++];
	*k = (struct known_thread){ .tid = tid, .role = TD_ROLE_OTHER };
	char state;
	if (!td_proc_thread_info(rec->snap->pid, tid, k->name, &state))
		snprintf(k->name, sizeof(k->name), "%d", (int)tid);
	if (tid == rec->snap->pid)
		k->role = TD_ROLE_MAIN;
	return k;
}

/* Roles from the snapshot's full stacks: a perf sample's stack may be too short to tell. */
static void learn_roles(struct td_recorder *rec, const struct td_thread_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		const struct td_thread_view *v = &list->threads[i];
		struct known_thread *k = known(rec, v->thread->tid, true);
		if (k) {
			k->role = v->role;
			if (v->thread->has_name)
				memcpy(k->name, v->thread->name, sizeof(k->name));
		}
	}
}

/*
 * A task's name as samples inside its future showed it: a sample in the
 * runtime's code around the future (waking another task, say) cannot tell,
 * but its id (ptrace mode) can.
 */
static const char *task_name(struct td_recorder *rec, long long task, const char *learnt)
{
	if (task < 0)
		return NULL;
	uint64_t *slot = td_map_get(&rec->task_names, (uint64_t)task);
	if (slot)
		return rec->names[*slot - 1];
	if (!learnt)
		return NULL;
	if (rec->nnames == TD_RECORD_NAMES_MAX) {
		td_map_free(&rec->task_names);
		rec->task_names = (struct td_map){ 0 };
		rec->nnames = 0;
	}
	if (rec->nnames == rec->names_cap) {
		size_t cap = rec->names_cap ? rec->names_cap * 2 : 64;
		char (*grown)[256] = realloc(rec->names, cap * sizeof(*grown));
		if (!grown)
			return NULL;
		rec->names = grown;
		rec->names_cap = cap;
	}
	bool added;
	if (!(slot = td_map_put(&rec->task_names, (uint64_t)task, &added)))
		return NULL;
	snprintf(rec->names[rec->nnames], sizeof(rec->names[0]), "%s", learnt);
	*slot = ++rec->nnames;
	return rec->names[*slot - 1];
}

/* Gives one thread's sample to the caller, or counts it as idle. */
static void deliver(struct td_recorder *rec, const struct td_thread_view *v, const char *name,
		    uint64_t time_ns, long long task)
{
	if (!td_sample_attribute(rec->frames, v, &rec->path))
		return;
	/*
	 * The id a worker's thread-local holds between polls is that of the
	 * blocking task running the worker loop (tokio); read at the instant a
	 * poll begins or ends, it can come with a task's frames. Which ids were
	 * seen so is remembered (td_recorder_loop_id), not used to drop any: a
	 * task's own id is seen in the loop too, at the instant its poll ends.
	 */
	bool added;
	if (rec->path.kind == TD_SAMPLE_SCHEDULER && task >= 0)
		td_map_put(&rec->loop_ids, (uint64_t)task, &added);
	if (rec->path.idle && !rec->opts.idle) {
		rec->stats.idle++;
		return;
	}
	rec->stats.unwound_short += rec->path.cut_short;
	if (rec->path.kind == TD_SAMPLE_TASK) {
		const char *known_as = task_name(rec, task, rec->path.harness ? NULL : rec->path.name);
		if (rec->path.harness)
			td_sample_set_root(&rec->path, known_as ? TD_SAMPLE_TASK : TD_SAMPLE_SCHEDULER, known_as);
		/*
		 * An id whose samples showed another task's code is not believed:
		 * a thread-local read at the wrong moment can hold the id of the
		 * blocking task that runs the worker loop.
		 */
		else if (known_as && strcmp(known_as, rec->path.name) != 0)
			task = -1;
	}
	rec->sample = (struct td_record_sample){
		.tid = v->thread->tid, .thread_name = name, .time_ns = time_ns,
		.task = rec->path.kind == TD_SAMPLE_TASK ? task : -1, .path = &rec->path,
	};
	rec->stats.samples++;
	rec->fn(&rec->sample, rec->arg);
}

static void on_perf_sample(const struct td_perf_sample *s, void *arg)
{
	struct td_recorder *rec = arg;
	struct td_stack stack;
	if (td_unwind_sample(rec->snap, s->tid, &s->regs, s->stack_addr, s->stack, s->stack_len, &stack))
		return;
	struct known_thread *k = known(rec, s->tid, true);
	struct td_snapshot_thread t = { .tid = s->tid, .stopped = true, .syscall = -1, .has_name = k != NULL };
	if (k)
		memcpy(t.name, k->name, sizeof(t.name));
	struct td_thread_view v = { .thread = &t, .syscall = -1, .task = -1 };
	if (!td_thread_view_frames(rec->sym, &stack, &v)) {
		v.role = td_thread_guess_role(rec->snap->pid, rec->frames, &v);
		/* The copy may end before the loop that tells a worker: the full stacks seen before do. */
		if (k && v.role != k->role && (k->role == TD_ROLE_WORKER || k->role == TD_ROLE_BLOCKING))
			v.role = k->role;
		deliver(rec, &v, t.name, s->time_ns, -1);
	}
	free(v.frames);
	td_stack_clear(&stack);
}

static void note_stop(struct td_recorder *rec, uint64_t ns)
{
	if (ns > rec->stats.stop_max_ns)
		rec->stats.stop_max_ns = ns;
	/* The median is of the last TD_RECORD_STOPS_KEPT stops: a top left running keeps no more. */
	rec->stop_ns[rec->nstops++ % TD_RECORD_STOPS_KEPT] = ns;
}

/* One ptrace stop: every thread's registers and stack top, then attribution after. */
static struct td_error *ptrace_tick(struct td_recorder *rec)
{
	struct td_snapshot *snap = rec->snap;
	struct td_snapshot_options so = { .stack_max = TD_RECORD_STACK };
	struct td_error *err = td_snapshot_retake(snap, &so);
	if (err)
		return err;
	uint64_t now = td_now_ns();
	rec->stats.stops++;
	note_stop(rec, snap->stopped_ns);
	long long *tasks = malloc((snap->nthreads ? snap->nthreads : 1) * sizeof(*tasks));
	if (!tasks)
		return &td_enomem;
	for (size_t i = 0; i < snap->nthreads; i++)
		tasks[i] = -1;
	if (rec->opts.current_tasks)
		rec->opts.current_tasks(snap, tasks, rec->opts.arg);
	struct td_thread_list *list;
	err = td_thread_list_build_with(snap, rec->frames, rec->sym, &list);
	if (!err) {
		learn_roles(rec, list);
		for (size_t i = 0; i < list->count; i++) {
			const struct td_thread_view *v = &list->threads[i];
			if (!v->thread->stopped)
				continue;
			deliver(rec, v, v->thread->has_name ? v->thread->name : "?", now, tasks[i]);
		}
		td_thread_list_destroy(list);
	}
	free(tasks);
	return err;
}

struct td_error *td_recorder_start(struct td_snapshot *snap, const struct td_runtime_frames *frames,
				   const struct td_record_options *opts, struct td_recorder **ret)
{
	struct td_recorder *rec = calloc(1, sizeof(*rec));
	if (!rec)
		return &td_enomem;
	rec->snap = snap;
	rec->frames = frames;
	rec->opts = *opts;
	if (rec->opts.rate == 0)
		rec->opts.rate = 99;
	struct td_error *err = td_symbolizer_create(snap->dwfl, &rec->sym);
	if (err)
		goto fail;
	/* The first snapshot's full stacks give each thread its role. */
	struct td_thread_list *list;
	if ((err = td_thread_list_build_with(snap, frames, rec->sym, &list)))
		goto fail;
	learn_roles(rec, list);
	td_thread_list_destroy(list);
	/* From now on stacks are copied 32 KiB deep: what is beyond has changed since. */
	snap->unwind_copies_only = true;

	enum td_record_mode mode = opts->mode;
	if (mode == TD_RECORD_AUTO && opts->idle) {
		mode = TD_RECORD_PTRACE;
		snprintf(rec->stats.fallback, sizeof(rec->stats.fallback),
			 "--idle needs every thread sampled, running or not: perf events see only running ones");
	}
	if (mode != TD_RECORD_PTRACE) {
		err = td_perf_open(snap->pid, rec->opts.rate, TD_RECORD_STACK, &rec->perf);
		if (err && mode == TD_RECORD_PERF)
			goto fail;
		if (err) {
			snprintf(rec->stats.fallback, sizeof(rec->stats.fallback), "%s", err->message);
			td_error_destroy(err);
			err = NULL;
			mode = TD_RECORD_PTRACE;
		} else {
			mode = TD_RECORD_PERF;
		}
	}
	rec->stats.mode = mode;
	rec->start_ns = rec->next_ns = rec->last_rescan_ns = td_now_ns();
	rec->cpu_start_ns = process_cpu_ns(snap->pid);
	*ret = rec;
	return NULL;
fail:
	td_recorder_destroy(rec);
	return err;
}

/* An error if the target has exited (a zombie too: it has, only not been reaped). */
static struct td_error *gone(struct td_recorder *rec)
{
	char name[16], state = 0;
	if (td_proc_thread_info(rec->snap->pid, rec->snap->pid, name, &state) && state != 'Z')
		return NULL;
	return td_error_format(TD_ERR_TARGET, "process %d exited while being recorded", (int)rec->snap->pid);
}

static struct td_error *run_perf(struct td_recorder *rec, uint64_t deadline)
{
	for (;;) {
		uint64_t now = td_now_ns();
		uint64_t next = now + TD_RECORD_DRAIN_NS < deadline ? now + TD_RECORD_DRAIN_NS : deadline;
		bool go_on = td_sleep_until(next);
		td_perf_drain(rec->perf, on_perf_sample, rec);
		now = td_now_ns();
		if (now - rec->last_rescan_ns >= TD_RECORD_RESCAN_NS) {
			rec->last_rescan_ns = now;
			struct td_error *err = gone(rec);
			if (err)
				return err;
			td_perf_rescan(rec->perf);
		}
		if (!go_on || now >= deadline)
			return NULL;
	}
}

/*
 * The next period: the mean one, jittered by up to half of it either way, so
 * that sampling never keeps step with a program's own timers (a task woken
 * every 10 ms, sampled every 10.1 ms, would be seen at nearly the same point
 * of its work for a second at a time).
 */
static uint64_t jittered(struct td_recorder *rec, uint64_t period)
{
	uint64_t x = rec->jitter ? rec->jitter : td_now_ns() | 1;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rec->jitter = x;
	return period / 2 + x % (period + 1);
}

static struct td_error *run_ptrace(struct td_recorder *rec, uint64_t deadline)
{
	uint64_t period = 1000000000ull / rec->opts.rate;
	for (;;) {
		if (rec->next_ns >= deadline)
			return td_sleep_until(deadline), NULL;
		if (!td_sleep_until(rec->next_ns))
			return NULL;
		struct td_error *err = ptrace_tick(rec);
		if (err) {
			/* A target that exited says so, rather than how the stop failed. */
			struct td_error *exited = gone(rec);
			if (exited) {
				td_error_destroy(err);
				return exited;
			}
			return err;
		}
		rec->next_ns += jittered(rec, period);
		uint64_t now = td_now_ns();
		/* Fallen behind: skip the ticks that are past, rather than stop in a burst. */
		if (rec->next_ns < now) {
			uint64_t behind = (now - rec->next_ns) / period + 1;
			rec->stats.missed += behind;
			rec->next_ns += behind * period;
		}
	}
}

struct td_error *td_recorder_run(struct td_recorder *rec, uint64_t deadline_ns,
				 void (*fn)(const struct td_record_sample *s, void *arg), void *arg)
{
	rec->fn = fn;
	rec->arg = arg;
	if (rec->stats.mode == TD_RECORD_PERF)
		return run_perf(rec, deadline_ns);
	return run_ptrace(rec, deadline_ns);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

bool td_recorder_loop_id(const struct td_recorder *rec, long long task)
{
	return task >= 0 && td_map_get(&rec->loop_ids, (uint64_t)task) != NULL;
}

void td_recorder_stats(struct td_recorder *rec, struct td_record_stats *ret)
{
	rec->stats.wall_ns = td_now_ns() - rec->start_ns;
	uint64_t cpu = process_cpu_ns(rec->snap->pid);
	rec->stats.cpu_ns = cpu > rec->cpu_start_ns ? cpu - rec->cpu_start_ns : 0;
	if (rec->perf) {
		rec->stats.lost = td_perf_lost(rec->perf);
		rec->stats.unsampled = td_perf_unsampled(rec->perf);
	}
	size_t kept = rec->nstops < TD_RECORD_STOPS_KEPT ? (size_t)rec->nstops : TD_RECORD_STOPS_KEPT;
	if (kept) {
		uint64_t sorted[TD_RECORD_STOPS_KEPT];
		memcpy(sorted, rec->stop_ns, kept * sizeof(*sorted));
		qsort(sorted, kept, sizeof(*sorted), cmp_u64);
		rec->stats.stop_median_ns = sorted[kept / 2];
	}
	*ret = rec->stats;
}

void td_recorder_destroy(struct td_recorder *rec)
{
	if (!rec)
		return;
	td_perf_close(rec->perf);
	rec->snap->unwind_copies_only = false;
	td_symbolizer_destroy(rec->sym);
	td_sample_path_clear(&rec->path);
	free(rec->threads);
	td_map_free(&rec->task_names);
	td_map_free(&rec->loop_ids);
	free(rec->names);
	free(rec);
}
