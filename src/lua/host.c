/*
 * The Lua VM a plugin, detector or script runs in: its sandbox (safe
 * libraries and `td`), its budgets (memory, instructions, wall-clock time), and
 * the one protected call every entry into Lua goes through (tdl_pcall), and
 * running a user's script (taskdbg run) in it.
 */
#include "lua/internal.h"

/* Starts the budgets of one call (TD_LUA_UNLIMITED: none, a user's own code). */
static void tdl_budget_start(struct td_lua *lua, unsigned limit_ms)
{
	lua->instructions = 0;
	lua->limit_ms = limit_ms;
	lua->deadline_ns = limit_ms == TD_LUA_UNLIMITED ? 0 : td_now_ns() + (uint64_t)limit_ms * 1000000u;
}

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct td_lua *lua = ud;
	if (!ptr)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		lua->memory -= osize;
		return NULL;
	}
	if (nsize > osize && lua->memory + (nsize - osize) > TD_LUA_MEMORY_MAX)
		return NULL;  /* Lua raises "not enough memory" */
	void *p = realloc(ptr, nsize);
	if (p)
		lua->memory = lua->memory - osize + nsize;
	return p;
}

struct td_lua *tdl_get(lua_State *L)
{
	struct td_lua *lua;
	lua_getallocf(L, (void **)&lua);
	return lua;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	struct td_lua *lua = tdl_get(L);
	if (td_interrupt_pending())
		tdl_raise_kind(L, TDL_BUDGET, "interrupted");
	if (lua->limit_ms == TD_LUA_UNLIMITED)
		return;
	lua->instructions += TD_LUA_HOOK_EVERY;
	if (lua->instructions > TD_LUA_INSTRUCTIONS_MAX)
		tdl_raise_kind(L, TDL_BUDGET, "instruction budget exhausted (a loop that never ends?)");
	if (lua->deadline_ns && td_now_ns() > lua->deadline_ns)
		tdl_raise_kind(L, TDL_BUDGET, "time budget exhausted: over %d ms%s", (int)lua->limit_ms,
			       lua->limit_ms == TD_LUA_STOPPED_MS ? " with the target stopped" : "");
}

/* td.clock_ms() -> milliseconds of a monotonic clock (for timing samples) */
static int l_clock_ms(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)td_now_ns() / 1e6);
	return 1;
}

/*
 * td.target_clock_ms() -> the target's CLOCK_MONOTONIC now, in ms, or nil
 * and not_found: a live process shares the machine's clock (read at the
 * call, so during a stop it is the stop's time); a core file does not record
 * when it was made.
 */
static int l_target_clock_ms(lua_State *L)
{
	if (td_program_snapshot(tdl_get(L)->prog)->kind != TD_SNAPSHOT_LIVE)
		return tdl_absent(L, "a core file records no clock of the target");
	return l_clock_ms(L);
}



struct td_error *td_lua_create(struct td_program *prog, struct td_lua **ret)
{
	struct td_lua *lua = calloc(1, sizeof(*lua));
	if (!lua)
		return &td_enomem;
	lua->prog = prog;
	lua->L = lua_newstate(budget_alloc, lua);
	if (!lua->L) {
		free(lua);
		return &td_enomem;
	}
	lua_State *L = lua->L;
	/* The metatable of every light userdata: td.null and td.ptr's addresses. */
	lua_pushlightuserdata(L, &tdl_null_sentinel);
	lua_createtable(L, 0, 4);
	lua_pushcfunction(L, tdl_ptr_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushcfunction(L, tdl_ptr_concat);
	lua_setfield(L, -2, "__concat");
	lua_pushliteral(L, "address");
	lua_setfield(L, -2, "__name");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");  /* getmetatable gives false: not to be changed */
	lua_setmetatable(L, -2);
	lua_pop(L, 1);
	/* Only the harmless libraries; io, os, package, debug are never opened. */
	luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
	luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
	luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
	luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
	luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
	lua_pop(L, 5);
	tdl_errors_open(L);
	luaL_newmetatable(L, TDL_VALUE_MT);
	lua_pushcfunction(L, tdl_value_index);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, tdl_value_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
	luaL_newmetatable(L, TDL_TYPE_MT);
	lua_pushcfunction(L, tdl_type_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
	lua_sethook(L, budget_hook, LUA_MASKCOUNT, TD_LUA_HOOK_EVERY);
	*ret = lua;
	return NULL;
}

void td_lua_destroy(struct td_lua *lua)
{
	if (!lua)
		return;
	lua_close(lua->L);
	free(lua->plugin_path);
	if (lua->owns_prog)
		td_program_destroy(lua->prog);
	free(lua);
}

/* The environment of one plugin: safe globals and `td`, nothing else. */
void tdl_push_sandbox(lua_State *L)
{
	static const char *const allowed[] = {
		"assert", "error", "ipairs", "next", "pairs", "pcall", "print", "rawequal",
		"rawget", "rawlen", "rawset", "select", "setmetatable", "getmetatable",
		"tonumber", "tostring", "type", "xpcall", "string", "table", "math", "utf8",
		NULL,
	};
	lua_newtable(L);
	lua_pushglobaltable(L);
	for (int i = 0; allowed[i]; i++) {
		lua_getfield(L, -1, allowed[i]);
		lua_setfield(L, -3, allowed[i]);
	}
	lua_pop(L, 1);
	luaL_setfuncs(L, tdl_protected_calls, 0);  /* pcall and xpcall that see out of memory */
	const luaL_Reg *const parts[] = { tdl_values_functions, tdl_target_functions, tdl_walkers_functions,
					  tdl_chains_functions, tdl_host_functions, tdl_errors_functions };
	lua_newtable(L);
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		luaL_setfuncs(L, parts[i], 0);
	lua_pushlightuserdata(L, &tdl_null_sentinel);
	lua_setfield(L, -2, "null");
	lua_setfield(L, -2, "td");
}

/*
 * Loads a text chunk named after its file's base name: Lua cuts long chunk
 * names in messages, and "tokio.lua:12: ..." is what a plugin author needs.
 */
int tdl_load_text_file(lua_State *L, const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		lua_pushfstring(L, "cannot open %s", path);
		return LUA_ERRFILE;
	}
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		luaL_addlstring(&b, chunk, n);
	fclose(f);
	luaL_pushresult(&b);
	const char *base = strrchr(path, '/');
	lua_pushfstring(L, "@%s", base ? base + 1 : path);
	size_t len;
	const char *text = lua_tolstring(L, -2, &len);
	int r = luaL_loadbufferx(L, text, len, lua_tostring(L, -1), "t");
	lua_remove(L, -2);  /* chunk name */
	lua_remove(L, -2);  /* text */
	return r;
}

/*
 * The message handler of every call into Lua: the error as text (a td.error
 * reads as its position and message: tdl_push_error_text). The Lua
 * stack of a failure is for taskdbg's developers and comes with it only when
 * TASKDBG_DEBUG is set (users read what went wrong, not where in a plugin).
 */
int tdl_traceback(lua_State *L)
{
	const char *debug = getenv("TASKDBG_DEBUG");
	tdl_push_error_text(L, 1);
	if (debug && debug[0])
		luaL_traceback(L, L, lua_tostring(L, -1), 1);
	return 1;
}

int tdl_pcall(struct td_lua *lua, int nargs, int nresults, unsigned limit_ms)
{
	lua_State *L = lua->L;
	int handler = lua_gettop(L) - nargs;   /* where the function is: the handler goes below it */
	lua_pushcfunction(L, tdl_traceback);
	lua_insert(L, handler);
	/*
	 * A call from inside another (a session script's taskdbg.refresh() runs
	 * the plugin in a stop) has its own budget; the outer one resumes after.
	 */
	unsigned long long instructions = lua->instructions;
	unsigned outer_limit = lua->limit_ms;
	uint64_t outer_deadline = lua->deadline_ns;
	bool outer_fatal = lua->fatal;
	tdl_budget_start(lua, limit_ms);
	tdl_fatal_reset(lua);
	int status = lua_pcall(L, nargs, nresults, handler);
	lua_remove(L, handler);
	/* Out of budget or memory ends the call, even if the plugin caught the error. */
	if (status == LUA_OK && tdl_fatal_error(lua)) {
		lua_insert(L, handler);
		lua_settop(L, handler);
		status = LUA_ERRRUN;
	}
	lua->instructions = instructions;
	lua->limit_ms = outer_limit;
	lua->deadline_ns = outer_deadline;
	lua->fatal = outer_fatal;
	return status;
}

/*
 * The error of a failed call of the plugin's `entry`, whose message is on
 * top of the stack. A plugin may explain its own failures: its optional
 * `explain(message, entry)` returns what the user should read instead (a
 * runtime layout it cannot read, say), or nil to keep the message.
 */
struct td_error *tdl_plugin_failure(struct td_lua *lua, const char *entry)
{
	lua_State *L = lua->L;
	const char *path = lua->plugin_path ? lua->plugin_path : "(none)";
	int top = lua_gettop(L);
	const char *message = lua_isstring(L, top) ? lua_tostring(L, top) : "(no message)";
	struct td_error *err = NULL;
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	if (lua_istable(L, -1) && lua_getfield(L, -1, "explain") == LUA_TFUNCTION) {
		lua_pushvalue(L, top);
		lua_pushstring(L, entry);
		if (tdl_pcall(lua, 2, 1, TD_LUA_OTHER_MS) == LUA_OK && lua_isstring(L, -1))
			err = td_error_format(TD_ERR_TARGET, "%s", lua_tostring(L, -1));
	}
	if (!err)
		err = td_error_format(TD_ERR_TARGET, "plugin %s failed in %s: %s", path, entry, message);
	lua_settop(L, top);
	return err;
}

struct td_program *td_lua_program(struct td_lua *lua)
{
	return lua->prog;
}

/*
 * Calls the loaded plugin's function `entry` within limit_ms, leaving its
 * result on top of the stack; the caller restores the stack. A missing entry
 * is an error unless optional (then *called is false and nothing is pushed
 * that matters).
 */
struct td_error *tdl_call_entry(struct td_lua *lua, const char *entry, unsigned limit_ms,
				   bool optional, bool *called)
{
	lua_State *L = lua->L;
	const char *path = lua->plugin_path ? lua->plugin_path : "(none)";
	*called = false;
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	if (!lua_istable(L, -1))
		return td_error_format(TD_ERR_INTERNAL, "no plugin loaded");
	if (lua_getfield(L, -1, entry) != LUA_TFUNCTION) {
		if (optional)
			return NULL;  /* optional entries (prepare) may be absent */
		return td_error_format(TD_ERR_TARGET, "plugin %s has no function %s", path, entry);
	}
	if (tdl_pcall(lua, 0, 1, limit_ms) != LUA_OK)
		return tdl_plugin_failure(lua, entry);
	*called = true;
	return NULL;
}

/* The td.* functions of this file (lua/internal.h). */
const luaL_Reg tdl_host_functions[] = {
	{ "clock_ms", l_clock_ms },
	{ "target_clock_ms", l_target_clock_ms },
	{ NULL, NULL },
};

/* `taskdbg run`: a user script in the sandbox (lua/binding.h). */
struct td_error *td_lua_run_script(struct td_lua *lua, const char *path, char **args, int nargs,
				   bool target_stopped, struct json_object **ret)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	struct td_error *err = tdl_load_chunk(L, path, "script");
	if (err)
		return err;
	tdl_push_sandbox(L);
	lua_createtable(L, nargs, 0);
	for (int i = 0; i < nargs; i++) {
		lua_pushstring(L, args[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "args");
	lua_setupvalue(L, -2, 1);
	if (tdl_pcall(lua, 0, 1, target_stopped ? TD_LUA_STOPPED_MS : TD_LUA_OTHER_MS) != LUA_OK) {
		err = td_error_format(TD_ERR_TARGET, "script %s failed: %s", path, lua_tostring(L, -1));
		lua_settop(L, base);
		return err;
	}
	if (lua_istable(L, -1))
		tdl_keep_alive(L, -1);
	*ret = lua_istable(L, -1) ? tdl_to_json(L, -1, 0) : NULL;
	lua_settop(L, base);
	return NULL;
}
