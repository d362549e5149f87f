#include "lua/json_text.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

/* Where a table's text already is in the output. */
struct shared {
	const void *table;
	size_t off, len;
};

struct writer {
	struct td_json_text *out;
	lua_State *L;
	int max_depth;
	const void *null;      /* the light userdata that is JSON null */
	struct shared *memo;   /* open addressing, capacity a power of two */
	size_t count, capacity;
};

static bool reserve(struct td_json_text *out, size_t more)
{
	if (out->failed)
		return false;
	if (out->len + more <= out->cap)
		return true;
	size_t cap = out->cap ? out->cap : 4096;
	while (cap < out->len + more)
		cap *= 2;
	char *data = realloc(out->data, cap);
	if (!data) {
		out->failed = true;
		return false;
	}
	out->data = data;
	out->cap = cap;
	return true;
}

static void put(struct td_json_text *out, const char *s, size_t n)
{
	if (reserve(out, n)) {
		memcpy(out->data + out->len, s, n);
		out->len += n;
	}
}

/* JSON's escapes, as json-c writes them (no "\/"). */
static void put_string(struct td_json_text *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	if (!reserve(out, n + 2))
		return;
	out->data[out->len++] = '"';
	size_t from = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(out, s + from, i - from);
		char esc[6] = { '\\', 0 };
		size_t len = 2;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\n': esc[1] = 'n'; break;
		case '\t': esc[1] = 't'; break;
		case '\r': esc[1] = 'r'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			len = 6;
		}
		put(out, esc, len);
		from = i + 1;
	}
	put(out, s + from, n - from);
	put(out, "\"", 1);
}

static size_t memo_hash(const void *key, size_t cap)
{
	return (size_t)(((uint64_t)(uintptr_t)key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static struct shared *memo_find(struct writer *w, const void *table)
{
	if (!w->capacity)
		return NULL;
	size_t j = memo_hash(table, w->capacity);
	while (w->memo[j].table) {
		if (w->memo[j].table == table)
			return &w->memo[j];
		j = (j + 1) & (w->capacity - 1);
	}
	return NULL;
}

static void memo_add(struct writer *w, const void *table, size_t off, size_t len)
{
	if ((w->count + 1) * 2 > w->capacity) {
		size_t cap = w->capacity ? w->capacity * 2 : 1024;
		struct shared *grown = calloc(cap, sizeof(*grown));
		if (!grown)
			return;  /* the text is right, only made again if met again */
		for (size_t i = 0; i < w->capacity; i++) {
			if (!w->memo[i].table)
				continue;
			size_t j = memo_hash(w->memo[i].table, cap);
			while (grown[j].table)
				j = (j + 1) & (cap - 1);
			grown[j] = w->memo[i];
		}
		free(w->memo);
		w->memo = grown;
		w->capacity = cap;
	}
	size_t j = memo_hash(table, w->capacity);
	while (w->memo[j].table)
		j = (j + 1) & (w->capacity - 1);
	w->memo[j] = (struct shared){ table, off, len };
	w->count++;
}

static bool is_array(lua_State *L, int idx)
{
	bool array = lua_rawgeti(L, idx, 1) != LUA_TNIL;
	lua_pop(L, 1);
	if (!array && lua_getmetatable(L, idx)) {
		lua_getfield(L, -1, "__array");
		array = lua_toboolean(L, -1);
		lua_pop(L, 2);
	}
	return array;
}

/* Returns false if the depth limit cut the value short (its text is then not shared). */
static bool write_value(struct writer *w, int idx, int depth)
{
	lua_State *L = w->L;
	struct td_json_text *out = w->out;
	char num[64];
	switch (lua_type(L, idx)) {
	case LUA_TBOOLEAN:
		if (lua_toboolean(L, idx))
			put(out, "true", 4);
		else
			put(out, "false", 5);
		return true;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx)) {
			put(out, num, (size_t)snprintf(num, sizeof(num), "%lld", (long long)lua_tointeger(L, idx)));
		} else {
			double d = lua_tonumber(L, idx);
			if (!isfinite(d)) {
				put(out, "null", 4);
				return true;
			}
			int n = snprintf(num, sizeof(num), "%.17g", d);
			put(out, num, (size_t)n);
			if (!strpbrk(num, ".eEn"))
				put(out, ".0", 2);  /* still a float when read back */
		}
		return true;
	case LUA_TSTRING: {
		size_t n;
		const char *s = lua_tolstring(L, idx, &n);
		put_string(out, s, n);
		return true;
	}
	case LUA_TLIGHTUSERDATA: {
		const void *p = lua_touserdata(L, idx);
		if (p == w->null) {
			put(out, "null", 4);
		} else {
			int n = snprintf(num, sizeof(num), "\"0x%llx\"", (unsigned long long)(uintptr_t)p);
			put(out, num, (size_t)n);
		}
		return true;
	}
	case LUA_TTABLE:
		break;
	default:
		put(out, "null", 4);  /* functions, full userdata */
		return true;
	}
	if (depth >= w->max_depth) {
		put(out, "null", 4);
		return false;
	}
	const void *table = lua_topointer(L, idx);
	struct shared *seen = memo_find(w, table);
	if (seen) {
		if (reserve(out, seen->len)) {
			memcpy(out->data + out->len, out->data + seen->off, seen->len);
			out->len += seen->len;
		}
		return true;
	}
	luaL_checkstack(L, 4, "JSON nesting");
	size_t start = out->len;
	bool whole = true, first = true;
	if (is_array(L, idx)) {
		put(out, "[", 1);
		lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
		for (lua_Integer i = 1; i <= n; i++) {
			if (i > 1)
				put(out, ",", 1);
			lua_rawgeti(L, idx, i);
			whole &= write_value(w, lua_gettop(L), depth + 1);
			lua_pop(L, 1);
		}
		put(out, "]", 1);
	} else {
		put(out, "{", 1);
		lua_pushnil(L);
		while (lua_next(L, idx)) {
			if (lua_type(L, -2) == LUA_TSTRING) {
				size_t n;
				const char *key = lua_tolstring(L, -2, &n);
				if (!first)
					put(out, ",", 1);
				first = false;
				put_string(out, key, n);
				put(out, ":", 1);
				whole &= write_value(w, lua_gettop(L), depth + 1);
			}
			lua_pop(L, 1);
		}
		put(out, "}", 1);
	}
	if (whole && !out->failed)
		memo_add(w, table, start, out->len - start);
	return whole;
}

void td_json_text_lua(struct td_json_text *out, lua_State *L, int idx, int max_depth,
		      const void *null)
{
	struct writer w = { .out = out, .L = L, .max_depth = max_depth, .null = null };
	write_value(&w, lua_absindex(L, idx), 0);
	free(w.memo);
}

void td_json_text_free(struct td_json_text *out)
{
	free(out->data);
	*out = (struct td_json_text){ 0 };
}
