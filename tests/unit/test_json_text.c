/* lua/json_text: Lua values to JSON text, checked against the exact text. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>

#include "check.h"
#include "lua/json_text.h"

static char null_marker;

/* Runs chunk (which returns one value, with `null` and `ptr(n)` in scope) and returns its JSON. */
static char *json_of(lua_State *L, const char *chunk, int max_depth, bool *ok)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (luaL_loadstring(L, chunk) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
		fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
		*ok = false;
	} else {
		*ok = td_json_write_lua(f, L, -1, max_depth, &null_marker);
	}
	lua_settop(L, 0);
	fclose(f);
	return text;
}

static int l_ptr(lua_State *L)
{
	lua_pushlightuserdata(L, (void *)(uintptr_t)luaL_checkinteger(L, 1));
	return 1;
}

static void check_json(lua_State *L, const char *chunk, int max_depth, const char *want)
{
	bool ok;
	char *got = json_of(L, chunk, max_depth, &ok);
	CHECK(ok);
	CHECK_STR(got, want);
	free(got);
}

int main(void)
{
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	lua_pushlightuserdata(L, &null_marker);
	lua_setglobal(L, "null");
	lua_pushcfunction(L, l_ptr);
	lua_setglobal(L, "ptr");

	check_json(L, "return 42", 8, "42");
	check_json(L, "return -9007199254740993", 8, "-9007199254740993");
	check_json(L, "return math.mininteger", 8, "-9223372036854775808");
	check_json(L, "return 1.5", 8, "1.5");
	check_json(L, "return 2.0", 8, "2.0");        /* a float stays a float */
	check_json(L, "return 0/0", 8, "null");       /* no NaN in JSON */
	/* JSON text is UTF-8: each byte that is not becomes U+FFFD (found by fuzz/fuzz_json.c). */
	check_json(L, "return '\\xff a \\xc3\\x28 \\u{e9}\\u{1F600} \\xed\\xa0\\x80'", 8,
		   "\"\\ufffd a \\ufffd( \xc3\xa9\xf0\x9f\x98\x80 \\ufffd\\ufffd\\ufffd\"");
	check_json(L, "return { ['k\\xff'] = 'v\\0' }", 8, "{\"k\\ufffd\":\"v\\u0000\"}");
	check_json(L, "return true", 8, "true");
	check_json(L, "return null", 8, "null");
	check_json(L, "return ptr(0x7f001234abcd)", 8, "\"0x7f001234abcd\"");
	check_json(L, "return ptr(0)", 8, "\"0x0\"");
	check_json(L, "return 'a\"b\\\\c/d\\n\\t\\1'", 8, "\"a\\\"b\\\\c/d\\n\\t\\u0001\"");
	check_json(L, "return {}", 8, "{}");
	check_json(L, "return setmetatable({}, {__array = true})", 8, "[]");
	check_json(L, "return {1, 'x', {a = null}}", 8, "[1,\"x\",{\"a\":null}]");
	check_json(L, "return {[1] = 5, [2] = 6, name = 'skipped in an array'}", 8, "[5,6]");
	check_json(L, "return {k = print}", 8, "{\"k\":null}");
	/* Objects: string keys only (order is Lua's: one key each here). */
	check_json(L, "return {[3] = 'no', k = 'v'}", 8, "{\"k\":\"v\"}");
	/* Shared tables: the same text every time they are met (kept from the second). */
	check_json(L, "local bt = {{'f', {line = 6}}} return {bt, bt, bt, {x = bt}}", 8,
		   "[[[\"f\",{\"line\":6}]],[[\"f\",{\"line\":6}]],"
		   "[[\"f\",{\"line\":6}]],{\"x\":[[\"f\",{\"line\":6}]]}]");
	/* A shared table inside a shared table. */
	check_json(L, "local a = {1} local b = {a, a} return {b, b, a}", 8,
		   "[[[1],[1]],[[1],[1]],[1]]");
	/* Depth: nesting past the limit is null, and a table cut short is not kept. */
	check_json(L, "local t = {{{1}}} return {t, t}", 2, "[[null],[null]]");
	/* A cycle is null where the table is met inside itself, however deep the limit. */
	check_json(L, "local t = {} t[1] = t return t", 3, "[null]");
	check_json(L, "local t = {} t[1] = t t[2] = {t, 1} return {t, t}", 32, "[[null,[null,1]],[null,[null,1]]]");
	check_json(L, "local a, b = {}, {} a.b = b b.a = a return {a, b}", 32, "[{\"b\":{\"a\":null}},{\"a\":{\"b\":null}}]");
	/* Big: more than one flush of the buffer, every element right. */
	bool ok;
	char *big = json_of(L, "local t = {} for i = 1, 100000 do t[i] = {id = i} end return t", 8, &ok);
	CHECK(ok);
	CHECK(big && strncmp(big, "[{\"id\":1},{\"id\":2},", 19) == 0);
	CHECK(big && strstr(big, ",{\"id\":65536},{\"id\":65537},") != NULL);
	CHECK(big && strlen(big) > 19 && strcmp(big + strlen(big) - 14, "{\"id\":100000}]") == 0);
	free(big);
	lua_close(L);
	return CHECK_DONE();
}
