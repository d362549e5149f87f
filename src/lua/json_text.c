#include "lua/json_text.h"
#include "util/hash.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

struct td_json_text {
	char *data;
	size_t len, cap;
	bool failed;   /* out of memory */
};

/* A table met before: once (no text kept), or shared (its text in the arena). */
struct shared {
	const void *table;
	bool open;         /* being written: met again, it is a cycle */
	bool kept;
	size_t off, len;   /* in the arena, if kept */
};

/* Output goes through chunk to the FILE; a shared table's text is made in arena. */
#define TD_JSON_FLUSH_AT (256u * 1024u)

struct writer {
	struct td_json_text *out;   /* &chunk, or &arena while a shared table is written */
	struct td_json_text chunk, arena;
	FILE *f;
	bool write_failed;
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

/* JSON's escapes, as json-c writes them (no "\/"), without the quotes. */
static void put_string_body(struct td_json_text *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	if (!reserve(out, n))
		return;
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
}

size_t td_json_utf8_end(lua_State *L, int idx, size_t from)
{
	size_t n;
	const char *s = lua_tolstring(L, idx, &n);
	size_t i = from;
	while (i < n && (unsigned char)s[i] < 0x80)
		i++;
	if (i == n)
		return n;
	/* Lua's own decoder: utf8.len(s, i) is strict (no overlong forms, surrogates or
	 * code points past U+10FFFF) and gives the position of the first bad byte. */
	idx = lua_absindex(L, idx);
	if (lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.utf8len") != LUA_TFUNCTION) {
		lua_pop(L, 1);
		luaL_requiref(L, "utf8", luaopen_utf8, 0);
		lua_getfield(L, -1, "len");
		lua_pushvalue(L, -1);
		lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.utf8len");
		lua_remove(L, -2);
	}
	lua_pushvalue(L, idx);
	lua_pushinteger(L, (lua_Integer)i + 1);
	lua_call(L, 2, 2);
	size_t end = n;
	if (lua_isnil(L, -2))
		end = (size_t)lua_tointeger(L, -1) - 1;
	lua_pop(L, 2);
	return end;
}

char *td_json_utf8_repair(lua_State *L, int idx, size_t *len)
{
	size_t n;
	const char *s = lua_tolstring(L, idx, &n);
	size_t bad = td_json_utf8_end(L, idx, 0);
	if (bad == n)
		return NULL;
	/* At most 3 bytes (U+FFFD) for each byte. */
	char *out = malloc(3 * n + 1);
	if (!out)
		return NULL;
	size_t o = 0, from = 0;
	while (from < n) {
		memcpy(out + o, s + from, bad - from);
		o += bad - from;
		if (bad == n)
			break;
		memcpy(out + o, "\xef\xbf\xbd", 3);
		o += 3;
		from = bad + 1;
		bad = td_json_utf8_end(L, idx, from);
	}
	out[o] = '\0';
	*len = o;
	return out;
}

/* A Lua string (at idx) as a JSON string: bytes that are not UTF-8 become U+FFFD. */
static void put_lua_string(struct writer *w, int idx)
{
	size_t n;
	const char *s = lua_tolstring(w->L, idx, &n);
	put(w->out, "\"", 1);
	size_t from = 0;
	while (from <= n) {
		size_t bad = td_json_utf8_end(w->L, idx, from);
		put_string_body(w->out, s + from, bad - from);
		if (bad == n)
			break;
		put(w->out, "\\ufffd", 6);
		from = bad + 1;
	}
	put(w->out, "\"", 1);
}

/* Integers and addresses without snprintf (400,000 of them in 100,000 tasks). */
static void put_int(struct td_json_text *out, long long v)
{
	char buf[24];
	char *end = buf + sizeof(buf), *p = end;
	unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	put(out, p, (size_t)(end - p));
}

size_t td_json_hex(char *buf, uint64_t a)
{
	char digits[16];
	size_t n = 0, len = 0;
	do {
		digits[n++] = "0123456789abcdef"[a & 15];
		a >>= 4;
	} while (a);
	buf[len++] = '0';
	buf[len++] = 'x';
	while (n)
		buf[len++] = digits[--n];
	buf[len] = '\0';
	return len;
}

static void put_address(struct td_json_text *out, uint64_t a)
{
	char buf[24];
	buf[0] = '"';
	size_t len = 1 + td_json_hex(buf + 1, a);
	buf[len++] = '"';
	put(out, buf, len);
}

static struct shared *memo_find(struct writer *w, const void *table)
{
	if (!w->capacity)
		return NULL;
	size_t j = td_hash_slot((uint64_t)(uintptr_t)(table), w->capacity);
	while (w->memo[j].table) {
		if (w->memo[j].table == table)
			return &w->memo[j];
		j = (j + 1) & (w->capacity - 1);
	}
	return NULL;
}

static void memo_add(struct writer *w, const void *table)
{
	if ((w->count + 1) * 2 > w->capacity) {
		size_t cap = w->capacity ? w->capacity * 2 : 1024;
		struct shared *grown = calloc(cap, sizeof(*grown));
		if (!grown)
			return;  /* the text is right, only made again if met again */
		for (size_t i = 0; i < w->capacity; i++) {
			if (!w->memo[i].table)
				continue;
			size_t j = td_hash_slot((uint64_t)(uintptr_t)(w->memo[i].table), cap);
			while (grown[j].table)
				j = (j + 1) & (cap - 1);
			grown[j] = w->memo[i];
		}
		free(w->memo);
		w->memo = grown;
		w->capacity = cap;
	}
	size_t j = td_hash_slot((uint64_t)(uintptr_t)(table), w->capacity);
	while (w->memo[j].table)
		j = (j + 1) & (w->capacity - 1);
	w->memo[j] = (struct shared){ .table = table };
	w->count++;
}

static void set_open(struct writer *w, const void *table, bool open)
{
	struct shared *e = memo_find(w, table);   /* found anew: the memo may have grown */
	if (e)
		e->open = open;
}

bool td_json_is_array(lua_State *L, int idx)
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

static bool write_table(struct writer *w, int idx, int depth);

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
			put_int(out, (long long)lua_tointeger(L, idx));
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
		put_lua_string(w, idx);
		return true;
	}
	case LUA_TLIGHTUSERDATA: {
		const void *p = lua_touserdata(L, idx);
		if (p == w->null) {
			put(out, "null", 4);
		} else {
			put_address(out, (uint64_t)(uintptr_t)p);
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
	if (seen && seen->open) {
		/* A table inside itself: null, and cut like the depth limit (a cycle twice inside would double each level). */
		put(out, "null", 4);
		return false;
	}
	if (!seen) {
		memo_add(w, table);
		set_open(w, table, true);
		bool whole = write_table(w, idx, depth);
		set_open(w, table, false);
		return whole;
	}
	size_t off = seen->off, len = seen->len;
	bool whole = true;
	if (!seen->kept) {
		/* Met again: made once more, into the arena, and kept. */
		struct td_json_text *saved = w->out;
		w->out = &w->arena;
		off = w->arena.len;
		set_open(w, table, true);
		whole = write_table(w, idx, depth);
		set_open(w, table, false);
		w->out = saved;
		len = w->arena.len - off;
		if (whole && (seen = memo_find(w, table)))   /* the memo may have grown meanwhile */
			*seen = (struct shared){ .table = table, .kept = true, .off = off, .len = len };
		if (saved == &w->arena)
			return whole;  /* already where it is wanted */
	}
	/* When out is the arena it may move as it grows: reserve first. */
	if (reserve(out, len)) {
		memcpy(out->data + out->len, w->arena.data + off, len);
		out->len += len;
	}
	if (!whole) {
		w->arena.len = off;  /* cut by the depth limit: made again each time, not kept */
		/*
		 * Tables kept while this one was made have their text in the part
		 * cut away: made again if met again (else they would copy whatever
		 * the arena holds there later; found by fuzz/fuzz_json.c).
		 */
		for (size_t i = 0; i < w->capacity; i++)
			if (w->memo[i].table && w->memo[i].kept && w->memo[i].off >= off)
				w->memo[i].kept = false;
	}
	return whole;
}

static void flush(struct writer *w)
{
	if (w->chunk.len && fwrite(w->chunk.data, 1, w->chunk.len, w->f) != w->chunk.len)
		w->write_failed = true;
	w->chunk.len = 0;
}

static bool write_table(struct writer *w, int idx, int depth)
{
	lua_State *L = w->L;
	luaL_checkstack(L, 4, "JSON nesting");
	bool whole = true, first = true;
	if (td_json_is_array(L, idx)) {
		put(w->out, "[", 1);
		lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
		for (lua_Integer i = 1; i <= n; i++) {
			if (i > 1)
				put(w->out, ",", 1);
			lua_rawgeti(L, idx, i);
			whole &= write_value(w, lua_gettop(L), depth + 1);
			lua_pop(L, 1);
		}
		put(w->out, "]", 1);
	} else {
		put(w->out, "{", 1);
		lua_pushnil(L);
		while (lua_next(L, idx)) {
			if (lua_type(L, -2) == LUA_TSTRING) {
				if (!first)
					put(w->out, ",", 1);
				first = false;
				put_lua_string(w, lua_absindex(L, -2));
				put(w->out, ":", 1);
				whole &= write_value(w, lua_gettop(L), depth + 1);
			}
			lua_pop(L, 1);
		}
		put(w->out, "}", 1);
	}
	if (w->out == &w->chunk && w->chunk.len >= TD_JSON_FLUSH_AT)
		flush(w);
	return whole;
}

bool td_json_write_lua(FILE *f, lua_State *L, int idx, int max_depth, const void *null)
{
	struct writer w = { .f = f, .L = L, .max_depth = max_depth, .null = null };
	w.out = &w.chunk;
	write_value(&w, lua_absindex(L, idx), 0);
	flush(&w);
	bool ok = !w.chunk.failed && !w.arena.failed && !w.write_failed;
	free(w.chunk.data);
	free(w.arena.data);
	free(w.memo);
	return ok;
}
