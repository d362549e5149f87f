/* taskdbg tasks [--json] TARGET: every async task, its state, future and await chain. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/session.h"
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
	"is stopped, through the plugin of its runtime (plugins/).\n"
	"\n"
	TD_SESSION_HELP_JSON
	"  --chains                show each task's whole chain of .awaits\n"
	"  --all                   one line per task even when there are many (default: groups\n"
	"                          tasks suspended at the same place once there are more than 50)\n"
	TD_SESSION_HELP;

/* Types, offsets and plugin set-up: everything that does not need the target stopped. */
static struct td_error *prepare_before_stop(struct td_snapshot *snap, void *arg)
{
	struct td_session *s = arg;
	struct td_error *err = td_session_runtime(s, snap, "prepare");
	td_timing_mark("plugin prepare");
	if (!err) {
		td_cli_reserve_cache(snap, s->lua);
		td_timing_mark("page cache reserved");
	}
	return err;
}

static struct td_error *walk_while_stopped(struct td_snapshot *snap, void *arg)
{
	struct td_session *s = arg;
	(void)snap;
	struct td_error *err = td_lua_call_stopped(s->lua, "snapshot");
	td_timing_mark("runtime walk");
	return err;
}

static struct td_error *write_runtimes(FILE *out, void *lua)
{
	return td_lua_result_write_json(lua, "runtimes", out);
}

static int tasks_option(struct td_session *s, int c, const char *arg, void *ctx)
{
	(void)s;
	(void)arg;
	struct td_tasks_text_options *text = ctx;
	if (c == 'c')
		text->chains = true;
	else if (c == 'a')
		text->all = true;
	return -1;
}

int td_cmd_tasks(int argc, char **argv)
{
	static const struct option options[] = {
		TD_SESSION_OPTIONS,
		{ "chains", no_argument, NULL, 'c' },
		{ "all", no_argument, NULL, 'a' },
		{ 0 },
	};
	struct td_session s = { .command = "tasks" };
	struct td_tasks_text_options text = { 0 };
	int code = td_session_parse(&s, argc, argv, options, tasks_help, 1, tasks_option, &text, NULL);
	if (code != -1)
		return code;
	struct td_error *err = td_session_find_plugins(&s, false);
	if (!err)
		err = td_session_open(&s, prepare_before_stop, walk_while_stopped, &s);
	/*
	 * The target runs again: what is left is DWARF work (names). JSON goes
	 * out straight from the plugin's tables (a json-c tree of 100,000 tasks
	 * costs more than the rest); the text report reads a json-c model.
	 */
	if (!err)
		err = s.json ? td_lua_call_keep(s.lua, "finish") : td_lua_call_plugin(s.lua, "finish", false, &s.result);
	if (!err)
		err = td_session_threads(&s);
	struct td_task_on *on = NULL;
	if (!err && s.json && !(on = calloc(s.threads->count + 1, sizeof(*on))))
		err = &td_enomem;
	if (!err && s.json) {
		size_t non = td_lua_result_tasks_on(s.lua, on, s.threads->count);
		td_report_tasks_json(stdout, s.snap, s.threads, on, non, write_runtimes, s.lua, &err);
	} else if (!err) {
		td_report_tasks_text(stdout, s.snap, s.threads, s.result, &text);
	}
	td_timing_mark("output");
	td_timing_report();
	free(on);
	return td_session_end(&s, err, TD_EXIT_OK);
}
