/*
 * taskdbg attach PID [--interval D] [--keep N], taskdbg core CORE [EXE]:
 * an interactive session (src/interactive) on a live process or a core.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "util/duration.h"
#include "interactive/hold.h"
#include "interactive/repl.h"

static const char attach_help[] =
	"usage: taskdbg attach [--interval D] [--keep N] [--plugins DIR] PID\n"
	"\n"
	"An interactive session on a live process: threads, stacks, tasks, resources,\n"
	"diagnoses, Lua. The process runs between commands; in the background it is\n"
	"snapshotted every D (each a brief stop, as diagnose's) and the last N snapshots\n"
	"are kept as a history (`history`, `tasks -stuck`). Type `help` in the session.\n"
	"Commands come from standard input when it is not a terminal.\n"
	"\n"
	"  --interval D            time between background snapshots (default 1s; 0: none)\n"
	"  --keep N                snapshots kept as history (default 60)\n"
	TD_SESSION_HELP;

static const char core_help[] =
	"usage: taskdbg core [--plugins DIR] CORE [EXE]\n"
	"\n"
	"An interactive session on a core file (see `taskdbg attach --help`): one\n"
	"snapshot, the same commands. EXE names the executable when the core's notes\n"
	"do not lead to it (a file, or a directory where it is found by name or\n"
	"build-id). CORE may be compressed (zstd, xz, lz4: systemd-coredump's).\n"
	"\n"
	TD_SESSION_HELP;

struct attach_options {
	double interval_ms;
	unsigned keep;
};

static int attach_option(struct td_session *s, int c, const char *arg, void *ctx)
{
	struct attach_options *o = ctx;
	if (c == 'i' && !td_parse_duration_ms(arg, &o->interval_ms))
		return td_cli_usage(s->command, "bad duration '%s' (write e.g. 500ms or 2s; 0 for none)", arg);
	if (c == 'k') {
		char *end;
		unsigned long n = strtoul(arg, &end, 10);
		if (*end || n < 1 || n > 100000)
			return td_cli_usage(s->command, "--keep takes a number from 1 to 100000");
		o->keep = (unsigned)n;
	}
	return -1;
}

static int session(const char *command, int argc, char **argv)
{
	static const struct option options[] = {
		TD_SESSION_OPTIONS,
		{ "interval", required_argument, NULL, 'i' },
		{ "keep", required_argument, NULL, 'k' },
		{ 0 },
	};
	bool core = !strcmp(command, "core");
	struct td_session s = { .command = command };
	struct attach_options o = { .interval_ms = 1000, .keep = 60 };
	int first;
	int code = td_session_parse(&s, argc, argv, options, core ? core_help : attach_help, 0,
				    attach_option, &o, &first);
	if (code != -1)
		return code;
	int npos = argc - first;
	if (npos < 1)
		return td_cli_usage(command, core ? "CORE is missing" : "PID is missing");
	if (npos > (core ? 2 : 1))
		return td_cli_usage(command, "too many arguments");
	const char *target = argv[first];
	const char *exe = core && npos == 2 ? argv[first + 1] : s.exe;
	bool digits = target[strspn(target, "0123456789")] == '\0';
	if (core == digits)
		return td_cli_usage(command, core ? "CORE is a core file; for a process id use `taskdbg attach`"
					     : "PID is a process id; for a core file use `taskdbg core`");
	struct td_hold h;
	struct td_error *err = td_hold_open(&h, target, exe, s.plugins, o.keep, core ? 0 : o.interval_ms);
	if (err) {
		td_hold_close(&h);
		return td_cli_fail(err);
	}
	code = td_repl_run(&h);
	td_hold_close(&h);
	return code;
}

int td_cmd_attach(int argc, char **argv)
{
	return session("attach", argc, argv);
}

int td_cmd_core(int argc, char **argv)
{
	return session("core", argc, argv);
}
