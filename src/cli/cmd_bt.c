/* taskdbg bt [--json] [--exe PATH] TARGET: every thread's stack, then exit. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
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

	struct td_snapshot *snap;
	struct td_error *err = td_cli_snapshot(argv[optind], exe, &snap);
	if (err)
		return td_cli_fail(err);
	struct td_thread_list *list;
	err = td_thread_list_build(snap, &list);
	if (err) {
		td_snapshot_destroy(snap);
		return td_cli_fail(err);
	}
	if (json)
		td_report_bt_json(stdout, snap, list);
	else
		td_report_bt_text(stdout, snap, list);
	td_timing_mark("output");
	td_thread_list_destroy(list);
	td_snapshot_destroy(snap);
	td_timing_mark("cleanup");
	td_timing_report();
	return fflush(stdout) == 0 ? TD_EXIT_OK : TD_EXIT_FAILED;
}
