/*
 * The plugin protocol: loading the plugins and choosing the one whose
 * detect() finds its runtime (or the built-in no-runtime plugin), what it
 * declares for C (its frames), calling its entries, and diagnose's samples.
 */
#include "lua/internal.h"

struct td_error *td_lua_load_plugin(struct td_lua *lua, const char *path)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	struct td_error *err = tdl_load_chunk(L, path, "plugin");
	if (err)
		return err;
	/* Its modules: require loads from its own directory only. */
	tdl_push_dir_of(L, path);
	tdl_push_module_env(L, lua_tostring(L, -1));
	lua_remove(L, -2);
	lua_setupvalue(L, -2, 1);  /* the chunk's _ENV */
	if (tdl_pcall(lua, 0, 1, TD_LUA_OTHER_MS) != LUA_OK || !lua_istable(L, -1)) {
		err = td_error_format(TD_ERR_TARGET, "plugin %s: %s", path,
			lua_isstring(L, -1) ? lua_tostring(L, -1) : "did not return a table");
		lua_settop(L, base);
		return err;
	}
	free(lua->plugin_path);
	lua->plugin_path = strdup(path);
	lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	lua_settop(L, base);
	return NULL;
}

/*
 * When no plugin recognises a runtime: a plugin with no runtime in its
 * model, so that every command runs the same way (stacks, thread-level
 * findings) and says why the list is empty.
 */
static const char no_runtime_plugin[] =
	"local why = ...\n"
	"local function none() return { runtimes = setmetatable({}, { __array = true }), none_found = why } end\n"
	"local function nothing() end\n"
	"return { name = 'none', prepare = nothing, prepare_threads = nothing, snapshot = nothing,\n"
	"         sample = nothing, finish = none, walk = none,\n"
	"         current_tasks = function() return setmetatable({}, { __array = true }) end }\n";

/*
 * Loads every plugin of paths and asks each whether its runtime is in the
 * program (detect(), DWARF only); the one that says yes becomes the plugin.
 */
static struct td_error *choose_plugin(struct td_lua *lua, char *const *paths, size_t n)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	struct td_error *err = NULL;
	const char *chosen = NULL;
	for (size_t i = 0; i < n && !err; i++) {
		if ((err = td_lua_load_plugin(lua, paths[i])))
			break;
		lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
		int plugin = lua_gettop(L);
		bool called, yes = false;
		err = tdl_call_entry(lua, "detect", TD_LUA_OTHER_MS, false, &called);
		if (!err) {
			yes = lua_toboolean(L, -1);
			lua_pop(L, 1);
		}
		if (!err && yes && chosen) {
			err = td_error_format(TD_ERR_TARGET,
				"plugins %s and %s both find their runtime in this program; taskdbg reads one "
				"runtime per process for now\nRemove one of them from the plugin path.",
				chosen, paths[i]);
		} else if (!err && yes) {
			chosen = paths[i];
			lua_pushvalue(L, plugin);
			lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.chosen");
		}
		lua_settop(L, plugin - 1);
	}
	if (err) {
		lua_settop(L, base);
		return err;
	}
	if (chosen) {
		lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.chosen");
		lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
		lua_pushnil(L);
		lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.chosen");
		free(lua->plugin_path);
		lua->plugin_path = strdup(chosen);
		lua_settop(L, base);
		return lua->plugin_path ? NULL : &td_enomem;
	}
	/* None: why, naming the plugins asked. */
	lua_settop(L, base);
	luaL_Buffer why;
	luaL_buffinit(L, &why);
	luaL_addstring(&why, "no plugin recognises an async runtime in this program (plugins asked:");
	for (size_t i = 0; i < n; i++) {
		const char *b = strrchr(paths[i], '/');
		luaL_addchar(&why, ' ');
		luaL_addstring(&why, b ? b + 1 : paths[i]);
	}
	luaL_addstring(&why, n ? ")" : " none)");
	luaL_pushresult(&why);
	if (luaL_loadbufferx(L, no_runtime_plugin, sizeof(no_runtime_plugin) - 1, "=none", "t") != LUA_OK) {
		lua_settop(L, base);
		return td_error_format(TD_ERR_INTERNAL, "the no-runtime plugin does not load");
	}
	lua_insert(L, -2);
	if (tdl_pcall(lua, 1, 1, TD_LUA_OTHER_MS) != LUA_OK) {
		lua_settop(L, base);
		return &td_enomem;
	}
	lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	free(lua->plugin_path);
	lua->plugin_path = NULL;
	lua_settop(L, base);
	return NULL;
}

struct td_error *td_lua_open_runtime(struct td_snapshot *snap, char *const *paths, size_t n,
				     const char *prepare, struct td_lua **ret)
{
	struct td_program *prog;
	struct td_error *err = td_program_create(snap, &prog);
	if (err)
		return err;
	struct td_lua *lua;
	if ((err = td_lua_create(prog, &lua))) {
		td_program_destroy(prog);
		return err;
	}
	lua->owns_prog = true;
	if ((err = choose_plugin(lua, paths, n)) ||
	    (err = td_lua_call_plugin(lua, prepare, false, NULL))) {
		td_lua_destroy(lua);
		return err;
	}
	*ret = lua;
	return NULL;
}

struct td_error *td_lua_call_plugin(struct td_lua *lua, const char *entry, bool target_stopped,
				    struct json_object **ret)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	bool called;
	struct td_error *err = tdl_call_entry(lua, entry, target_stopped ? TD_LUA_STOPPED_MS : TD_LUA_OTHER_MS,
					  !ret, &called);
	if (!err && called && ret) {
		td_timing_mark("plugin call");
		tdl_keep_alive(L, -1);
		*ret = tdl_to_json(L, -1, 0);
		td_timing_mark("plugin result to JSON");
	}
	lua_settop(L, base);
	return err;
}

struct td_error *td_lua_call_keep(struct td_lua *lua, const char *entry)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	bool called;
	struct td_error *err = tdl_call_entry(lua, entry, TD_LUA_OTHER_MS, false, &called);
	if (!err)
		lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.result");
	lua_settop(L, base);
	if (!err)
		td_timing_mark("plugin call");
	return err;
}

struct td_error *td_lua_call_stopped(struct td_lua *lua, const char *entry)
{
	/* What the page cache holds was read before this stop: stale now. */
	td_program_forget_memory(lua->prog);
	return td_lua_call_plugin(lua, entry, true, NULL);
}

struct td_error *td_lua_sample(struct td_lua *lua, bool last)
{
	td_program_forget_memory(lua->prog);
	const struct td_snapshot *snap = td_program_snapshot(lua->prog);
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	lua_createtable(L, 0, 3);
	int s = lua_gettop(L);
	lua_pushnumber(L, (lua_Number)td_now_ns() / 1e6);
	lua_setfield(L, s, "t");
	lua_createtable(L, 0, (int)snap->nthreads);
	for (size_t i = 0; i < snap->nthreads; i++) {
		const struct td_snapshot_thread *t = &snap->threads[i];
		lua_createtable(L, 0, 3);
		const char *sc = td_syscall_name(t->syscall);
		if (sc) {
			lua_pushstring(L, sc);
			lua_setfield(L, -2, "syscall");
		}
		if (sc && strcmp(sc, "futex") == 0) {
			uint64_t futex = t->regs.rdi;
			lua_pushinteger(L, (lua_Integer)futex);
			lua_setfield(L, -2, "futex");
			/*
			 * A thread in pthread_mutex_lock waits on the mutex's first
			 * word; glibc keeps the holder's tid 8 bytes further (x86_64
			 * pthread_mutex_t: __lock, __count, __owner). Meaningless for
			 * other futexes: the deadlock detector reads it only for
			 * threads whose stack is in pthread_mutex_lock, and only from
			 * the last sample, so earlier stops do not pay for it.
			 */
			uint32_t owner;
			struct td_error *err = last ? td_program_read(lua->prog, futex + 8, &owner, sizeof(owner)) : NULL;
			if (last && !err) {
				lua_pushinteger(L, owner);
				lua_setfield(L, -2, "mutex_owner");
			}
			td_error_destroy(err);
		}
		lua_rawseti(L, -2, t->tid);
	}
	lua_setfield(L, s, "threads");
	lua_newtable(L);
	lua_setfield(L, s, "runtimes");
	/* The runtime's part: which task each thread polls, which are ready... */
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	if (lua_getfield(L, -1, "sample") == LUA_TFUNCTION) {
		lua_pushvalue(L, s);
		if (tdl_pcall(lua, 1, 0, TD_LUA_STOPPED_MS) != LUA_OK) {
			struct td_error *err = tdl_plugin_failure(lua, "sample");
			lua_settop(L, base);
			return err;
		}
	}
	lua_settop(L, s);
	luaL_getsubtable(L, LUA_REGISTRYINDEX, "taskdbg.samples");
	lua_pushvalue(L, s);
	lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
	lua_settop(L, base);
	return NULL;
}

/* The strings of the table at idx's field key (a list), copied: NULL-terminated. */
static bool copy_strings(lua_State *L, int idx, const char *key, char ***ret)
{
	*ret = NULL;
	if (lua_getfield(L, idx, key) != LUA_TTABLE) {
		lua_pop(L, 1);
		return true;
	}
	size_t n = lua_rawlen(L, -1), k = 0;
	char **list = calloc(n + 1, sizeof(*list));
	bool ok = list != NULL;
	for (size_t i = 1; ok && i <= n; i++) {
		if (lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING)
			ok = (list[k++] = strdup(lua_tostring(L, -1))) != NULL;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	*ret = list;
	return ok;
}

struct td_error *td_lua_runtime_frames(struct td_lua *lua, struct td_runtime_frames *out)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	*out = (struct td_runtime_frames){ 0 };
	bool ok = true;
	if (lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin") == LUA_TTABLE &&
	    lua_getfield(L, -1, "frames") == LUA_TTABLE) {
		int frames = lua_gettop(L);
		ok = copy_strings(L, frames, "worker", &out->worker) &&
		     copy_strings(L, frames, "blocking", &out->blocking) &&
		     copy_strings(L, frames, "drives", &out->drives) &&
		     copy_strings(L, frames, "poll", &out->poll) &&
		     copy_strings(L, frames, "poll_async", &out->poll_async) &&
		     copy_strings(L, frames, "poll_blocking", &out->poll_blocking) &&
		     copy_strings(L, frames, "future", &out->future);
	}
	lua_settop(L, base);
	if (!ok) {
		td_runtime_frames_free(out);
		return &td_enomem;
	}
	return NULL;
}
