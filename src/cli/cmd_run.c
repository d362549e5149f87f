/* taskdbg run SCRIPT.lua TARGET [ARG...]: a user's Lua script against a target (docs/lua-api.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "interactive/hold.h"
#include "lua/binding.h"
#include "util/interrupt.h"

static const char run_help[] =
	"usage: taskdbg run [--exe PATH] [--plugins DIR] SCRIPT.lua TARGET [ARG...]\n"
	"\n"
	"Run a Lua script against TARGET (a process id or a core file) with the API of\n"
	"docs/lua-api.md: the `taskdbg` table (snapshots, threads, tasks, await trees,\n"
	"resources, diagnose, JSON, dump) and `td` (typed reads), plus Lua's io and os.\n"
	"One snapshot is taken before the script starts; a live target runs while the\n"
	"script does, and taskdbg.refresh() takes another. `arg` holds the ARGs.\n"
	"Exit status: the integer the script returns (false: 1; nothing: 0); a table it\n"
	"returns is printed as JSON. Ctrl-C ends the script.\n"
	"\n"
	TD_SESSION_HELP;

int td_cmd_run(int argc, char **argv)
{
	static const struct option options[] = {
		TD_SESSION_OPTIONS,
		{ 0 },
	};
	struct td_session s = { .command = "run" };
	int first;
	int code = td_session_parse(&s, argc, argv, options, run_help, 0, NULL, NULL, &first);
	if (code != -1)
		return code;
	if (argc - first < 2)
		return td_cli_usage("run", "SCRIPT.lua and TARGET are needed");
	const char *script = argv[first];
	struct td_hold h;
	struct td_error *err = td_hold_open(&h, argv[first + 1], s.exe, s.plugins, 60, 0);
	int status = 0;
	if (!err) {
		td_interruptible = 1;
		err = td_lua_session_script(h.s.lua, script, argv + first + 2, argc - first - 2, &status);
		td_interruptible = 0;
	}
	fflush(stdout);
	td_hold_close(&h);
	if (err)
		return td_cli_fail(err);
	return status;
}
