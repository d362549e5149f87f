/*
 * The Lua 5.4 side: runtime plugins and diagnosis scripts see the target
 * through a `td` table (values, types, threads, reads), in a sandbox: no io,
 * os, package, debug or load; an instruction budget and a memory budget. A
 * broken plugin is an error naming the plugin and line, never a crash.
 */
#ifndef TD_LUA_BINDING_H
#define TD_LUA_BINDING_H

#include <stdbool.h>
#include <stdio.h>

#include <json-c/json.h>

#include "model/threads.h"
#include "snapshot/snapshot.h"
#include "value/program.h"

struct td_lua;

/* The Lua state borrows prog, which must outlive it. */
struct td_error *td_lua_create(struct td_program *prog, struct td_lua **ret);
void td_lua_destroy(struct td_lua *lua);

/*
 * The usual way in, before a stop: a program over snap, a Lua state that
 * owns it, every plugin of paths loaded and asked whether its runtime is in
 * the program (its detect(), DWARF only), and the one that says yes kept as
 * the plugin, its entry `prepare` called (types and offsets only). When none
 * says yes, the plugin is a built-in one with no runtime (its model says
 * why). Two that say yes are an error: one runtime per process for now.
 * td_lua_destroy frees it all.
 */
struct td_error *td_lua_open_runtime(struct td_snapshot *snap, char *const *paths, size_t n,
				     const char *prepare, struct td_lua **ret);

/* What the plugin declares of its threads' stacks (its `frames`), copied. */
struct td_error *td_lua_runtime_frames(struct td_lua *lua, struct td_runtime_frames *out);

/* The program a Lua state reads through. */
struct td_program *td_lua_program(struct td_lua *lua);

/* Runs a plugin file in its own sandboxed environment; it returns its table. */
struct td_error *td_lua_load_plugin(struct td_lua *lua, const char *path);

/*
 * Calls the loaded plugin's function `entry` ("prepare", "snapshot"); its
 * result (a Lua table) converted to JSON goes to *ret, owned by the caller
 * (json_object_put), which must free it before td_lua_destroy: its keys are
 * the Lua state's strings. With ret NULL, a missing entry is no error. With
 * target_stopped, the call has 2 s of wall-clock time (else 60 s): a plugin
 * never holds a target stopped for long.
 */
struct td_error *td_lua_call_plugin(struct td_lua *lua, const char *entry, bool target_stopped,
				    struct json_object **ret);

/*
 * Calls the plugin's entry (finish) after the stop and keeps its result in
 * the Lua state, for the two below: a big model (100,000 tasks) goes out as
 * JSON text without a json-c tree between.
 */
struct td_error *td_lua_call_keep(struct td_lua *lua, const char *entry);

/* Writes the kept result's field key to out as JSON text (null if absent). */
struct td_error *td_lua_result_write_json(struct td_lua *lua, const char *key, FILE *out);

/* Which thread polls which task (result.runtimes[].tasks[].running_on): up to max. */
size_t td_lua_result_tasks_on(struct td_lua *lua, struct td_task_on *on, size_t max);

/*
 * Calls the plugin's entry (snapshot, sample) in a stop of the target: the
 * reads of earlier stops are forgotten first, and the 2 s budget applies.
 */
struct td_error *td_lua_call_stopped(struct td_lua *lua, const char *entry);

/*
 * diagnose's stops: a sample of what every thread does (its system call,
 * the futex word it waits on; on the last stop, the holder glibc records of
 * a pthread mutex waited on), to which the plugin's sample(s) adds its
 * runtime's part; kept in order for the detectors (ctx.samples).
 */
struct td_error *td_lua_sample(struct td_lua *lua, bool last);

/*
 * Runs a user script in the sandbox, with `args` set to its arguments. If it
 * returns a table, *ret gets it as JSON (else NULL). target_stopped: a live
 * target waits meanwhile, so the script gets the 2 s budget.
 */
struct td_error *td_lua_run_script(struct td_lua *lua, const char *path, char **args, int nargs,
				   bool target_stopped, struct json_object **ret);

/*
 * Every runtime plugin (NAME.lua; _*.lua and subdirectories hold modules)
 * of the directories searched, in order: --plugins, $TASKDBG_PLUGIN_PATH,
 * taskdbg's own plugins (the source tree's when it runs from its build
 * directory, else those installed with it, relative to the binary), the
 * install dir; the first NAME.lua found wins. Sorted; free with
 * td_lua_free_paths.
 */
struct td_error *td_lua_find_plugins(const char *extra_dir, char ***paths_ret, size_t *n_ret);
void td_lua_free_paths(char **paths, size_t n);

/*
 * `diagnose`: calls the plugin's finish, then loads every detector of dir
 * (detectors/NAME.lua, each a module returning {name, severity, run}) and
 * runs them with _lib.lua's run_detectors(ctx, detectors), ctx = {model,
 * samples (the plugin's), threads (CLI THREAD objects), options, runtime
 * (what the plugin declares: name, frames, resources, advice)}. *ret: the findings, JSON (caller frees it
 * before td_lua_destroy).
 */
struct td_error *td_lua_diagnose(struct td_lua *lua, const char *dir, struct json_object *threads,
				 struct json_object *options, struct json_object **ret);

/* The same, with the plugin's model (finish's result) as JSON too (`top`). */
struct td_error *td_lua_diagnose_model(struct td_lua *lua, const char *dir, struct json_object *threads,
				       struct json_object *options, struct json_object **model_ret,
				       struct json_object **ret);

/*
 * Lets go of the Lua values that JSON results given out so far borrow
 * strings from: call once every such result is freed (a long `top`).
 */
void td_lua_release_results(struct td_lua *lua);

/*
 * The detectors directory: $TASKDBG_DETECTORS, taskdbg's own (as for
 * plugins), the install dir.
 */
struct td_error *td_lua_find_detectors(char **dir_ret);

/*
 * For messages: where taskdbg looks for SUB ("plugins" or "detectors") after
 * the options and the environment, "DIR and DIR" (or "DIR"), in buf.
 */
void td_lua_search_dirs_text(const char *sub, char *buf, size_t size);

/*
 * Sessions (`taskdbg attach`/`core`, `taskdbg run`): a user's Lua, outside
 * the sandbox (io, os; no budget, Ctrl-C ends it), with the `taskdbg` table of
 * docs/lua-api.md. Its target comes through these operations, which the
 * session (src/interactive) implements.
 */
struct td_lua_session_ops {
	void *ctx;
	/* A new snapshot of a live target (stop, sample, walk), then td_lua_session_snapshot. */
	struct td_error *(*refresh)(void *ctx);
	/* diagnose's sampling: every interval_ms over window_ms, then a walk (refresh). */
	struct td_error *(*watch)(void *ctx, double window_ms, double interval_ms);
	/* The current snapshot's threads as `bt --json` THREAD objects (the caller frees). */
	struct td_error *(*threads)(void *ctx, struct json_object **ret);
	/* For each of those threads, the runs of frames bt folds (td_report_folds_json), in one array. */
	struct td_error *(*folds)(void *ctx, struct json_object **ret);
	/* Writes a core of a live target (taskdbg dump); NULL for a core. */
	struct td_error *(*dump)(void *ctx, const char *path, struct json_object **ret);
	/* The target and the session: {kind, pid, exe, comm, core, snapshots, ...} (caller frees). */
	struct json_object *(*target)(void *ctx);
	const char *detectors;   /* the detectors' directory */
};

/* Makes lua a session's: the taskdbg table, the user environment, the REPL's commands. ops outlives it. */
struct td_error *td_lua_session_open(struct td_lua *lua, const struct td_lua_session_ops *ops);

/* After a snapshot: the plugin's finish kept as the model, and the history told (api.lua). */
struct td_error *td_lua_session_snapshot(struct td_lua *lua);

/* Runs one command line of the REPL (commands.lua); *quit when it ends the session. */
struct td_error *td_lua_session_command(struct td_lua *lua, const char *line, bool *quit);

/* Completions of word in line (commands, options, ids), NULL-terminated, malloc'd; NULL: a file name is expected (or the call failed). */
char **td_lua_session_complete(struct td_lua *lua, const char *line, const char *word);

/*
 * Where the session's output (print, taskdbg.write) goes: out (NULL:
 * stdout); flush (or NULL) shows what was written so far (taskdbg.flush).
 */
void td_lua_session_output(struct td_lua *lua, FILE *out, void (*flush)(void));

/* Sets a flag of the taskdbg table (color, interactive). */
void td_lua_session_set(struct td_lua *lua, const char *key, bool value);

/* The prompt (malloc'd), or NULL. */
char *td_lua_session_prompt(struct td_lua *lua);

/*
 * Runs a user's script (taskdbg run, source): `arg`/`args` its arguments;
 * *status what it returns (an integer; false is 1); a returned table is
 * printed as JSON.
 */
struct td_error *td_lua_session_script(struct td_lua *lua, const char *path, char **args, int nargs,
				       int *status);

#endif
