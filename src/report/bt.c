#include "report/bt.h"

#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "target/syscalls.h"

static struct json_object *json_string_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static struct json_object *json_address(uint64_t addr)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "0x%" PRIx64, addr);
	return json_object_new_string(buf);
}

static const struct td_coredump_meta *coredump_of(const struct td_snapshot *snap)
{
	return snap->kind == TD_SNAPSHOT_CORE && snap->core && snap->core->coredump.present
		? &snap->core->coredump : NULL;
}

/* "SIGABRT"; NULL for a number that is no signal. */
static const char *signal_name(long long sig, char *buf, size_t size)
{
	const char *abbrev = sig > 0 && sig < 65 ? sigabbrev_np((int)sig) : NULL;
	if (!abbrev)
		return NULL;
	snprintf(buf, size, "SIG%s", abbrev);
	return buf;
}

/* systemd's timestamp (microseconds since the epoch) as a time of day. */
static bool coredump_time(long long usec, bool utc, char *buf, size_t size)
{
	time_t t = (time_t)(usec / 1000000);
	struct tm tm;
	if (!(utc ? gmtime_r(&t, &tm) : localtime_r(&t, &tm)))
		return false;
	return strftime(buf, size, utc ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M:%S %Z", &tm) > 0;
}

static struct json_object *coredump_json(const struct td_coredump_meta *m)
{
	struct json_object *o = json_object_new_object();
	const struct { const char *key; long long v; } numbers[] = {
		{ "pid", m->pid }, { "uid", m->uid }, { "gid", m->gid }, { "signal", m->signal },
		{ "timestamp_us", m->timestamp_us } };
	for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++)
		if (numbers[i].v >= 0)
			json_object_object_add(o, numbers[i].key, json_object_new_int64(numbers[i].v));
	char buf[64];
	if (m->signal >= 0 && signal_name(m->signal, buf, sizeof(buf)))
		json_object_object_add(o, "signal_name", json_object_new_string(buf));
	if (m->timestamp_us >= 0 && coredump_time(m->timestamp_us, true, buf, sizeof(buf)))
		json_object_object_add(o, "time", json_object_new_string(buf));
	if (m->has_rlimit)
		json_object_object_add(o, "rlimit", json_object_new_uint64(m->rlimit));
	if (m->comm)
		json_object_object_add(o, "comm", json_object_new_string(m->comm));
	if (m->exe)
		json_object_object_add(o, "exe", json_object_new_string(m->exe));
	if (m->hostname)
		json_object_object_add(o, "hostname", json_object_new_string(m->hostname));
	return o;
}

void td_report_coredump_text(FILE *out, const struct td_snapshot *snap)
{
	const struct td_coredump_meta *m = coredump_of(snap);
	if (!m)
		return;
	const char *sep = " ";
	char buf[64];
	fputs("systemd-coredump:", out);
	if (m->signal >= 0) {
		const char *name = signal_name(m->signal, buf, sizeof(buf));
		fprintf(out, "%ssignal %lld%s%s%s", sep, m->signal, name ? " (" : "", name ? name : "",
			name ? ")" : "");
		sep = ", ";
	}
	if (m->timestamp_us >= 0 && coredump_time(m->timestamp_us, false, buf, sizeof(buf))) {
		fprintf(out, "%s %s", m->signal >= 0 ? " at" : " dumped at", buf);
		sep = ", ";
	}
	if (m->pid >= 0 || m->comm) {
		if (m->pid >= 0)
			fprintf(out, "%spid %lld%s%s%s", sep, m->pid, m->comm ? " (" : "",
				m->comm ? m->comm : "", m->comm ? ")" : "");
		else
			fprintf(out, "%scommand %s", sep, m->comm);
		sep = ", ";
	}
	if (m->uid >= 0) {
		fprintf(out, "%suid %lld", sep, m->uid);
		sep = ", ";
	}
	if (m->gid >= 0) {
		fprintf(out, "%sgid %lld", sep, m->gid);
		sep = ", ";
	}
	if (m->exe) {
		fprintf(out, "%sexe %s", sep, m->exe);
		sep = ", ";
	}
	if (m->hostname)
		fprintf(out, "%shost %s", sep, m->hostname);
	fputc('\n', out);
}

struct json_object *td_report_target_json(const struct td_snapshot *snap)
{
	struct json_object *t = json_object_new_object();
	bool live = snap->kind == TD_SNAPSHOT_LIVE;
	json_object_object_add(t, "kind", json_object_new_string(live ? "process" : "core"));
	json_object_object_add(t, "pid", json_object_new_int(snap->pid));
	if (!live)
		json_object_object_add(t, "core", json_string_or_null(snap->core_path));
	json_object_object_add(t, "exe", json_string_or_null(snap->exe));
	json_object_object_add(t, "name", json_string_or_null(snap->comm));
	json_object_object_add(t, "threads", json_object_new_int((int)snap->nthreads));
	if (live)
		json_object_object_add(t, "stopped_us",
				       json_object_new_int64((int64_t)(snap->stopped_ns / 1000)));
	if (!live && snap->core && snap->core->compression)
		json_object_object_add(t, "compression",
				       json_object_new_string(td_compression_name(snap->core->compression)));
	const struct td_coredump_meta *m = coredump_of(snap);
	if (m)
		json_object_object_add(t, "coredump", coredump_json(m));
	return t;
}

struct json_object *td_report_thread_json(const struct td_thread_view *v)
{
	const struct td_snapshot_thread *t = v->thread;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "tid", json_object_new_int(t->tid));
	json_object_object_add(o, "name", t->has_name ? json_object_new_string(t->name) : NULL);
	char state[2] = { t->state, '\0' };
	json_object_object_add(o, "state", t->state ? json_object_new_string(state) : NULL);
	json_object_object_add(o, "role", json_object_new_string(td_thread_role_name(v->role)));
	json_object_object_add(o, "syscall", json_string_or_null(td_syscall_name(v->syscall)));
	json_object_object_add(o, "task", v->task >= 0 ? json_object_new_int64(v->task) : NULL);
	struct json_object *frames = json_object_new_array();
	for (size_t i = 0; i < v->nframes; i++) {
		const struct td_frame *f = &v->frames[i];
		struct json_object *fo = json_object_new_object();
		json_object_object_add(fo, "pc", json_address(f->pc));
		json_object_object_add(fo, "function", json_string_or_null(f->function));
		json_object_object_add(fo, "file", json_string_or_null(f->file));
		json_object_object_add(fo, "line", f->line ? json_object_new_int(f->line) : NULL);
		json_object_object_add(fo, "inlined", json_object_new_boolean(f->inlined));
		json_object_object_add(fo, "own", json_object_new_boolean(f->own));
		json_object_object_add(fo, "module", json_string_or_null(f->module));
		json_object_array_add(frames, fo);
	}
	json_object_object_add(o, "frames", frames);
	if (v->unwind_error)
		json_object_object_add(o, "unwind_error", json_object_new_string(v->unwind_error));
	if (v->truncated)
		json_object_object_add(o, "truncated", json_object_new_boolean(true));
	return o;
}

void td_report_bt_json(FILE *out, const struct td_snapshot *snap, const struct td_thread_list *list)
{
	struct json_object *root = json_object_new_object();
	json_object_object_add(root, "target", td_report_target_json(snap));
	struct json_object *threads = json_object_new_array();
	for (size_t i = 0; i < list->count; i++)
		json_object_array_add(threads, td_report_thread_json(&list->threads[i]));
	json_object_object_add(root, "threads", threads);
	fputs(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), out);
	fputc('\n', out);
	json_object_put(root);
}

static const char *state_word(char state)
{
	switch (state) {
	case 'R': return "running";
	case 'S': return "sleeping";
	case 'D': return "uninterruptible";
	case 'T': return "stopped";
	case 't': return "traced";
	case 'Z': return "zombie";
	default: return NULL;
	}
}

void td_report_bt_text(FILE *out, const struct td_snapshot *snap, const struct td_thread_list *list)
{
	if (snap->kind == TD_SNAPSHOT_LIVE)
		fprintf(out, "process %d (%s), %zu thread%s, stopped for %.3f ms\n",
			(int)snap->pid, snap->comm ? snap->comm : "?", snap->nthreads,
			snap->nthreads == 1 ? "" : "s", (double)snap->stopped_ns / 1e6);
	else
		fprintf(out, "core %s of process %d (%s), %zu thread%s\n", snap->core_path,
			(int)snap->pid, snap->comm ? snap->comm : "?", snap->nthreads,
			snap->nthreads == 1 ? "" : "s");
	td_report_coredump_text(out, snap);
	for (size_t i = 0; i < list->count; i++) {
		const struct td_thread_view *v = &list->threads[i];
		const struct td_snapshot_thread *t = v->thread;
		fprintf(out, "\nthread %d", (int)t->tid);
		if (t->has_name)
			fprintf(out, " \"%s\"", t->name);
		fprintf(out, " (%s", td_thread_role_name(v->role));
		if (state_word(t->state))
			fprintf(out, ", %s", state_word(t->state));
		const char *sc = td_syscall_name(v->syscall);
		if (sc)
			fprintf(out, ", in %s()", sc);
		if (v->task >= 0)
			fprintf(out, ", polling task %lld", v->task);
		fputs(")\n", out);
		for (size_t j = 0; j < v->nframes; j++) {
			const struct td_frame *f = &v->frames[j];
			fprintf(out, "  #%-3zu 0x%016" PRIx64 " in %s", j, f->pc,
				f->function ? f->function : "??");
			if (f->inlined)
				fputs(" [inlined]", out);
			if (f->file)
				fprintf(out, " at %s:%d", f->file, f->line);
			else if (f->module)
				fprintf(out, " from %s", f->module);
			fputc('\n', out);
		}
		if (v->truncated)
			fprintf(out, "  ... more than %d frames, the rest cut\n", TD_MAX_FRAMES);
		if (v->unwind_error)
			fprintf(out, "  (stack ends early: %s)\n", v->unwind_error);
	}
}
