/* taskdbg dump PID FILE: an ELF core of a live process, written without gdb. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "target/dump.h"

static const char dump_help[] =
	"usage: taskdbg dump PID FILE\n"
	"\n"
	"Write an ELF core of the running process PID to FILE, as the kernel would\n"
	"(threads, registers, writable and anonymous memory, the files it maps), for\n"
	"`taskdbg bt|tasks|diagnose FILE` or gdb later, elsewhere. The process is stopped\n"
	"only while its memory is copied, then runs on; it is never changed.\n"
	"Read-only pages of files on disk (program text) are left out, as in kernel\n"
	"cores: read the core where those files are.\n"
	"\n"
	"  --help                  this text\n";

int td_cmd_dump(int argc, char **argv)
{
	static const struct option options[] = {
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", options, NULL)) != -1) {
		if (c == 'h') {
			fputs(dump_help, stdout);
			return TD_EXIT_OK;
		}
		return td_cli_usage("dump", "unknown option %s", argv[optind - 1]);
	}
	if (argc - optind != 2)
		return td_cli_usage("dump", argc - optind < 2 ? "PID and FILE are needed" : "too many arguments");
	const char *pid_arg = argv[optind], *file = argv[optind + 1];
	char *end;
	long pid = strtol(pid_arg, &end, 10);
	if (!*pid_arg || *end || pid_arg[0] < '0' || pid_arg[0] > '9')
		return td_cli_usage("dump", "PID must be a process id (digits), not '%s'", pid_arg);
	if (pid <= 0 || pid > 0x3fffffff)
		return td_cli_fail(td_error_format(TD_ERR_TARGET, "no process with id %s\n"
						   "Check the id with `ps -e`.", pid_arg));
	struct td_dump_stats st;
	struct td_error *err = td_dump_core((pid_t)pid, file, &st);
	if (err)
		return td_cli_fail(err);
	printf("wrote %s (%.0f MiB, %zu thread%s) in %.2f s, target stopped %.3f s\n", file,
	       (double)st.bytes / (1 << 20), st.threads, st.threads == 1 ? "" : "s",
	       (double)st.wall_ns / 1e9, (double)st.stopped_ns / 1e9);
	return fflush(stdout) == 0 ? TD_EXIT_OK : TD_EXIT_FAILED;
}
