/*
 * Modules for plugins and detectors: `require(NAME)` in a sandbox loads
 * DIR/NAME.lua (dots are directories: "tokio.walk" is DIR/tokio/walk.lua),
 * text only, in a sandbox of its own, once per Lua state. DIR is the
 * directory of the file that asks (a plugin's, the detectors'): nothing
 * outside it can be loaded, as WirePlumber keeps its scripts to scripts/lib.
 */
#include "lua/internal.h"

/* A module name: words of [A-Za-z0-9_] joined by single dots. */
static bool valid_name(const char *name)
{
	bool word = false;
	for (const char *c = name; *c; c++) {
		if (*c == '.') {
			if (!word)
				return false;
			word = false;
		} else if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
			   *c == '_') {
			word = true;
		} else {
			return false;
		}
	}
	return word;
}

static int l_require(lua_State *L);

/*
 * The environment of a module being loaded: the sandbox, or for a user's
 * script (a third upvalue: its environment) a copy of that environment, so a
 * script's modules have io, os and taskdbg as the script has.
 */
static void push_env_for_module(lua_State *L, const char *dir)
{
	if (!lua_istable(L, lua_upvalueindex(3))) {
		tdl_push_module_env(L, dir);
		return;
	}
	tdl_push_copy(L, lua_upvalueindex(3));
	int env = lua_gettop(L);
	for (int i = 1; i <= 3; i++)
		lua_pushvalue(L, lua_upvalueindex(i));
	lua_pushcclosure(L, l_require, 3);
	lua_setfield(L, env, "require");
	lua_pushvalue(L, env);
	lua_setfield(L, env, "_G");
}

/* require(NAME): upvalues are DIR, the table of the modules loaded from it (and a user's environment). */
static int l_require(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	const char *dir = lua_tostring(L, lua_upvalueindex(1));
	lua_settop(L, 1);
	int t = lua_getfield(L, lua_upvalueindex(2), name);
	if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))
		return luaL_error(L, "require('%s'): a cycle of modules requires it while it loads", name);
	if (t != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	if (!valid_name(name))
		return luaL_error(L, "require('%s'): a module name is words joined by dots "
				  "(loaded from %s only)", name, dir);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	luaL_addstring(&b, dir);
	luaL_addchar(&b, '/');
	for (const char *c = name; *c; c++)
		luaL_addchar(&b, *c == '.' ? '/' : *c);
	luaL_addstring(&b, ".lua");
	luaL_pushresult(&b);
	const char *path = lua_tostring(L, -1);
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return luaL_error(L, "require('%s'): no module %s", name, path);
	if (tdl_load_text_file(L, path) != LUA_OK)
		return lua_error(L);
	push_env_for_module(L, dir);
	lua_setupvalue(L, -2, 1);
	lua_pushboolean(L, false);   /* loading: a cycle back to it is an error */
	lua_setfield(L, lua_upvalueindex(2), name);
	lua_call(L, 0, 1);           /* under the caller's protected call and budget */
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, true);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, lua_upvalueindex(2), name);
	return 1;
}

void tdl_push_require(lua_State *L, const char *dir)
{
	lua_pushstring(L, dir);
	/* The modules loaded from dir, per Lua state. */
	luaL_getsubtable(L, LUA_REGISTRYINDEX, "taskdbg.modules");
	luaL_getsubtable(L, -1, dir);
	lua_remove(L, -2);
	lua_pushcclosure(L, l_require, 2);
}

void tdl_push_copy(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	lua_newtable(L);
	for (lua_pushnil(L); lua_next(L, idx); ) {
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_settable(L, -4);
	}
}

void tdl_push_user_require(lua_State *L, const char *dir, int env)
{
	env = lua_absindex(L, env);
	lua_pushstring(L, dir);
	luaL_getsubtable(L, LUA_REGISTRYINDEX, "taskdbg.user_modules");
	luaL_getsubtable(L, -1, dir);
	lua_remove(L, -2);
	lua_pushvalue(L, env);
	lua_pushcclosure(L, l_require, 3);
}

void tdl_push_module_env(lua_State *L, const char *dir)
{
	tdl_push_sandbox(L);
	tdl_push_require(L, dir);
	lua_setfield(L, -2, "require");
}

/* The directory of path ("." if it has none), pushed. */
void tdl_push_dir_of(lua_State *L, const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		lua_pushliteral(L, ".");
	else
		lua_pushlstring(L, path, slash == path ? 1 : (size_t)(slash - path));
}
