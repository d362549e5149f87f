/*
 * A Lua value written straight to JSON text, for results too big to build as
 * a json-c tree first (`tasks --json` of 100,000 tasks: the tree cost 200 MB
 * and more time than the plugin that made the tables).
 *
 * The same rules as binding.c's Lua-to-json-c conversion: a table with [1],
 * or whose metatable has __array, is an array; other tables are objects of
 * their string keys; the light userdata `null` (td.null) is null, others
 * (td.ptr) are "0x..." strings; nesting deeper than
 * `max_depth` is null. A table met again is shared: its text is copied, not
 * made again (backtraces shared by thousands of tasks).
 */
#ifndef TD_LUA_JSON_TEXT_H
#define TD_LUA_JSON_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

struct td_json_text {
	char *data;
	size_t len, cap;
	bool failed;   /* out of memory: the text is incomplete */
};

/* Appends the value at idx of L's stack to out (out zeroed before the first use). */
void td_json_text_lua(struct td_json_text *out, lua_State *L, int idx, int max_depth,
		      const void *null);

void td_json_text_free(struct td_json_text *out);

#endif
