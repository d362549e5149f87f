#include "lua/binding.h"
#include "lua/json_text.h"
#include "util/clock.h"

#include <dirent.h>
#include <errno.h>
#include <dwarf.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "debuginfo/locals.h"
#include "snapshot/unwind.h"
#include "target/syscalls.h"
#include "util/timing.h"
#include "value/future.h"
#include "value/value.h"

/* Budgets of one plugin call. */
#define TD_LUA_MEMORY_MAX (512u * 1024u * 1024u)
#define TD_LUA_INSTRUCTIONS_MAX 1000000000ull
#define TD_LUA_HOOK_EVERY 10000
/* Wall-clock limits: a call made while the target is stopped, and any other. */
#define TD_LUA_STOPPED_MS 2000
#define TD_LUA_OTHER_MS 60000
/* Depth of Lua tables converted to JSON. */
#define TD_LUA_JSON_DEPTH 32

struct chain_state;

struct td_lua {
	lua_State *L;
	struct td_program *prog;
	bool owns_prog;            /* made by td_lua_open_plugin */
	char *plugin_path;
	size_t memory;
	unsigned long long instructions;
	uint64_t deadline_ns;      /* CLOCK_MONOTONIC; 0: none */
	unsigned limit_ms;         /* for the message */
	struct chain_state *chain_cache;  /* td.await_chain's memo, per program */
	size_t nchain;
	int tree_depth;            /* children chains being built, nested */
	char *per_task[8];         /* awaitee names (beginnings) whose chains are per task: td.per_task_awaitee */
	int nper_task;
	char *mark_prefix;         /* td.mark_awaitee: an awaitee name (beginning) whose address each task reports */
	uint64_t last_marked;      /* where the outermost marked awaitee of the last chain built is (tree depth 0) */
	char *tag_prefix;          /* td.tag_awaitee: futures whose word at tag_path tags a chain level */
	char *tag_path[8];
	int ntag_path;
	uint64_t last_tagged;      /* the outermost tagged future of the last chain built (tree depth 0) */
	uint64_t untagged[512];    /* type DIE offsets that can hold no tagged future (direct-mapped) */
	struct { uint64_t type, first, word; } tag_offsets[64];  /* per tagged type: its path's offsets */
};

/* Starts the budgets of one call. */
static void budget_start(struct td_lua *lua, unsigned limit_ms)
{
	lua->instructions = 0;
	lua->limit_ms = limit_ms;
	lua->deadline_ns = td_now_ns() + (uint64_t)limit_ms * 1000000u;
}

static const char VALUE_MT[] = "taskdbg.Value";
/* td.null: a value for tables that stands for JSON null (Lua tables cannot hold nil). */
static char null_sentinel;
static const char TYPE_MT[] = "taskdbg.Type";

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct td_lua *lua = ud;
	if (!ptr)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		lua->memory -= osize;
		return NULL;
	}
	if (nsize > osize && lua->memory + (nsize - osize) > TD_LUA_MEMORY_MAX)
		return NULL;  /* Lua raises "not enough memory" */
	void *p = realloc(ptr, nsize);
	if (p)
		lua->memory = lua->memory - osize + nsize;
	return p;
}

static struct td_lua *get_lua(lua_State *L)
{
	struct td_lua *lua;
	lua_getallocf(L, (void **)&lua);
	return lua;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	struct td_lua *lua = get_lua(L);
	lua->instructions += TD_LUA_HOOK_EVERY;
	if (lua->instructions > TD_LUA_INSTRUCTIONS_MAX)
		luaL_error(L, "instruction budget exhausted (a loop that never ends?)");
	if (lua->deadline_ns && td_now_ns() > lua->deadline_ns)
		luaL_error(L, "time budget exhausted: over %d ms%s", (int)lua->limit_ms,
			   lua->limit_ms == TD_LUA_STOPPED_MS ? " with the target stopped" : "");
}

/* Raises a Lua error from a td_error (and frees it). */
static int raise(lua_State *L, struct td_error *err)
{
	lua_pushstring(L, err->message);
	td_error_destroy(err);
	return lua_error(L);
}

static void push_value(lua_State *L, const struct td_value *v)
{
	struct td_value *u = lua_newuserdatauv(L, sizeof(*u), 0);
	*u = *v;
	luaL_setmetatable(L, VALUE_MT);
}

static void push_type(lua_State *L, Dwarf_Die *type)
{
	Dwarf_Die *u = lua_newuserdatauv(L, sizeof(*u), 0);
	*u = *type;
	td_type_strip(u);
	luaL_setmetatable(L, TYPE_MT);
}

static struct td_value *check_value(lua_State *L, int i)
{
	return luaL_checkudata(L, i, VALUE_MT);
}

static Dwarf_Die *check_type(lua_State *L, int i)
{
	return luaL_checkudata(L, i, TYPE_MT);
}

static uint64_t check_addr(lua_State *L, int i)
{
	return (uint64_t)luaL_checkinteger(L, i);
}

/* v.field, v[index] */
static int value_index(lua_State *L)
{
	struct td_value *v = check_value(L, 1);
	struct td_value r;
	struct td_error *err;
	if (lua_type(L, 2) == LUA_TNUMBER)
		err = td_value_index(v, (uint64_t)luaL_checkinteger(L, 2), &r);
	else
		err = td_value_member(v, luaL_checkstring(L, 2), &r);
	if (err)
		return raise(L, err);
	push_value(L, &r);
	return 1;
}

static int value_tostring(lua_State *L)
{
	struct td_value *v = check_value(L, 1);
	const char *name = td_type_name(&v->type);
	lua_pushfstring(L, "<%s at 0x%I>", name ? name : "value", (lua_Integer)v->address);
	return 1;
}

static int type_tostring(lua_State *L)
{
	const char *name = td_type_name(check_type(L, 1));
	lua_pushstring(L, name ? name : "(unnamed type)");
	return 1;
}

/* td.addr(v) */
static int l_addr(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)check_value(L, 1)->address);
	return 1;
}

/* td.deref(v): follows a pointer */
static int l_deref(lua_State *L)
{
	struct td_value r;
	struct td_error *err = td_value_deref(check_value(L, 1), &r);
	if (err)
		return raise(L, err);
	push_value(L, &r);
	return 1;
}

/* td.pointer(v): the address a pointer holds */
static int l_pointer(lua_State *L)
{
	uint64_t p;
	struct td_error *err = td_value_pointer(check_value(L, 1), &p);
	if (err)
		return raise(L, err);
	lua_pushinteger(L, (lua_Integer)p);
	return 1;
}

/* td.uint(v) */
static int l_uint(lua_State *L)
{
	uint64_t x;
	struct td_error *err = td_value_uint(check_value(L, 1), &x);
	if (err)
		return raise(L, err);
	lua_pushinteger(L, (lua_Integer)x);
	return 1;
}

/* td.variant(v) -> payload value, variant name, discriminant, decl file, decl line */
static int l_variant(lua_State *L)
{
	struct td_value r;
	const char *name;
	uint64_t discr;
	Dwarf_Die member;
	struct td_error *err = td_value_variant(check_value(L, 1), &r, &name, &discr, &member);
	if (err)
		return raise(L, err);
	push_value(L, &r);
	lua_pushstring(L, name);
	lua_pushinteger(L, (lua_Integer)discr);
	const char *file = dwarf_decl_file(&member);
	int line = 0;
	if (file)
		lua_pushstring(L, file);
	else
		lua_pushnil(L);
	if (dwarf_decl_line(&member, &line) == 0)
		lua_pushinteger(L, line);
	else
		lua_pushnil(L);
	return 5;
}

/* td.is_enum(v): has a variant part */
static int l_is_enum(lua_State *L)
{
	struct td_value *v = check_value(L, 1);
	Dwarf_Die child;
	bool found = false;
	if (dwarf_child(&v->type, &child) == 0) {
		do
			found = dwarf_tag(&child) == DW_TAG_variant_part;
		while (!found && dwarf_siblingof(&child, &child) == 0);
	}
	lua_pushboolean(L, found);
	return 1;
}

/* td.qualified_name(v or Type) -> "crate::path::Type" */
static int l_qualified_name(lua_State *L)
{
	Dwarf_Die *t = luaL_testudata(L, 1, VALUE_MT) ? &check_value(L, 1)->type : check_type(L, 1);
	char *name = td_program_qualified_name(get_lua(L)->prog, t);
	if (name) {
		lua_pushstring(L, name);
		free(name);
	} else {
		lua_pushnil(L);
	}
	return 1;
}

/* td.has(v, name): does the struct have this field (probe layouts, never versions) */
static int l_has(lua_State *L)
{
	struct td_value *v = check_value(L, 1);
	Dwarf_Die t;
	uint64_t off;
	lua_pushboolean(L, td_type_member(&v->type, luaL_checkstring(L, 2), &t, &off));
	return 1;
}

/* td.type_of(v) -> Type */
static int l_type_of(lua_State *L)
{
	push_type(L, &check_value(L, 1)->type);
	return 1;
}

/* td.type_name(v or Type) */
static int l_type_name(lua_State *L)
{
	Dwarf_Die *t = luaL_testudata(L, 1, VALUE_MT) ? &check_value(L, 1)->type : check_type(L, 1);
	const char *name = td_type_name(t);
	if (name)
		lua_pushstring(L, name);
	else
		lua_pushnil(L);
	return 1;
}

/* td.size(Type) */
static int l_size(lua_State *L)
{
	Dwarf_Die *t = luaL_testudata(L, 1, VALUE_MT) ? &check_value(L, 1)->type : check_type(L, 1);
	uint64_t size;
	if (!td_type_size(t, &size))
		return luaL_error(L, "type %s has no known size", td_type_name(t) ? td_type_name(t) : "?");
	lua_pushinteger(L, (lua_Integer)size);
	return 1;
}

/* td.offset(Type, field) -> byte offset, field Type */
static int l_offset(lua_State *L)
{
	Dwarf_Die *t = check_type(L, 1);
	Dwarf_Die ft;
	uint64_t off;
	if (!td_type_member(t, luaL_checkstring(L, 2), &ft, &off))
		return luaL_error(L, "%s has no field %s", td_type_name(t) ? td_type_name(t) : "?",
				  lua_tostring(L, 2));
	lua_pushinteger(L, (lua_Integer)off);
	push_type(L, &ft);
	return 2;
}

/* td.pointee(Type) -> Type pointed to */
static int l_pointee(lua_State *L)
{
	Dwarf_Die r;
	if (!td_die_type(check_type(L, 1), &r))
		return luaL_error(L, "not a typed pointer");
	push_type(L, &r);
	return 1;
}

/* td.value(Type, addr) */
static int l_value(lua_State *L)
{
	struct td_value v;
	td_value_init(&v, get_lua(L)->prog, check_type(L, 1), check_addr(L, 2));
	push_value(L, &v);
	return 1;
}

/* td.cast(v, Type) */
static int l_cast(lua_State *L)
{
	struct td_value v;
	td_value_init(&v, get_lua(L)->prog, check_type(L, 2), check_value(L, 1)->address);
	push_value(L, &v);
	return 1;
}

/* td.find_type(path) -> Type or nil */
static int l_find_type(lua_State *L)
{
	Dwarf_Die die;
	const char *path = luaL_checkstring(L, 1);
	struct td_program *prog = get_lua(L)->prog;
	if (td_program_find(prog, path, DW_TAG_structure_type, &die) ||
	    td_program_find(prog, path, DW_TAG_union_type, &die) ||
	    td_program_find(prog, path, DW_TAG_base_type, &die)) {
		push_type(L, &die);
		return 1;
	}
	lua_pushnil(L);
	return 1;
}

/* td.each_type(namespace, prefix, fn(Type) -> stop?) */
struct each_arg {
	lua_State *L;
	int fn;
};

static bool each_type_cb(Dwarf_Die *die, void *arg)
{
	struct each_arg *a = arg;
	lua_pushvalue(a->L, a->fn);
	push_type(a->L, die);
	lua_call(a->L, 1, 1);
	bool stop = lua_toboolean(a->L, -1);
	lua_pop(a->L, 1);
	return !stop;
}

static int l_each_type(lua_State *L)
{
	const char *ns = luaL_checkstring(L, 1), *prefix = luaL_checkstring(L, 2);
	luaL_checktype(L, 3, LUA_TFUNCTION);
	struct each_arg a = { L, 3 };
	td_program_each_in_namespace(get_lua(L)->prog, ns, DW_TAG_structure_type, prefix,
				     each_type_cb, &a);
	return 0;
}

/* Pushes {name=..., T=Type, ...} for the template type parameters of a function. */
static void push_template_params(lua_State *L, Dwarf_Die fn)
{
	Dwarf_Die die = fn;
	for (int hop = 0; hop < 4; hop++) {
		Dwarf_Die child;
		if (dwarf_child(&die, &child) == 0) {
			do {
				if (dwarf_tag(&child) == DW_TAG_template_type_parameter) {
					Dwarf_Die t;
					const char *n = dwarf_diename(&child);
					if (n && td_die_type(&child, &t)) {
						push_type(L, &t);
						lua_setfield(L, -2, n);
					}
				}
			} while (dwarf_siblingof(&child, &child) == 0);
		}
		Dwarf_Attribute attr;
		if (!dwarf_formref_die(dwarf_attr(&die, DW_AT_abstract_origin, &attr), &die) &&
		    !dwarf_formref_die(dwarf_attr(&die, DW_AT_specification, &attr), &die))
			break;
	}
}

/* td.each_function(namespace, prefix, fn({address=, T=, S=...}) -> stop?) */
struct each_fn_arg {
	lua_State *L;
	int fn;
	uint64_t bias;
};

static bool each_function_cb(Dwarf_Die *die, void *arg)
{
	struct each_fn_arg *a = arg;
	Dwarf_Addr low;
	if (dwarf_lowpc(die, &low) != 0)
		return true;  /* a declaration or an inline-only instance: no code of its own */
	lua_pushvalue(a->L, a->fn);
	lua_newtable(a->L);
	lua_pushinteger(a->L, (lua_Integer)(low + a->bias));
	lua_setfield(a->L, -2, "address");
	push_template_params(a->L, *die);
	lua_call(a->L, 1, 1);
	bool stop = lua_toboolean(a->L, -1);
	lua_pop(a->L, 1);
	return !stop;
}

static int l_each_function(lua_State *L)
{
	const char *ns = luaL_checkstring(L, 1), *prefix = luaL_checkstring(L, 2);
	luaL_checktype(L, 3, LUA_TFUNCTION);
	struct each_fn_arg a = { L, 3, td_program_bias(get_lua(L)->prog) };
	td_program_each_in_namespace(get_lua(L)->prog, ns, DW_TAG_subprogram, prefix,
				     each_function_cb, &a);
	return 0;
}

/* td.tls(path, tid) -> Value or nil, why */
static int l_tls(lua_State *L)
{
	struct td_lua *lua = get_lua(L);
	Dwarf_Die var, type;
	if (!td_program_find_tls(lua->prog, luaL_checkstring(L, 1), &var) ||
	    !td_die_type(&var, &type)) {
		lua_pushnil(L);
		lua_pushfstring(L, "no thread-local %s", lua_tostring(L, 1));
		return 2;
	}
	uint64_t addr;
	struct td_error *err = td_program_tls_address(lua->prog, &var, (pid_t)luaL_checkinteger(L, 2), &addr);
	if (err) {
		lua_pushnil(L);
		lua_pushstring(L, err->message);
		td_error_destroy(err);
		return 2;
	}
	struct td_value v;
	td_value_init(&v, lua->prog, &type, addr);
	push_value(L, &v);
	return 1;
}

/* td.find_tls(path) -> true if the thread-local exists (resolves it ahead of td.tls) */
static int l_find_tls(lua_State *L)
{
	Dwarf_Die var;
	lua_pushboolean(L, td_program_find_tls(get_lua(L)->prog, luaL_checkstring(L, 1), &var));
	return 1;
}

/* td.read(addr, size) -> unsigned integer (size 1, 2, 4, 8) */
static int l_read(lua_State *L)
{
	uint64_t x;
	struct td_error *err = td_program_read_uint(get_lua(L)->prog, check_addr(L, 1),
						    (size_t)luaL_optinteger(L, 2, 8), &x);
	if (err)
		return raise(L, err);
	lua_pushinteger(L, (lua_Integer)x);
	return 1;
}

/* td.read_bytes(addr, len) -> string or nil (at most 4096 bytes: a name, a formatted field) */
static int l_read_bytes(lua_State *L)
{
	uint64_t addr = check_addr(L, 1);
	lua_Integer len = luaL_checkinteger(L, 2);
	char buf[4096];
	struct td_error *err = NULL;
	if (len < 0 || len > (lua_Integer)sizeof(buf) ||
	    (err = td_program_read(get_lua(L)->prog, addr, buf, (size_t)len))) {
		td_error_destroy(err);
		lua_pushnil(L);
		return 1;
	}
	lua_pushlstring(L, buf, (size_t)len);
	return 1;
}

/* td.try_read(addr, size) -> integer or nil */
static int l_try_read(lua_State *L)
{
	uint64_t x;
	struct td_error *err = td_program_read_uint(get_lua(L)->prog, check_addr(L, 1),
						    (size_t)luaL_optinteger(L, 2, 8), &x);
	if (err) {
		td_error_destroy(err);
		lua_pushnil(L);
	} else {
		lua_pushinteger(L, (lua_Integer)x);
	}
	return 1;
}

/* td.function_at(addr) -> {name=, T=Type, S=Type, ...template parameters} or nil */
static int l_function_at(lua_State *L)
{
	struct td_program *prog = get_lua(L)->prog;
	Dwarf_Die fn;
	if (!td_program_function_at(prog, check_addr(L, 1), &fn)) {
		lua_pushnil(L);
		return 1;
	}
	lua_newtable(L);
	char *sym = td_program_symbol_at(prog, check_addr(L, 1));
	if (sym) {
		lua_pushstring(L, sym);
		lua_setfield(L, -2, "name");
		free(sym);
	}
	const char *file = dwarf_decl_file(&fn);
	if (file) {
		lua_pushstring(L, file);
		lua_setfield(L, -2, "file");
	}
	/* Template parameters sit on the function or on its abstract origin / declaration. */
	push_template_params(L, fn);
	return 1;
}

/* The template type parameter `name` declared directly under t. */
static bool template_param(Dwarf_Die *t, const char *name, Dwarf_Die *r)
{
	Dwarf_Die child;
	if (dwarf_child(t, &child) != 0)
		return false;
	do {
		if (dwarf_tag(&child) == DW_TAG_template_type_parameter) {
			const char *n = dwarf_diename(&child);
			if (n && strcmp(n, name) == 0 && td_die_type(&child, r))
				return true;
		}
	} while (dwarf_siblingof(&child, &child) == 0);
	return false;
}

/*
 * td.template(Type, name) -> Type of a template type parameter
 * A Rust enum (Option<T>) declares its parameters on each variant's struct,
 * not on itself: the first variant that has it answers.
 */
static int l_template(lua_State *L)
{
	Dwarf_Die *t = check_type(L, 1), r, part, variant, member, vt;
	const char *name = luaL_checkstring(L, 2);
	bool found = template_param(t, name, &r);
	if (!found && dwarf_child(t, &part) == 0) {
		do {
			if (dwarf_tag(&part) != DW_TAG_variant_part || dwarf_child(&part, &variant) != 0)
				continue;
			do {
				if (dwarf_tag(&variant) == DW_TAG_variant && dwarf_child(&variant, &member) == 0 &&
				    td_die_type(&member, &vt))
					found = template_param(&vt, name, &r);
			} while (!found && dwarf_siblingof(&variant, &variant) == 0);
		} while (!found && dwarf_siblingof(&part, &part) == 0);
	}
	if (found)
		push_type(L, &r);
	else
		lua_pushnil(L);
	return 1;
}

/* td.id(Type or v) -> a number naming the type (its DIE offset) */
static int l_id(lua_State *L)
{
	Dwarf_Die *t = luaL_testudata(L, 1, VALUE_MT) ? &check_value(L, 1)->type : check_type(L, 1);
	lua_pushinteger(L, (lua_Integer)dwarf_dieoffset(t));
	return 1;
}

/* td.same_type(a, b) */
static int l_same_type(lua_State *L)
{
	lua_pushboolean(L, dwarf_dieoffset(check_type(L, 1)) == dwarf_dieoffset(check_type(L, 2)));
	return 1;
}

/* td.decl(v's variant payload Type) -> file, line of the declaration (for SuspendN: the .await) */
static int l_decl(lua_State *L)
{
	Dwarf_Die *t = luaL_testudata(L, 1, VALUE_MT) ? &check_value(L, 1)->type : check_type(L, 1);
	int line;
	const char *file = dwarf_decl_file(t);
	if (dwarf_decl_line(t, &line) != 0)
		line = 0;
	if (file)
		lua_pushstring(L, file);
	else
		lua_pushnil(L);
	lua_pushinteger(L, line);
	return 2;
}

/* td.fields(v or Type) -> { {name=, type=, offset=}, ... } (variant parts: their variants) */
static int l_fields(lua_State *L)
{
	Dwarf_Die *t = luaL_testudata(L, 1, VALUE_MT) ? &check_value(L, 1)->type : check_type(L, 1);
	Dwarf_Die child;
	lua_newtable(L);
	int n = 0;
	if (dwarf_child(t, &child) != 0)
		return 1;
	do {
		int tag = dwarf_tag(&child);
		if (tag != DW_TAG_member && tag != DW_TAG_variant_part)
			continue;
		lua_createtable(L, 0, 3);
		const char *name = tag == DW_TAG_variant_part ? "<variants>" : dwarf_diename(&child);
		lua_pushstring(L, name ? name : "?");
		lua_setfield(L, -2, "name");
		Dwarf_Die ft;
		Dwarf_Attribute attr;
		Dwarf_Word off;
		if (tag == DW_TAG_member && td_die_type(&child, &ft)) {
			const char *tn = td_type_name(&ft);
			lua_pushstring(L, tn ? tn : (dwarf_tag(&ft) == DW_TAG_pointer_type ? "*" : "?"));
			lua_setfield(L, -2, "type");
			uint64_t size;
			if (td_type_size(&ft, &size)) {
				lua_pushinteger(L, (lua_Integer)size);
				lua_setfield(L, -2, "size");
			}
		}
		if (dwarf_attr(&child, DW_AT_data_member_location, &attr) && dwarf_formudata(&attr, &off) == 0) {
			lua_pushinteger(L, (lua_Integer)off);
			lua_setfield(L, -2, "offset");
		}
		lua_rawseti(L, -2, ++n);
	} while (dwarf_siblingof(&child, &child) == 0);
	return 1;
}

/* Reads an integer field of a spec table; def if absent. */
static lua_Integer spec_int(lua_State *L, int t, const char *key, lua_Integer def)
{
	lua_getfield(L, t, key);
	lua_Integer v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
	lua_pop(L, 1);
	return v;
}

/*
 * An address relative to node: node + at, or, with via, node + [[node + via] + via_field] + at
 * (a per-node offset kept in a table the node points to, as tokio's vtables hold).
 */
struct rel_addr {
	bool via;
	uint64_t via_off, via_field, at;
	uint64_t last_table, last_off;   /* nodes of one type share a table: remember it */
};

static void spec_rel(lua_State *L, int t, struct rel_addr *r)
{
	r->via = false;
	r->last_table = r->last_off = 0;
	lua_getfield(L, t, "via");
	if (!lua_isnil(L, -1)) {
		r->via = true;
		r->via_off = (uint64_t)luaL_checkinteger(L, -1);
		r->via_field = (uint64_t)spec_int(L, t, "via_field", 0);
	}
	lua_pop(L, 1);
	r->at = (uint64_t)spec_int(L, t, "at", 0);
}

static struct td_error *rel_resolve(struct td_program *prog, uint64_t node, struct rel_addr *r,
				    uint64_t *ret)
{
	uint64_t base = node;
	if (r->via) {
		uint64_t table, off;
		struct td_error *err;
		if ((err = td_program_read_uint(prog, node + r->via_off, 8, &table)))
			return err;
		if (table && table == r->last_table) {
			off = r->last_off;
		} else {
			if ((err = td_program_read_uint(prog, table + r->via_field, 8, &off)))
				return err;
			r->last_table = table;
			r->last_off = off;
		}
		base = node + off;
	}
	*ret = base + r->at;
	return NULL;
}

/*
 * td.walk_list{first=, next={...}, fields={name={...size=}}, max=}
 *   -> { node={...}, name={...}, ... }, error-or-nil
 * Follows a singly linked list in C, reading the named fields of every node:
 * a walk of 100,000 nodes is one call, not one per field. Stops at a null
 * next, a node seen before (a cycle), max nodes, or an unreadable address
 * (then the second result says why).
 */
#define TD_WALK_MAX_FIELDS 16
static int l_walk_list(lua_State *L)
{
	struct td_program *prog = get_lua(L)->prog;
	luaL_checktype(L, 1, LUA_TTABLE);
	uint64_t node = (uint64_t)spec_int(L, 1, "first", 0);
	lua_Integer max = spec_int(L, 1, "max", 10000000);
	struct rel_addr next;
	lua_getfield(L, 1, "next");
	luaL_checktype(L, -1, LUA_TTABLE);
	spec_rel(L, lua_gettop(L), &next);
	lua_pop(L, 1);

	const char *names[TD_WALK_MAX_FIELDS];
	struct rel_addr rel[TD_WALK_MAX_FIELDS];
	size_t sizes[TD_WALK_MAX_FIELDS];
	int nfields = 0;
	lua_getfield(L, 1, "fields");
	int fields = lua_gettop(L);
	if (lua_istable(L, fields)) {
		lua_pushnil(L);
		while (lua_next(L, fields) && nfields < TD_WALK_MAX_FIELDS) {
			names[nfields] = lua_tostring(L, -2);  /* kept alive by the spec table */
			spec_rel(L, lua_gettop(L), &rel[nfields]);
			sizes[nfields] = (size_t)spec_int(L, lua_gettop(L), "size", 8);
			nfields++;
			lua_pop(L, 1);
		}
	}
	/*
	 * The columns are gathered in C and made Lua tables of the right size at
	 * the end: grown one element at a time they were rehashed ~17 times each.
	 */
	size_t cap = 1024;
	uint64_t *vals = malloc(cap * (size_t)(nfields + 1) * sizeof(*vals));
	/* Cycle check: a set of visited nodes in a Lua table would cost more than the walk. */
	size_t seen_cap = 1024, seen_n = 0;
	uint64_t *seen = calloc(seen_cap, sizeof(*seen));
	struct td_error *err = NULL;
	lua_Integer count = 0;
	while (node && count < max && seen && vals) {
		if (seen_n * 2 >= seen_cap) {
			uint64_t *grown = calloc(seen_cap * 2, sizeof(*grown));
			if (!grown) {
				err = &td_enomem;
				break;
			}
			for (size_t i = 0; i < seen_cap; i++) {
				if (!seen[i])
					continue;
				size_t j = (size_t)((seen[i] * 0x9E3779B97F4A7C15ull) >> 20) & (seen_cap * 2 - 1);
				while (grown[j])
					j = (j + 1) & (seen_cap * 2 - 1);
				grown[j] = seen[i];
			}
			free(seen);
			seen = grown;
			seen_cap *= 2;
		}
		size_t j = (size_t)((node * 0x9E3779B97F4A7C15ull) >> 20) & (seen_cap - 1);
		bool cycle = false;
		while (seen[j]) {
			if (seen[j] == node) {
				cycle = true;
				break;
			}
			j = (j + 1) & (seen_cap - 1);
		}
		if (cycle) {
			err = td_error_format(TD_ERR_TARGET, "the list loops back to 0x%llx", (unsigned long long)node);
			break;
		}
		seen[j] = node;
		seen_n++;
		if ((size_t)count == cap) {
			uint64_t *grown = realloc(vals, cap * 2 * (size_t)(nfields + 1) * sizeof(*vals));
			if (!grown) {
				err = &td_enomem;
				break;
			}
			vals = grown;
			cap *= 2;
		}
		uint64_t *row = vals + (size_t)count * (size_t)(nfields + 1);
		row[0] = node;
		memset(row + 1, 0, (size_t)nfields * sizeof(*row));  /* fields past a failed read */
		count++;
		for (int f = 0; f < nfields && !err; f++) {
			uint64_t addr, v = 0;
			if (!(err = rel_resolve(prog, node, &rel[f], &addr)))
				err = td_program_read_uint(prog, addr, sizes[f], &v);
			row[f + 1] = v;
		}
		uint64_t next_addr;
		if (err || (err = rel_resolve(prog, node, &next, &next_addr)) ||
		    (err = td_program_read_uint(prog, next_addr, 8, &node)))
			break;
	}
	if ((!vals || !seen) && !err)
		err = &td_enomem;
	free(seen);
	/* Result columns. */
	lua_createtable(L, 0, nfields + 1);
	int result = lua_gettop(L);
	for (int f = -1; f < nfields; f++) {
		lua_createtable(L, (int)count, 0);
		for (lua_Integer i = 0; i < count; i++) {
			lua_pushinteger(L, (lua_Integer)vals[(size_t)i * (size_t)(nfields + 1) + (size_t)(f + 1)]);
			lua_rawseti(L, -2, i + 1);
		}
		lua_setfield(L, result, f < 0 ? "node" : names[f]);
	}
	free(vals);
	lua_pushvalue(L, result);
	if (err) {
		lua_pushstring(L, err->message);
		td_error_destroy(err);
		return 2;
	}
	return 1;
}

/* Memo key (value/program.h memo) for where Stage::Running keeps its future. */

/* One decoded state of an async body: cached per (type, discriminant). */
/* Fields worth naming in a suspended state: handles to tasks, guards, permits, channel ends. */
#define TD_CHAIN_MAX_HOLDS 8
/* Type names of held values: a prefix ending in '<' (generic types), else the whole name. */
static const char *const held_kinds[] = {
	"JoinHandle<", "MutexGuard<", "OwnedMutexGuard<", "RwLockReadGuard<", "RwLockWriteGuard<",
	"SemaphorePermit", "OwnedSemaphorePermit", "Sender<", "Receiver<", "UnboundedSender<",
	"UnboundedReceiver<", NULL,
};

struct chain_state {
	Dwarf_Off type;
	uint64_t discr;
	const char *name, *file;
	int line;
	bool foreign;              /* declared in another file than its async fn: in a macro */
	bool own;                  /* its file is the program's own (not a dependency's) */
	bool has_awaitee;
	bool per_task;             /* it awaits a future td.per_task_awaitee names */
	bool marked;               /* it awaits a future td.mark_awaitee names */
	Dwarf_Die awaitee_type;
	uint64_t awaitee_off;
	int nholds;
	Dwarf_Off hold_type[TD_CHAIN_MAX_HOLDS];
	uint64_t hold_off[TD_CHAIN_MAX_HOLDS];   /* from the state machine's start */
	const char *hold_name[TD_CHAIN_MAX_HOLDS];   /* the field: the variable's name */
};

static bool is_held_kind(Dwarf_Die *t)
{
	const char *name = dwarf_diename(t);
	for (int i = 0; name && held_kinds[i]; i++) {
		size_t n = strlen(held_kinds[i]);
		if (held_kinds[i][n - 1] == '<' ? strncmp(name, held_kinds[i], n) == 0
						: strcmp(name, held_kinds[i]) == 0)
			return true;
	}
	return false;
}

/*
 * Whether a field of a suspended state is one of the generator's upvars: rustc
 * repeats the arguments (as in Unresumed, same name and offset) in every
 * state, stale once they have been moved. Only the state's own locals count.
 */
static bool is_upvar(Dwarf_Die *state_machine, const char *name, Dwarf_Word off)
{
	Dwarf_Die part, variant, member;
	if (!name || dwarf_child(state_machine, &part) != 0)
		return false;
	do {
		if (dwarf_tag(&part) != DW_TAG_variant_part || dwarf_child(&part, &variant) != 0)
			continue;
		do {
			Dwarf_Attribute attr;
			Dwarf_Word discr;
			Dwarf_Die unresumed;
			if (dwarf_tag(&variant) != DW_TAG_variant ||
			    dwarf_formudata(dwarf_attr(&variant, DW_AT_discr_value, &attr), &discr) != 0 ||
			    discr != 0 || dwarf_child(&variant, &member) != 0 || !td_die_type(&member, &unresumed))
				continue;
			Dwarf_Die field;
			if (dwarf_child(&unresumed, &field) != 0)
				return false;
			do {
				Dwarf_Word foff;
				const char *fname = dwarf_diename(&field);
				if (fname && strcmp(fname, name) == 0 &&
				    dwarf_formudata(dwarf_attr(&field, DW_AT_data_member_location, &attr), &foff) == 0)
					return foff == off;
			} while (dwarf_siblingof(&field, &field) == 0);
			return false;
		} while (dwarf_siblingof(&variant, &variant) == 0);
	} while (dwarf_siblingof(&part, &part) == 0);
	return false;
}

/* A struct with one member: that member's type and offset. */
static bool newtype_of(Dwarf_Die *t, Dwarf_Die *inner, Dwarf_Word *off)
{
	Dwarf_Die child, only;
	int n = 0;
	Dwarf_Attribute attr;
	if (dwarf_tag(t) != DW_TAG_structure_type || dwarf_child(t, &child) != 0)
		return false;
	do {
		if (dwarf_tag(&child) == DW_TAG_member) {
			only = child;
			n++;
		} else if (dwarf_tag(&child) == DW_TAG_variant_part) {
			return false;
		}
	} while (n < 2 && dwarf_siblingof(&child, &child) == 0);
	return n == 1 && td_die_type(&only, inner) &&
	       dwarf_formudata(dwarf_attr(&only, DW_AT_data_member_location, &attr), off) == 0;
}

/* The fields of a suspended state that hold handles, guards or channel ends. */
static void find_holds(struct chain_state *st, Dwarf_Die *state_machine, Dwarf_Die *payload_type,
		       uint64_t payload_off, bool unresumed)
{
	Dwarf_Die child;
	if (dwarf_child(payload_type, &child) != 0)
		return;
	do {
		Dwarf_Die t;
		Dwarf_Attribute attr;
		Dwarf_Word off;
		const char *n = dwarf_diename(&child);
		if (dwarf_tag(&child) != DW_TAG_member || (n && strcmp(n, "__awaitee") == 0) ||
		    !td_die_type(&child, &t) ||
		    !dwarf_attr(&child, DW_AT_data_member_location, &attr) || dwarf_formudata(&attr, &off) != 0)
			continue;
		/* A newtype around a guard (struct SendGuard(MutexGuard<..>)) holds it too. */
		Dwarf_Die inner_t;
		Dwarf_Word inner_off = 0;
		if (!is_held_kind(&t) && newtype_of(&t, &inner_t, &inner_off) && is_held_kind(&inner_t))
			t = inner_t;
		else if (!is_held_kind(&t))
			continue;
		else
			inner_off = 0;
		if (!unresumed && is_upvar(state_machine, n, off))
			continue;
		if (st->nholds == TD_CHAIN_MAX_HOLDS)
			return;
		st->hold_type[st->nholds] = dwarf_dieoffset(&t);
		st->hold_off[st->nholds] = payload_off + off + inner_off;
		st->hold_name[st->nholds] = n;
		st->nholds++;
	} while (dwarf_siblingof(&child, &child) == 0);
}

/*
 * td.await_chain(v) -> { {type=id, state=, file=, line=, awaiting=id}, ... }, leaf
 * The chain of .awaits from an async body down, decoded in C: each level is a
 * discriminant read and a cached lookup of what that state means. leaf: the
 * address of the innermost awaited future that is no async body, or nil. A
 * future that holds no async body gives an empty chain with leaf_type = its
 * type id, and leaf = its address.
 */
#define TD_CHAIN_CACHE 4096
#define TD_CHAIN_DEPTH 64
#define TD_CHAIN_CHILDREN 16   /* branches of one select!/join! read */
#define TD_TREE_DEPTH 4        /* trees inside trees */
static int push_await_chain(lua_State *L, struct td_value v, uint64_t *leaf);
static void push_children(lua_State *L, struct td_value *kids, int nkids);
static uint64_t future_tag(struct td_lua *lua, struct td_value v, uint64_t *found);

static int l_await_chain(lua_State *L)
{
	uint64_t leaf = 0;
	struct td_lua *lua = get_lua(L);
	lua->last_tagged = 0;
	push_await_chain(L, *check_value(L, 1), &leaf);
	if (!leaf && !lua->last_tagged)
		return 1;
	if (leaf)
		lua_pushinteger(L, (lua_Integer)leaf);
	else
		lua_pushnil(L);
	if (!lua->last_tagged)
		return 2;
	lua_pushinteger(L, (lua_Integer)lua->last_tagged);
	return 3;
}

/*
 * td.await_chain_at(StageType, addr) -> chain, or nil and the variant name
 * A task's Stage<T> enum at addr: if Running, the chain of its future (the
 * payload's first field); one call per task, no values created on the way.
 * Never raises: an unreadable stage gives nil and the reason.
 */
/* The chain of the future a task's Stage<T> at addr runs, or nil and why (see below). */
static int push_stage_chain(lua_State *L, Dwarf_Die *stage_type, uint64_t addr, uint64_t *leaf)
{
	struct td_value stage, payload, future;
	td_value_init(&stage, get_lua(L)->prog, stage_type, addr);
	const char *name;
	uint64_t discr;
	struct td_error *err = td_value_variant(&stage, &payload, &name, &discr, NULL);
	if (!err && strcmp(name, "Running") != 0) {
		lua_pushnil(L);
		lua_pushstring(L, name);
		return 2;
	}
	if (!err) {
		/* Where Running's future sits, memoized per payload type (a DWARF walk). */
		struct running_memo { Dwarf_Die type; uint64_t offset; } *rm;
		struct td_program *prog = get_lua(L)->prog;
		uint64_t toff = dwarf_dieoffset(&payload.type);
		rm = td_program_memo_get(prog, TD_MEMO_RUNNING, toff, 0);
		if (!rm && !(err = td_value_member(&payload, "__0", &future)) &&
		    (rm = malloc(sizeof(*rm)))) {
			rm->type = future.type;
			rm->offset = future.address - payload.address;
			td_program_memo_put(prog, TD_MEMO_RUNNING, toff, 0, rm);
		}
		if (rm && !err)
			td_value_init(&future, prog, &rm->type, payload.address + rm->offset);
	}
	if (err) {
		lua_pushnil(L);
		lua_pushstring(L, err->message);
		td_error_destroy(err);
		return 2;
	}
	return push_await_chain(L, future, leaf);
}

static int l_await_chain_at(lua_State *L)
{
	return push_stage_chain(L, check_type(L, 1), check_addr(L, 2), NULL);
}

/*
 * td.await_chains{nodes=, vtables=, states=, skip_mask=, tagged_max=, marked_max=, stage=function(vtable)}
 *   -> chains, reasons, leaves, tagged, marked
 * td.await_chain_at for a whole column of tasks in one call: for task i,
 * unless states[i] & skip_mask, the chain of the future in its Stage, found at
 * nodes[i] + offset with stage(vtables[i]) -> StageType, offset (asked once
 * per distinct vtable; nil: no chain). reasons[i] says why a task has none.
 * leaves[i] is the address of the innermost awaited future (the one that is
 * not an async body: a JoinHandle, a semaphore's Acquire, a Sleep...), so a
 * plugin can follow it to the resource it waits on even when chains are shared.
 * tagged[i] is where the outermost future td.tag_awaitee tags in task i's
 * chain has the first field of the tag's path (a tracing Instrumented's
 * Span), for what is particular to the task: for the first tagged_max
 * (default 0) tasks that have one. marked[i]: where the outermost awaitee
 * td.mark_awaitee names is in task i's chain, for the first marked_max.
 */
#define TD_STAGE_CACHE 256
static int l_await_chains(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "nodes");
	lua_getfield(L, 1, "vtables");
	lua_getfield(L, 1, "states");
	lua_getfield(L, 1, "stage");
	int nodes = 2, vtables = 3, states = 4, stage_fn = 5;
	luaL_checktype(L, nodes, LUA_TTABLE);
	luaL_checktype(L, vtables, LUA_TTABLE);
	luaL_checktype(L, states, LUA_TTABLE);
	luaL_checktype(L, stage_fn, LUA_TFUNCTION);
	uint64_t skip = (uint64_t)spec_int(L, 1, "skip_mask", 0);
	lua_Integer tagged_max = spec_int(L, 1, "tagged_max", 0), ntagged = 0;
	lua_Integer marked_max = spec_int(L, 1, "marked_max", 0), nmarked = 0;
	lua_Integer n = (lua_Integer)lua_rawlen(L, nodes);
	lua_createtable(L, (int)n, 0);
	int chains = lua_gettop(L);
	lua_newtable(L);
	int reasons = lua_gettop(L);
	lua_newtable(L);
	int leaves = lua_gettop(L);
	lua_newtable(L);
	int tagged = lua_gettop(L);
	lua_newtable(L);
	int marked = lua_gettop(L);
	struct { uint64_t vtable; bool has; Dwarf_Die type; uint64_t offset; } cache[TD_STAGE_CACHE];
	int ncache = 0;
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, states, i);
		uint64_t st = (uint64_t)lua_tointeger(L, -1);
		lua_rawgeti(L, vtables, i);
		uint64_t vt = (uint64_t)lua_tointeger(L, -1);
		lua_rawgeti(L, nodes, i);
		uint64_t node = (uint64_t)lua_tointeger(L, -1);
		lua_pop(L, 3);
		if (st & skip)
			continue;
		int c = 0;
		while (c < ncache && cache[c].vtable != vt)
			c++;
		if (c == ncache) {
			if (ncache == TD_STAGE_CACHE)
				c = ncache - 1;  /* more future types than slots: reuse the last */
			else
				ncache++;
			lua_pushvalue(L, stage_fn);
			lua_pushinteger(L, (lua_Integer)vt);
			lua_call(L, 1, 2);
			cache[c].vtable = vt;
			cache[c].has = luaL_testudata(L, -2, TYPE_MT) != NULL;
			if (cache[c].has) {
				cache[c].type = *(Dwarf_Die *)lua_touserdata(L, -2);
				cache[c].offset = (uint64_t)luaL_checkinteger(L, -1);
			}
			lua_pop(L, 2);
		}
		if (!cache[c].has)
			continue;
		uint64_t leaf = 0;
		get_lua(L)->last_tagged = 0;
		get_lua(L)->last_marked = 0;
		int pushed = push_stage_chain(L, &cache[c].type, node + cache[c].offset, &leaf);
		if (get_lua(L)->last_tagged && ntagged < tagged_max) {
			ntagged++;
			lua_pushinteger(L, (lua_Integer)get_lua(L)->last_tagged);
			lua_rawseti(L, tagged, i);
		}
		if (get_lua(L)->last_marked && nmarked < marked_max) {
			nmarked++;
			lua_pushinteger(L, (lua_Integer)get_lua(L)->last_marked);
			lua_rawseti(L, marked, i);
		}
		if (pushed == 1) {
			lua_rawseti(L, chains, i);
			if (leaf) {
				lua_pushinteger(L, (lua_Integer)leaf);
				lua_rawseti(L, leaves, i);
			}
		} else {
			lua_rawseti(L, reasons, i);
			lua_pop(L, 1);
		}
	}
	return 5;
}

/* Pushes one level of a chain; addr is the state machine's address, or 0 for a shared chain. */
static void push_chain_level(lua_State *L, const struct chain_state *st, uint64_t addr, uint64_t tag)
{
	lua_createtable(L, 0, 6);
	if (tag) {
		lua_pushinteger(L, (lua_Integer)tag);
		lua_setfield(L, -2, "tag");
	}
	lua_pushinteger(L, (lua_Integer)st->type);
	lua_setfield(L, -2, "type");
	lua_pushstring(L, st->name);
	lua_setfield(L, -2, "state");
	if (st->file) {
		lua_pushstring(L, st->file);
		lua_setfield(L, -2, "file");
	}
	if (st->line) {
		lua_pushinteger(L, st->line);
		lua_setfield(L, -2, "line");
	}
	if (st->foreign) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "in_macro");
	}
	if (st->own) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "own");
	}
	if (addr) {
		lua_pushinteger(L, (lua_Integer)addr);
		lua_setfield(L, -2, "addr");
	}
	if (st->has_awaitee) {
		lua_pushinteger(L, (lua_Integer)dwarf_dieoffset((Dwarf_Die *)&st->awaitee_type));
		lua_setfield(L, -2, "awaiting");
		if (addr) {
			/* Where the awaited future is: plugins follow leaf futures (JoinHandle...). */
			lua_pushinteger(L, (lua_Integer)(addr + st->awaitee_off));
			lua_setfield(L, -2, "awaiting_addr");
		}
	}
	if (st->nholds && addr) {
		lua_createtable(L, st->nholds, 0);
		for (int h = 0; h < st->nholds; h++) {
			lua_createtable(L, 0, 2);
			lua_pushinteger(L, (lua_Integer)st->hold_type[h]);
			lua_setfield(L, -2, "type");
			lua_pushinteger(L, (lua_Integer)(addr + st->hold_off[h]));
			lua_setfield(L, -2, "addr");
			if (st->hold_name[h]) {
				lua_pushstring(L, st->hold_name[h]);
				lua_setfield(L, -2, "name");
			}
			lua_rawseti(L, -2, h + 1);
		}
		lua_setfield(L, -2, "holds");
	}
}

/* A chain's own fields: the type of a root future that is its own leaf, the task future's tag. */
static void push_chain_extras(lua_State *L, uint64_t leaf_type, uint64_t root_tag)
{
	if (leaf_type) {
		lua_pushinteger(L, (lua_Integer)leaf_type);
		lua_setfield(L, -2, "leaf_type");
	}
	if (root_tag) {
		lua_pushinteger(L, (lua_Integer)root_tag);
		lua_setfield(L, -2, "root_tag");
	}
}

/*
 * A level's children = { {elem=, chain=, leaf=, leaf_type=, variant=}, ... }:
 * per child future (elem: its type id), the chain of the async body in it,
 * or none; leaf: the address of the innermost future that is no async body;
 * leaf_type: its type id when there is no chain; variant: the enum variant
 * a leaf was found in (MaybeDone's Future or Done: the plugin tells them apart).
 */
static void push_children(lua_State *L, struct td_value *kids, int nkids)
{
	struct td_lua *lua = get_lua(L);
	lua_createtable(L, nkids, 0);
	for (int k = 0; k < nkids; k++) {
		struct td_value c = kids[k];
		lua_createtable(L, 0, 5);
		lua_pushinteger(L, (lua_Integer)dwarf_dieoffset(&c.type));
		lua_setfield(L, -2, "elem");
		td_future_unbox(&c);
		td_future_inner_async(&c);
		uint64_t leaf = 0;
		if (td_future_is_async_body(&c.type)) {
			lua->tree_depth++;
			push_await_chain(L, c, &leaf);
			lua->tree_depth--;
			lua_setfield(L, -2, "chain");
		} else {
			const char *variant = td_future_live_payload(&c);
			if (variant) {
				lua_pushstring(L, variant);
				lua_setfield(L, -2, "variant");
			}
			leaf = c.address;
			lua_pushinteger(L, (lua_Integer)dwarf_dieoffset(&c.type));
			lua_setfield(L, -2, "leaf_type");
		}
		if (leaf) {
			lua_pushinteger(L, (lua_Integer)leaf);
			lua_setfield(L, -2, "leaf");
		}
		lua_rawseti(L, -2, k + 1);
	}
	lua_setfield(L, -2, "children");
}

/*
 * The chain of .awaits from v down. Decoding is memoized per (type, state);
 * a chain with nothing particular to one task (no JoinHandle awaited, nothing
 * held) is interned: the 100,000 tasks waiting at one place share one table
 * (marked shared = true), and building it costs nothing after the first.
 */
static int push_await_chain(lua_State *L, struct td_value v, uint64_t *leaf)
{
	struct td_lua *lua = get_lua(L);
	if (!lua->chain_cache && !(lua->chain_cache = calloc(TD_CHAIN_CACHE, sizeof(*lua->chain_cache))))
		return luaL_error(L, "out of memory");
	struct chain_state *cache = lua->chain_cache;
	size_t *ncache = &lua->nchain;
	struct chain_state *sts[TD_CHAIN_DEPTH], fresh[TD_CHAIN_DEPTH];
	uint64_t addrs[TD_CHAIN_DEPTH];
	uint16_t key[TD_CHAIN_DEPTH];
	uint64_t tags[TD_CHAIN_DEPTH] = { 0 };
	struct td_value kids[TD_CHAIN_CHILDREN];
	int depth = 0, nforked = 0;
	bool per_task = false;
	struct td_error *err = NULL;
	td_future_unbox(&v);
	uint64_t tagged = 0;
	uint64_t root_tag = future_tag(lua, v, &tagged);
	/* A task whose future is a wrapper (a framework's connection, a combinator): the async body in it. */
	td_future_inner_async(&v);
	/*
	 * A future that holds no async body at all (an idle hyper connection:
	 * no request in flight) is its own leaf: the chain is empty, and says
	 * the leaf's type (leaf_type) for the plugin to tell what it waits on.
	 */
	uint64_t root_leaf = 0;
	if (!td_future_is_async_body(&v.type)) {
		root_leaf = dwarf_dieoffset(&v.type);
		if (leaf)
			*leaf = v.address;
	}
	while (depth < TD_CHAIN_DEPTH && td_future_is_async_body(&v.type)) {
		struct td_value payload;
		const char *vname;
		uint64_t discr;
		Dwarf_Die member;
		struct chain_state *st = NULL;
		Dwarf_Off toff = dwarf_dieoffset(&v.type);
		if ((err = td_value_variant(&v, &payload, &vname, &discr, &member)))
			break;
		for (size_t i = 0; i < *ncache && !st; i++)
			if (cache[i].type == toff && cache[i].discr == discr)
				st = &cache[i];
		if (!st) {
			bool full = *ncache >= TD_CHAIN_CACHE;
			st = full ? &fresh[depth] : &cache[(*ncache)++];
			per_task |= full;
			*st = (struct chain_state){ .type = toff, .discr = discr, .name = vname };
			st->file = dwarf_decl_file(&member);
			if (dwarf_decl_line(&member, &st->line) != 0)
				st->line = 0;
			/* An .await inside select!/join!: td.macro_site finds the line that calls it, after the stop. */
			st->foreign = td_future_foreign_site(&v.type, st->file);
			/* In a macro: whose code it is is the async fn's (the line becomes the macro's call). */
			st->own = td_program_own_source(v.prog, &member,
							st->foreign ? td_future_body_file(&v.type) : st->file);
			uint64_t off;
			if (td_type_member(&payload.type, "__awaitee", &st->awaitee_type, &off)) {
				st->has_awaitee = true;
				st->awaitee_off = payload.address - v.address + off;
			}
			find_holds(st, &v.type, &payload.type, payload.address - v.address, discr == 0);
			const char *aw = st->has_awaitee ? dwarf_diename(&st->awaitee_type) : NULL;
			for (int p = 0; aw && p < lua->nper_task; p++)
				st->per_task |= strncmp(aw, lua->per_task[p], strlen(lua->per_task[p])) == 0;
			st->marked = aw && lua->mark_prefix && strncmp(aw, lua->mark_prefix, strlen(lua->mark_prefix)) == 0;
		}
		per_task |= st->nholds > 0 || st->per_task;
		sts[depth] = st;
		addrs[depth] = v.address;
		key[depth] = (uint16_t)(st - cache);
		depth++;
		if (!st->has_awaitee)
			break;
		struct td_value next;
		td_value_init(&next, v.prog, &st->awaitee_type, v.address + st->awaitee_off);
		v = next;
		/* A boxed awaitee: the future in the box (its own level, if an async body). */
		td_future_unbox(&v);
		if (leaf && !td_future_is_async_body(&v.type))
			*leaf = v.address;
		tags[depth - 1] = future_tag(lua, v, &tagged);
		/*
		 * A wrapper (tokio's Timeout, tracing's Instrumented, a combinator)
		 * awaited: the chain goes on in the async body it polls, whose own
		 * innermost await becomes the leaf; the wrapper stays the leaf if
		 * it holds none. One that polls several futures it holds
		 * (futures-util's select(), join()) ends the chain: they are its
		 * level's children.
		 */
		if (lua->tree_depth < TD_TREE_DEPTH && td_future_may_fork(&v) &&
		    (nforked = td_future_fork(&v, kids, TD_CHAIN_CHILDREN)) >= 2)
			break;
		nforked = 0;
		td_future_inner_async(&v);
	}
	if (lua->tree_depth == 0) {
		lua->last_tagged = tagged;
		/* The outermost marked awaitee (a Timeout): where it is, for the task (the chain may be shared). */
		lua->last_marked = 0;
		for (int i = 0; i < depth && lua->mark_prefix; i++)
			if (sts[i]->marked && sts[i]->has_awaitee) {
				lua->last_marked = addrs[i] + sts[i]->awaitee_off;
				break;
			}
	}
	/*
	 * The innermost awaited future polls several futures at once (select!,
	 * join! through a tuple it points at; futures-util's select()/join()
	 * holding them, found above): each gets a chain of its own, built below.
	 */
	int nkids = nforked;
	Dwarf_Die state_type;
	if (!nkids && depth > 0 && !err && sts[depth - 1]->has_awaitee && !td_future_is_async_body(&v.type) &&
	    lua->tree_depth < TD_TREE_DEPTH && td_future_may_have_children(&v) &&
	    td_program_die_at(v.prog, sts[depth - 1]->type, &state_type)) {
		Dwarf_Word size = (Dwarf_Word)dwarf_bytesize(&state_type);
		nkids = td_future_children(&v, addrs[depth - 1], addrs[depth - 1] + size, kids, TD_CHAIN_CHILDREN);
	}
	per_task |= nkids > 0;
	/* The interning key: the levels' (type, state) slots, the tags, the root leaf's type. */
	char kbuf[TD_CHAIN_DEPTH * (sizeof(key[0]) + sizeof(tags[0]) + 1) + 2 * sizeof(uint64_t)];
	size_t klen = (size_t)depth * sizeof(key[0]);
	memcpy(kbuf, key, klen);
	for (int i = 0; i < depth; i++) {
		if (tags[i]) {
			memcpy(kbuf + klen, &tags[i], sizeof(tags[i]));
			klen += sizeof(tags[i]);
			kbuf[klen++] = (char)i;
		}
	}
	uint64_t extra[2] = { root_tag, root_leaf };
	if (root_tag || (depth == 0 && root_leaf)) {
		memcpy(kbuf + klen, extra, sizeof(extra));
		klen += sizeof(extra);
	}
	if (!per_task && !err) {
		lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.chains");
		if (lua_isnil(L, -1)) {
			lua_pop(L, 1);
			lua_newtable(L);
			lua_pushvalue(L, -1);
			lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.chains");
		}
		lua_pushlstring(L, kbuf, klen);
		lua_rawget(L, -2);
		if (!lua_isnil(L, -1)) {
			lua_remove(L, -2);
			return 1;
		}
		lua_pop(L, 1);
		lua_createtable(L, depth, 1);
		for (int i = 0; i < depth; i++) {
			push_chain_level(L, sts[i], 0, tags[i]);
			lua_rawseti(L, -2, i + 1);
		}
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "shared");
		push_chain_extras(L, depth == 0 ? root_leaf : 0, root_tag);
		lua_pushlstring(L, kbuf, klen);
		lua_pushvalue(L, -2);
		lua_rawset(L, -4);
		lua_remove(L, -2);
		return 1;
	}
	lua_createtable(L, depth, 0);
	push_chain_extras(L, depth == 0 ? root_leaf : 0, root_tag);
	for (int i = 0; i < depth; i++) {
		push_chain_level(L, sts[i], addrs[i], tags[i]);
		if (i == depth - 1 && nkids > 0)
			push_children(L, kids, nkids);
		lua_rawseti(L, -2, i + 1);
	}
	if (err) {
		lua_pushstring(L, err->message);
		td_error_destroy(err);
		lua_setfield(L, -2, "error");
	}
	return 1;
}

/*
 * td.macro_site(type_id, state) -> file, line, or nil
 * For a chain level marked in_macro (an .await written inside select! or
 * join!): the user's line that calls the macro (td_future_macro_site). A
 * DWARF search: call it after the stop.
 */
static int l_macro_site(lua_State *L)
{
	struct td_program *prog = get_lua(L)->prog;
	Dwarf_Die state, part, variant, member, vtype;
	const char *want = luaL_checkstring(L, 2);
	if (!td_program_die_at(prog, (uint64_t)luaL_checkinteger(L, 1), &state) || dwarf_child(&state, &part) != 0)
		return 0;
	do {
		if (dwarf_tag(&part) != DW_TAG_variant_part || dwarf_child(&part, &variant) != 0)
			continue;
		do {
			const char *vn, *file, *site_file;
			int site_line;
			if (dwarf_tag(&variant) != DW_TAG_variant || dwarf_child(&variant, &member) != 0 ||
			    !td_die_type(&member, &vtype) || !(vn = dwarf_diename(&vtype)) || strcmp(vn, want) != 0)
				continue;
			file = dwarf_decl_file(&member);
			if (!td_future_macro_site(prog, &state, &vtype, file, &site_file, &site_line))
				return 0;
			lua_pushstring(L, site_file);
			lua_pushinteger(L, site_line);
			return 2;
		} while (dwarf_siblingof(&variant, &variant) == 0);
	} while (dwarf_siblingof(&part, &part) == 0);
	return 0;
}

/*
 * td.find_inside(v, prefix [, past_async]) -> found, { values on the way down, v first } or nil
 * The first value inside future v (fields, live variants, boxes, references;
 * async bodies only if past_async) whose type's path begins with prefix:
 * td_future_find.
 */
#define TD_FIND_PATH 32
static int l_find_inside(lua_State *L)
{
	struct td_value v = *check_value(L, 1), path[TD_FIND_PATH];
	int n = td_future_find(&v, luaL_checkstring(L, 2), lua_toboolean(L, 3), path, TD_FIND_PATH);
	if (n < 0)
		return 0;
	push_value(L, &v);
	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		push_value(L, &path[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 2;
}

/*
 * td.per_task_awaitee(name_beginning): chains awaiting a future whose type's
 * name (DWARF's, the last path component) begins so are built per task, with
 * the address of each level (addr, awaiting_addr), never shared: what the
 * plugin must follow from the awaiting state itself (a JoinHandle's task, the
 * socket an accept() future's async fn borrows).
 */
static int l_per_task_awaitee(lua_State *L)
{
	struct td_lua *lua = get_lua(L);
	const char *name = luaL_checkstring(L, 1);
	for (int i = 0; i < lua->nper_task; i++)
		if (strcmp(lua->per_task[i], name) == 0)
			return 0;
	if (lua->nper_task == (int)(sizeof(lua->per_task) / sizeof(lua->per_task[0])))
		return luaL_error(L, "too many per-task awaitees");
	if (!(lua->per_task[lua->nper_task] = strdup(name)))
		return luaL_error(L, "out of memory");
	lua->nper_task++;
	return 0;
}

/*
 * td.mark_awaitee(prefix): a future whose DWARF name begins with prefix
 * awaited by an async fn ("Timeout<") is marked: td.await_chains reports,
 * per task, where the outermost one is (its 5th result), whether or not the
 * chain is shared. Costs nothing per task beyond a flag per chain level.
 */
static int l_mark_awaitee(lua_State *L)
{
	struct td_lua *lua = get_lua(L);
	const char *prefix = luaL_checkstring(L, 1);
	if (lua->mark_prefix)
		return luaL_error(L, "td.mark_awaitee: one prefix");
	if (!(lua->mark_prefix = strdup(prefix)))
		return luaL_error(L, "out of memory");
	return 0;
}

/*
 * td.tag_awaitee(prefix, {field, ...}): a future found inside a level's
 * awaited future (or a task's own future) whose type path begins with prefix
 * tags that level with the word at the path of fields in it (tracing's
 * Instrumented: {"span", "meta"}, the span's static metadata). Chains that
 * differ only in tags are not shared; the tag is the level's `tag` (the
 * chain's `root_tag` for the task's own future). One prefix.
 */
static int l_tag_awaitee(lua_State *L)
{
	struct td_lua *lua = get_lua(L);
	const char *prefix = luaL_checkstring(L, 1);
	luaL_checktype(L, 2, LUA_TTABLE);
	int n = (int)lua_rawlen(L, 2);
	if (lua->tag_prefix || n < 1 || n > (int)(sizeof(lua->tag_path) / sizeof(lua->tag_path[0])))
		return luaL_error(L, "td.tag_awaitee: one prefix, and a path of 1 to 8 fields");
	for (int i = 0; i < n; i++) {
		lua_rawgeti(L, 2, i + 1);
		lua->tag_path[i] = strdup(luaL_checkstring(L, -1));
		lua_pop(L, 1);
		if (!lua->tag_path[i])
			return luaL_error(L, "out of memory");
	}
	lua->ntag_path = n;
	if (!(lua->tag_prefix = strdup(prefix)))
		return luaL_error(L, "out of memory");
	return 0;
}

/*
 * The tag of future v (see td.tag_awaitee), 0 if none; *found (if not yet
 * set): where the tagged future's member at the path's first field is (an
 * Instrumented's Span, whose type is the same in every Instrumented<F>).
 */
static uint64_t future_tag(struct td_lua *lua, struct td_value v, uint64_t *found)
{
	if (!lua->tag_prefix)
		return 0;
	/* Most futures can hold none: known per type without a search (a cache of the answer). */
	uint64_t key = dwarf_dieoffset(&v.type);
	uint64_t *slot = &lua->untagged[key % (sizeof(lua->untagged) / sizeof(lua->untagged[0]))];
	if (*slot == key)
		return 0;
	if (td_future_find(&v, lua->tag_prefix, false, NULL, 0) < 0) {
		if (td_future_never_holds(&v, lua->tag_prefix, false))
			*slot = key;
		return 0;
	}
	/* Where the path's first field and its word are: once per tagged type (member lookups walk DWARF). */
	uint64_t tkey = dwarf_dieoffset(&v.type);
	size_t nslots = sizeof(lua->tag_offsets) / sizeof(lua->tag_offsets[0]);
	__typeof__(lua->tag_offsets[0]) *to = &lua->tag_offsets[tkey % nslots];
	if (to->type != tkey) {
		struct td_value u = v;
		uint64_t first = 0;
		for (int i = 0; i < lua->ntag_path; i++) {
			Dwarf_Die t;
			uint64_t off;
			if (!td_type_member(&u.type, lua->tag_path[i], &t, &off))
				return 0;
			td_value_init(&u, u.prog, &t, u.address + off);
			if (i == 0)
				first = u.address - v.address;
		}
		to->type = tkey;
		to->first = first;
		to->word = u.address - v.address;
	}
	if (found && !*found)
		*found = v.address + to->first;
	uint64_t word = 0;
	if (td_program_read_uint(v.prog, v.address + to->word, 8, &word))
		return 0;
	return word;
}

/*
 * td.prewarm(Type, {prefix, ...}) -> { type id, ... }
 * Before a stop: td_future_prewarm for a task's future type (the searches'
 * per-type facts, for td.find_inside's prefixes too); returns the awaited
 * types that are no async body, for the plugin's own per-type work.
 */
#define TD_PREWARM_LEAVES 1024
static int l_prewarm(lua_State *L)
{
	Dwarf_Die *t = check_type(L, 1);
	const char *prefixes[16];
	int n = 0;
	if (lua_istable(L, 2)) {
		for (lua_Integer i = 1; n < 16 && (lua_rawgeti(L, 2, i), lua_isstring(L, -1)); i++) {
			prefixes[n++] = lua_tostring(L, -1);   /* kept alive by the table */
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	uint64_t leaves[TD_PREWARM_LEAVES];
	int nleaves = td_future_prewarm(get_lua(L)->prog, t, prefixes, n, leaves, TD_PREWARM_LEAVES);
	lua_createtable(L, nleaves, 0);
	for (int i = 0; i < nleaves; i++) {
		lua_pushinteger(L, (lua_Integer)leaves[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* td.type_by_id(id) -> Type (ids from td.id and td.await_chain) */
static int l_type_by_id(lua_State *L)
{
	Dwarf_Die die;
	if (!td_program_die_at(get_lua(L)->prog, (uint64_t)luaL_checkinteger(L, 1), &die)) {
		lua_pushnil(L);
		return 1;
	}
	push_type(L, &die);
	return 1;
}

/*
 * td.threads() -> { {tid=, name=, state=, syscall=, futex=}, ... }
 * syscall: the name of the system call the thread was blocked in at the
 * snapshot (nil if none); futex: for a thread blocked in futex, the address of
 * the futex word it waits on (its first argument), which names the lock.
 */
static int l_threads(lua_State *L)
{
	struct td_snapshot *snap = td_program_snapshot(get_lua(L)->prog);
	lua_createtable(L, (int)snap->nthreads, 0);
	for (size_t i = 0; i < snap->nthreads; i++) {
		const struct td_snapshot_thread *t = &snap->threads[i];
		lua_createtable(L, 0, 5);
		lua_pushinteger(L, t->tid);
		lua_setfield(L, -2, "tid");
		if (t->has_name) {
			lua_pushstring(L, t->name);
			lua_setfield(L, -2, "name");
		}
		if (t->state) {
			lua_pushlstring(L, &t->state, 1);
			lua_setfield(L, -2, "state");
		}
		const char *sc = td_syscall_name(t->syscall);
		if (sc) {
			lua_pushstring(L, sc);
			lua_setfield(L, -2, "syscall");
			if (strcmp(sc, "futex") == 0) {
				lua_pushinteger(L, (lua_Integer)t->regs.rdi);
				lua_setfield(L, -2, "futex");
			}
		}
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	return 1;
}

/*
 * td.follow(addr, steps) -> addr or nil
 * A precomputed path through memory, in one call: each step >= 0 adds an
 * offset, -1 reads the pointer at the current address (nil if it is null or
 * unreadable). Plugins compute steps once per type (td.offset, td.pointee)
 * and follow them per instance without creating values.
 */
/* One step of a td.follow path: add an offset (>= 0), or read the pointer there (-1). */
static bool follow_step(struct td_program *prog, uint64_t *addr, lua_Integer step)
{
	if (step >= 0) {
		*addr += (uint64_t)step;
		return true;
	}
	uint64_t p = 0;
	struct td_error *err = td_program_read(prog, *addr, &p, sizeof(p));
	bool ok = !err && p != 0;
	td_error_destroy(err);
	*addr = p;
	return ok;
}

static int l_follow(lua_State *L)
{
	uint64_t addr = check_addr(L, 1);
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
	struct td_program *prog = get_lua(L)->prog;
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, 2, i);
		lua_Integer step = lua_tointeger(L, -1);
		lua_pop(L, 1);
		if (!follow_step(prog, &addr, step)) {
			lua_pushnil(L);
			return 1;
		}
	}
	lua_pushinteger(L, (lua_Integer)addr);
	return 1;
}

/*
 * td.follow_many(addrs, steps [, keys, set]) -> { [k] = address reached }:
 * td.follow for every address of a table (any keys; the result has the same
 * keys, and none where a pointer on the way is null or unreadable), in one
 * call: the plugin resolves 100,000 awaited futures to their locks or
 * channels while the target is stopped. With keys and set, only the k whose
 * set[keys[k]] is true (the tasks whose chain awaits one type).
 */
static int l_follow_many(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_Integer steps[64];
	lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
	if (n > 64)
		return luaL_error(L, "td.follow_many: more than 64 steps");
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, 2, i);
		steps[i - 1] = lua_tointeger(L, -1);
		lua_pop(L, 1);
	}
	bool select = !lua_isnoneornil(L, 3);
	if (select) {
		luaL_checktype(L, 3, LUA_TTABLE);
		luaL_checktype(L, 4, LUA_TTABLE);
	}
	struct td_program *prog = get_lua(L)->prog;
	lua_newtable(L);
	int out = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, 1)) {
		uint64_t addr = (uint64_t)lua_tointeger(L, -1);
		bool ok = lua_isinteger(L, -1);
		if (ok && select) {
			lua_pushvalue(L, -2);
			lua_rawget(L, 3);
			ok = lua_rawget(L, 4) != LUA_TNIL && lua_toboolean(L, -1);
			lua_pop(L, 1);
		}
		for (lua_Integer i = 0; ok && i < n; i++)
			ok = follow_step(prog, &addr, steps[i]);
		lua_pop(L, 1);
		if (ok) {
			lua_pushvalue(L, -1);
			lua_pushinteger(L, (lua_Integer)addr);
			lua_rawset(L, out);
		}
	}
	return 1;
}

/*
 * td.strip_generics(name) -> name without generic arguments:
 * "a::B<c::D>::f" -> "a::B::f". A '<' right after a name ("B<", "}<", ">>")
 * opens generic arguments, dropped; one elsewhere opens a qualified path,
 * kept: "<a::B<u8> as c::D>::f" -> "<a::B as c::D>::f". The '>' of "->" (a
 * fn type, such as hyper's ServiceFn<fn(Request) -> F>) closes nothing. Plugins and
 * detectors name futures and frames this way (docs/cli-contract.md).
 */
#define TD_STRIP_DEPTH 64
static int l_strip_generics(lua_State *L)
{
	size_t len;
	const char *name = luaL_checklstring(L, 1, &len);
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, len);
	size_t n = 0;
	bool generic[TD_STRIP_DEPTH];  /* per open '<': generic arguments, or a qualified path */
	int depth = 0, dropping = 0;   /* dropping: open generic brackets */
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (c == '<') {
			char prev = i ? name[i - 1] : '\0';
			bool g = dropping > 0 || prev == '_' || prev == '}' || prev == '>' ||
				 (prev >= '0' && prev <= '9') || (prev >= 'a' && prev <= 'z') ||
				 (prev >= 'A' && prev <= 'Z');
			if (depth < TD_STRIP_DEPTH)
				generic[depth] = g;
			depth++;
			dropping += g;
			if (!g)
				out[n++] = c;
		} else if (c == '>' && depth > 0 && !(i > 0 && name[i - 1] == '-')) {
			/* (the '>' of a fn type's "->" closes nothing) */
			depth--;
			bool g = depth < TD_STRIP_DEPTH ? generic[depth] : dropping > 0;
			dropping -= g;
			if (!g)
				out[n++] = c;
		} else if (dropping == 0) {
			out[n++] = c;
		}
	}
	luaL_pushresultsize(&b, n);
	return 1;
}

/*
 * td.hex(n [, prefix]) -> prefix .. "0x..." (n in lowercase hex): what
 * string.format("%s0x%x", prefix, n) gives, at a third of the cost (one per
 * task and per resource at 100,000 tasks).
 */
static int l_hex(lua_State *L)
{
	uint64_t n = (uint64_t)luaL_checkinteger(L, 1);
	size_t plen = 0;
	const char *prefix = luaL_optlstring(L, 2, "", &plen);
	char buf[96];
	if (plen > sizeof(buf) - 19)
		return luaL_error(L, "td.hex: prefix too long");
	memcpy(buf, prefix, plen);
	lua_pushlstring(L, buf, plen + td_json_hex(buf + plen, n));
	return 1;
}

/*
 * td.ptr(n) -> an address as a value: a light userdata, so no allocation,
 * equal to another of the same address (a table key), shown "0x..." by
 * tostring, .. and string.format("%s"), and written as that string in JSON.
 * A record field that only shows an address (a task's, a resource's) takes
 * one at no cost; a string each cost 0.5 us a task at 100,000 tasks.
 */
static int l_ptr(lua_State *L)
{
	lua_pushlightuserdata(L, (void *)(uintptr_t)(uint64_t)luaL_checkinteger(L, 1));
	return 1;
}

/* "0x..." for a td.ptr, "null" for td.null. */
static const char *ptr_text(const void *p, char *buf, size_t size)
{
	if (p == &null_sentinel || size < 19)
		return "null";
	td_json_hex(buf, (uint64_t)(uintptr_t)p);
	return buf;
}

static int ptr_tostring(lua_State *L)
{
	char buf[32];
	lua_pushstring(L, ptr_text(lua_touserdata(L, 1), buf, sizeof(buf)));
	return 1;
}

static int ptr_concat(lua_State *L)
{
	luaL_tolstring(L, 1, NULL);
	luaL_tolstring(L, 2, NULL);
	lua_concat(L, 2);
	return 1;
}

/* td.clock_ms() -> milliseconds of a monotonic clock (for timing samples) */
static int l_clock_ms(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)td_now_ns() / 1e6);
	return 1;
}

struct locals_out {
	lua_State *L;
	int table;
	lua_Integer n;
	size_t frame;
};

static int push_local(const struct td_local *local, void *arg)
{
	struct locals_out *o = arg;
	lua_State *L = o->L;
	lua_createtable(L, 0, 6);
	lua_pushinteger(L, (lua_Integer)o->frame);
	lua_setfield(L, -2, "frame");
	lua_pushinteger(L, local->depth);
	lua_setfield(L, -2, "depth");
	if (local->function) {
		lua_pushstring(L, local->function);
		lua_setfield(L, -2, "function");
	}
	lua_pushstring(L, local->name);
	lua_setfield(L, -2, "name");
	Dwarf_Die type = local->type;
	push_type(L, &type);
	lua_setfield(L, -2, "type");
	if (local->located) {
		lua_pushinteger(L, (lua_Integer)local->addr);
		lua_setfield(L, -2, "addr");
	}
	if (local->decl_file) {
		lua_pushstring(L, local->decl_file);
		lua_setfield(L, -2, "decl_file");
	}
	if (local->frame_sp) {
		lua_pushinteger(L, (lua_Integer)local->frame_sp);
		lua_setfield(L, -2, "sp");
	}
	if (local->frame_cfa) {
		lua_pushinteger(L, (lua_Integer)local->frame_cfa);
		lua_setfield(L, -2, "cfa");
	}
	lua_rawseti(L, o->table, ++o->n);
	return 0;
}

/*
 * td.frame_locals(tid [, max_frames [, unlocated]]) -> { {frame=, depth=,
 * function=, name=, type=, addr=, decl_file=, sp=, cfa=}, ... }: the variables
 * in scope in each frame of the thread's stack (frame 0 innermost; depth 0 the
 * innermost inlined function of a frame), readable at addr like any value (a
 * variable held in registers is assembled where td_snapshot_scratch puts it);
 * sp and cfa bound the frame's own stack memory. Works from the copied stack
 * and registers, so it may be called after the stop; variables whose
 * location taskdbg cannot evaluate are left out, or with unlocated true
 * reported without addr.
 */
static int l_frame_locals(lua_State *L)
{
	lua_Integer tid = luaL_checkinteger(L, 1);
	lua_Integer max = luaL_optinteger(L, 2, TD_MAX_FRAMES);
	int flags = lua_toboolean(L, 3) ? TD_LOCALS_UNLOCATED : 0;
	struct td_snapshot *snap = td_program_snapshot(get_lua(L)->prog);
	size_t index = snap->nthreads;
	for (size_t i = 0; i < snap->nthreads; i++)
		if (snap->threads[i].tid == tid)
			index = i;
	lua_newtable(L);
	if (index == snap->nthreads)
		return 1;
	const struct td_stack *stacks;
	struct td_error *err = td_unwind_all(snap, &stacks);
	if (err) {
		td_error_destroy(err);
		return 1;
	}
	struct locals_out out = { .L = L, .table = lua_gettop(L) };
	for (size_t j = 0; j < stacks[index].count && (lua_Integer)j < max; j++) {
		out.frame = j;
		td_frame_locals(snap, td_program_symbolizer(get_lua(L)->prog), &stacks[index], j,
				flags, push_local, &out);
	}
	return 1;
}

/*
 * td.target_clock_ms() -> the target's CLOCK_MONOTONIC now, in ms, or nil:
 * a live process shares the machine's clock (read at the call, so during a
 * stop it is the stop's time); a core file does not record when it was made.
 */
static int l_target_clock_ms(lua_State *L)
{
	if (td_program_snapshot(get_lua(L)->prog)->kind != TD_SNAPSHOT_LIVE)
		return 0;
	return l_clock_ms(L);
}

static const luaL_Reg td_functions[] = {
	{ "clock_ms", l_clock_ms }, { "target_clock_ms", l_target_clock_ms },
	{ "frame_locals", l_frame_locals }, { "follow", l_follow }, { "follow_many", l_follow_many },
	{ "strip_generics", l_strip_generics },
	{ "hex", l_hex },
	{ "ptr", l_ptr },
	{ "addr", l_addr }, { "deref", l_deref }, { "pointer", l_pointer }, { "uint", l_uint },
	{ "variant", l_variant }, { "has", l_has }, { "type_of", l_type_of },
	{ "type_name", l_type_name }, { "size", l_size }, { "offset", l_offset },
	{ "pointee", l_pointee }, { "value", l_value }, { "cast", l_cast },
	{ "find_type", l_find_type }, { "each_type", l_each_type }, { "tls", l_tls },
	{ "read", l_read }, { "try_read", l_try_read }, { "read_bytes", l_read_bytes }, { "function_at", l_function_at },
	{ "template", l_template }, { "same_type", l_same_type }, { "decl", l_decl },
	{ "threads", l_threads }, { "fields", l_fields }, { "is_enum", l_is_enum },
	{ "qualified_name", l_qualified_name }, { "id", l_id }, { "find_tls", l_find_tls },
	{ "each_function", l_each_function }, { "walk_list", l_walk_list },
	{ "await_chain", l_await_chain }, { "type_by_id", l_type_by_id },
	{ "await_chain_at", l_await_chain_at }, { "await_chains", l_await_chains },
	{ "macro_site", l_macro_site }, { "find_inside", l_find_inside },
	{ "per_task_awaitee", l_per_task_awaitee }, { "tag_awaitee", l_tag_awaitee },
	{ "mark_awaitee", l_mark_awaitee },
	{ "prewarm", l_prewarm },
	{ NULL, NULL },
};

struct td_error *td_lua_create(struct td_program *prog, struct td_lua **ret)
{
	struct td_lua *lua = calloc(1, sizeof(*lua));
	if (!lua)
		return &td_enomem;
	lua->prog = prog;
	lua->L = lua_newstate(budget_alloc, lua);
	if (!lua->L) {
		free(lua);
		return &td_enomem;
	}
	lua_State *L = lua->L;
	/* The metatable of every light userdata: td.null and td.ptr's addresses. */
	lua_pushlightuserdata(L, &null_sentinel);
	lua_createtable(L, 0, 4);
	lua_pushcfunction(L, ptr_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushcfunction(L, ptr_concat);
	lua_setfield(L, -2, "__concat");
	lua_pushliteral(L, "address");
	lua_setfield(L, -2, "__name");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");  /* getmetatable gives false: not to be changed */
	lua_setmetatable(L, -2);
	lua_pop(L, 1);
	/* Only the harmless libraries; io, os, package, debug are never opened. */
	luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
	luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
	luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
	luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
	luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
	lua_pop(L, 5);
	luaL_newmetatable(L, VALUE_MT);
	lua_pushcfunction(L, value_index);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, value_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
	luaL_newmetatable(L, TYPE_MT);
	lua_pushcfunction(L, type_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
	lua_sethook(L, budget_hook, LUA_MASKCOUNT, TD_LUA_HOOK_EVERY);
	*ret = lua;
	return NULL;
}

void td_lua_destroy(struct td_lua *lua)
{
	if (!lua)
		return;
	lua_close(lua->L);
	free(lua->chain_cache);
	free(lua->plugin_path);
	for (int i = 0; i < lua->nper_task; i++)
		free(lua->per_task[i]);
	free(lua->mark_prefix);
	for (int i = 0; i < lua->ntag_path; i++)
		free(lua->tag_path[i]);
	free(lua->tag_prefix);
	if (lua->owns_prog)
		td_program_destroy(lua->prog);
	free(lua);
}

/* The environment of one plugin: safe globals and `td`, nothing else. */
static void push_sandbox(lua_State *L)
{
	static const char *const allowed[] = {
		"assert", "error", "ipairs", "next", "pairs", "pcall", "print", "rawequal",
		"rawget", "rawlen", "rawset", "select", "setmetatable", "getmetatable",
		"tonumber", "tostring", "type", "xpcall", "string", "table", "math", "utf8",
		NULL,
	};
	lua_newtable(L);
	lua_pushglobaltable(L);
	for (int i = 0; allowed[i]; i++) {
		lua_getfield(L, -1, allowed[i]);
		lua_setfield(L, -3, allowed[i]);
	}
	lua_pop(L, 1);
	luaL_newlib(L, td_functions);
	lua_pushlightuserdata(L, &null_sentinel);
	lua_setfield(L, -2, "null");
	lua_setfield(L, -2, "td");
}

/* Tables converted so far in one conversion: a table met again is shared, not copied. */
struct json_memo {
	const void **keys;
	struct json_object **values;
	size_t count, capacity;   /* capacity: power of two */
};

/*
 * Fibonacci hashing: tables are allocated at regular strides, and a plain
 * shift of their addresses makes long runs for linear probing (100,000
 * per-task objects took 0.5 s to convert).
 */
static size_t json_memo_hash(const void *key, size_t cap)
{
	return (size_t)(((uint64_t)(uintptr_t)key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static struct json_object **json_memo_slot(struct json_memo *m, const void *key)
{
	if ((m->count + 1) * 2 > m->capacity) {
		size_t cap = m->capacity ? m->capacity * 2 : 1024;
		const void **keys = calloc(cap, sizeof(*keys));
		struct json_object **values = calloc(cap, sizeof(*values));
		if (!keys || !values) {
			free(keys);
			free(values);
			return NULL;
		}
		for (size_t i = 0; i < m->capacity; i++) {
			if (!m->keys[i])
				continue;
			size_t j = json_memo_hash(m->keys[i], cap);
			while (keys[j])
				j = (j + 1) & (cap - 1);
			keys[j] = m->keys[i];
			values[j] = m->values[i];
		}
		free(m->keys);
		free(m->values);
		m->keys = keys;
		m->values = values;
		m->capacity = cap;
	}
	size_t j = json_memo_hash(key, m->capacity);
	while (m->keys[j] && m->keys[j] != key)
		j = (j + 1) & (m->capacity - 1);
	if (!m->keys[j]) {
		m->keys[j] = key;
		m->count++;
	}
	return &m->values[j];
}

static struct json_object *to_json_memo(lua_State *L, int idx, int depth, struct json_memo *memo)
{
	idx = lua_absindex(L, idx);
	switch (lua_type(L, idx)) {
	case LUA_TLIGHTUSERDATA: {
		if (lua_touserdata(L, idx) == &null_sentinel)
			return NULL;
		char buf[32];
		return json_object_new_string(ptr_text(lua_touserdata(L, idx), buf, sizeof(buf)));
	}
	case LUA_TBOOLEAN:
		return json_object_new_boolean(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			return json_object_new_int64(lua_tointeger(L, idx));
		return json_object_new_double(lua_tonumber(L, idx));
	case LUA_TSTRING:
		return json_object_new_string(lua_tostring(L, idx));
	case LUA_TTABLE: {
		if (depth >= TD_LUA_JSON_DEPTH)
			return NULL;
		const void *key = lua_topointer(L, idx);
		struct json_object **shared = json_memo_slot(memo, key);
		if (shared && *shared)
			return json_object_get(*shared);
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
				 * table (kept in the registry, see keep_alive): borrowed,
				 * not copied; a Lua table's keys are unique.
				 */
				if (lua_type(L, -2) == LUA_TSTRING)
					json_object_object_add_ex(result, lua_tostring(L, -2),
								  to_json_memo(L, -1, depth + 1, memo),
								  JSON_C_OBJECT_ADD_KEY_IS_NEW |
								  JSON_C_OBJECT_KEY_IS_CONSTANT);
				lua_pop(L, 1);
			}
		}
		/*
		 * The memo holds a reference of its own, dropped at the end. Its
		 * slots move as it grows during the recursion: look this one up again.
		 */
		if ((shared = json_memo_slot(memo, key)))
			*shared = json_object_get(result);
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
static void keep_alive(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	if (lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.results") != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.results");
	}
	lua_pushvalue(L, idx);
	lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
	lua_pop(L, 1);
}

static struct json_object *to_json(lua_State *L, int idx, int depth)
{
	struct json_memo memo = { 0 };
	struct json_object *result = to_json_memo(L, idx, depth, &memo);
	for (size_t i = 0; i < memo.capacity; i++)
		if (memo.keys[i])
			json_object_put(memo.values[i]);
	free(memo.keys);
	free(memo.values);
	return result;
}

/*
 * Loads a text chunk named after its file's base name: Lua cuts long chunk
 * names in messages, and "tokio.lua:12: ..." is what a plugin author needs.
 */
static int load_text_file(lua_State *L, const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		lua_pushfstring(L, "cannot open %s", path);
		return LUA_ERRFILE;
	}
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		luaL_addlstring(&b, chunk, n);
	fclose(f);
	luaL_pushresult(&b);
	const char *base = strrchr(path, '/');
	lua_pushfstring(L, "@%s", base ? base + 1 : path);
	size_t len;
	const char *text = lua_tolstring(L, -2, &len);
	int r = luaL_loadbufferx(L, text, len, lua_tostring(L, -1), "t");
	lua_remove(L, -2);  /* chunk name */
	lua_remove(L, -2);  /* text */
	return r;
}

/*
 * The message handler of every call into Lua: the error as it is. The Lua
 * stack of a failure is for taskdbg's developers and comes with it only when
 * TASKDBG_DEBUG is set (users read what went wrong, not where in a plugin).
 */
static int traceback(lua_State *L)
{
	const char *debug = getenv("TASKDBG_DEBUG");
	if (debug && debug[0])
		luaL_traceback(L, L, lua_tostring(L, 1), 1);
	else if (!lua_isstring(L, 1))
		lua_pushstring(L, luaL_typename(L, 1));
	else
		lua_pushvalue(L, 1);
	return 1;
}

/*
 * The error of a failed call of the plugin's `entry`, whose message is on
 * top of the stack. A plugin may explain its own failures: its optional
 * `explain(message, entry)` returns what the user should read instead (a
 * runtime layout it cannot read, say), or nil to keep the message.
 */
static struct td_error *plugin_failure(struct td_lua *lua, const char *entry)
{
	lua_State *L = lua->L;
	const char *path = lua->plugin_path ? lua->plugin_path : "(none)";
	int top = lua_gettop(L);
	const char *message = lua_isstring(L, top) ? lua_tostring(L, top) : "(no message)";
	struct td_error *err = NULL;
	lua_pushcfunction(L, traceback);
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	if (lua_istable(L, -1) && lua_getfield(L, -1, "explain") == LUA_TFUNCTION) {
		lua_pushvalue(L, top);
		lua_pushstring(L, entry);
		budget_start(lua, TD_LUA_OTHER_MS);
		if (lua_pcall(L, 2, 1, top + 1) == LUA_OK && lua_isstring(L, -1))
			err = td_error_format(TD_ERR_TARGET, "%s", lua_tostring(L, -1));
	}
	if (!err)
		err = td_error_format(TD_ERR_TARGET, "plugin %s failed in %s: %s", path, entry, message);
	lua_settop(L, top);
	return err;
}

struct td_error *td_lua_load_plugin(struct td_lua *lua, const char *path)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	lua_pushcfunction(L, traceback);
	/* Text only: a precompiled chunk could break the VM's invariants. */
	if (load_text_file(L, path) != LUA_OK) {
		struct td_error *err = td_error_format(TD_ERR_TARGET, "plugin %s: %s", path, lua_tostring(L, -1));
		lua_settop(L, base);
		return err;
	}
	push_sandbox(L);
	lua_setupvalue(L, -2, 1);  /* the chunk's _ENV */
	budget_start(lua, TD_LUA_OTHER_MS);
	if (lua_pcall(L, 0, 1, base + 1) != LUA_OK || !lua_istable(L, -1)) {
		struct td_error *err = td_error_format(TD_ERR_TARGET, "plugin %s: %s", path,
			lua_isstring(L, -1) ? lua_tostring(L, -1) : "did not return a table");
		lua_settop(L, base);
		return err;
	}
	free(lua->plugin_path);
	lua->plugin_path = strdup(path);
	lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	lua_settop(L, base);
	return NULL;
}

struct td_error *td_lua_open_plugin(struct td_snapshot *snap, const char *path,
				    const char *prepare, struct td_lua **ret)
{
	struct td_program *prog;
	struct td_error *err = td_program_create(snap, &prog);
	if (err)
		return err;
	struct td_lua *lua;
	if ((err = td_lua_create(prog, &lua))) {
		td_program_destroy(prog);
		return err;
	}
	lua->owns_prog = true;
	if ((err = td_lua_load_plugin(lua, path)) ||
	    (err = td_lua_call_plugin(lua, prepare, false, NULL))) {
		td_lua_destroy(lua);
		return err;
	}
	*ret = lua;
	return NULL;
}

struct td_program *td_lua_program(struct td_lua *lua)
{
	return lua->prog;
}

/*
 * Calls the loaded plugin's function `entry` within limit_ms, leaving its
 * result on top of the stack; the caller restores the stack. A missing entry
 * is an error unless optional (then *called is false and nothing is pushed
 * that matters).
 */
static struct td_error *call_entry(struct td_lua *lua, const char *entry, unsigned limit_ms,
				   bool optional, bool *called)
{
	lua_State *L = lua->L;
	const char *path = lua->plugin_path ? lua->plugin_path : "(none)";
	*called = false;
	lua_pushcfunction(L, traceback);
	int tb = lua_gettop(L);
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	if (!lua_istable(L, -1))
		return td_error_format(TD_ERR_INTERNAL, "no plugin loaded");
	if (lua_getfield(L, -1, entry) != LUA_TFUNCTION) {
		if (optional)
			return NULL;  /* optional entries (prepare) may be absent */
		return td_error_format(TD_ERR_TARGET, "plugin %s has no function %s", path, entry);
	}
	budget_start(lua, limit_ms);
	if (lua_pcall(L, 0, 1, tb) != LUA_OK)
		return plugin_failure(lua, entry);
	*called = true;
	return NULL;
}

struct td_error *td_lua_call_plugin(struct td_lua *lua, const char *entry, bool target_stopped,
				    struct json_object **ret)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	bool called;
	struct td_error *err = call_entry(lua, entry, target_stopped ? TD_LUA_STOPPED_MS : TD_LUA_OTHER_MS,
					  !ret, &called);
	if (!err && called && ret) {
		td_timing_mark("plugin call");
		keep_alive(L, -1);
		*ret = to_json(L, -1, 0);
		td_timing_mark("plugin result to JSON");
	}
	lua_settop(L, base);
	return err;
}

struct td_error *td_lua_call_keep(struct td_lua *lua, const char *entry)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	bool called;
	struct td_error *err = call_entry(lua, entry, TD_LUA_OTHER_MS, false, &called);
	if (!err)
		lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.result");
	lua_settop(L, base);
	if (!err)
		td_timing_mark("plugin call");
	return err;
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
	else if (!td_json_write_lua(out, L, -1, TD_LUA_JSON_DEPTH, &null_sentinel)) {
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

struct td_error *td_lua_call_stopped(struct td_lua *lua, const char *entry)
{
	/* What the page cache holds was read before this stop: stale now. */
	td_program_forget_memory(lua->prog);
	return td_lua_call_plugin(lua, entry, true, NULL);
}

struct td_error *td_lua_run_script(struct td_lua *lua, const char *path, char **args, int nargs,
				   bool target_stopped, struct json_object **ret)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	lua_pushcfunction(L, traceback);
	if (load_text_file(L, path) != LUA_OK) {
		struct td_error *err = td_error_format(TD_ERR_TARGET, "script %s: %s", path, lua_tostring(L, -1));
		lua_settop(L, base);
		return err;
	}
	push_sandbox(L);
	lua_createtable(L, nargs, 0);
	for (int i = 0; i < nargs; i++) {
		lua_pushstring(L, args[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "args");
	lua_setupvalue(L, -2, 1);
	budget_start(lua, target_stopped ? TD_LUA_STOPPED_MS : TD_LUA_OTHER_MS);
	if (lua_pcall(L, 0, 1, base + 1) != LUA_OK) {
		struct td_error *err = td_error_format(TD_ERR_TARGET, "script %s failed: %s", path,
						       lua_tostring(L, -1));
		lua_settop(L, base);
		return err;
	}
	if (lua_istable(L, -1))
		keep_alive(L, -1);
	*ret = lua_istable(L, -1) ? to_json(L, -1, 0) : NULL;
	lua_settop(L, base);
	return NULL;
}

static bool readable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The directory taskdbg's own executable is in ("" if unknown): a build dir sits in the source tree. */
static void own_dir(char *buf, size_t size)
{
	buf[0] = '\0';
	ssize_t n = readlink("/proc/self/exe", buf, size - 1);
	if (n <= 0)
		return;
	buf[n] = '\0';
	char *slash = strrchr(buf, '/');
	if (slash)
		*slash = '\0';
}

struct td_error *td_lua_find_plugin(const char *name, const char *extra_dir, char **path_ret)
{
	char exe_dir[4096];
	own_dir(exe_dir, sizeof(exe_dir));
	const char *env = getenv("TASKDBG_PLUGIN_PATH");
	char source_tree[4200];
	/* A build directory sits in the source tree: <src>/build/taskdbg -> <src>/plugins. */
	snprintf(source_tree, sizeof(source_tree), "%s/../plugins", exe_dir);
	const char *dirs[] = { extra_dir, env, TD_PLUGIN_DIR, exe_dir[0] ? source_tree : NULL };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (!dirs[i] || !dirs[i][0])
			continue;
		/* $TASKDBG_PLUGIN_PATH may list several directories, ':'-separated. */
		char *copy = strdup(dirs[i]);
		if (!copy)
			return &td_enomem;
		for (char *save = NULL, *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
			char *path;
			if (asprintf(&path, "%s/%s.lua", d, name) < 0) {
				free(copy);
				return &td_enomem;
			}
			if (readable(path)) {
				free(copy);
				*path_ret = path;
				return NULL;
			}
			free(path);
		}
		free(copy);
	}
	return td_error_format(TD_ERR_TARGET,
		"no plugin %s.lua found (looked in --plugins, $TASKDBG_PLUGIN_PATH, %s and the "
		"source tree)\nInstall taskdbg (`ninja -C build install`) or pass --plugins DIR.",
		name, TD_PLUGIN_DIR);
}

/* JSON (json-c) to a Lua value: objects become tables, arrays sequences, null nil. */
static void push_json(lua_State *L, struct json_object *o, int depth)
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
			push_json(L, json_object_array_get_idx(o, i), depth + 1);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		break;
	}
	case json_type_object:
		lua_newtable(L);
		json_object_object_foreach(o, key, val) {
			push_json(L, val, depth + 1);
			lua_setfield(L, -2, key);
		}
		break;
	default: lua_pushnil(L); break;
	}
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.lua files of dir, sorted (so _lib.lua comes before the detectors). */
static struct td_error *lua_files(const char *dir, char ***ret, size_t *nret)
{
	DIR *d = opendir(dir);
	if (!d)
		return td_error_format(TD_ERR_TARGET, "cannot open the detectors directory %s: %s",
				       dir, strerror(errno));
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len < 5 || strcmp(e->d_name + len - 4, ".lua") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			char **grown = realloc(names, cap * sizeof(*names));
			if (!grown)
				break;
			names = grown;
		}
		if (asprintf(&names[n], "%s/%s", dir, e->d_name) < 0)
			break;
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), compare_names);
	*ret = names;
	*nret = n;
	return NULL;
}

struct td_error *td_lua_diagnose(struct td_lua *lua, const char *dir, struct json_object *threads,
				 struct json_object *options, struct json_object **ret)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	struct td_error *err = NULL;
	char **files = NULL;
	size_t nfiles = 0;
	if ((err = lua_files(dir, &files, &nfiles)))
		return err;
	lua_pushcfunction(L, traceback);
	int tb = lua_gettop(L);
	/* The context every detector gets: the runtime model, samples, threads, options. */
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	if (!lua_istable(L, -1)) {
		err = td_error_format(TD_ERR_INTERNAL, "no plugin loaded");
		goto out;
	}
	int plugin = lua_gettop(L);
	lua_createtable(L, 0, 5);
	int ctx = lua_gettop(L);
	lua_getfield(L, plugin, "finish");
	budget_start(lua, TD_LUA_OTHER_MS);
	if (lua_pcall(L, 0, 1, tb) != LUA_OK) {
		err = plugin_failure(lua, "finish");
		goto out;
	}
	lua_setfield(L, ctx, "model");
	/*
	 * Optional, each a table for the detectors (an empty one if the plugin
	 * has no such entry): the locks and channel ends each thread's stack
	 * frames hold; the blocking pool each thread runs in or shuts down.
	 */
	static const char *const extras[] = { "thread_holds", "blocking_pools", NULL };
	for (int i = 0; extras[i]; i++) {
		lua_getfield(L, plugin, extras[i]);
		if (lua_isfunction(L, -1)) {
			if (lua_pcall(L, 0, 1, tb) != LUA_OK) {
				err = plugin_failure(lua, extras[i]);
				goto out;
			}
		} else {
			lua_pop(L, 1);
			lua_newtable(L);
		}
		lua_setfield(L, ctx, extras[i]);
	}
	lua_getfield(L, plugin, "samples");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_newtable(L);
	}
	lua_setfield(L, ctx, "samples");
	push_json(L, threads, 0);
	lua_setfield(L, ctx, "threads");
	push_json(L, options, 0);
	lua_setfield(L, ctx, "options");
	/* One environment shared by every file of dir: _lib.lua's helpers are the others' too. */
	push_sandbox(L);
	int env = lua_gettop(L);
	lua_newtable(L);
	lua_setfield(L, env, "detectors");
	for (size_t i = 0; i < nfiles; i++) {
		if (load_text_file(L, files[i]) != LUA_OK) {
			err = td_error_format(TD_ERR_TARGET, "detector %s: %s", files[i], lua_tostring(L, -1));
			goto out;
		}
		lua_pushvalue(L, env);
		lua_setupvalue(L, -2, 1);
		budget_start(lua, TD_LUA_OTHER_MS);
		if (lua_pcall(L, 0, 0, tb) != LUA_OK) {
			err = td_error_format(TD_ERR_TARGET, "detector %s: %s", files[i], lua_tostring(L, -1));
			goto out;
		}
	}
	/* Detectors run by name, each adding to one list of findings. */
	lua_getfield(L, env, "run_detectors");
	if (!lua_isfunction(L, -1)) {
		err = td_error_format(TD_ERR_TARGET, "detectors in %s: no function run_detectors "
				      "(is _lib.lua there?)", dir);
		goto out;
	}
	lua_pushvalue(L, ctx);
	budget_start(lua, TD_LUA_OTHER_MS);
	if (lua_pcall(L, 1, 1, tb) != LUA_OK) {
		err = td_error_format(TD_ERR_TARGET, "diagnosis failed: %s", lua_tostring(L, -1));
		goto out;
	}
	keep_alive(L, -1);
	*ret = to_json(L, -1, 0);
out:
	lua_settop(L, base);
	for (size_t i = 0; i < nfiles; i++)
		free(files[i]);
	free(files);
	return err;
}

struct td_error *td_lua_find_detectors(char **dir_ret)
{
	char exe_dir[4096];
	own_dir(exe_dir, sizeof(exe_dir));
	char source_tree[4200];
	snprintf(source_tree, sizeof(source_tree), "%s/../detectors", exe_dir);
	const char *dirs[] = { getenv("TASKDBG_DETECTORS"), TD_DETECTOR_DIR, exe_dir[0] ? source_tree : NULL };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char *lib;
		if (!dirs[i] || !dirs[i][0] || asprintf(&lib, "%s/_lib.lua", dirs[i]) < 0)
			continue;
		bool ok = readable(lib);
		free(lib);
		if (ok) {
			*dir_ret = strdup(dirs[i]);
			return *dir_ret ? NULL : &td_enomem;
		}
	}
	return td_error_format(TD_ERR_TARGET,
		"no detectors found (looked in $TASKDBG_DETECTORS, %s and the source tree)\n"
		"Install taskdbg (`ninja -C build install`).", TD_DETECTOR_DIR);
}
