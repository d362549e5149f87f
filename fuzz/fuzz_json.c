/*
 * Fuzz target: taskdbg's two Lua-to-JSON writers, lua/json_text.c (text
 * streamed from Lua values: `tasks --json`) and lua/json.c (a json-c tree:
 * `bt`, `diagnose`). The input is a little program that builds a Lua value:
 * strings of any bytes (invalid UTF-8, control characters, NUL), integers,
 * floats of any bits (NaN, infinities), booleans, td.null, pointers, tables
 * as objects and arrays, tables shared and nested, cycles (null where a
 * table is met inside itself). Both texts must
 * be JSON that json-c's strict parser (with UTF-8 checked) reads back, and
 * must mean the same.
 */
#include <json-c/json.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/internal.h"
#include "lua/json_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Values a program may keep on the stack, and JSON nodes its value may expand to. */
#define STACK_MAX 64
#define EXPANDED_MAX 20000

struct reader {
	const uint8_t *data;
	size_t size, at;
};

static uint8_t next_byte(struct reader *r)
{
	return r->at < r->size ? r->data[r->at++] : 0;
}

static uint64_t next_u64(struct reader *r)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)next_byte(r) << (8 * i);
	return v;
}

static int push_array_mt(lua_State *L)
{
	if (luaL_newmetatable(L, "fuzz.array")) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "__array");
	}
	return 1;
}

/* Builds the value: every value left on the stack, in one array. */
static void build(lua_State *L, struct reader *r)
{
	luaL_checkstack(L, STACK_MAX + 8, "fuzz_json: values");
	while (r->at < r->size) {
		int top = lua_gettop(L);
		uint8_t op = next_byte(r) % 11;
		if (top >= STACK_MAX && op <= 7)
			op = 8;
		switch (op) {
		case 0: {
			size_t n = next_byte(r);
			if (n > r->size - r->at)
				n = r->size - r->at;
			lua_pushlstring(L, (const char *)r->data + r->at, n);
			r->at += n;
			break;
		}
		case 1:
			lua_pushinteger(L, (lua_Integer)next_u64(r));
			break;
		case 2: {
			uint64_t bits = next_u64(r);
			double d;
			memcpy(&d, &bits, sizeof(d));
			lua_pushnumber(L, d);
			break;
		}
		case 3:
			lua_pushboolean(L, next_byte(r) & 1);
			break;
		case 4:
			lua_pushlightuserdata(L, &tdl_null_sentinel);
			break;
		case 5:
			lua_pushlightuserdata(L, (void *)(uintptr_t)next_u64(r));
			break;
		case 6:
			lua_newtable(L);
			break;
		case 7:
			lua_newtable(L);
			push_array_mt(L);
			lua_setmetatable(L, -2);
			break;
		case 8:
			/* t[k] = v, for t k v on top. Keys a Lua table cannot hold are skipped. */
			if (top >= 3 && lua_istable(L, top - 2) && !lua_isnil(L, top - 1) &&
			    !(lua_type(L, top - 1) == LUA_TNUMBER && lua_tonumber(L, top - 1) != lua_tonumber(L, top - 1))) {
				/* json-c keys are C strings: a key with NUL cannot be compared. */
				size_t kn;
				const char *k = lua_type(L, top - 1) == LUA_TSTRING ? lua_tolstring(L, top - 1, &kn) : NULL;
				if (k && memchr(k, 0, kn))
					lua_pop(L, 2);
				else
					lua_rawset(L, top - 2);
			} else if (top >= 1) {
				lua_pop(L, 1);
			}
			break;
		case 9:
			/* append v to t, for t v on top */
			if (top >= 2 && lua_istable(L, top - 1))
				lua_rawseti(L, top - 1, (lua_Integer)lua_rawlen(L, top - 1) + 1);
			else if (top >= 1)
				lua_pop(L, 1);
			break;
		case 10:
			/* the same value again: shared tables, cycles */
			if (top >= 1 && top < STACK_MAX)
				lua_pushvalue(L, 1 + next_byte(r) % top);
			break;
		}
	}
	int n = lua_gettop(L);
	lua_createtable(L, n, 0);
	push_array_mt(L);
	lua_setmetatable(L, -2);
	for (int i = 1; i <= n; i++) {
		lua_pushvalue(L, i);
		lua_rawseti(L, -2, i);
	}
	lua_insert(L, 1);
	lua_settop(L, 1);
}

/*
 * How many JSON values the value at idx expands to (tables written out
 * again wherever they are met, a table inside itself null, cut at depth
 * TD_LUA_JSON_DEPTH), stopping past EXPANDED_MAX: tables that hold the next
 * one twice, 30 deep, are 2^30 values, text too long to be a finding.
 * *deep: some table lies past the depth limit. path: the tables around.
 */
static size_t expanded(lua_State *L, int idx, int depth, size_t sofar, bool *deep, const void **path)
{
	if (sofar > EXPANDED_MAX || lua_type(L, idx) != LUA_TTABLE)
		return sofar + 1;
	const void *table = lua_topointer(L, idx);
	for (int i = 0; i < depth; i++)
		if (path[i] == table)
			return sofar + 1;
	if (depth >= TD_LUA_JSON_DEPTH) {
		*deep = true;
		return sofar + 1;
	}
	path[depth] = table;
	sofar++;
	idx = lua_absindex(L, idx);
	luaL_checkstack(L, 3, "fuzz_json: nesting");
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		sofar = expanded(L, -1, depth + 1, sofar, deep, path);
		lua_pop(L, 1);
		if (sofar > EXPANDED_MAX) {
			lua_pop(L, 1);
			break;
		}
	}
	return sofar;
}

static bool finite_only(struct json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_double:
		return isfinite(json_object_get_double(o));
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(o); i++)
			if (!finite_only(json_object_array_get_idx(o, i)))
				return false;
		return true;
	case json_type_object: {
		json_object_object_foreach(o, key, value) {
			(void)key;
			if (!finite_only(value))
				return false;
		}
		return true;
	}
	default:
		return true;
	}
}

static struct json_object *parse_strict(const char *text, size_t len, const char *which)
{
	struct json_tokener *tok = json_tokener_new_ex(4 * TD_LUA_JSON_DEPTH);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	/* With the terminating NUL, so that json-c knows the text ends there. */
	struct json_object *o = json_tokener_parse_ex(tok, text, (int)len + 1);
	enum json_tokener_error e = json_tokener_get_error(tok);
	/* The whole text, one value: nothing left over. */
	size_t end = json_tokener_get_parse_end(tok);
	if (e != json_tokener_success || end < len || strlen(text) != len) {
		fprintf(stderr, "fuzz_json: %s wrote text json-c rejects (%s at %zu of %zu):\n%.*s\n", which,
			json_tokener_error_desc(e), end, len, (int)(len > 2000 ? 2000 : len), text);
		abort();
	}
	json_tokener_free(tok);
	/* json-c reads NaN and Infinity, which are not JSON. */
	if (!finite_only(o)) {
		fprintf(stderr, "fuzz_json: %s wrote NaN or Infinity, which are not JSON:\n%.*s\n", which,
			(int)(len > 2000 ? 2000 : len), text);
		abort();
	}
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lua_State *L = luaL_newstate();
	if (!L)
		return 0;
	struct reader r = { data, size, 0 };
	build(L, &r);
	bool deep = false;
	const void *path[TD_LUA_JSON_DEPTH];
	if (expanded(L, 1, 0, 0, &deep, path) > EXPANDED_MAX) {
		lua_close(L);
		return 0;
	}
	/* json_text.c: streamed text. */
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		abort();
	bool ok = td_json_write_lua(f, L, 1, TD_LUA_JSON_DEPTH, &tdl_null_sentinel);
	fclose(f);
	if (!ok)
		abort();
	struct json_object *streamed = parse_strict(text, len, "json_text.c");
	/* json.c: a json-c tree, printed as `bt --json` prints it. */
	struct json_object *tree = tdl_to_json(L, 1, 0);
	const char *tree_text = json_object_to_json_string_ext(tree, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	struct json_object *printed = parse_strict(tree_text, strlen(tree_text), "json.c");
	/*
	 * Past the depth limit the two may cut a shared table at different
	 * places (json.c shares the tree made where it was met first, wherever
	 * it is met again): both texts must still be JSON, but need not match.
	 */
	if (!deep && !json_object_equal(streamed, printed)) {
		fprintf(stderr, "fuzz_json: the two writers disagree:\njson_text.c: %.*s\njson.c:      %s\n",
			(int)(len > 2000 ? 2000 : len), text, tree_text);
		abort();
	}
	json_object_put(printed);
	json_object_put(tree);
	json_object_put(streamed);
	free(text);
	lua_close(L);
	return 0;
}
