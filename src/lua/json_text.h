/*
 * A Lua value written straight to JSON text, for results too big to build as
 * a json-c tree first (`tasks --json` of 100,000 tasks: the tree cost 200 MB
 * and more time than the plugin that made the tables). The text streams to a
 * FILE through a small buffer.
 *
 * The same rules as json.c's Lua-to-json-c conversion: a table with [1],
 * or whose metatable has __array, is an array; other tables are objects of
 * their string keys; the light userdata `null` (td.null) is null, others
 * (td.ptr) are "0x..." strings; NaN and infinities are null; bytes of a
 * string that are not UTF-8 are U+FFFD; nesting deeper than `max_depth` is null,
 * and so is a table met inside itself (a cycle). A
 * table met a second time is shared (a backtrace thousands of tasks share):
 * its text is kept from then on and copied, not made again.
 */
#ifndef TD_LUA_JSON_TEXT_H
#define TD_LUA_JSON_TEXT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <lua.h>

/* Whether the table at idx is written as an array: it has [1], or __array in its metatable. */
bool td_json_is_array(lua_State *L, int idx);

/* "0x..." (lowercase hex, no padding) into buf (19 bytes at least); its length. */
size_t td_json_hex(char *buf, uint64_t a);

/*
 * The offset of the first byte, at or after from, where the string at idx
 * stops being UTF-8 (Lua's strict utf8.len decides), or its length if it is
 * UTF-8 to the end. JSON text is UTF-8: the writers put U+FFFD for each such
 * byte (a core's strings, a target's names, may be anything).
 */
size_t td_json_utf8_end(lua_State *L, int idx, size_t from);

/* The string at idx with each byte that is not UTF-8 as U+FFFD: malloc'd, or NULL if it is all UTF-8 (or out of memory). */
char *td_json_utf8_repair(lua_State *L, int idx, size_t *len);

/* Writes the value at idx of L's stack to f; false if out of memory or f failed. */
bool td_json_write_lua(FILE *f, lua_State *L, int idx, int max_depth, const void *null);

#endif
