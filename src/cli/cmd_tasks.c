/* taskdbg tasks [--json] TARGET: every async task, its state, future and await chain. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "lua/binding.h"
#include "model/threads.h"
#include "report/bt.h"
#include "report/tasks.h"
#include "util/timing.h"

static const char tasks_help[] =
	"usage: taskdbg tasks [--json] [--chains] [--all] [--exe PATH] [--plugins DIR] TARGET\n"
	"\n"
	"List every async task of every runtime in TARGET: id, state, the future it runs,\n"
	"and where it is suspended. The runtime's structures are read while a live target\n"
	"is stopped, through the runtime plugin (plugins/tokio.lua).\n"
	"\n"
	"  --json         one JSON object on stdout (see docs/cli-contract.md)\n"
	"  --chains       show each task's whole chain of .awaits\n"
	"  --all          one line per task even when there are many (default: groups\n"
	"                 tasks suspended at the same place once there are more than 50)\n"
	"  --exe PATH     the executable, when a core file's notes do not lead to it\n"
	"  --plugins DIR  look for runtime plugins in DIR first\n";

struct tasks_job {
	const char *plugin_path;
	struct td_lua *lua;
	struct json_object *model;
};

/* Types, offsets and plugin set-up: everything that does not need the target stopped. */
static struct td_error *prepare_before_stop(struct td_snapshot *snap, void *arg)
{
	struct tasks_job *job = arg;
	struct td_error *err = td_lua_open_plugin(snap, job->plugin_path, "prepare", &job->lua);
	td_timing_mark("plugin prepare");
	if (!err) {
		td_cli_reserve_cache(snap, job->lua);
		td_timing_mark("page cache reserved");
	}
	return err;
}

static struct td_error *walk_while_stopped(struct td_snapshot *snap, void *arg)
{
	struct tasks_job *job = arg;
	(void)snap;
	struct td_error *err = td_lua_call_stopped(job->lua, "snapshot");
	td_timing_mark("runtime walk");
	return err;
}

static struct td_error *write_runtimes(FILE *out, void *lua)
{
	return td_lua_result_write_json(lua, "runtimes", out);
}

static void job_deinit(struct tasks_job *job)
{
	json_object_put(job->model);  /* before the Lua state whose strings it borrows */
	td_lua_destroy(job->lua);
}

int td_cmd_tasks(int argc, char **argv)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "chains", no_argument, NULL, 'c' },
		{ "all", no_argument, NULL, 'a' },
		{ "exe", required_argument, NULL, 'e' },
		{ "plugins", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool json = false;
	struct td_tasks_text_options text = { 0 };
	const char *exe = NULL, *plugins = NULL;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", options, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'c': text.chains = true; break;
		case 'a': text.all = true; break;
		case 'e': exe = optarg; break;
		case 'p': plugins = optarg; break;
		case 'h': fputs(tasks_help, stdout); return TD_EXIT_OK;
		default: return td_cli_usage("tasks", "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind + 1 != argc)
		return td_cli_usage("tasks", optind == argc ? "TARGET is missing" : "too many arguments");

	struct tasks_job job = { 0 };
	char *plugin_path;
	struct td_error *err = td_lua_find_plugin("tokio", plugins, &plugin_path);
	if (err)
		return td_cli_fail(err);
	job.plugin_path = plugin_path;
	struct td_snapshot *snap;
	err = td_cli_snapshot_with(argv[optind], exe, prepare_before_stop, walk_while_stopped, &job, &snap);
	free(plugin_path);
	if (err) {
		job_deinit(&job);
		return td_cli_fail(err);
	}
	/*
	 * The target runs again: what is left is DWARF work (names). JSON goes
	 * out straight from the plugin's tables (a json-c tree of 100,000 tasks
	 * costs more than the rest); the text report reads a json-c model.
	 */
	struct td_thread_list *list = NULL;
	struct td_task_on *on = NULL;
	if (json)
		err = td_lua_call_keep(job.lua, "finish");
	else
		err = td_lua_call_plugin(job.lua, "finish", false, &job.model);
	if (!err)
		err = td_thread_list_build(snap, &list);
	if (!err && json && !(on = calloc(list->count + 1, sizeof(*on))))
		err = &td_enomem;
	if (err) {
		free(on);
		td_thread_list_destroy(list);
		job_deinit(&job);
		td_snapshot_destroy(snap);
		return td_cli_fail(err);
	}
	if (json) {
		size_t non = td_lua_result_tasks_on(job.lua, on, list->count);
		td_report_tasks_json(stdout, snap, list, on, non, write_runtimes, job.lua, &err);
	} else {
		td_report_tasks_text(stdout, snap, list, job.model, &text);
	}
	td_timing_mark("output");
	td_timing_report();
	if (!err)
		td_cli_exit_early(TD_EXIT_OK);
	free(on);
	job_deinit(&job);
	td_thread_list_destroy(list);
	td_snapshot_destroy(snap);
	if (err)
		return td_cli_fail(err);
	return fflush(stdout) == 0 ? TD_EXIT_OK : TD_EXIT_FAILED;
}
