/* The command-line layer: the only code that prints errors and picks exit codes. */
#ifndef TD_CLI_CLI_H
#define TD_CLI_CLI_H

#include <stdbool.h>

#include "snapshot/snapshot.h"
#include "util/error.h"

/* Exit codes of docs/cli-contract.md. */
enum {
	TD_EXIT_OK = 0,
	TD_EXIT_FINDINGS = 1,
	TD_EXIT_FAILED = 2,
	TD_EXIT_USAGE = 64,
};

/* Prints err on stderr and returns its exit code; frees err. */
int td_cli_fail(struct td_error *err);

/* Prints a usage error and returns TD_EXIT_USAGE. */
int td_cli_usage(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * TARGET is a pid (all digits) or a core file path. Takes a snapshot of it.
 * The TASKDBG_TEST_PAUSE_MS environment variable (tests only) holds a live
 * target stopped that long, so tests can signal taskdbg mid-stop.
 */
struct td_error *td_cli_snapshot(const char *target, const char *exe, struct td_snapshot **ret);

/* The same, with work to do while a live target is stopped (see td_snapshot_options). */
struct td_error *td_cli_snapshot_with(const char *target, const char *exe,
				      struct td_error *(*before_stop)(struct td_snapshot *, void *),
				      struct td_error *(*while_stopped)(struct td_snapshot *, void *),
				      void *arg, struct td_snapshot **ret);

struct td_lua;
/*
 * Before a live target is stopped: room in the program's page cache for as
 * much of its memory as it has resident (at most 512 MiB), faulted in now
 * (td_program_reserve). Nothing for a core.
 */
void td_cli_reserve_cache(struct td_snapshot *snap, struct td_lua *lua);

/* Tests only: how long to hold a live target stopped at every stop ($TASKDBG_TEST_PAUSE_MS). */
unsigned td_cli_test_pause_ms(void);

/*
 * A command done with its output and the target (detached, never stopped
 * again): exits with code at once, stdout flushed, leaving its memory to the
 * OS: freeing a model of 100,000 tasks cost 80 ms. Under AddressSanitizer it
 * returns, and the caller frees as on every other path, so the leak check
 * keeps those frees honest.
 */
void td_cli_exit_early(int code);

/* Signal handlers that detach from a live target on every way out. */
void td_cli_install_signal_handlers(void);

/* Remembers the terminal's modes, restored if a signal ends taskdbg (a session's readline changes them). */
void td_cli_save_terminal(void);

int td_cmd_attach(int argc, char **argv);
int td_cmd_core(int argc, char **argv);
int td_cmd_bt(int argc, char **argv);
int td_cmd_diagnose(int argc, char **argv);
int td_cmd_dump(int argc, char **argv);
int td_cmd_record(int argc, char **argv);
int td_cmd_run(int argc, char **argv);
int td_cmd_top(int argc, char **argv);
int td_cmd_tasks(int argc, char **argv);

#endif
