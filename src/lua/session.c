/*
 * The Lua side of a session (`taskdbg attach`/`core`, `taskdbg run`): a
 * user's code, trusted, outside the plugins' sandbox (io and os are there,
 * no budget but Ctrl-C), with the `taskdbg` table of docs/lua-api.md. Its
 * primitives are here (snapshots through the session's ops, JSON); the rest
 * of the API (tasks, resources, history) and the REPL's commands are Lua,
 * compiled into taskdbg (src/interactive/api.lua and commands.lua, embedded at build time).
 */
#include "lua/internal.h"

#include <stdio.h>

#include "debuginfo/source.h"
#include "lua/embedded.h"
#include "util/duration.h"

static const char OPS_KEY[] = "taskdbg.session";     /* light userdata: the ops */
static const char API_KEY[] = "taskdbg.api";         /* the taskdbg table */
static const char ENV_KEY[] = "taskdbg.user_env";    /* the user environment */

static const struct td_lua_session_ops *ops_of(lua_State *L)
{
	lua_getfield(L, LUA_REGISTRYINDEX, OPS_KEY);
	const struct td_lua_session_ops *ops = lua_touserdata(L, -1);
	lua_pop(L, 1);
	if (!ops)
		luaL_error(L, "no session");
	return ops;
}

/*
 * Raises a session primitive's error as its message alone: what went wrong
 * with the target (it exited, say) is the user's news, not a Lua position.
 */
static int raise_error(lua_State *L, struct td_error *err)
{
	if (err == &td_enomem)
		return tdl_raise(L, err);
	lua_pushstring(L, err->message);
	td_error_destroy(err);
	return lua_error(L);
}

/* taskdbg.refresh() -> a new snapshot of a live target (nothing new for a core). */
static int l_refresh(lua_State *L)
{
	const struct td_lua_session_ops *ops = ops_of(L);
	struct td_error *err = ops->refresh(ops->ctx);
	if (err)
		return raise_error(L, err);
	return 0;
}

/* taskdbg._watch(window_ms, interval_ms): diagnose's sampling of a live target, then a walk. */
static int l_watch(lua_State *L)
{
	const struct td_lua_session_ops *ops = ops_of(L);
	struct td_error *err = ops->watch(ops->ctx, luaL_checknumber(L, 1), luaL_checknumber(L, 2));
	if (err)
		return raise_error(L, err);
	return 0;
}

/* Pushes a json-c object from the session's ops (freed here), or raises its error. */
static int push_json_result(lua_State *L, struct td_error *err, struct json_object *o)
{
	if (err) {
		json_object_put(o);
		return raise_error(L, err);
	}
	tdl_push_json(L, o, 0);
	json_object_put(o);
	return 1;
}

/* taskdbg._threads() -> the current snapshot's threads, as `bt --json` gives them. */
static int l_threads(lua_State *L)
{
	const struct td_lua_session_ops *ops = ops_of(L);
	struct json_object *o = NULL;
	struct td_error *err = ops->threads(ops->ctx, &o);
	return push_json_result(L, err, o);
}

/* taskdbg._folds() -> per thread of _threads(), the runs of frames bt folds: {from, count, crates}. */
static int l_folds(lua_State *L)
{
	const struct td_lua_session_ops *ops = ops_of(L);
	struct json_object *o = NULL;
	struct td_error *err = ops->folds(ops->ctx, &o);
	return push_json_result(L, err, o);
}

/* taskdbg._target() -> {kind, pid, exe, comm, core, snapshots, stopped_ms, ...} */
static int l_target(lua_State *L)
{
	const struct td_lua_session_ops *ops = ops_of(L);
	return push_json_result(L, NULL, ops->target(ops->ctx));
}

/* taskdbg.dump(path) -> {path, bytes, threads, stopped_ms, ms}: a core of the live target. */
static int l_dump(lua_State *L)
{
	const struct td_lua_session_ops *ops = ops_of(L);
	const char *path = tdl_check_string(L, 1);
	if (!ops->dump)   /* (a session gives it for a live target) */
		return raise_error(L, td_error_format(TD_ERR_USAGE, "dump needs a live process: this is a core"));
	struct json_object *o = NULL;
	struct td_error *err = ops->dump(ops->ctx, path, &o);
	return push_json_result(L, err, o);
}

/* taskdbg._diagnose(model, samples, threads, options) -> findings (detectors/). */
static int l_diagnose(lua_State *L)
{
	const struct td_lua_session_ops *ops = ops_of(L);
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TTABLE);
	luaL_checktype(L, 3, LUA_TTABLE);
	luaL_checktype(L, 4, LUA_TTABLE);
	struct td_lua *lua = tdl_get(L);
	lua_settop(L, 4);
	struct td_error *err = tdl_diagnose_with(lua, ops->detectors, 1, 2, 3, 4);
	if (err)
		return raise_error(L, err);
	return 1;
}

/* taskdbg._model() -> the runtime plugin's model of the last snapshot (its finish). */
static int l_model(lua_State *L)
{
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.model");
	return 1;
}

/* taskdbg._samples() -> the samples kept (diagnose's, one per stop) */
static int l_samples(lua_State *L)
{
	luaL_getsubtable(L, LUA_REGISTRYINDEX, "taskdbg.samples");
	return 1;
}

/* taskdbg._set_samples(t): the samples kept from now on (the session trims them) */
static int l_set_samples(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.samples");
	return 0;
}

/* taskdbg._runtime() -> what the plugin declares: name, frames, resources, advice */
static int l_runtime(lua_State *L)
{
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	lua_createtable(L, 0, 4);
	if (lua_istable(L, -2)) {
		static const char *const declared[] = { "name", "frames", "resources", "advice", NULL };
		for (int i = 0; declared[i]; i++) {
			lua_getfield(L, -2, declared[i]);
			lua_setfield(L, -2, declared[i]);
		}
	}
	return 1;
}

/* taskdbg.json(v [, indent]) -> JSON text (the rules of --json: td.null, td.ptr, arrays) */
static int l_json(lua_State *L)
{
	luaL_checkany(L, 1);
	bool pretty = lua_toboolean(L, 2);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return tdl_raise(L, &td_enomem);
	bool ok = td_json_write_lua(f, L, 1, TD_LUA_JSON_DEPTH, &tdl_null_sentinel);
	ok = fclose(f) == 0 && ok;
	if (!ok) {
		free(text);
		return tdl_raise(L, &td_enomem);
	}
	if (pretty) {
		/* Through json-c for the indentation: small results only (a person reads them). */
		struct json_object *o = json_tokener_parse(text);
		free(text);
		lua_pushstring(L, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
			JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
		return 1;
	}
	lua_pushlstring(L, text, len);
	free(text);
	return 1;
}

/* taskdbg.parse_json(text) -> a Lua value (null as nil: a key left out), or nil, message */
static int l_parse_json(lua_State *L)
{
	const char *text = tdl_check_string(L, 1);
	enum json_tokener_error jerr;
	struct json_object *o = json_tokener_parse_verbose(text, &jerr);
	if (!o && jerr != json_tokener_success) {
		lua_pushnil(L);
		lua_pushstring(L, json_tokener_error_desc(jerr));
		return 2;
	}
	tdl_push_json(L, o, 0);
	json_object_put(o);
	return 1;
}

/* taskdbg.sleep(seconds): the target runs meanwhile; Ctrl-C ends it (and the script). */
static int l_sleep(lua_State *L)
{
	double s = luaL_checknumber(L, 1);
	if (!td_sleep_until(td_now_ns() + (uint64_t)(s > 0 ? s * 1e9 : 0)))
		return tdl_raise_kind(L, TDL_BUDGET, "interrupted");
	return 0;
}

/* taskdbg.parse_duration(text) -> seconds, or nil: "500ms", "2s", "1.5" as every command takes them */
static int l_parse_duration(lua_State *L)
{
	double ms;
	if (!td_parse_duration_ms(luaL_tolstring(L, 1, NULL), &ms))
		return 0;
	lua_pushnumber(L, ms / 1000);
	return 1;
}

/* taskdbg.time() -> seconds since the epoch, with fractions (for reports) */
static int l_time(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + ts.tv_nsec / 1e9);
	return 1;
}

/*
 * taskdbg.source_line(file, line) -> the text of that line, or nil. A
 * relative file (as rustc records the crate's own) is looked for under the
 * executable's workspace, then the current directory.
 */
static int l_source_line(lua_State *L)
{
	const char *file = tdl_check_string(L, 1);
	lua_Integer line = tdl_check_integer(L, 2);
	FILE *f = NULL;
	if (file[0] != '/') {
		const struct td_snapshot *snap = td_program_snapshot(tdl_get(L)->prog);
		const char *ws = snap->exe_module ? td_source_workspace(snap->exe_module) : NULL;
		if (ws) {
			char *path;
			if (asprintf(&path, "%s/%s", ws, file) >= 0) {
				f = fopen(path, "re");
				free(path);
			}
		}
	}
	if (!f)
		f = fopen(file, "re");
	if (!f || line < 1) {
		if (f)
			fclose(f);
		return 0;
	}
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n = 0;
	for (lua_Integer i = 1; i <= line && (n = getline(&buf, &cap, f)) >= 0; i++)
		;
	fclose(f);
	if (n < 0) {
		free(buf);
		return 0;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	lua_pushlstring(L, buf, (size_t)n);
	free(buf);
	return 1;
}

/* Where the session's output goes now (a pager's buffer, say): stdout unless set. */
static FILE *output_of(lua_State *L)
{
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.output");
	FILE *f = lua_touserdata(L, -1);
	lua_pop(L, 1);
	return f ? f : stdout;
}

/* taskdbg.write(...): strings and numbers to the session's output, as io.write does. */
static int l_write(lua_State *L)
{
	FILE *f = output_of(L);
	int n = lua_gettop(L);
	for (int i = 1; i <= n; i++) {
		size_t len;
		const char *s = luaL_tolstring(L, i, &len);
		fwrite(s, 1, len, f);
		lua_pop(L, 1);
	}
	return 0;
}

/* print(...), in a session: to the session's output. */
static int l_print(lua_State *L)
{
	FILE *f = output_of(L);
	int n = lua_gettop(L);
	for (int i = 1; i <= n; i++) {
		size_t len;
		const char *s = luaL_tolstring(L, i, &len);
		if (i > 1)
			fputc('\t', f);
		fwrite(s, 1, len, f);
		lua_pop(L, 1);
	}
	fputc('\n', f);
	return 0;
}

/* taskdbg.flush(): what was written so far reaches the terminal (watch's rounds). */
static int l_flush(lua_State *L)
{
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.flush");
	void (*flush)(void) = (void (*)(void))(uintptr_t)lua_touserdata(L, -1);
	if (flush)
		flush();
	else
		fflush(output_of(L));
	return 0;
}

static const luaL_Reg session_functions[] = {
	{ "write", l_write },
	{ "flush", l_flush },
	{ "refresh", l_refresh },
	{ "dump", l_dump },
	{ "json", l_json },
	{ "parse_json", l_parse_json },
	{ "sleep", l_sleep },
	{ "parse_duration", l_parse_duration },
	{ "time", l_time },
	{ "_watch", l_watch },
	{ "_threads", l_threads },
	{ "_folds", l_folds },
	{ "_target", l_target },
	{ "_diagnose", l_diagnose },
	{ "_model", l_model },
	{ "_samples", l_samples },
	{ "_set_samples", l_set_samples },
	{ "_runtime", l_runtime },
	{ "source_line", l_source_line },
	{ NULL, NULL },
};

/*
 * The environment of a user's code: the plugins' sandbox (td, safe
 * libraries) and io, os, the taskdbg table, print going where the session
 * says (a pager, say), and require from the script's own directory.
 */
static void push_user_env(lua_State *L)
{
	tdl_push_sandbox(L);
	int env = lua_gettop(L);
	luaL_requiref(L, LUA_IOLIBNAME, luaopen_io, 0);
	lua_setfield(L, env, "io");
	luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
	lua_setfield(L, env, "os");
	static const char *const more[] = { "load", "collectgarbage", NULL };
	lua_pushglobaltable(L);
	for (int i = 0; more[i]; i++) {
		lua_getfield(L, -1, more[i]);
		lua_setfield(L, env, more[i]);
	}
	lua_pop(L, 1);
	lua_getfield(L, LUA_REGISTRYINDEX, API_KEY);
	lua_setfield(L, env, "taskdbg");
	lua_pushcfunction(L, l_print);
	lua_setfield(L, env, "print");
	lua_pushvalue(L, env);
	lua_setfield(L, env, "_G");
}

/* Runs an embedded chunk in env (at idx); its result is left on the stack. */
static struct td_error *run_embedded(struct td_lua *lua, const struct td_embedded_file *file, int env)
{
	lua_State *L = lua->L;
	char name[128];
	snprintf(name, sizeof(name), "@%s", file->name);
	if (luaL_loadbufferx(L, file->text, file->len, name, "t") != LUA_OK)
		return td_error_format(TD_ERR_INTERNAL, "%s", lua_tostring(L, -1));
	lua_pushvalue(L, env);
	lua_setupvalue(L, -2, 1);
	if (tdl_pcall(lua, 0, 1, TD_LUA_OTHER_MS) != LUA_OK)
		return td_error_format(TD_ERR_INTERNAL, "%s: %s", file->name, lua_tostring(L, -1));
	return NULL;
}

struct td_error *td_lua_session_open(struct td_lua *lua, const struct td_lua_session_ops *ops)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	lua_pushlightuserdata(L, (void *)ops);
	lua_setfield(L, LUA_REGISTRYINDEX, OPS_KEY);
	lua_newtable(L);
	luaL_setfuncs(L, session_functions, 0);
	lua_setfield(L, LUA_REGISTRYINDEX, API_KEY);
	/* A session tells tasks that moved from those that did not: the plugin's progress option. */
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	if (lua_istable(L, -1) && lua_getfield(L, -1, "options") == LUA_TTABLE) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "progress");
	}
	lua_settop(L, base);
	push_user_env(L);
	int env = lua_gettop(L);
	lua_pushvalue(L, env);
	lua_setfield(L, LUA_REGISTRYINDEX, ENV_KEY);
	/* The API in Lua (api.lua fills the taskdbg table), then the REPL's commands. */
	struct td_error *err = NULL;
	for (size_t i = 0; !err && i < td_embedded_count; i++) {
		err = run_embedded(lua, &td_embedded_files[i], env);
		if (!err && lua_istable(L, -1)) {
			char key[96];
			snprintf(key, sizeof(key), "taskdbg.lib.%s", td_embedded_files[i].name);
			lua_setfield(L, LUA_REGISTRYINDEX, key);
		}
		lua_settop(L, env);
	}
	lua_settop(L, base);
	return err;
}

/* Calls lib (an embedded file's table) .fn with the string arguments; results left on the stack. */
static int call_lib(struct td_lua *lua, const char *lib, const char *fn, const char *const *args,
		    int nargs, int nresults)
{
	lua_State *L = lua->L;
	char key[96];
	snprintf(key, sizeof(key), "taskdbg.lib.%s", lib);
	lua_getfield(L, LUA_REGISTRYINDEX, key);
	lua_getfield(L, -1, fn);
	lua_remove(L, -2);
	for (int i = 0; i < nargs; i++)
		lua_pushstring(L, args[i]);
	return tdl_pcall(lua, nargs, nresults, TD_LUA_UNLIMITED);
}

void td_lua_session_output(struct td_lua *lua, FILE *out, void (*flush)(void))
{
	lua_pushlightuserdata(lua->L, out);
	lua_setfield(lua->L, LUA_REGISTRYINDEX, "taskdbg.output");
	lua_pushlightuserdata(lua->L, (void *)(uintptr_t)flush);
	lua_setfield(lua->L, LUA_REGISTRYINDEX, "taskdbg.flush");
}

void td_lua_session_set(struct td_lua *lua, const char *key, bool value)
{
	lua_getfield(lua->L, LUA_REGISTRYINDEX, API_KEY);
	lua_pushboolean(lua->L, value);
	lua_setfield(lua->L, -2, key);
	lua_pop(lua->L, 1);
}

struct td_error *td_lua_session_snapshot(struct td_lua *lua)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	bool called;
	struct td_error *err = tdl_call_entry(lua, "finish", TD_LUA_OTHER_MS, false, &called);
	if (err) {
		lua_settop(L, base);
		return err;
	}
	lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.model");
	/* The history (api.lua): what each task does now, against the snapshots before. */
	if (call_lib(lua, "api.lua", "_record", NULL, 0, 0) != LUA_OK)
		err = td_error_format(TD_ERR_INTERNAL, "recording the snapshot: %s", lua_tostring(L, -1));
	lua_settop(L, base);
	return err;
}

struct td_error *td_lua_session_command(struct td_lua *lua, const char *line, bool *quit)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	const char *args[] = { line };
	struct td_error *err = NULL;
	*quit = false;
	if (call_lib(lua, "commands.lua", "run", args, 1, 1) != LUA_OK)
		err = td_error_format(TD_ERR_TARGET, "%s", lua_tostring(L, -1));
	else
		*quit = lua_toboolean(L, -1);
	lua_settop(L, base);
	return err;
}

char **td_lua_session_complete(struct td_lua *lua, const char *line, const char *word)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	const char *args[] = { line, word };
	char **out = NULL;
	if (call_lib(lua, "commands.lua", "complete", args, 2, 1) == LUA_OK && lua_istable(L, -1)) {
		size_t n = lua_rawlen(L, -1);
		out = calloc(n + 1, sizeof(*out));
		for (size_t i = 0; out && i < n; i++) {
			lua_rawgeti(L, -1, (lua_Integer)i + 1);
			const char *s = lua_tostring(L, -1);
			out[i] = strdup(s ? s : "");
			lua_pop(L, 1);
		}
	}
	lua_settop(L, base);
	return out;
}

char *td_lua_session_prompt(struct td_lua *lua)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	char *out = NULL;
	if (call_lib(lua, "commands.lua", "prompt", NULL, 0, 1) == LUA_OK && lua_isstring(L, -1))
		out = strdup(lua_tostring(L, -1));
	lua_settop(L, base);
	return out;
}

struct td_error *td_lua_session_script(struct td_lua *lua, const char *path, char **args, int nargs,
				       int *status)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	*status = 0;
	struct td_error *err = tdl_load_chunk(L, path, "script");
	if (err)
		return err;
	/* Its own environment over the session's, with arg and require from its directory. */
	lua_getfield(L, LUA_REGISTRYINDEX, ENV_KEY);
	tdl_push_copy(L, -1);
	lua_remove(L, -2);
	lua_createtable(L, nargs, 1);
	lua_pushstring(L, path);
	lua_rawseti(L, -2, 0);
	for (int i = 0; i < nargs; i++) {
		lua_pushstring(L, args[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "arg");
	lua_setfield(L, -2, "args");
	tdl_push_dir_of(L, path);
	lua_getfield(L, LUA_REGISTRYINDEX, ENV_KEY);
	tdl_push_user_require(L, lua_tostring(L, -2), -1);
	lua_setfield(L, -4, "require");
	lua_pop(L, 2);
	lua_pushvalue(L, -1);
	lua_setfield(L, -2, "_G");
	lua_setupvalue(L, -2, 1);
	if (tdl_pcall(lua, 0, 1, TD_LUA_UNLIMITED) != LUA_OK) {
		err = td_error_format(TD_ERR_TARGET, "script %s failed: %s", path, lua_tostring(L, -1));
		lua_settop(L, base);
		return err;
	}
	/*
	 * Its status: an integer 0-255 it returns (false: 1; nothing or true: 0);
	 * a table is printed as JSON (the old `run`). Anything else is a mistake.
	 */
	lua_Integer n;
	int isint = 0;
	if (lua_type(L, -1) == LUA_TNUMBER) {
		n = lua_tointegerx(L, -1, &isint);
		if (!isint || n < 0 || n > 255) {
			err = td_error_format(TD_ERR_TARGET, "script %s returned %s: an exit status is an integer from 0 to 255",
					      path, luaL_tolstring(L, -1, NULL));
			lua_settop(L, base);
			return err;
		}
		*status = (int)n;
	} else if (lua_istable(L, -1)) {
		if (!td_json_write_lua(stdout, L, lua_gettop(L), TD_LUA_JSON_DEPTH, &tdl_null_sentinel))
			err = &td_enomem;
		putchar('\n');
	} else if (lua_isboolean(L, -1)) {
		*status = lua_toboolean(L, -1) ? 0 : 1;
	} else if (!lua_isnil(L, -1)) {
		err = td_error_format(TD_ERR_TARGET, "script %s returned a %s: return an exit status (0-255), "
				      "true, false, nil or a table (printed as JSON)", path, luaL_typename(L, -1));
	}
	lua_settop(L, base);
	return err;
}
