#include "report/tasks.h"

#include <stdlib.h>
#include <string.h>

#include "report/bt.h"

/* More tasks than this in a runtime and the text groups them by where they wait. */
#define TD_GROUP_ABOVE 50

static struct json_object *runtimes_of(struct json_object *model)
{
	struct json_object *r;
	if (model && json_object_object_get_ex(model, "runtimes", &r) &&
	    json_object_is_type(r, json_type_array))
		return r;
	return NULL;
}

void td_report_tasks_json(FILE *out, const struct td_snapshot *snap,
			  const struct td_thread_list *list, const struct td_task_on *on, size_t non,
			  struct td_error *(*write_runtimes)(FILE *out, void *arg), void *arg,
			  struct td_error **err)
{
	struct json_object *target = td_report_target_json(snap);
	struct json_object *threads = json_object_new_array();
	for (size_t i = 0; i < list->count; i++) {
		struct json_object *t = td_report_thread_json(&list->threads[i]);
		for (size_t j = 0; j < non; j++) {
			if (on[j].tid == list->threads[i].thread->tid) {
				json_object_object_add(t, "task", json_object_new_int64(on[j].task));
				break;
			}
		}
		json_object_array_add(threads, t);
	}
	const int flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
	fputs("{\"target\":", out);
	fputs(json_object_to_json_string_ext(target, flags), out);
	fputs(",\"threads\":", out);
	fputs(json_object_to_json_string_ext(threads, flags), out);
	fputs(",\"runtimes\":", out);
	*err = write_runtimes(out, arg);
	fputs("}\n", out);
	json_object_put(target);
	json_object_put(threads);
}

static const char *str(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) && v ? json_object_get_string(v) : NULL;
}

static long long num(struct json_object *o, const char *key, long long dflt)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) && v ? json_object_get_int64(v) : dflt;
}

/* The innermost await of a task: where it waits. */
static struct json_object *innermost(struct json_object *task)
{
	struct json_object *bt;
	if (!json_object_object_get_ex(task, "backtrace", &bt) || !bt ||
	    json_object_array_length(bt) == 0)
		return NULL;
	return json_object_array_get_idx(bt, json_object_array_length(bt) - 1);
}

/* The innermost await in the program's own source (marked own by the plugin), or NULL. */
static struct json_object *innermost_own(struct json_object *task)
{
	struct json_object *bt, *own;
	if (!json_object_object_get_ex(task, "backtrace", &bt) || !bt)
		return NULL;
	for (size_t i = json_object_array_length(bt); i > 0; i--) {
		struct json_object *aw = json_object_array_get_idx(bt, i - 1);
		if (json_object_object_get_ex(aw, "own", &own) && json_object_get_boolean(own) && str(aw, "file"))
			return aw;
	}
	return NULL;
}

static void print_where(FILE *out, struct json_object *aw)
{
	if (!aw)
		return;
	const char *file = str(aw, "file");
	if (file)
		fprintf(out, " at %s:%lld", file, num(aw, "line", 0));
	const char *awaiting = str(aw, "awaiting");
	if (awaiting)
		fprintf(out, " awaiting %s", awaiting);
	long long joined = num(aw, "awaiting_task", -1);
	if (joined >= 0)
		fprintf(out, " (task %lld)", joined);
}

/*
 * A task in its first poll has suspended nowhere yet: its futures all read
 * Unresumed, and only its thread's stack says where it is.
 */
static bool in_first_poll(struct json_object *t)
{
	struct json_object *aw = innermost(t);
	const char *state = str(t, "state"), *aw_state = aw ? str(aw, "state") : NULL;
	return state && strcmp(state, "running") == 0 && aw_state && strcmp(aw_state, "Unresumed") == 0;
}

static bool real(struct json_object *o, const char *key, double *v)
{
	struct json_object *x;
	if (!json_object_object_get_ex(o, key, &x) || !x)
		return false;
	*v = json_object_get_double(x);
	return true;
}

/* "850 ms", "12.5 s", "59m58s", "3h02m" */
static void print_duration(FILE *out, double ms)
{
	double s = ms / 1000;
	if (ms < 1000)
		fprintf(out, "%.0f ms", ms);
	else if (s < 100)
		fprintf(out, "%.1f s", s);
	else if (s < 3600)
		fprintf(out, "%dm%02ds", (int)(s / 60), (int)s % 60);
	else
		fprintf(out, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

/*
 * A timer (a record with a deadline): when it fires (live: the time left; a
 * core records no "now", so its deadline on the monotonic clock). A lock or
 * channel: kind, address, mode.
 */
static bool is_timer(struct json_object *w)
{
	struct json_object *d;
	return json_object_object_get_ex(w, "deadline_ms", &d) && d;
}

static void print_waiting_on(FILE *out, struct json_object *w)
{
	double left, deadline;
	if (is_timer(w)) {
		if (real(w, "remaining_ms", &left)) {
			fprintf(out, left >= 0 ? " (fires in " : " (its deadline passed ");
			print_duration(out, left >= 0 ? left : -left);
			fprintf(out, left >= 0 ? ")" : " ago)");
		} else if (real(w, "deadline_ms", &deadline)) {
			fprintf(out, " (deadline %.3f s on the monotonic clock)", deadline / 1000);
		}
		return;
	}
	if (strcmp(str(w, "kind"), "socket") == 0) {
		/* "(socket fd 10, read, peer 127.0.0.1:46928)" */
		double fd;
		fprintf(out, " (socket");
		if (real(w, "fd", &fd))
			fprintf(out, " fd %d", (int)fd);
		if (str(w, "direction"))
			fprintf(out, ", %s", str(w, "direction"));
		if (str(w, "peer"))
			fprintf(out, ", peer %s", str(w, "peer"));
		else if (str(w, "local"))
			fprintf(out, ", local %s", str(w, "local"));
		fprintf(out, ")");
		return;
	}
	struct json_object *ids;
	if (json_object_object_get_ex(w, "tasks", &ids) && ids && json_object_is_type(ids, json_type_array)) {
		/* A JoinSet: the tasks it joins. */
		size_t n = json_object_array_length(ids);
		fprintf(out, " (%s of %zu task%s", str(w, "kind"), n, n == 1 ? "" : "s");
		for (size_t i = 0; i < n && i < 8; i++)
			fprintf(out, "%s%lld", i ? ", " : ": ", (long long)json_object_get_int64(json_object_array_get_idx(ids, i)));
		fprintf(out, n > 8 ? ", ...)" : ")");
		return;
	}
	double pid;
	if (real(w, "pid", &pid)) {
		fprintf(out, " (%s pid %d)", str(w, "kind"), (int)pid);
		return;
	}
	fprintf(out, " (%s %s%s%s)", str(w, "kind"), str(w, "address") ? str(w, "address") : "",
		str(w, "mode") ? " " : "", str(w, "mode") ? str(w, "mode") : "");
}

/*
 * A task, or (block_on true) the future a thread runs in block_on, which is
 * no task: shown first in its runtime, with its thread in place of an id.
 */
/*
 * A chain of awaits, one per line, outermost first; a future waiting on
 * several branches (select!, join!) shows each pending branch's chain below
 * it, indented, with what its innermost future waits on.
 */
static void print_chain(FILE *out, struct json_object *bt, int indent, int depth)
{
	size_t n = json_object_array_length(bt);
	for (size_t i = 0; i < n; i++) {
		struct json_object *aw = json_object_array_get_idx(bt, i), *kids, *w;
		fprintf(out, "%*s%zu %s", indent, "", i, str(aw, "name"));
		if (str(aw, "state"))
			fprintf(out, " %s", str(aw, "state"));
		print_where(out, aw);
		if (str(aw, "span"))
			fprintf(out, " [span %s]", str(aw, "span"));
		if (json_object_object_get_ex(aw, "waiting_on", &w) && w && str(w, "kind"))
			print_waiting_on(out, w);
		if (!json_object_object_get_ex(aw, "children", &kids) || !kids || depth > 8) {
			fputc('\n', out);
			continue;
		}
		size_t nk = json_object_array_length(kids);
		const char *wait = str(aw, "wait");
		long long branches = num(aw, "branches", (long long)nk);
		if (wait && strcmp(wait, "all") == 0)
			fprintf(out, ", waiting for all of %lld branches (%zu pending):\n", branches, nk);
		else
			fprintf(out, ", waiting for any of %lld branches:\n", branches);
		for (size_t k = 0; k < nk; k++) {
			fprintf(out, "%*sbranch %zu\n", indent + 2, "", k + 1);
			print_chain(out, json_object_array_get_idx(kids, k), indent + 4, depth + 1);
		}
	}
}

/*
 * On one line: the branches a future waits on (select!, join!, a
 * FuturesUnordered), by what each innermost one waits on; branches that
 * wait on the same thing are told once, with their count.
 */
static void print_branches(FILE *out, struct json_object *aw)
{
	struct json_object *kids, *w;
	if (!aw || !json_object_object_get_ex(aw, "children", &kids) || !kids)
		return;
	size_t nk = json_object_array_length(kids);
	const char *wait = str(aw, "wait");
	fprintf(out, ", on %s of %lld branches", wait && strcmp(wait, "all") == 0 ? "all" : "any",
		num(aw, "branches", (long long)nk));
	char *prev = NULL;
	size_t same = 0, said = 0;
	for (size_t k = 0; k <= nk; k++) {
		char *desc = NULL;
		size_t len = 0;
		if (k < nk) {
			struct json_object *chain = json_object_array_get_idx(kids, k);
			size_t n = json_object_array_length(chain);
			struct json_object *last = n ? json_object_array_get_idx(chain, n - 1) : NULL;
			FILE *m = open_memstream(&desc, &len);
			if (!m)
				return;
			if (last && json_object_object_get_ex(last, "waiting_on", &w) && w && str(w, "kind"))
				print_waiting_on(m, w);
			else
				fprintf(m, " (%s)", last ? str(last, "name") : "?");
			fclose(m);
		}
		if (prev && desc && strcmp(prev, desc) == 0) {
			same++;
			free(desc);
			continue;
		}
		if (prev) {
			fprintf(out, "%s", said++ ? ";" : ":");
			if (same > 1)
				fprintf(out, " %zu x", same);
			fputs(prev, out);
			free(prev);
		}
		prev = desc;
		same = 1;
	}
	long long more = num(aw, "more", 0);
	if (more > 0)
		fprintf(out, "; and %lld more", more);
}

static void print_task(FILE *out, struct json_object *t, bool chains, bool block_on)
{
	/* The user's own async fn first (a hyper connection's handler), then the task's own future. */
	const char *name = str(t, "name"), *root = str(t, "root"), *state = str(t, "state");
	if (!state)
		state = "?";
	if (block_on)
		fprintf(out, "  block_on  %-9s %s", state, root ? root : name);
	else
		fprintf(out, "  %6lld  %-9s %s", num(t, "id", 0), state, root ? root : name);
	if (root && name && strcmp(root, name) != 0)
		fprintf(out, " (in %s)", name);
	/* The tracing span it runs in: its own, else the outermost one it awaits through. */
	const char *span = str(t, "span");
	struct json_object *bt0;
	if (!span && json_object_object_get_ex(t, "backtrace", &bt0) && bt0)
		for (size_t i = 0; !span && i < json_object_array_length(bt0); i++)
			span = str(json_object_array_get_idx(bt0, i), "span");
	if (span && str(t, "span_fields"))
		fprintf(out, " [span %s{%s}]", span, str(t, "span_fields"));
	else if (span)
		fprintf(out, " [span %s]", span);
	if (block_on)
		fprintf(out, " (on thread %lld)", num(t, "thread", 0));
	long long on = num(t, "running_on", -1);
	if (on >= 0)
		fprintf(out, " (on thread %lld)", on);
	if (in_first_poll(t)) {
		fprintf(out, ", in its first poll: `taskdbg bt` shows where\n");
		return;
	}
	struct json_object *last = innermost(t);
	if (last && str(last, "state") && strcmp(str(last, "state"), "Unresumed") == 0) {
		fprintf(out, ", not started yet\n");
		return;
	}
	if (!chains) {
		/* Where in the user's code (its innermost own .await), and what the innermost future awaits. */
		struct json_object *own = innermost_own(t);
		if (own && own != last) {
			fprintf(out, " at %s:%lld", str(own, "file"), num(own, "line", 0));
			if (str(last, "awaiting"))
				fprintf(out, " awaiting %s", str(last, "awaiting"));
			if (num(last, "awaiting_task", -1) >= 0)
				fprintf(out, " (task %lld)", num(last, "awaiting_task", -1));
		} else {
			print_where(out, last);
		}
		print_branches(out, last);
	}
	/* What it waits on, followed through the awaited future: a lock, a channel, a timer. */
	struct json_object *w;
	if (json_object_object_get_ex(t, "waiting_on", &w) && w && str(w, "kind"))
		print_waiting_on(out, w);
	/* Awaited inside timeout(): when that gives up (unless the timer is what it waits on, shown just above). */
	double left, deadline;
	bool on_timer = json_object_object_get_ex(t, "waiting_on", &w) && w && is_timer(w);
	if (!on_timer && json_object_object_get_ex(t, "timeout", &w) && w) {
		if (real(w, "remaining_ms", &left)) {
			fprintf(out, left >= 0 ? " [timeout in " : " [timeout overdue by ");
			print_duration(out, left >= 0 ? left : -left);
			fputc(']', out);
		} else if (real(w, "deadline_ms", &deadline)) {
			fprintf(out, " [timeout at %.3f s on the monotonic clock]", deadline / 1000);
		}
	}
	fputc('\n', out);
	struct json_object *bt;
	if (chains && json_object_object_get_ex(t, "backtrace", &bt) && bt)
		print_chain(out, bt, 10, 0);
	const char *error = str(t, "error");
	if (error)
		fprintf(out, "          (could not decode its future: %s)\n", error);
}

struct group {
	char *key;
	struct json_object *first;
	size_t count;
};

static void print_grouped(FILE *out, struct json_object *tasks)
{
	size_t n = json_object_array_length(tasks), ngroups = 0;
	struct group *groups = calloc(n ? n : 1, sizeof(*groups));
	if (!groups)
		return;
	for (size_t i = 0; i < n; i++) {
		struct json_object *t = json_object_array_get_idx(tasks, i), *aw = innermost(t);
		char *key;
		if (asprintf(&key, "%s|%s|%s:%lld", str(t, "state"), str(t, "name"),
			     aw && str(aw, "file") ? str(aw, "file") : "", aw ? num(aw, "line", 0) : 0) < 0)
			continue;
		size_t g = 0;
		while (g < ngroups && strcmp(groups[g].key, key) != 0)
			g++;
		if (g == ngroups)
			groups[ngroups++] = (struct group){ key, t, 0 };
		else
			free(key);
		groups[g].count++;
	}
	for (size_t g = 0; g < ngroups; g++) {
		struct json_object *t = groups[g].first;
		fprintf(out, "  %6zu× %-9s %s", groups[g].count, str(t, "state"), str(t, "name"));
		print_where(out, innermost(t));
		fprintf(out, "  (e.g. task %lld)\n", num(t, "id", 0));
		free(groups[g].key);
	}
	free(groups);
}

void td_report_tasks_text(FILE *out, const struct td_snapshot *snap,
			  const struct td_thread_list *list, struct json_object *model,
			  const struct td_tasks_text_options *opts)
{
	(void)list;
	struct json_object *runtimes = runtimes_of(model);
	size_t nr = runtimes ? json_object_array_length(runtimes) : 0;
	if (snap->kind == TD_SNAPSHOT_LIVE)
		fprintf(out, "process %d (%s), %zu thread%s, stopped for %.3f ms\n", (int)snap->pid,
			snap->comm ? snap->comm : "?", snap->nthreads, snap->nthreads == 1 ? "" : "s",
			(double)snap->stopped_ns / 1e6);
	else
		fprintf(out, "core %s of process %d (%s)\n", snap->core_path, (int)snap->pid,
			snap->comm ? snap->comm : "?");
	td_report_coredump_text(out, snap);
	if (nr == 0) {
		struct json_object *why;
		fprintf(out, "no async runtime found: %s\n",
			model && json_object_object_get_ex(model, "none_found", &why) && json_object_is_type(why, json_type_string)
			? json_object_get_string(why) : "no thread has entered one");
		return;
	}
	for (size_t i = 0; i < nr; i++) {
		struct json_object *rt = json_object_array_get_idx(runtimes, i), *tasks, *workers;
		json_object_object_get_ex(rt, "tasks", &tasks);
		json_object_object_get_ex(rt, "workers", &workers);
		size_t nt = tasks ? json_object_array_length(tasks) : 0;
		fprintf(out, "\nruntime %lld (%s), %zu task%s, workers:", num(rt, "id", 0),
			str(rt, "flavor"), nt, nt == 1 ? "" : "s");
		for (size_t w = 0; workers && w < json_object_array_length(workers); w++)
			fprintf(out, " %d", json_object_get_int(json_object_array_get_idx(workers, w)));
		fputc('\n', out);
		struct json_object *block_on;
		if (json_object_object_get_ex(rt, "block_on", &block_on) && block_on)
			for (size_t b = 0; b < json_object_array_length(block_on); b++)
				print_task(out, json_object_array_get_idx(block_on, b), opts->chains, true);
		if (nt > TD_GROUP_ABOVE && !opts->all && !opts->chains) {
			print_grouped(out, tasks);
			continue;
		}
		for (size_t j = 0; j < nt; j++)
			print_task(out, json_object_array_get_idx(tasks, j), opts->chains, false);
	}
}
