#include "report/bt.h"

#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "debuginfo/source.h"
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
	if (m->unit)
		json_object_object_add(o, "unit", json_object_new_string(m->unit));
	if (m->cmdline)
		json_object_object_add(o, "cmdline", json_object_new_string(m->cmdline));
	json_object_object_add(o, "journal", json_object_new_boolean(m->from_journal));
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
	if (m->hostname) {
		fprintf(out, "%shost %s", sep, m->hostname);
		sep = ", ";
	}
	if (m->unit) {
		fprintf(out, "%sunit %s", sep, m->unit);
		sep = ", ";
	}
	/* Last: it may hold commas. */
	if (m->cmdline)
		fprintf(out, "%scommand line: %s", sep, m->cmdline);
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
		uint64_t offset;
		json_object_object_add(fo, "offset", td_frame_offset(f, &offset) ? json_address(offset) : NULL);
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

static const char *basename_of(const char *path)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	return slash ? slash + 1 : path;
}

void td_report_frame_text(FILE *out, size_t index, const struct td_frame *f)
{
	uint64_t offset;
	bool has_offset = td_frame_offset(f, &offset);
	fprintf(out, "  #%-3zu 0x%016" PRIx64 " in ", index, f->pc);
	if (f->function)
		fputs(f->function, out);
	else if (has_offset)
		fprintf(out, "?? (%s+0x%" PRIx64 ")", f->module, offset);
	else
		fputs("??", out);
	if (f->function && has_offset)
		fprintf(out, "+0x%" PRIx64, offset);
	if (f->inlined)
		fputs(" [inlined]", out);
	if (f->file)
		fprintf(out, " at %s:%d", f->file, f->line);
	else if (f->module && f->function)
		fprintf(out, " from %s", f->module);
	fputc('\n', out);
}

/*
 * Whether frame j is one a folded stack hides: not the innermost, not the
 * program's own code, not the call the program's code made (the frame just
 * inside an own one), and not in an executable without DWARF (where own
 * code cannot be told from its dependencies').
 */
static bool foldable(const struct td_thread_view *v, size_t j, const char *exe)
{
	const struct td_frame *f = &v->frames[j];
	if (j == 0 || f->own || (j + 1 < v->nframes && v->frames[j + 1].own))
		return false;
	return !(f->nodebug && f->module && exe && !strcmp(f->module, exe));
}

/* "tokio, std": the crates (or modules) of frames [from, to), each once, in order, into names. */
static void fold_crates(const struct td_thread_view *v, size_t from, size_t to, char *names, size_t size)
{
	size_t used = 0;
	names[0] = '\0';
	for (size_t j = from; j < to; j++) {
		char crate[128];
		const char *name = crate;
		if (!td_source_crate(v->frames[j].comp_dir, v->frames[j].file, crate, sizeof(crate)))
			name = v->frames[j].module ? v->frames[j].module : "??";
		/* Each name once: look for ", NAME," in ", names,". */
		char probe[160], haystack[600];
		snprintf(probe, sizeof(probe), ", %s,", name);
		snprintf(haystack, sizeof(haystack), ", %s,", names);
		if (strstr(haystack, probe))
			continue;
		int n = snprintf(names + used, size - used, "%s%s", used ? ", " : "", name);
		if (n < 0 || (size_t)n >= size - used) {
			names[used] = '\0';
			break;
		}
		used += (size_t)n;
	}
}

/* The end of the folded run that starts at j (j itself: none starts there). */
static size_t fold_end(const struct td_thread_view *v, size_t j, const char *exe_base)
{
	size_t end = j;
	while (end < v->nframes && foldable(v, end, exe_base))
		end++;
	return end - j >= 2 ? end : j;
}

void td_report_thread_frames_text(FILE *out, const struct td_thread_view *v, const char *exe, bool full)
{
	const char *exe_base = basename_of(exe);
	for (size_t j = 0; j < v->nframes;) {
		size_t end = full ? j : fold_end(v, j, exe_base);
		if (end > j) {
			char names[512];
			fold_crates(v, j, end, names, sizeof(names));
			fprintf(out, "  ... %zu frames in %s\n", end - j, names);
			j = end;
			continue;
		}
		td_report_frame_text(out, j, &v->frames[j]);
		j++;
	}
}

struct json_object *td_report_folds_json(const struct td_thread_view *v, const char *exe)
{
	const char *exe_base = basename_of(exe);
	struct json_object *runs = json_object_new_array();
	for (size_t j = 0; j < v->nframes;) {
		size_t end = fold_end(v, j, exe_base);
		if (end == j) {
			j++;
			continue;
		}
		char names[512];
		fold_crates(v, j, end, names, sizeof(names));
		struct json_object *run = json_object_new_object();
		json_object_object_add(run, "from", json_object_new_int64((int64_t)j));
		json_object_object_add(run, "count", json_object_new_int64((int64_t)(end - j)));
		json_object_object_add(run, "crates", json_object_new_string(names));
		json_object_array_add(runs, run);
		j = end;
	}
	return runs;
}

void td_report_nodebug_note(FILE *out, const struct td_snapshot *snap, const struct td_thread_list *list)
{
	const char *exe_base = basename_of(snap->exe);
	const char *seen[32];
	size_t nseen = 0;
	for (size_t i = 0; i < list->count; i++)
		for (size_t j = 0; j < list->threads[i].nframes; j++) {
			const struct td_frame *f = &list->threads[i].frames[j];
			/* The vDSO has no debug info anywhere: nothing to install. */
			if (!f->nodebug || !f->module || f->module[0] == '[' || !strncmp(f->module, "linux-vdso", 10))
				continue;
			bool known = false;
			for (size_t k = 0; k < nseen && !known; k++)
				known = !strcmp(seen[k], f->module);
			if (!known && nseen < sizeof(seen) / sizeof(seen[0]))
				seen[nseen++] = f->module;
		}
	if (!nseen)
		return;
	fputs("note: no debug info for ", out);
	for (size_t k = 0; k < nseen; k++)
		fprintf(out, "%s%s", k ? ", " : "",
			exe_base && !strcmp(seen[k], exe_base) ? snap->exe : seen[k]);
	fputs(": their frames are named from symbol tables (function+offset), without source lines; "
	      "install their -dbgsym/-dbg packages, set DEBUGINFOD_URLS, or rebuild with debug info "
	      "(Rust: debug = true, no strip; C: -g)\n", out);
}

void td_report_bt_text(FILE *out, const struct td_snapshot *snap, const struct td_thread_list *list, bool full)
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
		td_report_thread_frames_text(out, v, snap->exe, full);
		if (v->truncated)
			fprintf(out, "  ... more than %d frames, the rest cut\n", TD_MAX_FRAMES);
		if (v->unwind_error)
			fprintf(out, "  (stack ends early: %s)\n", v->unwind_error);
	}
}
