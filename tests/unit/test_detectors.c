/*
 * Unit tests of the detectors (the files of detectors/) on synthetic models, with no
 * target: a Lua test file builds contexts as `taskdbg diagnose` hands them
 * over (model, threads, samples, options, runtime declarations) and checks
 * what diagnose(ctx) finds. The test file runs in the detectors' sandbox,
 * with require bound to the detectors directory.
 *   test-detectors DETECTORS_DIR TESTS.lua
 */
#include "lua/internal.h"

static const char *detectors_dir;

/* diagnose(ctx) -> { findings = {...}, tasks =, runtimes = } */
static int l_diagnose(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	struct td_error *err = tdl_diagnose_ctx(tdl_get(L), detectors_dir, 1);
	if (err) {
		lua_pushstring(L, err->message);
		td_error_destroy(err);
		return lua_error(L);
	}
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: test-detectors DETECTORS_DIR TESTS.lua\n");
		return 2;
	}
	detectors_dir = argv[1];
	struct td_lua *lua;
	struct td_error *err = td_lua_create(NULL, &lua);   /* no target: detectors read none */
	if (err) {
		fprintf(stderr, "%s\n", err->message);
		return 1;
	}
	lua_State *L = lua->L;
	int status = 1;
	if (tdl_load_text_file(L, argv[2]) != LUA_OK) {
		fprintf(stderr, "%s\n", lua_tostring(L, -1));
		goto out;
	}
	tdl_push_module_env(L, detectors_dir);
	lua_pushcfunction(L, l_diagnose);
	lua_setfield(L, -2, "diagnose");
	lua_setupvalue(L, -2, 1);
	if (tdl_pcall(lua, 0, 1, TD_LUA_OTHER_MS) != LUA_OK) {
		fprintf(stderr, "%s\n", lua_tostring(L, -1));
		goto out;
	}
	/* The test file returns how many cases passed; a failed case raised. */
	printf("%lld detector cases passed\n", (long long)lua_tointeger(L, -1));
	status = lua_tointeger(L, -1) > 0 ? 0 : 1;
out:
	td_lua_destroy(lua);
	return status;
}
