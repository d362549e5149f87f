#include "report/diagnose.h"

#include <inttypes.h>
#include <string.h>

#include "report/bt.h"

struct json_object *td_diagnose_findings(struct json_object *result)
{
	struct json_object *f;
	if (result && json_object_object_get_ex(result, "findings", &f) &&
	    json_object_is_type(f, json_type_array))
		return f;
	return NULL;
}

static struct json_object *get(struct json_object *o, const char *key)
{
	struct json_object *v;
	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static const char *str(struct json_object *o, const char *key)
{
	struct json_object *v = get(o, key);
	return v ? json_object_get_string(v) : NULL;
}

static size_t length(struct json_object *a)
{
	return a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

void td_report_diagnose_json(FILE *out, const struct td_snapshot *snap,
			     const struct td_diagnose_run *run, struct json_object *result)
{
	struct json_object *root = json_object_new_object();
	struct json_object *findings = td_diagnose_findings(result);
	json_object_object_add(root, "target", td_report_target_json(snap));
	json_object_object_add(root, "window_ms", json_object_new_int64((int64_t)run->window_ms));
	json_object_object_add(root, "snapshots", json_object_new_int((int)run->snapshots));
	if (snap->kind == TD_SNAPSHOT_LIVE)
		json_object_object_add(root, "max_stopped_us", json_object_new_int64((int64_t)run->max_stopped_us));
	json_object_object_add(root, "findings", findings ? json_object_get(findings) : json_object_new_array());
	fputs(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), out);
	fputc('\n', out);
	json_object_put(root);
}

static void print_header(FILE *out, const struct td_snapshot *snap, const struct td_diagnose_run *run)
{
	if (snap->kind == TD_SNAPSHOT_LIVE)
		fprintf(out, "process %d (%s): watched %.1f s, %u snapshots, longest stop %.2f ms\n",
			(int)snap->pid, snap->comm ? snap->comm : "?", run->window_ms / 1000,
			run->snapshots, (double)run->max_stopped_us / 1000);
	else
		fprintf(out, "core file %s (process %d, %s): one snapshot\n",
			snap->core_path ? snap->core_path : "?", (int)snap->pid,
			snap->comm ? snap->comm : "?");
	td_report_coredump_text(out, snap);
}

static void print_list(FILE *out, const char *label, struct json_object *items)
{
	size_t n = length(items);
	if (!n)
		return;
	fprintf(out, "   %-10s", label);
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(items, i);
		fputs(i ? ", " : "", out);
		if (json_object_is_type(e, json_type_object)) {
			const char *name = str(e, "name"), *kind = str(e, "kind");
			struct json_object *id = get(e, "id");
			if (id && str(e, "root"))  /* the user's async fn first, as tasks shows it */
				fprintf(out, "%s %s", json_object_get_string(id), str(e, "root"));
			else if (id)
				fprintf(out, "%s %s", json_object_get_string(id), name ? name : "?");
			else
				fprintf(out, "%s %s", kind ? kind : "?", str(e, "address") ? str(e, "address") : "");
		} else {
			fputs(json_object_get_string(e), out);
		}
	}
	fputc('\n', out);
}

void td_report_diagnose_text(FILE *out, const struct td_snapshot *snap,
			     const struct td_diagnose_run *run, struct json_object *result)
{
	struct json_object *findings = td_diagnose_findings(result);
	size_t n = length(findings);
	print_header(out, snap, run);
	struct json_object *tasks = get(result, "tasks"), *runtimes = get(result, "runtimes");
	int64_t nt = tasks ? json_object_get_int64(tasks) : 0, nr = runtimes ? json_object_get_int64(runtimes) : 0;
	if (!n) {
		fprintf(out, "No problem found in %" PRId64 " task%s of %" PRId64 " runtime%s and %zu thread%s.\n",
			nt, nt == 1 ? "" : "s", nr, nr == 1 ? "" : "s", run->threads,
			run->threads == 1 ? "" : "s");
		return;
	}
	fprintf(out, "%zu problem%s found (%" PRId64 " task%s, %zu thread%s), most severe first:\n",
		n, n == 1 ? "" : "s", nt, nt == 1 ? "" : "s", run->threads, run->threads == 1 ? "" : "s");
	for (size_t i = 0; i < n; i++) {
		struct json_object *f = json_object_array_get_idx(findings, i);
		fprintf(out, "\n%zu. %s: %s\n", i + 1, str(f, "kind") ? str(f, "kind") : "?",
			str(f, "summary") ? str(f, "summary") : "");
		print_list(out, "tasks:", get(f, "tasks"));
		print_list(out, "threads:", get(f, "threads"));
		print_list(out, "resources:", get(f, "resources"));
		struct json_object *evidence = get(f, "evidence");
		for (size_t j = 0; j < length(evidence); j++)
			fprintf(out, "     %s\n", json_object_get_string(json_object_array_get_idx(evidence, j)));
		const char *fix = str(f, "fix");
		if (fix)
			fprintf(out, "   fix: %s\n", fix);
	}
}
