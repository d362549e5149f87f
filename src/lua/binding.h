/*
 * The Lua 5.4 side: runtime plugins and diagnosis scripts see the target
 * through a `td` table (values, types, threads, reads), in a sandbox: no io,
 * os, package, debug or load; an instruction budget and a memory budget. A
 * broken plugin is an error naming the plugin and line, never a crash.
 */
#ifndef TD_LUA_BINDING_H
#define TD_LUA_BINDING_H

#include <stdbool.h>

#include <json-c/json.h>

#include "model/threads.h"
#include "snapshot/snapshot.h"
#include "value/program.h"

struct td_lua;

/* The Lua state borrows prog, which must outlive it. */
struct td_error *td_lua_create(struct td_program *prog, struct td_lua **ret);
void td_lua_destroy(struct td_lua *lua);

/*
 * The usual way in: a program over snap, a Lua state that owns it, the plugin
 * at path loaded, and its entry `prepare` called (before a stop: types and
 * offsets only). td_lua_destroy frees it all.
 */
struct td_error *td_lua_open_plugin(struct td_snapshot *snap, const char *path,
				    const char *prepare, struct td_lua **ret);

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
 * Runs a user script in the sandbox, with `args` set to its arguments. If it
 * returns a table, *ret gets it as JSON (else NULL). target_stopped: a live
 * target waits meanwhile, so the script gets the 2 s budget.
 */
struct td_error *td_lua_run_script(struct td_lua *lua, const char *path, char **args, int nargs,
				   bool target_stopped, struct json_object **ret);

/* The directories searched for plugins, in order: --plugins, $TASKDBG_PLUGIN_PATH, install dir, source tree. */
struct td_error *td_lua_find_plugin(const char *name, const char *extra_dir, char **path_ret);

/*
 * `diagnose`: calls the plugin's finish, then loads every detector file of dir
 * (detectors/: _lib.lua first, one shared sandboxed environment) and runs
 * run_detectors(ctx), ctx = {model, samples (the plugin's), threads (CLI
 * THREAD objects), options}. *ret: the findings, JSON (caller frees it
 * before td_lua_destroy).
 */
struct td_error *td_lua_diagnose(struct td_lua *lua, const char *dir, struct json_object *threads,
				 struct json_object *options, struct json_object **ret);

/* The detectors directory: $TASKDBG_DETECTORS, the install dir, the source tree. */
struct td_error *td_lua_find_detectors(char **dir_ret);

#endif
