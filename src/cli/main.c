#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config.h"
#include "debuginfo/debuginfod.h"
#include "target/journal.h"
#include "lua/binding.h"
#include "snapshot/snapshot.h"
#include "util/size.h"
#include "value/program.h"

static const char main_help[] =
	"usage: taskdbg COMMAND [OPTIONS] TARGET\n"
	"       taskdbg COMMAND --help\n"
	"       taskdbg --help | --version\n"
	"\n"
	"A debugger for async runtimes that needs nothing from its target.\n"
	"TARGET is a process id (all digits) or the path of a core file.\n"
	"\n"
	"commands:\n"
	"  attach    interactive session on a live process (PID)\n"
	"  core      interactive session on a core file (CORE [EXE])\n"
	"  bt        every thread's stack, then exit\n"
	"  tasks     every async task: state, future, await chain\n"
	"  diagnose  run every detector, print findings\n"
	"  run       run a Lua diagnosis script against TARGET\n"
	"  dump      write an ELF core of a live process: taskdbg dump PID FILE\n"
	"  record    task-rooted flame graph of a live process (.folded, .svg, .json)\n"
	"  top       live view of a process: tasks by CPU, workers, threads, warnings\n"
	"\n"
	"Run `taskdbg COMMAND --help` for a command's options.\n"
	"Debug info missing here is fetched from the debuginfod servers in DEBUGINFOD_URLS\n"
	"(DEBUGINFOD_TIMEOUT: seconds per connection, default 10; TASKDBG_DEBUGINFOD_MAXTIME:\n"
	"seconds per run, default 60).\n"
	"Exit codes: 0 success, 1 diagnose found something, 2 could not do the job, 64 usage.\n";

int td_cli_fail(struct td_error *err)
{
	fprintf(stderr, "taskdbg: %s\n", err->message);
	int code = err->kind == TD_ERR_USAGE ? TD_EXIT_USAGE : TD_EXIT_FAILED;
	td_error_destroy(err);
	return code;
}

#if defined(__SANITIZE_ADDRESS__)
#define TD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TD_ASAN 1
#endif
#endif

void td_cli_exit_early(int code)
{
#ifndef TD_ASAN
	exit(fflush(stdout) == 0 ? code : TD_EXIT_FAILED);
#else
	(void)code;
#endif
}

int td_cli_usage(const char *command, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "taskdbg%s%s: ", command ? " " : "", command ? command : "");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nRun `taskdbg %s%s--help` for usage.\n", command ? command : "",
		command ? " " : "");
	return TD_EXIT_USAGE;
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

unsigned td_cli_test_pause_ms(void)
{
	const char *pause = getenv("TASKDBG_TEST_PAUSE_MS");
	return pause ? (unsigned)strtoul(pause, NULL, 10) : 0;
}

/* On a terminal, a line that says how far a large compressed core is, erased once done. */
static void decompress_progress(void *arg, const char *path, uint64_t done, bool finished)
{
	char size[32];
	if (finished)
		fputs("\r\033[K", stderr);
	else
		fprintf(stderr, "\r\033[Kdecompressing %s: %s so far", path,
			td_format_size(done, size, sizeof(size)));
	fflush(stderr);
}

struct td_error *td_cli_snapshot(const char *target, const char *exe, struct td_snapshot **ret)
{
	return td_cli_snapshot_with(target, exe, NULL, NULL, NULL, ret);
}

struct td_error *td_cli_snapshot_with(const char *target, const char *exe,
				      struct td_error *(*before_stop)(struct td_snapshot *, void *),
				      struct td_error *(*while_stopped)(struct td_snapshot *, void *),
				      void *arg, struct td_snapshot **ret)
{
	struct td_snapshot_options opts = {
		.exe = exe, .before_stop = before_stop, .while_stopped = while_stopped,
		.while_stopped_arg = arg };
	opts.pause_stopped_ms = td_cli_test_pause_ms();
	if (all_digits(target)) {
		long pid = strtol(target, NULL, 10);
		if (pid <= 0 || pid > 0x3fffffff)
			return td_error_format(TD_ERR_TARGET, "no process with id %s\n"
					       "Check the id with `ps -e`.", target);
		if (exe)
			return td_error_format(TD_ERR_USAGE, "--exe is for core files; a live "
					       "process's executable is found from /proc");
		return td_snapshot_take_live((pid_t)pid, &opts, ret);
	}
	const char *max = getenv("TASKDBG_CORE_MAX");
	if (max && *max && !td_parse_size(max, &opts.core_max))
		return td_error_format(TD_ERR_TARGET,
			"TASKDBG_CORE_MAX=%s is not a size\n"
			"Give the most bytes a compressed core may decompress to, with K, M, G or T "
			"for KiB, MiB, GiB, TiB (e.g. TASKDBG_CORE_MAX=64G), or unset it for the default "
			"(32G).", max);
	struct td_decompress_progress progress = { decompress_progress, NULL };
	if (isatty(STDERR_FILENO))
		opts.core_progress = &progress;
	return td_snapshot_open_core(target, &opts, ret);
}


/* debuginfod's progress: one line on a terminal, rewritten in place, cleared when done. */
static bool progress_shown;

static void debuginfod_progress(const char *line)
{
	if (!isatty(STDERR_FILENO))
		return;
	if (line)
		fprintf(stderr, "\r\033[K%s", line);
	else if (progress_shown)
		fputs("\r\033[K", stderr);
	progress_shown = line != NULL;
}

static void debuginfod_warn(const char *line)
{
	debuginfod_progress(NULL);
	fprintf(stderr, "taskdbg: %s\n", line);
}

static const struct td_debuginfod_report debuginfod_report = {
	.progress = debuginfod_progress,
	.warn = debuginfod_warn,
};

int main(int argc, char **argv)
{
	/* Before any thread: it takes DEBUGINFOD_URLS out of the environment. */
	td_debuginfod_init(&debuginfod_report);
	td_cli_install_signal_handlers();
	if (argc < 2) {
		fputs(main_help, stderr);
		return TD_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		fputs(main_help, stdout);
		return TD_EXIT_OK;
	}
	if (!strcmp(cmd, "--version")) {
		printf("taskdbg %s\n", TD_VERSION);
		printf("debuginfod: %s\n", td_debuginfod_built_in() ? "built in (libdebuginfod)"
		       : "not built in (no libdebuginfod at build time)");
		printf("coredump journal: %s\n", td_journal_built_in() ? "built in (libsystemd)"
		       : "not built in (no libsystemd at build time)");
		return TD_EXIT_OK;
	}
	if (!strcmp(cmd, "bt"))
		return td_cmd_bt(argc - 1, argv + 1);
	if (!strcmp(cmd, "run"))
		return td_cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "tasks"))
		return td_cmd_tasks(argc - 1, argv + 1);
	if (!strcmp(cmd, "diagnose"))
		return td_cmd_diagnose(argc - 1, argv + 1);
	if (!strcmp(cmd, "attach"))
		return td_cmd_attach(argc - 1, argv + 1);
	if (!strcmp(cmd, "core"))
		return td_cmd_core(argc - 1, argv + 1);
	if (!strcmp(cmd, "dump"))
		return td_cmd_dump(argc - 1, argv + 1);
	if (!strcmp(cmd, "record"))
		return td_cmd_record(argc - 1, argv + 1);
	if (!strcmp(cmd, "top"))
		return td_cmd_top(argc - 1, argv + 1);
	return td_cli_usage(NULL, "unknown command '%s'", cmd);
}

#define TD_RESERVE_MAX (512ull << 20)

void td_cli_reserve_cache(struct td_snapshot *snap, struct td_lua *lua)
{
	if (!lua || snap->kind != TD_SNAPSHOT_LIVE)
		return;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)snap->pid);
	FILE *f = fopen(path, "r");
	unsigned long long size, resident;
	if (!f)
		return;
	int got = fscanf(f, "%llu %llu", &size, &resident);
	fclose(f);
	if (got != 2)
		return;
	unsigned long long bytes = resident * 4096ull;
	td_program_reserve(td_lua_program(lua), bytes < TD_RESERVE_MAX ? bytes : TD_RESERVE_MAX);
}
