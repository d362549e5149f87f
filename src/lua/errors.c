/*
 * td.error: how every td.* function fails (docs/plugins.md, "Errors"). An
 * error is a table {kind=, message=, address=, where=} with one metatable
 * (tostring gives the message, `..` concatenates it): kind "fault" (target
 * memory that cannot be read, at address), "not_found" (a type, field,
 * thread-local, symbol or variant the debug info or the target lacks),
 * "budget", "oom", or "usage" (bad arguments). `where` is the position of
 * the Lua code that made the call that raised it ("tokio.lua:12: ").
 *
 * Budget and out-of-memory end the entry whatever the plugin does: td.try
 * re-raises them, the sandbox's pcall and xpcall note them, and tdl_pcall
 * fails an entry during which one was raised even if it was caught.
 */
#include "lua/internal.h"

#include <stdarg.h>

static const char ERROR_MT[] = "taskdbg.Error";
static const char OOM_KEY[] = "taskdbg.oom";      /* made ahead: out of memory cannot make one */
static const char FATAL_KEY[] = "taskdbg.fatal";  /* the budget or oom error of this call, or false */

static const char *const kind_names[] = {
	[TDL_FAULT] = "fault",
	[TDL_NOT_FOUND] = "not_found",
	[TDL_BUDGET] = "budget",
	[TDL_OOM] = "oom",
	[TDL_USAGE] = "usage",
};

bool tdl_is_error(lua_State *L, int idx)
{
	if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
		return false;
	luaL_getmetatable(L, ERROR_MT);
	bool is = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return is;
}

/* The kind named name, or -1. */
static int kind_by_name(const char *name)
{
	for (int k = 0; name && k < (int)(sizeof(kind_names) / sizeof(kind_names[0])); k++)
		if (strcmp(name, kind_names[k]) == 0)
			return k;
	return -1;
}

/* The kind of the td.error at idx, or -1 if it is none. */
static int error_kind(lua_State *L, int idx)
{
	if (!tdl_is_error(L, idx))
		return -1;
	lua_getfield(L, idx, "kind");
	int kind = kind_by_name(lua_tostring(L, -1));
	lua_pop(L, 1);
	return kind;
}

/* Remembers the budget or oom error on top (left there) as this call's end. */
static void note_fatal(lua_State *L)
{
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, FATAL_KEY);  /* the key exists: no allocation */
	tdl_get(L)->fatal = true;
}

void tdl_push_error(lua_State *L, enum tdl_kind kind, const uint64_t *address, const char *message)
{
	if (kind == TDL_OOM) {
		lua_getfield(L, LUA_REGISTRYINDEX, OOM_KEY);
		return;
	}
	lua_createtable(L, 0, 4);
	lua_pushstring(L, kind_names[kind]);
	lua_setfield(L, -2, "kind");
	lua_pushstring(L, message);
	lua_setfield(L, -2, "message");
	if (address) {
		lua_pushinteger(L, (lua_Integer)*address);
		lua_setfield(L, -2, "address");
	}
	luaL_where(L, 1);
	if (lua_rawlen(L, -1) > 0)
		lua_setfield(L, -2, "where");
	else
		lua_pop(L, 1);
	luaL_setmetatable(L, ERROR_MT);
}

/* The kind of a C error: its cause, else fallback. */
static enum tdl_kind kind_of(const struct td_error *err, enum tdl_kind fallback)
{
	if (err->kind == TD_ERR_NOMEM)
		return TDL_OOM;
	if (err->kind == TD_ERR_USAGE)
		return TDL_USAGE;
	if (err->cause == TD_CAUSE_FAULT)
		return TDL_FAULT;
	if (err->cause == TD_CAUSE_NOT_FOUND)
		return TDL_NOT_FOUND;
	return fallback;
}

static void push_td_error(lua_State *L, struct td_error *err, enum tdl_kind fallback)
{
	enum tdl_kind kind = kind_of(err, fallback);
	tdl_push_error(L, kind, kind == TDL_FAULT ? &err->address : NULL, err->message);
	td_error_destroy(err);
}

/* Raises the error on top; budget and oom end the call. */
static int raise_top(lua_State *L)
{
	int kind = error_kind(L, -1);
	if (kind == TDL_BUDGET || kind == TDL_OOM)
		note_fatal(L);
	return lua_error(L);
}

int tdl_raise(lua_State *L, struct td_error *err)
{
	push_td_error(L, err, TDL_NOT_FOUND);
	return raise_top(L);
}

int tdl_raise_kind(lua_State *L, enum tdl_kind kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	tdl_push_error(L, kind, NULL, lua_tostring(L, -1));
	lua_remove(L, -2);
	return raise_top(L);
}

int tdl_fail(lua_State *L, struct td_error *err, enum tdl_kind fallback)
{
	if (kind_of(err, fallback) == TDL_OOM)
		return tdl_raise(L, err);
	lua_pushnil(L);
	push_td_error(L, err, fallback);
	return 2;
}

int tdl_absent(lua_State *L, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	lua_pushnil(L);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	tdl_push_error(L, TDL_NOT_FOUND, NULL, lua_tostring(L, -1));
	lua_remove(L, -2);
	return 2;
}

int tdl_arg_error(lua_State *L, int arg, const char *fmt, ...)
{
	lua_Debug ar;
	const char *fn = "?";
	if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name)
		fn = ar.name;
	va_list ap;
	va_start(ap, fmt);
	const char *why = lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	return tdl_raise_kind(L, TDL_USAGE, "bad argument #%d to '%s' (%s)", arg, fn, why);
}

static int type_error(lua_State *L, int arg, const char *expected)
{
	const char *got = luaL_typename(L, arg);
	if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING)
		got = lua_tostring(L, -1);
	return tdl_arg_error(L, arg, "%s expected, got %s", expected, got);
}

lua_Integer tdl_check_integer(lua_State *L, int arg)
{
	int ok;
	lua_Integer n = lua_tointegerx(L, arg, &ok);
	if (!ok) {
		if (lua_isnumber(L, arg))
			tdl_arg_error(L, arg, "number has no integer representation");
		type_error(L, arg, "number");
	}
	return n;
}

lua_Integer tdl_opt_integer(lua_State *L, int arg, lua_Integer def)
{
	return lua_isnoneornil(L, arg) ? def : tdl_check_integer(L, arg);
}

const char *tdl_check_string(lua_State *L, int arg)
{
	const char *s = lua_tostring(L, arg);
	if (!s)
		type_error(L, arg, "string");
	return s;
}

void tdl_check_type_of(lua_State *L, int arg, int type)
{
	if (lua_type(L, arg) != type)
		type_error(L, arg, lua_typename(L, type));
}

void *tdl_check_udata(lua_State *L, int arg, const char *mt, const char *what)
{
	void *p = luaL_testudata(L, arg, mt);
	if (!p)
		type_error(L, arg, what);
	return p;
}

/*
 * What a failure reads as where it ends up as text (the message handler):
 * a td.error's position and message, a string as it is, else its type.
 */
void tdl_push_error_text(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	if (tdl_is_error(L, idx)) {
		lua_getfield(L, idx, "where");
		lua_getfield(L, idx, "message");
		if (!lua_isstring(L, -2))
			lua_remove(L, -2);
		else
			lua_concat(L, 2);
		if (!lua_isstring(L, -1)) {
			lua_pop(L, 1);
			lua_pushliteral(L, "(an error without a message)");
		}
	} else if (lua_isstring(L, idx)) {
		lua_pushvalue(L, idx);
	} else {
		lua_pushstring(L, luaL_typename(L, idx));
	}
}

bool tdl_fatal_error(struct td_lua *lua)
{
	if (!lua->fatal)
		return false;
	lua_getfield(lua->L, LUA_REGISTRYINDEX, FATAL_KEY);
	tdl_push_error_text(lua->L, -1);
	lua_remove(lua->L, -2);
	return true;
}

void tdl_fatal_reset(struct td_lua *lua)
{
	lua->fatal = false;
	lua_pushboolean(lua->L, 0);
	lua_setfield(lua->L, LUA_REGISTRYINDEX, FATAL_KEY);
}

/* After a protected call failed with status: an out-of-memory error becomes the typed one. */
static void caught(lua_State *L, int status)
{
	if (status == LUA_ERRMEM) {
		lua_pop(L, 1);
		lua_getfield(L, LUA_REGISTRYINDEX, OOM_KEY);
	}
	int kind = error_kind(L, -1);
	if (kind == TDL_BUDGET || kind == TDL_OOM)
		note_fatal(L);
}

/*
 * td.try(f, ...) -> f's results, or nil and the error if f raised a fault or
 * not_found error; any other error (budget, oom, usage, a string from the
 * plugin's own code) goes on up unchanged.
 */
static int l_try(lua_State *L)
{
	tdl_check_type_of(L, 1, LUA_TFUNCTION);
	int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
	if (status == LUA_OK)
		return lua_gettop(L);
	caught(L, status);
	int kind = error_kind(L, -1);
	if (kind != TDL_FAULT && kind != TDL_NOT_FOUND)
		return lua_error(L);
	lua_pushnil(L);
	lua_insert(L, -2);
	return 2;
}

/* td.is_error(x [, kind]) -> whether x is a td.error (of that kind) */
static int l_is_error(lua_State *L)
{
	bool is = tdl_is_error(L, 1);
	if (is && !lua_isnoneornil(L, 2))
		is = kind_by_name(tdl_check_string(L, 2)) == error_kind(L, 1) && error_kind(L, 1) >= 0;
	lua_pushboolean(L, is);
	return 1;
}

/* td.error(kind, message [, address]) -> a new td.error, for a plugin to raise or return */
static int l_error(lua_State *L)
{
	const char *name = tdl_check_string(L, 1);
	const char *message = tdl_check_string(L, 2);
	int kind = kind_by_name(name);
	if (kind < 0)
		return tdl_arg_error(L, 1, "no error kind %s", name);
	if (kind == TDL_BUDGET || kind == TDL_OOM)
		return tdl_arg_error(L, 1, "%s errors are taskdbg's own", name);
	uint64_t address = lua_isnoneornil(L, 3) ? 0 : (uint64_t)tdl_check_integer(L, 3);
	tdl_push_error(L, (enum tdl_kind)kind, lua_isnoneornil(L, 3) ? NULL : &address, message);
	return 1;
}

/* pcall(f, ...), as Lua's, but an out-of-memory error is a td.error and ends the entry. */
static int l_pcall(lua_State *L)
{
	luaL_checkany(L, 1);
	int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
	if (status == LUA_OK) {
		lua_pushboolean(L, 1);
		lua_insert(L, 1);
		return lua_gettop(L);
	}
	caught(L, status);
	lua_pushboolean(L, 0);
	lua_insert(L, -2);
	return 2;
}

/* xpcall(f, handler, ...), the same way (the handler is not called for out of memory). */
static int l_xpcall(lua_State *L)
{
	int n = lua_gettop(L);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushboolean(L, 1);
	lua_pushvalue(L, 1);
	lua_rotate(L, 3, 2);   /* f, handler, true, f, args... */
	int status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
	if (status == LUA_OK)
		return lua_gettop(L) - 2;
	caught(L, status);
	lua_pushboolean(L, 0);
	lua_replace(L, 3);
	return 2;
}

static int error_tostring(lua_State *L)
{
	lua_getfield(L, 1, "message");
	if (!lua_isstring(L, -1))
		lua_pushliteral(L, "(an error without a message)");
	return 1;
}

void tdl_errors_open(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{ "__tostring", error_tostring },
		{ "__concat", tdl_ptr_concat },   /* (tostring of both sides, joined) */
		{ NULL, NULL },
	};
	luaL_newmetatable(L, ERROR_MT);
	luaL_setfuncs(L, meta, 0);
	lua_pop(L, 1);
	lua_createtable(L, 0, 2);
	lua_pushstring(L, kind_names[TDL_OOM]);
	lua_setfield(L, -2, "kind");
	lua_pushliteral(L, "not enough memory");
	lua_setfield(L, -2, "message");
	luaL_setmetatable(L, ERROR_MT);
	lua_setfield(L, LUA_REGISTRYINDEX, OOM_KEY);
	lua_pushboolean(L, 0);
	lua_setfield(L, LUA_REGISTRYINDEX, FATAL_KEY);
}

/* pcall and xpcall of the sandbox (host.c puts them in place of Lua's). */
const luaL_Reg tdl_protected_calls[] = {
	{ "pcall", l_pcall },
	{ "xpcall", l_xpcall },
	{ NULL, NULL },
};

/* The td.* functions of this file (lua/internal.h). */
const luaL_Reg tdl_errors_functions[] = {
	{ "try", l_try },
	{ "is_error", l_is_error },
	{ "error", l_error },
	{ NULL, NULL },
};
