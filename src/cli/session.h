/*
 * One command's hold on its target: the options every command shares, the
 * snapshot, the runtime plugin's Lua state, the thread list and a plugin
 * result, torn down in one place (td_session_end), in the right order (a
 * json-c result borrows the Lua state's strings; the snapshot goes last).
 */
#ifndef TD_CLI_SESSION_H
#define TD_CLI_SESSION_H

#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>

#include "model/threads.h"
#include "snapshot/snapshot.h"
#include "util/error.h"

struct td_lua;
struct td_thread_list;

struct td_session {
	const char *command;           /* "tasks": for usage messages */
	const char *shortopts;         /* getopt's short options ("+o:"); NULL: none */
	/* The shared options (td_session_parse). */
	bool json;
	const char *exe, *plugins, *target;
	/* Owned, freed by td_session_end. */
	char **plugin_paths;           /* every plugin found (td_session_find_plugins) */
	size_t nplugins;
	struct td_runtime_frames frames;   /* what the chosen plugin declares of stacks */
	struct td_snapshot *snap;
	struct td_lua *lua;
	struct td_thread_list *threads;
	struct json_object *result;    /* a plugin call's result (borrows lua's strings) */
};

/* The shared options, for a command's getopt table: --json, --exe, --plugins, --help. */
#define TD_SESSION_OPTIONS \
	{ "json", no_argument, NULL, 'j' }, \
	{ "exe", required_argument, NULL, 'e' }, \
	{ "plugins", required_argument, NULL, 'p' }, \
	{ "help", no_argument, NULL, 'h' }

/* Their help lines (every command's help ends with TD_SESSION_HELP; --json comes first). */
#define TD_SESSION_HELP_JSON \
	"  --json                  one JSON object on stdout (see docs/cli-contract.md)\n"
#define TD_SESSION_HELP \
	"  --exe PATH              the executable, when a core file's notes do not lead to it\n" \
	"                          (or a directory where it is, by name or build-id)\n" \
	"  --plugins DIR           look for runtime plugins in DIR first\n" \
	"  --help                  this text\n"

/*
 * Parses argv with options (TD_SESSION_OPTIONS and the command's own, which
 * own() handles: it returns -1 when done with one, else an exit code). Then
 * npos positional arguments must follow (the last is TARGET), unless npos is
 * 0 (the command takes what is left: s->target stays NULL, *first is where).
 * Returns -1 to go on, else the exit code to return (help printed, or a
 * usage error).
 */
int td_session_parse(struct td_session *s, int argc, char **argv, const struct option *options,
		     const char *help, int npos, int (*own)(struct td_session *s, int c, const char *arg, void *ctx),
		     void *ctx, int *first);

/*
 * Every runtime plugin on the search path. None at all is an error (a broken
 * install) unless optional (bt: stacks need no plugin).
 */
struct td_error *td_session_find_plugins(struct td_session *s, bool optional);

/*
 * Before the stop: the plugin whose runtime is in the program (or the
 * built-in one for none), its entry prepare called, the frames it declares
 * kept for the thread list (td_lua_open_runtime).
 */
struct td_error *td_session_runtime(struct td_session *s, struct td_snapshot *snap, const char *prepare);

/* A snapshot of s->target (td_cli_snapshot_with). */
struct td_error *td_session_open(struct td_session *s,
				 struct td_error *(*before_stop)(struct td_snapshot *, void *),
				 struct td_error *(*while_stopped)(struct td_snapshot *, void *), void *arg);

/*
 * diagnose's window on a live target: a stop with sample every interval_ms
 * until window_ms has passed, then a sleep to its end (the last stop, with
 * the walk, is the caller's). Counts the stops in *stops and keeps the
 * longest in *max_stopped_ns. Ctrl-C in a session ends it: an error
 * "interrupted".
 */
struct td_error *td_session_sample_window(struct td_snapshot *snap, double window_ms, double interval_ms,
					  const struct td_snapshot_options *sample, unsigned *stops,
					  uint64_t *max_stopped_ns);

/* s->threads from the snapshot. */
struct td_error *td_session_threads(struct td_session *s);

/*
 * After a stop: the task each of snap's threads polls (task[i] for
 * snap->threads[i], -1 where none), from the runtime plugin's thread-locals
 * as the stop copied them. No plugin: all -1.
 */
void td_session_current_tasks(struct td_session *s, struct td_snapshot *snap, long long *task);

/*
 * The end of a command: with no error, exits at once with code (stdout
 * flushed: td_cli_exit_early); otherwise frees everything and returns the
 * exit code (err printed and freed, or a failed stdout flush).
 */
int td_session_end(struct td_session *s, struct td_error *err, int code);

/* Frees everything the session holds, in the right order (td_session_end's part). */
void td_session_free(struct td_session *s);

#endif
