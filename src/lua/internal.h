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
	unsigned limit_ms;         /* for the message */
	/* The await-chain decoder (value/chain.h), made on first use; the Lua state's registry frees it. */
	struct td_chain_decoder *chains;
	/*
	 * Unused since the decoder moved to value/chain.c (it owns its cache and
	 * configuration); host.c's td_lua_destroy still frees them: to go with it.
	 */
	void *chain_cache;
	char *per_task[8];
	int nper_task;
	char *mark_prefix;
	char *tag_prefix;
	char *tag_path[8];
	int ntag_path;
};

extern const char TDL_VALUE_MT[];
extern const char TDL_TYPE_MT[];
/* td.null: a value for tables that stands for JSON null (Lua tables cannot hold nil). */
extern char tdl_null_sentinel;

struct td_lua *tdl_get(lua_State *L);
int tdl_raise(lua_State *L, struct td_error *err);
void tdl_push_sandbox(lua_State *L);
int tdl_load_text_file(lua_State *L, const char *path);
int tdl_traceback(lua_State *L);
/*
 * The one protected call into Lua: the function and its nargs arguments on
 * top, a fresh budget (limit_ms of wall-clock time, the instruction count
 * reset), the message handler (tdl_traceback) below it and gone after.
 * Returns lua_pcall's status; the results (or the message) are on top.
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
extern const luaL_Reg tdl_host_functions[];
extern const luaL_Reg tdl_target_functions[];
extern const luaL_Reg tdl_values_functions[];
extern const luaL_Reg tdl_walkers_functions[];

#endif
