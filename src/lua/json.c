/*
 * Lua to JSON and back: results kept from a plugin call written as JSON,
 * a table met twice written once.
 */
#include "lua/internal.h"
#include "util/map.h"

#include <limits.h>
#include <math.h>

/* Tables converted so far in one conversion (Lua table -> its JSON): a table met again is shared, not copied. */
/* A table's value in the memo while it is being converted. */
#define TD_JSON_OPEN 1u

struct json_memo {
	struct td_map map;
	bool cut;   /* the depth limit cut the table being converted */
};

static struct json_object *to_json_memo(lua_State *L, int idx, int depth, struct json_memo *memo)
{
	idx = lua_absindex(L, idx);
	switch (lua_type(L, idx)) {
	case LUA_TLIGHTUSERDATA: {
		if (lua_touserdata(L, idx) == &tdl_null_sentinel)
			return NULL;
		char buf[32];
		return json_object_new_string(tdl_ptr_text(lua_touserdata(L, idx), buf, sizeof(buf)));
	}
	case LUA_TBOOLEAN:
		return json_object_new_boolean(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			return json_object_new_int64(lua_tointeger(L, idx));
		/* JSON has no NaN or infinity (json-c would print them bare): null, as json_text.c. */
		if (!isfinite(lua_tonumber(L, idx)))
			return NULL;
		return json_object_new_double(lua_tonumber(L, idx));
	case LUA_TSTRING: {
		/* With its length: a Lua string may hold NUL bytes. */
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		/* JSON text is UTF-8: other bytes become U+FFFD, as in json_text.c. */
		char *repaired = td_json_utf8_repair(L, idx, &len);
		struct json_object *o = json_object_new_string_len(repaired ? repaired : s,
								   (int)(len > INT_MAX ? INT_MAX : len));
		free(repaired);
		return o;
	}
	case LUA_TTABLE: {
		if (depth >= TD_LUA_JSON_DEPTH) {
			memo->cut = true;
			return NULL;
		}
		uint64_t key = (uintptr_t)lua_topointer(L, idx);
		uint64_t *shared = td_map_get(&memo->map, key);
		if (shared && *shared == TD_JSON_OPEN) {
			/* Met inside itself: a cycle is null, as in json_text.c. */
			memo->cut = true;
			return NULL;
		}
		if (shared && *shared)
			return json_object_get((struct json_object *)(uintptr_t)*shared);
		bool added;
		if ((shared = td_map_put(&memo->map, key, &added)))
			*shared = TD_JSON_OPEN;
		bool outer_cut = memo->cut;
		memo->cut = false;
		struct json_object *result;
		if (td_json_is_array(L, idx)) {
			result = json_object_new_array();
			lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
			for (lua_Integer i = 1; i <= n; i++) {
				lua_rawgeti(L, idx, i);
				json_object_array_add(result, to_json_memo(L, -1, depth + 1, memo));
				lua_pop(L, 1);
			}
		} else {
			result = json_object_new_object();
			lua_pushnil(L);
			while (lua_next(L, idx)) {
				/*
				 * Keys are Lua's interned strings, alive as long as the
				 * table (kept in the registry, see tdl_keep_alive): borrowed,
				 * not copied; a Lua table's keys are unique.
				 */
				if (lua_type(L, -2) == LUA_TSTRING) {
					size_t len;
					char *repaired = td_json_utf8_repair(L, -2, &len);
					json_object_object_add_ex(result, repaired ? repaired : lua_tostring(L, -2),
								  to_json_memo(L, -1, depth + 1, memo),
								  repaired ? 0 :
								  JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_KEY_IS_CONSTANT);
					free(repaired);
				}
				lua_pop(L, 1);
			}
		}
		/*
		 * The memo holds a reference of its own, dropped at the end. Not
		 * to a conversion that was cut (by the depth limit, or a cycle):
		 * met again elsewhere, it is converted again, as json_text.c
		 * writes it.
		 */
		bool cut = memo->cut;
		memo->cut = outer_cut || cut;
		if ((shared = td_map_get(&memo->map, key)))   /* the map may have grown meanwhile */
			*shared = cut ? 0 : (uintptr_t)json_object_get(result);
		return result;
	}
	default:
		return NULL;
	}
}

/*
 * Keeps a result table (and so the strings its JSON borrows as keys) alive
 * until the Lua state is destroyed, which must come after the JSON is freed.
 */
void tdl_keep_alive(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	luaL_getsubtable(L, LUA_REGISTRYINDEX, "taskdbg.results");
	lua_pushvalue(L, idx);
	lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
	lua_pop(L, 1);
}

struct json_object *tdl_to_json(lua_State *L, int idx, int depth)
{
	struct json_memo memo = { 0 };
	struct json_object *result = to_json_memo(L, idx, depth, &memo);
	for (size_t i = 0; i < memo.map.cap; i++)
		if (memo.map.keys[i])
			json_object_put((struct json_object *)(uintptr_t)memo.map.values[i]);
	td_map_free(&memo.map);
	return result;
}

/* Pushes the kept result's field key (nil if none). */
static int push_result_field(lua_State *L, const char *key)
{
	if (lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.result") != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_pushnil(L);
		return LUA_TNIL;
	}
	int type = lua_getfield(L, -1, key);
	lua_remove(L, -2);
	return type;
}

struct td_error *td_lua_result_write_json(struct td_lua *lua, const char *key, FILE *out)
{
	lua_State *L = lua->L;
	if (push_result_field(L, key) == LUA_TNIL)
		fputs("null", out);
	else if (!td_json_write_lua(out, L, -1, TD_LUA_JSON_DEPTH, &tdl_null_sentinel)) {
		lua_pop(L, 1);
		return td_error_format(TD_ERR_INTERNAL, "cannot write the JSON of %s: %s", key,
				       ferror(out) ? "output failed" : "out of memory");
	}
	lua_pop(L, 1);
	return NULL;
}

size_t td_lua_result_tasks_on(struct td_lua *lua, struct td_task_on *on, size_t max)
{
	lua_State *L = lua->L;
	size_t n = 0;
	if (push_result_field(L, "runtimes") != LUA_TTABLE) {
		lua_pop(L, 1);
		return 0;
	}
	for (lua_Integer r = 1; lua_rawgeti(L, -1, r) == LUA_TTABLE; r++) {
		if (lua_getfield(L, -1, "tasks") == LUA_TTABLE) {
			for (lua_Integer t = 1; lua_rawgeti(L, -1, t) == LUA_TTABLE; t++) {
				if (lua_getfield(L, -1, "running_on") == LUA_TNUMBER && n < max &&
				    lua_getfield(L, -2, "id") == LUA_TNUMBER) {
					on[n].tid = (int)lua_tointeger(L, -2);
					on[n++].task = (long long)lua_tointeger(L, -1);
					lua_pop(L, 1);
				}
				lua_pop(L, 2);
			}
			lua_pop(L, 1);
		}
		lua_pop(L, 2);
	}
	lua_pop(L, 2);
	return n;
}

/* JSON (json-c) to a Lua value: objects become tables, arrays sequences, null nil. */
void tdl_push_json(lua_State *L, struct json_object *o, int depth)
{
	if (!o || depth > 64) {
		lua_pushnil(L);
		return;
	}
	switch (json_object_get_type(o)) {
	case json_type_boolean: lua_pushboolean(L, json_object_get_boolean(o)); break;
	case json_type_int: lua_pushinteger(L, (lua_Integer)json_object_get_int64(o)); break;
	case json_type_double: lua_pushnumber(L, json_object_get_double(o)); break;
	case json_type_string: lua_pushstring(L, json_object_get_string(o)); break;
	case json_type_array: {
		size_t n = json_object_array_length(o);
		lua_createtable(L, (int)n, 0);
		for (size_t i = 0; i < n; i++) {
			tdl_push_json(L, json_object_array_get_idx(o, i), depth + 1);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		break;
	}
	case json_type_object:
		lua_newtable(L);
		json_object_object_foreach(o, key, val) {
			tdl_push_json(L, val, depth + 1);
			lua_setfield(L, -2, key);
		}
		break;
	default: lua_pushnil(L); break;
	}
}
