/* taskdbg run SCRIPT.lua TARGET [ARG...]: a Lua diagnosis script against a target. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/session.h"
#include "lua/binding.h"
#include "value/program.h"

static const char run_help[] =
	"usage: taskdbg run [--exe PATH] SCRIPT.lua TARGET [ARG...]\n"
	"\n"
	"Run a Lua script against TARGET, in the same sandbox as runtime plugins (see\n"
	"docs/plugins.md): the `td` table reads the target; `args` holds the ARGs. The\n"
	"script runs while a live target is stopped, so it gets 2 s (60 s on a core).\n"
	"If it returns a table, that table is printed as JSON.\n";

struct run_job {
	const char *script;
	char **args;
	int nargs;
	char *output;   /* the script's result as JSON text, or NULL */
};

static struct td_error *run_while_stopped(struct td_snapshot *snap, void *arg)
{
	struct run_job *job = arg;
	struct td_program *prog;
	struct td_error *err = td_program_create(snap, &prog);
	if (err)
		return err;
	struct td_lua *lua;
	if (!(err = td_lua_create(prog, &lua))) {
		struct json_object *result = NULL;
		err = td_lua_run_script(lua, job->script, job->args, job->nargs,
					snap->kind == TD_SNAPSHOT_LIVE, &result);
		/* As text before the Lua state goes: the JSON borrows its strings. */
		if (result) {
			job->output = strdup(json_object_to_json_string_ext(result,
				JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
			json_object_put(result);
		}
		td_lua_destroy(lua);
	}
	td_program_destroy(prog);
	return err;
}

int td_cmd_run(int argc, char **argv)
{
	static const struct option options[] = {
		{ "exe", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct td_session s = { .command = "run" };
	int first;
	int code = td_session_parse(&s, argc, argv, options, run_help, 0, NULL, NULL, &first);
	if (code != -1)
		return code;
	if (argc - first < 2)
		return td_cli_usage("run", "SCRIPT.lua and TARGET are needed");
	struct run_job job = { argv[first], argv + first + 2, argc - first - 2, NULL };
	s.target = argv[first + 1];
	struct td_error *err = td_session_open(&s, NULL, run_while_stopped, &job);
	if (!err && job.output)
		puts(job.output);
	free(job.output);
	return td_session_end(&s, err, TD_EXIT_OK);
}
