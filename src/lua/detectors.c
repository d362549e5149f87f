/*
 * Diagnosis: the detectors (detectors/NAME.lua, each a module returning
 * {name, severity, run}) run on the plugin's model, samples, threads and
 * declarations through _lib.lua's run_detectors.
 */
#include "lua/internal.h"

struct td_error *tdl_run_detectors(struct td_lua *lua, const char *dir, char *const *files, size_t nfiles,
				   int ctx)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	struct td_error *err = NULL;
	/* Each detector file is a module: it returns {name=, severity=, run=}. */
	lua_createtable(L, (int)nfiles, 0);
	int list = lua_gettop(L);
	for (size_t i = 0; i < nfiles && !err; i++) {
		if ((err = tdl_load_chunk(L, files[i], "detector")))
			break;
		tdl_push_module_env(L, dir);
		lua_setupvalue(L, -2, 1);
		if (tdl_pcall(lua, 0, 1, TD_LUA_OTHER_MS) != LUA_OK) {
			err = td_error_format(TD_ERR_TARGET, "detector %s: %s", files[i], lua_tostring(L, -1));
			break;
		}
		bool ok = lua_istable(L, -1) && lua_getfield(L, -1, "name") == LUA_TSTRING &&
			  lua_getfield(L, -2, "severity") == LUA_TNUMBER && lua_isinteger(L, -1) &&
			  lua_getfield(L, -3, "run") == LUA_TFUNCTION;
		if (!ok) {
			err = td_error_format(TD_ERR_TARGET, "detector %s: it must return "
					      "{name = STRING, severity = INTEGER, run = FUNCTION}", files[i]);
			break;
		}
		lua_settop(L, list + 1);
		lua_rawseti(L, list, (lua_Integer)i + 1);
	}
	if (err) {
		lua_settop(L, base);
		return err;
	}
	/* _lib.lua runs them, in order of severity, and merges what they find. */
	tdl_push_require(L, dir);
	lua_pushliteral(L, "_lib");
	if (tdl_pcall(lua, 1, 1, TD_LUA_OTHER_MS) != LUA_OK || !lua_istable(L, -1) ||
	    lua_getfield(L, -1, "run_detectors") != LUA_TFUNCTION) {
		err = td_error_format(TD_ERR_TARGET, "detectors in %s: no _lib.lua with a function run_detectors (%s)",
				      dir, lua_isstring(L, -1) ? lua_tostring(L, -1) : "not there");
		lua_settop(L, base);
		return err;
	}
	lua_pushvalue(L, ctx);
	lua_pushvalue(L, list);
	if (tdl_pcall(lua, 2, 1, TD_LUA_OTHER_MS) != LUA_OK) {
		err = td_error_format(TD_ERR_TARGET, "diagnosis failed: %s", lua_tostring(L, -1));
		lua_settop(L, base);
		return err;
	}
	lua_replace(L, base + 1);
	lua_settop(L, base + 1);
	return NULL;
}

/*
 * The context every detector gets, from the values at the stack indices
 * given: the runtime model, the samples (a table), the threads (CLI THREAD
 * objects) and the options, with what the plugin adds (thread_holds,
 * blocking_pools) and declares (runtime). Runs the detectors of dir; leaves
 * the findings on top of the stack.
 */
struct td_error *tdl_diagnose_with(struct td_lua *lua, const char *dir, int model, int samples, int threads,
				   int options)
{
	lua_State *L = lua->L;
	model = lua_absindex(L, model);
	samples = lua_absindex(L, samples);
	threads = lua_absindex(L, threads);
	options = lua_absindex(L, options);
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	if (!lua_istable(L, -1))
		return td_error_format(TD_ERR_INTERNAL, "no plugin loaded");
	int plugin = lua_gettop(L);
	lua_createtable(L, 0, 8);
	int ctx = lua_gettop(L);
	lua_pushvalue(L, model);
	lua_setfield(L, ctx, "model");
	/*
	 * Optional, each a table for the detectors (an empty one if the plugin
	 * has no such entry): the locks and channel ends each thread's stack
	 * frames hold; the blocking pool each thread runs in or shuts down.
	 */
	static const char *const extras[] = { "thread_holds", "blocking_pools", NULL };
	for (int i = 0; extras[i]; i++) {
		lua_getfield(L, plugin, extras[i]);
		if (lua_isfunction(L, -1)) {
			if (tdl_pcall(lua, 0, 1, TD_LUA_OTHER_MS) != LUA_OK)
				return tdl_plugin_failure(lua, extras[i]);
		} else {
			lua_pop(L, 1);
			lua_newtable(L);
		}
		lua_setfield(L, ctx, extras[i]);
	}
	lua_pushvalue(L, samples);
	lua_setfield(L, ctx, "samples");
	lua_pushvalue(L, threads);
	lua_setfield(L, ctx, "threads");
	lua_pushvalue(L, options);
	lua_setfield(L, ctx, "options");
	/* What the plugin declares of its runtime: frames, resource classes, advice. */
	lua_createtable(L, 0, 4);
	static const char *const declared[] = { "name", "frames", "resources", "advice", NULL };
	for (int i = 0; declared[i]; i++) {
		lua_getfield(L, plugin, declared[i]);
		lua_setfield(L, -2, declared[i]);
	}
	lua_setfield(L, ctx, "runtime");
	struct td_error *err = tdl_diagnose_ctx(lua, dir, ctx);
	if (err)
		return err;
	lua_replace(L, plugin);
	lua_settop(L, plugin);
	return NULL;
}

struct td_error *td_lua_diagnose(struct td_lua *lua, const char *dir, struct json_object *threads,
				 struct json_object *options, struct json_object **ret)
{
	return td_lua_diagnose_model(lua, dir, threads, options, NULL, ret);
}

void td_lua_release_results(struct td_lua *lua)
{
	lua_pushnil(lua->L);
	lua_setfield(lua->L, LUA_REGISTRYINDEX, "taskdbg.results");
}

struct td_error *td_lua_diagnose_model(struct td_lua *lua, const char *dir, struct json_object *threads,
				       struct json_object *options, struct json_object **model_ret,
				       struct json_object **ret)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	struct td_error *err = NULL;
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	if (!lua_istable(L, -1)) {
		err = td_error_format(TD_ERR_INTERNAL, "no plugin loaded");
		goto out;
	}
	lua_getfield(L, -1, "finish");
	if (tdl_pcall(lua, 0, 1, TD_LUA_OTHER_MS) != LUA_OK) {
		err = tdl_plugin_failure(lua, "finish");
		goto out;
	}
	int model = lua_gettop(L);
	if (model_ret) {
		tdl_keep_alive(L, model);
		*model_ret = tdl_to_json(L, model, 0);
	}
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.samples");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_newtable(L);
	}
	tdl_push_json(L, threads, 0);
	tdl_push_json(L, options, 0);
	if ((err = tdl_diagnose_with(lua, dir, model, model + 1, model + 2, model + 3)))
		goto out;
	tdl_keep_alive(L, -1);
	*ret = tdl_to_json(L, -1, 0);
out:
	lua_settop(L, base);
	return err;
}

struct td_error *tdl_diagnose_ctx(struct td_lua *lua, const char *dir, int ctx)
{
	char **files = NULL;
	size_t nfiles = 0;
	struct td_error *err = tdl_detector_files(dir, &files, &nfiles);
	if (!err)
		err = tdl_run_detectors(lua, dir, files, nfiles, ctx);
	td_lua_free_paths(files, nfiles);
	return err;
}

