/*
 * taskdbg top [--interval D] [--rate HZ] [--json --once] PID: a live view of
 * where a process's time goes, by async task.
 *
 * Each interval: the threads are sampled (profile/record.h, ptrace stops, so
 * every sample knows the id of the task a worker polls), then the runtime is
 * walked once (the plugin's model: states and await points) and the
 * detectors run on it. Tasks are ranked by samples: a task seen on a worker
 * in every sample of an interval used one core.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/session.h"
#include "lua/binding.h"
#include "profile/record.h"
#include "report/bt.h"
#include "report/diagnose.h"
#include "util/clock.h"
#include "util/duration.h"
#include "util/grow.h"
#include "util/interrupt.h"
#include "util/map.h"
#include "value/program.h"

static const char top_help[] =
	"usage: taskdbg top [--interval D] [--rate HZ] [--json --once] [--plugins DIR] PID\n"
	"\n"
	"A live view of a process by async task, refreshed every interval; q quits.\n"
	"Tasks are ranked by CPU (the share of samples in which a worker polled them:\n"
	"100% is one core), each with its state, where it awaits, the worker it ran on\n"
	"and the polls seen; then each worker's busy share (sampled, and from the runtime's\n"
	"own counters where it keeps them: tokio >= 1.45), the threads by what they do, and\n"
	"warnings: a task seen running for over 1 s without a break (a poll that never\n"
	"yields), and what diagnose finds (a lost waker, a deadlock, ...).\n"
	"\n"
	"  --interval D            time between refreshes (default 1s)\n"
	"  --rate HZ               samples per second (default 99; each one a short stop)\n"
	"  --once                  one interval, print, exit\n"
	TD_SESSION_HELP_JSON
	"  --plugins DIR           look for runtime plugins in DIR first\n"
	"  --help                  this text\n";

/* A task seen in samples. */
struct seen_task {
	long long id;
	char name[256];
	uint64_t samples;       /* this interval */
	pid_t worker;           /* the thread it was last seen on */
	uint64_t polls;         /* runs seen: samples where its worker was not on it the sample before */
	uint64_t run_start_ns;  /* the current unbroken run on worker */
	uint64_t longest_run_ns;
};

/* A thread's samples this interval. */
struct seen_thread {
	pid_t tid;
	char name[16];
	enum td_sample_kind kind;
	uint64_t samples, busy;
	long long last_task;    /* the task it polled at its last sample, or -1 */
	char doing[128];        /* what its last sample shows: a task, [scheduler], a system call */
};

struct top_job {
	struct td_session *s;
	double interval_ms, rate;
	bool once;
	char *detectors;
	struct seen_task *tasks;
	size_t ntasks, tasks_cap;
	struct td_map task_index;   /* id -> index + 1 */
	struct seen_thread *threads;
	size_t nthreads, threads_cap;
	uint64_t samples, stops;
	struct json_object *model, *findings;
	struct td_record_stats stats;
	/* Worker counters at the previous refresh (the runtime's own metrics), by tid. */
	struct td_map busy_before, when_before;
	struct td_recorder *rec;
};

static int top_option(struct td_session *s, int c, const char *arg, void *ctx)
{
	struct top_job *job = ctx;
	char *end;
	if (c == 'i' && !td_parse_duration_ms(arg, &job->interval_ms))
		return td_cli_usage(s->command, "bad duration '%s' (write e.g. 500ms or 2s)", arg);
	if (c == 'r') {
		job->rate = strtod(arg, &end);
		if (*end || job->rate < 1 || job->rate > 1000)
			return td_cli_usage(s->command, "bad rate '%s' (a number of Hz from 1 to 1000)", arg);
	}
	if (c == 'o')
		job->once = true;
	return -1;
}

static struct seen_task *task_for(struct top_job *job, long long id, const char *name)
{
	bool added;
	uint64_t *slot = td_map_put(&job->task_index, (uint64_t)id, &added);
	if (!slot)
		return NULL;
	if (!added)
		return &job->tasks[*slot - 1];
	struct seen_task *grown = td_grow(job->tasks, &job->tasks_cap, job->ntasks + 1, sizeof(*grown));
	if (!grown)
		return NULL;
	job->tasks = grown;
	struct seen_task *t = &job->tasks[job->ntasks++];
	*slot = job->ntasks;
	*t = (struct seen_task){ .id = id, .worker = -1 };
	snprintf(t->name, sizeof(t->name), "%s", name);
	return t;
}

static struct seen_thread *thread_for(struct top_job *job, pid_t tid, const char *name)
{
	for (size_t i = 0; i < job->nthreads; i++)
		if (job->threads[i].tid == tid)
			return &job->threads[i];
	struct seen_thread *grown = td_grow(job->threads, &job->threads_cap, job->nthreads + 1, sizeof(*grown));
	if (!grown)
		return NULL;
	job->threads = grown;
	struct seen_thread *t = &job->threads[job->nthreads++];
	*t = (struct seen_thread){ .tid = tid, .last_task = -1 };
	snprintf(t->name, sizeof(t->name), "%s", name ? name : "?");
	return t;
}

static void on_sample(const struct td_record_sample *s, void *arg)
{
	struct top_job *job = arg;
	const struct td_sample_path *p = s->path;
	job->samples++;
	struct seen_thread *th = thread_for(job, s->tid, s->thread_name);
	if (!th)
		return;
	th->samples++;
	th->kind = p->kind;
	if (!p->idle)
		th->busy++;
	snprintf(th->doing, sizeof(th->doing), "%.120s", p->idle ? (p->leaf[0] ? p->leaf : "idle") : p->root);
	long long prev = th->last_task;
	th->last_task = s->task;
	if (p->kind != TD_SAMPLE_TASK || s->task < 0)
		return;
	struct seen_task *t = task_for(job, s->task, p->name);
	if (!t)
		return;
	t->samples++;
	t->worker = s->tid;
	/*
	 * A run is unbroken while every sample of its worker finds it there,
	 * however far apart they come (a tick skipped while taskdbg was behind,
	 * the walk between refreshes).
	 */
	bool same_run = prev == s->task;
	if (!same_run) {
		t->polls++;
		t->run_start_ns = s->time_ns;
	}
	uint64_t run = s->time_ns - t->run_start_ns;
	if (run > t->longest_run_ns)
		t->longest_run_ns = run;
}

static struct td_error *prepare_before_stop(struct td_snapshot *snap, void *arg)
{
	struct top_job *job = arg;
	struct td_error *err = td_session_runtime(job->s, snap, "prepare");
	if (!err)
		td_cli_reserve_cache(snap, job->s->lua);
	return err;
}

static struct td_error *walk_while_stopped(struct td_snapshot *snap, void *arg)
{
	struct top_job *job = arg;
	(void)snap;
	return td_lua_call_stopped(job->s->lua, "snapshot");
}

static void current_tasks(struct td_snapshot *snap, long long *task, void *arg)
{
	struct top_job *job = arg;
	td_session_current_tasks(job->s, snap, task);
}

/* The walk at the end of an interval: the model, and what the detectors find in it. */
static struct td_error *walk(struct top_job *job)
{
	struct td_session *s = job->s;
	json_object_put(job->model);
	json_object_put(job->findings);
	job->model = job->findings = NULL;
	td_thread_list_destroy(s->threads);
	s->threads = NULL;
	td_lua_release_results(s->lua);
	struct td_snapshot_options so = { .while_stopped = walk_while_stopped, .while_stopped_arg = job };
	struct td_error *err = td_snapshot_retake(s->snap, &so);
	if (!err)
		err = td_session_threads(s);
	if (err)
		return err;
	struct json_object *threads = json_object_new_array(), *opts = json_object_new_object();
	for (size_t i = 0; i < s->threads->count; i++)
		json_object_array_add(threads, td_report_thread_json(&s->threads->threads[i]));
	json_object_object_add(opts, "live", json_object_new_boolean(true));
	json_object_object_add(opts, "window_ms", json_object_new_double(0));
	err = td_lua_diagnose_model(s->lua, job->detectors, threads, opts, &job->model, &job->findings);
	json_object_put(threads);
	json_object_put(opts);
	return err;
}

static struct json_object *get(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;
	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* The model's record of task id, or NULL. */
static struct json_object *model_task(const struct top_job *job, long long id)
{
	struct json_object *runtimes = get(job->model, "runtimes");
	for (size_t r = 0; runtimes && r < json_object_array_length(runtimes); r++) {
		struct json_object *tasks = get(json_object_array_get_idx(runtimes, r), "tasks");
		for (size_t i = 0; tasks && i < json_object_array_length(tasks); i++) {
			struct json_object *t = json_object_array_get_idx(tasks, i), *tid = get(t, "id");
			if (tid && json_object_get_int64(tid) == id)
				return t;
		}
	}
	return NULL;
}

/* Where a task awaits: its innermost level of the program's own code, "file:line". */
static void await_of(struct json_object *t, char *buf, size_t size)
{
	buf[0] = '\0';
	struct json_object *bt = get(t, "backtrace");
	for (size_t i = 0; bt && i < json_object_array_length(bt); i++) {
		struct json_object *l = json_object_array_get_idx(bt, i), *own = get(l, "own");
		if (own && json_object_get_boolean(own) && get(l, "file"))
			snprintf(buf, size, "%s:%d", json_object_get_string(get(l, "file")),
				 json_object_get_int(get(l, "line")));
	}
}

static int by_samples(const void *a, const void *b)
{
	const struct seen_task *x = a, *y = b;
	if (x->samples != y->samples)
		return x->samples < y->samples ? 1 : -1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Tokio's own counters of a worker thread, where the runtime keeps them (model runtimes[].workers). */
static struct json_object *worker_metrics(const struct top_job *job, pid_t tid)
{
	struct json_object *runtimes = get(job->model, "runtimes");
	for (size_t r = 0; runtimes && r < json_object_array_length(runtimes); r++) {
		struct json_object *workers = get(json_object_array_get_idx(runtimes, r), "worker_details");
		for (size_t i = 0; workers && i < json_object_array_length(workers); i++) {
			struct json_object *w = json_object_array_get_idx(workers, i);
			if (json_object_is_type(w, json_type_object) && get(w, "tid") &&
			    json_object_get_int(get(w, "tid")) == tid)
				return w;
		}
	}
	return NULL;
}

/* The busy share the runtime's own counters give since the last refresh, or -1. */
static double true_busy(struct top_job *job, pid_t tid, uint64_t now)
{
	struct json_object *busy = get(worker_metrics(job, tid), "busy_ns");
	if (!busy)
		return -1;
	uint64_t ns = (uint64_t)json_object_get_int64(busy);
	bool added;
	uint64_t *before = td_map_put(&job->busy_before, (uint64_t)tid, &added);
	uint64_t *when = td_map_put(&job->when_before, (uint64_t)tid, &added);
	double share = -1;
	if (before && when && !added && now > *when)
		share = (double)(ns - *before) / (double)(now - *when);
	if (before && when) {
		*before = ns;
		*when = now;
	}
	return share;
}

static double cpu_share(const struct top_job *job, uint64_t samples)
{
	return job->stops ? (double)samples / (double)job->stops : 0;
}

static struct json_object *report_json(struct top_job *job, uint64_t now)
{
	struct json_object *o = json_object_new_object(), *tasks = json_object_new_array();
	json_object_object_add(o, "pid", json_object_new_int(job->s->snap->pid));
	json_object_object_add(o, "interval_ms", json_object_new_double(job->interval_ms));
	json_object_object_add(o, "mode", json_object_new_string(td_record_mode_name(job->stats.mode)));
	json_object_object_add(o, "stops", json_object_new_int64((int64_t)job->stops));
	for (size_t i = 0; i < job->ntasks; i++) {
		struct seen_task *t = &job->tasks[i];
		struct json_object *m = model_task(job, t->id);
		/* Not a task the walk found, and an id of the worker loop's: read at a poll's edge. */
		if (!t->samples || (!m && td_recorder_loop_id(job->rec, t->id)))
			continue;
		struct json_object *jt = json_object_new_object();
		char at[512];
		await_of(m, at, sizeof(at));
		json_object_object_add(jt, "id", json_object_new_int64(t->id));
		json_object_object_add(jt, "name", json_object_new_string(t->name));
		json_object_object_add(jt, "cpu", json_object_new_double(cpu_share(job, t->samples)));
		json_object_object_add(jt, "samples", json_object_new_int64((int64_t)t->samples));
		json_object_object_add(jt, "state", m && get(m, "state") ? json_object_get(get(m, "state"))
									  : json_object_new_string("gone"));
		json_object_object_add(jt, "await", at[0] ? json_object_new_string(at) : NULL);
		json_object_object_add(jt, "worker", json_object_new_int(t->worker));
		json_object_object_add(jt, "polls_seen", json_object_new_int64((int64_t)t->polls));
		json_object_object_add(jt, "longest_run_ms", json_object_new_double((double)t->longest_run_ns / 1e6));
		json_object_array_add(tasks, jt);
	}
	json_object_object_add(o, "tasks", tasks);
	struct json_object *threads = json_object_new_array(), *workers = json_object_new_array();
	for (size_t i = 0; i < job->nthreads; i++) {
		struct seen_thread *th = &job->threads[i];
		struct json_object *jt = json_object_new_object();
		json_object_object_add(jt, "tid", json_object_new_int(th->tid));
		json_object_object_add(jt, "name", json_object_new_string(th->name));
		json_object_object_add(jt, "busy", json_object_new_double(th->samples ? (double)th->busy / (double)th->samples : 0));
		json_object_object_add(jt, "doing", json_object_new_string(th->doing));
		json_object_array_add(threads, jt);
		if (th->kind != TD_SAMPLE_TASK && th->kind != TD_SAMPLE_SCHEDULER)
			continue;
		struct json_object *jw = json_object_new_object(), *metrics = worker_metrics(job, th->tid);
		double share = true_busy(job, th->tid, now);
		json_object_object_add(jw, "tid", json_object_new_int(th->tid));
		json_object_object_add(jw, "busy_sampled", json_object_new_double(th->samples ? (double)th->busy / (double)th->samples : 0));
		json_object_object_add(jw, "busy_metrics", share >= 0 ? json_object_new_double(share) : NULL);
		json_object_object_add(jw, "metrics", metrics ? json_object_get(metrics) : NULL);
		json_object_array_add(workers, jw);
	}
	json_object_object_add(o, "workers", workers);
	json_object_object_add(o, "threads", threads);
	struct json_object *warnings = json_object_new_array();
	for (size_t i = 0; i < job->ntasks; i++) {
		struct seen_task *t = &job->tasks[i];
		if (t->longest_run_ns < 1000000000ull || !t->samples)
			continue;
		char msg[512];
		snprintf(msg, sizeof(msg), "task %lld %s has run %.1f s on thread %d without yielding (one poll)",
			 t->id, t->name, (double)t->longest_run_ns / 1e9, (int)t->worker);
		struct json_object *w = json_object_new_object();
		json_object_object_add(w, "kind", json_object_new_string("long_poll"));
		json_object_object_add(w, "task", json_object_new_int64(t->id));
		json_object_object_add(w, "summary", json_object_new_string(msg));
		json_object_array_add(warnings, w);
	}
	struct json_object *found = td_diagnose_findings(job->findings);
	for (size_t i = 0; found && i < json_object_array_length(found); i++) {
		struct json_object *f = json_object_array_get_idx(found, i), *w = json_object_new_object();
		json_object_object_add(w, "kind", json_object_get(get(f, "kind")));
		json_object_object_add(w, "summary", json_object_get(get(f, "summary")));
		json_object_array_add(warnings, w);
	}
	json_object_object_add(o, "warnings", warnings);
	return o;
}

static const char *str(struct json_object *o, const char *key, const char *dflt)
{
	struct json_object *v = get(o, key);
	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : dflt;
}

static void report_text(FILE *out, struct top_job *job, struct json_object *r, bool tty)
{
	const struct td_snapshot *snap = job->s->snap;
	fprintf(out, "taskdbg top %d (%s): %.1f s, %llu stops at %.0f Hz (%s)%s\n", (int)snap->pid,
		snap->comm ? snap->comm : "?", job->interval_ms / 1000, (unsigned long long)job->stops, job->rate,
		td_record_mode_name(job->stats.mode), tty ? ", q quits" : "");
	struct json_object *workers = get(r, "workers");
	fprintf(out, "\nWORKER      BUSY (sampled)  BUSY (runtime)  PARKS\n");
	for (size_t i = 0; i < json_object_array_length(workers); i++) {
		struct json_object *w = json_object_array_get_idx(workers, i), *m = get(w, "metrics");
		struct json_object *bm = get(w, "busy_metrics");
		char truth[32] = "-", parks[32] = "-";
		if (bm)
			snprintf(truth, sizeof(truth), "%5.1f%%", json_object_get_double(bm) * 100);
		if (get(m, "park_count"))
			snprintf(parks, sizeof(parks), "%lld", (long long)json_object_get_int64(get(m, "park_count")));
		fprintf(out, "%-11d %13.1f%%  %14s  %s\n", json_object_get_int(get(w, "tid")),
			json_object_get_double(get(w, "busy_sampled")) * 100, truth, parks);
	}
	struct json_object *tasks = get(r, "tasks");
	fprintf(out, "\n%-7s %6s  %-8s %-8s %6s  %-40s %s\n", "TASK", "CPU", "STATE", "WORKER", "POLLS", "NAME", "AWAIT");
	for (size_t i = 0; i < json_object_array_length(tasks); i++) {
		struct json_object *t = json_object_array_get_idx(tasks, i);
		fprintf(out, "%-7lld %5.1f%%  %-8s %-8d %6lld  %-40s %s\n", (long long)json_object_get_int64(get(t, "id")),
			json_object_get_double(get(t, "cpu")) * 100, str(t, "state", "?"),
			json_object_get_int(get(t, "worker")), (long long)json_object_get_int64(get(t, "polls_seen")),
			str(t, "name", "?"), str(t, "await", "-"));
	}
	struct json_object *threads = get(r, "threads");
	fprintf(out, "\n%-9s %-16s %6s  %s\n", "THREAD", "NAME", "BUSY", "LAST SEEN");
	for (size_t i = 0; i < json_object_array_length(threads); i++) {
		struct json_object *t = json_object_array_get_idx(threads, i);
		fprintf(out, "%-9d %-16s %5.1f%%  %s\n", json_object_get_int(get(t, "tid")), str(t, "name", "?"),
			json_object_get_double(get(t, "busy")) * 100, str(t, "doing", ""));
	}
	struct json_object *warnings = get(r, "warnings");
	if (json_object_array_length(warnings))
		fprintf(out, "\nWARNINGS\n");
	for (size_t i = 0; i < json_object_array_length(warnings); i++) {
		struct json_object *w = json_object_array_get_idx(warnings, i);
		fprintf(out, "  %s: %s\n", str(w, "kind", "?"), str(w, "summary", ""));
	}
	fflush(out);
}

/* A new interval: counts start again, runs in progress go on. */
static void next_interval(struct top_job *job)
{
	/* What no sample saw in the last interval goes: ended tasks, exited threads. */
	size_t kept = 0;
	td_map_free(&job->task_index);
	job->task_index = (struct td_map){ 0 };
	for (size_t i = 0; i < job->ntasks; i++) {
		if (!job->tasks[i].samples)
			continue;
		job->tasks[kept] = job->tasks[i];
		job->tasks[kept].samples = job->tasks[kept].polls = 0;
		bool added;
		uint64_t *slot = td_map_put(&job->task_index, (uint64_t)job->tasks[kept].id, &added);
		if (slot)
			*slot = kept + 1;
		kept++;
	}
	job->ntasks = kept;
	kept = 0;
	for (size_t i = 0; i < job->nthreads; i++) {
		if (!job->threads[i].samples)
			continue;
		job->threads[kept] = job->threads[i];
		job->threads[kept].samples = job->threads[kept].busy = 0;
		kept++;
	}
	job->nthreads = kept;
	job->samples = 0;
}

static bool quit_key(void)
{
	struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
	char c;
	while (poll(&p, 1, 0) == 1 && read(STDIN_FILENO, &c, 1) == 1)
		if (c == 'q' || c == 'Q')
			return true;
	return false;
}

static struct td_error *top(struct top_job *job)
{
	struct td_session *s = job->s;
	struct td_error *err = td_session_open(s, prepare_before_stop, NULL, job);
	if (err)
		return err;
	if (s->snap->kind != TD_SNAPSHOT_LIVE)
		return td_error_format(TD_ERR_TARGET, "%s is a core file: top watches a live process (give a PID)",
				       s->target);
	if ((err = td_lua_find_detectors(&job->detectors)))
		return err;
	struct td_record_options ro = { .rate = (unsigned)job->rate, .mode = TD_RECORD_PTRACE, .idle = true,
					.current_tasks = current_tasks, .arg = job };
	struct td_recorder *rec;
	if ((err = td_recorder_start(s->snap, &s->frames, &ro, &rec)))
		return err;
	job->rec = rec;
	bool tty = isatty(STDOUT_FILENO) && isatty(STDIN_FILENO) && !job->once && !s->json;
	struct termios saved, raw;
	if (tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
		td_cli_save_terminal();
		raw = saved;
		raw.c_lflag &= ~(ICANON | ECHO);
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	} else {
		tty = false;
	}
	td_interrupted = 0;
	td_interruptible = 1;
	bool quit = false;
	while (!err && !quit && !td_interrupt_pending()) {
		uint64_t end = td_now_ns() + (uint64_t)(job->interval_ms * 1e6);
		next_interval(job);
		struct td_record_stats before;
		td_recorder_stats(rec, &before);
		/* Sample in slices, so q is answered within 100 ms. */
		while (!err && !quit && !td_interrupt_pending() && td_now_ns() < end) {
			uint64_t slice = td_now_ns() + 100000000ull;
			err = td_recorder_run(rec, slice < end ? slice : end, on_sample, job);
			quit = tty && quit_key();
		}
		if (err || quit || td_interrupt_pending())
			break;
		td_recorder_stats(rec, &job->stats);
		job->stops = job->stats.stops - before.stops;
		if ((err = walk(job)))
			break;
		if (job->ntasks)
			qsort(job->tasks, job->ntasks, sizeof(*job->tasks), by_samples);
		/* The index is stale now; next_interval builds it again before the next samples. */
		struct json_object *r = report_json(job, td_now_ns());
		if (s->json)
			printf("%s\n", json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
		else {
			if (tty)
				fputs("\033[H\033[2J", stdout);
			report_text(stdout, job, r, tty);
			if (!tty && !job->once)
				putchar('\n');
		}
		fflush(stdout);
		json_object_put(r);
		if (job->once)
			break;
	}
	td_interruptible = 0;
	if (tty)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	td_recorder_destroy(rec);
	job->rec = NULL;
	return err;
}

int td_cmd_top(int argc, char **argv)
{
	static const struct option options[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "rate", required_argument, NULL, 'r' },
		{ "once", no_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "plugins", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct td_session s = { .command = "top" };
	struct top_job job = { .s = &s, .interval_ms = 1000, .rate = 99 };
	int code = td_session_parse(&s, argc, argv, options, top_help, 1, top_option, &job, NULL);
	if (code != -1)
		return code;
	if (s.json && !job.once)
		return td_cli_usage("top", "--json needs --once (one JSON object, then exit)");
	if (job.interval_ms < 100)
		return td_cli_usage("top", "--interval must be at least 100ms");
	struct td_error *err = td_session_find_plugins(&s, false);
	if (!err)
		err = top(&job);
	json_object_put(job.findings);
	job.findings = NULL;
	json_object_put(job.model);
	job.model = NULL;
	free(job.detectors);
	free(job.tasks);
	free(job.threads);
	td_map_free(&job.task_index);
	td_map_free(&job.busy_before);
	td_map_free(&job.when_before);
	return td_session_end(&s, err, TD_EXIT_OK);
}
