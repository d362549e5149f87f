/*
 * What the files of src/lua share (not an API for the rest of taskdbg:
 * that is lua/binding.h): the VM's state, its budgets, and the helpers every
 * binding uses.
 */
#ifndef TD_LUA_INTERNAL_H
#define TD_LUA_INTERNAL_H

#include "lua/binding.h"
#include "lua/json_text.h"
#include "util/clock.h"

#include <dirent.h>
#include <errno.h>
#include <dwarf.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "debuginfo/locals.h"
#include "snapshot/unwind.h"
#include "target/syscalls.h"
#include "util/interrupt.h"
#include "util/timing.h"
#include "value/chain.h"
#include "value/future.h"
#include "value/value.h"

/* Budgets of one plugin call. */
#define TD_LUA_MEMORY_MAX (512u * 1024u * 1024u)
#define TD_LUA_INSTRUCTIONS_MAX 1000000000ull
#define TD_LUA_HOOK_EVERY 10000
/* Wall-clock limits: a call made while the target is stopped, and any other. */
#define TD_LUA_STOPPED_MS 2000
#define TD_LUA_OTHER_MS 60000
/* No limit: a user's own script or session command (Ctrl-C ends it). */
#define TD_LUA_UNLIMITED 0
/* Depth of Lua tables converted to JSON. */
#define TD_LUA_JSON_DEPTH 32

struct td_lua {
	lua_State *L;
	struct td_program *prog;
	bool owns_prog;            /* made by td_lua_open_plugin */
	char *plugin_path;
	size_t memory;
	unsigned long long instructions;
	uint64_t deadline_ns;      /* CLOCK_MONOTONIC; 0: none */
	bool fatal;                /* a budget or oom error was raised in this call (errors.c) */
	unsigned limit_ms;         /* for the message */
	/* The await-chain decoder (value/chain.h), made on first use; the Lua state's registry frees it. */
	struct td_chain_decoder *chains;
};

extern const char TDL_VALUE_MT[];
extern const char TDL_TYPE_MT[];
/* td.null: a value for tables that stands for JSON null (Lua tables cannot hold nil). */
extern char tdl_null_sentinel;

struct td_lua *tdl_get(lua_State *L);

/*
 * td.error values (errors.c; docs/plugins.md "Errors"). A C error's kind
 * comes from its cause (fault, not found), TD_ERR_NOMEM (oom) or
 * TD_ERR_USAGE; any other is not_found (a fallback says otherwise).
 */
enum tdl_kind { TDL_FAULT, TDL_NOT_FOUND, TDL_BUDGET, TDL_OOM, TDL_USAGE };
void tdl_errors_open(lua_State *L);
bool tdl_is_error(lua_State *L, int idx);
/* Pushes a td.error (address: NULL for none), with the position of the Lua code calling (where). */
void tdl_push_error(lua_State *L, enum tdl_kind kind, const uint64_t *address, const char *message);
/* Raise a td.error made from err (freed), or of kind with a formatted message. */
int tdl_raise(lua_State *L, struct td_error *err);
int tdl_raise_kind(lua_State *L, enum tdl_kind kind, const char *fmt, ...);
/* Return nil and a td.error made from err (freed; oom is raised instead), or a not_found one. */
int tdl_fail(lua_State *L, struct td_error *err, enum tdl_kind fallback);
int tdl_absent(lua_State *L, const char *fmt, ...);
/* Argument checks that raise usage errors (Lua's own luaL_check* raise strings). */
int tdl_arg_error(lua_State *L, int arg, const char *fmt, ...);
lua_Integer tdl_check_integer(lua_State *L, int arg);
lua_Integer tdl_opt_integer(lua_State *L, int arg, lua_Integer def);
const char *tdl_check_string(lua_State *L, int arg);
void tdl_check_type_of(lua_State *L, int arg, int type);
void *tdl_check_udata(lua_State *L, int arg, const char *mt, const char *what);
/* Pushes the text a failure reads as: a td.error's where and message, a string, or the type. */
void tdl_push_error_text(lua_State *L, int idx);
/* Whether a budget or oom error was raised in this call (then its text is pushed); reset before a call. */
bool tdl_fatal_error(struct td_lua *lua);
void tdl_fatal_reset(struct td_lua *lua);
extern const luaL_Reg tdl_protected_calls[];

void tdl_push_sandbox(lua_State *L);
/* require(NAME), loading DIR/NAME.lua only (lua/require.c), pushed. */
void tdl_push_require(lua_State *L, const char *dir);
/* require for a user's script: modules from dir, each in a copy of the environment at env. */
void tdl_push_user_require(lua_State *L, const char *dir, int env);
/* A shallow copy of the table at idx, pushed (a user's environment for one script or module). */
void tdl_push_copy(lua_State *L, int idx);
/* A sandbox whose require loads from dir, pushed. */
void tdl_push_module_env(lua_State *L, const char *dir);
/*
 * Loads each detector file of dir (a module returning {name, severity, run})
 * and runs them through _lib.lua's run_detectors(ctx, detectors), ctx the
 * table at index ctx. Leaves the findings' table on the stack.
 */
struct td_error *tdl_run_detectors(struct td_lua *lua, const char *dir, char *const *files, size_t nfiles,
				   int ctx);
/* Lua files on disk (files.c). */
struct td_error *tdl_load_chunk(lua_State *L, const char *path, const char *what);
bool tdl_readable(const char *path);
void tdl_own_dir(char *buf, size_t size);
struct td_error *tdl_detector_files(const char *dir, char ***ret, size_t *nret);
/* Detectors on a context made of the values at these stack indices; the findings left on top. */
struct td_error *tdl_diagnose_with(struct td_lua *lua, const char *dir, int model, int samples, int threads,
				   int options);
/* tdl_run_detectors on every detector file of dir (unit tests run synthetic models so). */
struct td_error *tdl_diagnose_ctx(struct td_lua *lua, const char *dir, int ctx);
/* The directory part of path, pushed. */
void tdl_push_dir_of(lua_State *L, const char *path);
int tdl_load_text_file(lua_State *L, const char *path);
int tdl_traceback(lua_State *L);
/*
 * The one protected call into Lua: the function and its nargs arguments on
 * top, a fresh budget (limit_ms of wall-clock time, the instruction count
 * reset), the message handler (tdl_traceback) below it and gone after.
 * Returns lua_pcall's status; the results (or the message, a string) are on
 * top. A call during which a budget or oom error was raised fails with it,
 * even if the Lua code caught it.
 */
int tdl_pcall(struct td_lua *lua, int nargs, int nresults, unsigned limit_ms);
struct td_error *tdl_plugin_failure(struct td_lua *lua, const char *entry);
struct td_error *tdl_call_entry(struct td_lua *lua, const char *entry, unsigned limit_ms,
				   bool optional, bool *called);
void tdl_push_value(lua_State *L, const struct td_value *v);
void tdl_push_type(lua_State *L, Dwarf_Die *type);
struct td_value *tdl_check_value(lua_State *L, int i);
Dwarf_Die *tdl_check_type(lua_State *L, int i);
uint64_t tdl_check_addr(lua_State *L, int i);
int tdl_value_index(lua_State *L);
int tdl_value_tostring(lua_State *L);
int tdl_type_tostring(lua_State *L);
const char *tdl_ptr_text(const void *p, char *buf, size_t size);
int tdl_ptr_tostring(lua_State *L);
int tdl_ptr_concat(lua_State *L);
lua_Integer tdl_spec_int(lua_State *L, int t, const char *key, lua_Integer def);
void tdl_keep_alive(lua_State *L, int idx);
struct json_object *tdl_to_json(lua_State *L, int idx, int depth);
void tdl_push_json(lua_State *L, struct json_object *o, int depth);

/* The td.* functions of each file, put together in the sandbox (host.c). */
extern const luaL_Reg tdl_chains_functions[];
extern const luaL_Reg tdl_errors_functions[];
extern const luaL_Reg tdl_host_functions[];
extern const luaL_Reg tdl_target_functions[];
extern const luaL_Reg tdl_values_functions[];
extern const luaL_Reg tdl_walkers_functions[];

#endif
