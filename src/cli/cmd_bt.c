/* taskdbg bt [--json] [--exe PATH] TARGET: every thread's stack, then exit. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "lua/binding.h"
#include "model/threads.h"
#include "report/bt.h"
#include "util/timing.h"

static const char bt_help[] =
	"usage: taskdbg bt [--json] [--exe PATH] TARGET\n"
	"\n"
	"Print every thread's stack (inline frames expanded, with source lines), then exit.\n"
	"TARGET is a process id or a core file. A live process is stopped only while its\n"
	"registers and stack tops are copied (well under a millisecond), then runs on.\n"
	"\n"
	"  --json       one JSON object on stdout (see docs/CLI.md)\n"
	"  --exe PATH   the executable, when a core file's notes do not lead to it\n"
	"  --help       this text\n";

/*
 * The task each thread polls comes from the runtime plugin's thread-locals,
 * read during the stop. It is a nicety: if the plugin cannot help (no tokio,
 * no plugin), bt goes on with task null.
 */
struct bt_job {
	char *plugin_path;
	struct td_lua *lua;
	struct json_object *current;   /* [{tid, task}] */
};

static struct td_error *bt_before_stop(struct td_snapshot *snap, void *arg)
{
	struct bt_job *job = arg;
	if (job->plugin_path)
		td_error_destroy(td_lua_open_plugin(snap, job->plugin_path, "prepare_threads", &job->lua));
	return NULL;
}

/*
 * After the stop: each thread's TLS block was copied during it, so CONTEXT
 * reads still give what the thread was polling then, and the target does not
 * wait for them.
 */
static void bt_current_tasks(struct bt_job *job)
{
	if (!job->lua)
		return;
	struct td_error *err = td_lua_call_plugin(job->lua, "current_tasks", false, &job->current);
	td_error_destroy(err);
}

static void bt_job_deinit(struct bt_job *job)
{
	json_object_put(job->current);  /* before the Lua state whose strings it borrows */
	td_lua_destroy(job->lua);
	free(job->plugin_path);
}

static void assign_tasks(struct td_thread_list *list, struct json_object *current)
{
	size_t n = current && json_object_is_type(current, json_type_array)
		? json_object_array_length(current) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(current, i), *tid, *task;
		if (!json_object_object_get_ex(e, "tid", &tid) || !json_object_object_get_ex(e, "task", &task))
			continue;
		for (size_t t = 0; t < list->count; t++) {
			struct td_thread_view *v = &list->threads[t];
			if (v->thread->tid == json_object_get_int(tid) && td_thread_polls_async_task(v))
				v->task = json_object_get_int64(task);
		}
	}
}

int td_cmd_bt(int argc, char **argv)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "exe", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool json = false;
	const char *exe = NULL;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", options, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'e': exe = optarg; break;
		case 'h': fputs(bt_help, stdout); return TD_EXIT_OK;
		default:
			return td_cli_usage("bt", "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind + 1 != argc)
		return td_cli_usage("bt", optind == argc ? "TARGET is missing" : "too many arguments");

	struct bt_job job = { 0 };
	struct td_error *perr = td_lua_find_plugin("tokio", NULL, &job.plugin_path);
	td_error_destroy(perr);
	struct td_snapshot *snap;
	struct td_error *err = td_cli_snapshot_with(argv[optind], exe, bt_before_stop, NULL, &job, &snap);
	if (err) {
		bt_job_deinit(&job);
		return td_cli_fail(err);
	}
	struct td_thread_list *list;
	err = td_thread_list_build(snap, &list);
	if (err) {
		bt_job_deinit(&job);
		td_snapshot_destroy(snap);
		return td_cli_fail(err);
	}
	bt_current_tasks(&job);
	assign_tasks(list, job.current);
	if (json)
		td_report_bt_json(stdout, snap, list);
	else
		td_report_bt_text(stdout, snap, list);
	td_timing_mark("output");
	bt_job_deinit(&job);
	td_thread_list_destroy(list);
	td_snapshot_destroy(snap);
	td_timing_mark("cleanup");
	td_timing_report();
	return fflush(stdout) == 0 ? TD_EXIT_OK : TD_EXIT_FAILED;
}
