/*
 * Value and Type bindings: td.value, fields, variants, pointers, types by
 * name and by id, memory reads, thread-locals, functions by address, and the
 * text helpers (td.strip_generics, td.hex, td.ptr).
 */
#include "lua/internal.h"
#include "util/hash.h"

#include <inttypes.h>

const char TDL_VALUE_MT[] = "taskdbg.Value";
/* td.null: a value for tables that stands for JSON null (Lua tables cannot hold nil). */
char tdl_null_sentinel;
const char TDL_TYPE_MT[] = "taskdbg.Type";

void tdl_push_value(lua_State *L, const struct td_value *v)
{
	struct td_value *u = lua_newuserdatauv(L, sizeof(*u), 0);
	*u = *v;
	luaL_setmetatable(L, TDL_VALUE_MT);
}

void tdl_push_type(lua_State *L, Dwarf_Die *type)
{
	Dwarf_Die *u = lua_newuserdatauv(L, sizeof(*u), 0);
	*u = *type;
	td_type_strip(u);
	luaL_setmetatable(L, TDL_TYPE_MT);
}

struct td_value *tdl_check_value(lua_State *L, int i)
{
	return tdl_check_udata(L, i, TDL_VALUE_MT, "Value");
}

Dwarf_Die *tdl_check_type(lua_State *L, int i)
{
	return tdl_check_udata(L, i, TDL_TYPE_MT, "Type");
}

uint64_t tdl_check_addr(lua_State *L, int i)
{
	return (uint64_t)tdl_check_integer(L, i);
}

/* v.field, v[index] */
int tdl_value_index(lua_State *L)
{
	struct td_value *v = tdl_check_value(L, 1);
	struct td_value r;
	struct td_error *err;
	if (lua_type(L, 2) == LUA_TNUMBER)
		err = td_value_index(v, (uint64_t)tdl_check_integer(L, 2), &r);
	else
		err = td_value_member(v, tdl_check_string(L, 2), &r);
	if (err)
		return tdl_raise(L, err);
	tdl_push_value(L, &r);
	return 1;
}

int tdl_value_tostring(lua_State *L)
{
	struct td_value *v = tdl_check_value(L, 1);
	const char *name = td_type_name(&v->type);
	char addr[24];
	snprintf(addr, sizeof(addr), "0x%" PRIx64, v->address);
	lua_pushfstring(L, "<%s at %s>", name ? name : "value", addr);
	return 1;
}

int tdl_type_tostring(lua_State *L)
{
	const char *name = td_type_name(tdl_check_type(L, 1));
	lua_pushstring(L, name ? name : "(unnamed type)");
	return 1;
}

/* td.addr(v) */
static int l_addr(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)tdl_check_value(L, 1)->address);
	return 1;
}

/* td.deref(v): follows a pointer */
static int l_deref(lua_State *L)
{
	struct td_value r;
	struct td_error *err = td_value_deref(tdl_check_value(L, 1), &r);
	if (err)
		return tdl_raise(L, err);
	tdl_push_value(L, &r);
	return 1;
}

/* td.pointer(v): the address a pointer holds */
static int l_pointer(lua_State *L)
{
	uint64_t p;
	struct td_error *err = td_value_pointer(tdl_check_value(L, 1), &p);
	if (err)
		return tdl_raise(L, err);
	lua_pushinteger(L, (lua_Integer)p);
	return 1;
}

/* td.uint(v) */
static int l_uint(lua_State *L)
{
	uint64_t x;
	struct td_error *err = td_value_uint(tdl_check_value(L, 1), &x);
	if (err)
		return tdl_raise(L, err);
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
	struct td_error *err = td_value_variant(tdl_check_value(L, 1), &r, &name, &discr, &member);
	if (err)
		return tdl_raise(L, err);
	tdl_push_value(L, &r);
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
	struct td_value *v = tdl_check_value(L, 1);
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
	Dwarf_Die *t = luaL_testudata(L, 1, TDL_VALUE_MT) ? &tdl_check_value(L, 1)->type : tdl_check_type(L, 1);
	char *name = td_program_qualified_name(tdl_get(L)->prog, t);
	if (!name)
		return tdl_absent(L, "%s has no qualified name", td_type_name(t) ? td_type_name(t) : "an unnamed type");
	lua_pushstring(L, name);
	free(name);
	return 1;
}

/* td.has(v, name): does the struct have this field (probe layouts, never versions) */
static int l_has(lua_State *L)
{
	struct td_value *v = tdl_check_value(L, 1);
	Dwarf_Die t;
	uint64_t off;
	lua_pushboolean(L, td_type_member(&v->type, tdl_check_string(L, 2), &t, &off));
	return 1;
}

/* td.type_of(v) -> Type */
static int l_type_of(lua_State *L)
{
	tdl_push_type(L, &tdl_check_value(L, 1)->type);
	return 1;
}

/* td.type_name(v or Type) */
static int l_type_name(lua_State *L)
{
	Dwarf_Die *t = luaL_testudata(L, 1, TDL_VALUE_MT) ? &tdl_check_value(L, 1)->type : tdl_check_type(L, 1);
	const char *name = td_type_name(t);
	if (!name)
		return tdl_absent(L, "the type has no name");
	lua_pushstring(L, name);
	return 1;
}

/* td.size(Type) */
static int l_size(lua_State *L)
{
	Dwarf_Die *t = luaL_testudata(L, 1, TDL_VALUE_MT) ? &tdl_check_value(L, 1)->type : tdl_check_type(L, 1);
	uint64_t size;
	if (!td_type_size(t, &size))
		return tdl_raise_kind(L, TDL_NOT_FOUND, "type %s has no known size", td_type_name(t) ? td_type_name(t) : "?");
	lua_pushinteger(L, (lua_Integer)size);
	return 1;
}

/* td.offset(Type, field) -> byte offset, field Type */
static int l_offset(lua_State *L)
{
	Dwarf_Die *t = tdl_check_type(L, 1);
	Dwarf_Die ft;
	uint64_t off;
	if (!td_type_member(t, tdl_check_string(L, 2), &ft, &off))
		return tdl_raise_kind(L, TDL_NOT_FOUND, "%s has no field %s", td_type_name(t) ? td_type_name(t) : "?",
				      lua_tostring(L, 2));
	lua_pushinteger(L, (lua_Integer)off);
	tdl_push_type(L, &ft);
	return 2;
}

/* td.pointee(Type) -> Type pointed to */
static int l_pointee(lua_State *L)
{
	Dwarf_Die r;
	if (!td_die_type(tdl_check_type(L, 1), &r))
		return tdl_raise_kind(L, TDL_NOT_FOUND, "not a typed pointer");
	tdl_push_type(L, &r);
	return 1;
}

/* td.value(Type, addr) */
static int l_value(lua_State *L)
{
	struct td_value v;
	td_value_init(&v, tdl_get(L)->prog, tdl_check_type(L, 1), tdl_check_addr(L, 2));
	tdl_push_value(L, &v);
	return 1;
}

/* td.cast(v, Type) */
static int l_cast(lua_State *L)
{
	struct td_value v;
	td_value_init(&v, tdl_get(L)->prog, tdl_check_type(L, 2), tdl_check_value(L, 1)->address);
	tdl_push_value(L, &v);
	return 1;
}

/* td.find_type(path) -> Type or nil */
static int l_find_type(lua_State *L)
{
	Dwarf_Die die;
	const char *path = tdl_check_string(L, 1);
	struct td_program *prog = tdl_get(L)->prog;
	if (td_program_find(prog, path, DW_TAG_structure_type, &die) ||
	    td_program_find(prog, path, DW_TAG_union_type, &die) ||
	    td_program_find(prog, path, DW_TAG_base_type, &die)) {
		tdl_push_type(L, &die);
		return 1;
	}
	return tdl_absent(L, "no type %s", path);
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
	tdl_push_type(a->L, die);
	lua_call(a->L, 1, 1);
	bool stop = lua_toboolean(a->L, -1);
	lua_pop(a->L, 1);
	return !stop;
}

static int l_each_type(lua_State *L)
{
	const char *ns = tdl_check_string(L, 1), *prefix = tdl_check_string(L, 2);
	tdl_check_type_of(L, 3, LUA_TFUNCTION);
	struct each_arg a = { L, 3 };
	td_program_each_in_namespace(tdl_get(L)->prog, ns, DW_TAG_structure_type, prefix,
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
						tdl_push_type(L, &t);
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
	const char *ns = tdl_check_string(L, 1), *prefix = tdl_check_string(L, 2);
	tdl_check_type_of(L, 3, LUA_TFUNCTION);
	struct each_fn_arg a = { L, 3, td_program_bias(tdl_get(L)->prog) };
	td_program_each_in_namespace(tdl_get(L)->prog, ns, DW_TAG_subprogram, prefix,
				     each_function_cb, &a);
	return 0;
}

/* A variable of type found at addr (err: where it is could not be worked out), pushed as a value. */
static int push_variable(lua_State *L, Dwarf_Die *type, struct td_error *err, uint64_t addr)
{
	if (err)
		return tdl_fail(L, err, TDL_NOT_FOUND);
	struct td_value v;
	td_value_init(&v, tdl_get(L)->prog, type, addr);
	tdl_push_value(L, &v);
	return 1;
}

/* td.tls(path, tid) -> Value, or nil and a not_found error */
static int l_tls(lua_State *L)
{
	struct td_lua *lua = tdl_get(L);
	Dwarf_Die var, type;
	const char *path = tdl_check_string(L, 1);
	pid_t tid = (pid_t)tdl_check_integer(L, 2);
	if (!td_program_find_tls(lua->prog, path, &var) || !td_die_type(&var, &type))
		return tdl_absent(L, "no thread-local %s", path);
	uint64_t addr = 0;
	struct td_error *err = td_program_tls_address(lua->prog, &var, tid, &addr);
	return push_variable(L, &type, err, addr);
}

/* td.global(path) -> the static variable a::b::NAME as a value, or nil, err (not_found) */
static int l_global(lua_State *L)
{
	struct td_lua *lua = tdl_get(L);
	Dwarf_Die var, type;
	const char *path = tdl_check_string(L, 1);
	if (!td_program_find(lua->prog, path, DW_TAG_variable, &var) || !td_die_type(&var, &type))
		return tdl_absent(L, "no static variable %s", path);
	uint64_t addr = 0;
	struct td_error *err = td_program_static_address(lua->prog, &var, &addr);
	return push_variable(L, &type, err, addr);
}

/* td.find_tls(path) -> true if the thread-local exists (resolves it ahead of td.tls) */
static int l_find_tls(lua_State *L)
{
	Dwarf_Die var;
	lua_pushboolean(L, td_program_find_tls(tdl_get(L)->prog, tdl_check_string(L, 1), &var));
	return 1;
}

/* The size argument of td.read and td.try_read: 1, 2, 4 or 8 (default 8). */
static size_t check_read_size(lua_State *L, int arg)
{
	lua_Integer size = tdl_opt_integer(L, arg, 8);
	if (size != 1 && size != 2 && size != 4 && size != 8)
		tdl_arg_error(L, arg, "size 1, 2, 4 or 8 expected, got %I", size);
	return (size_t)size;
}

/* td.read(addr, size) -> unsigned integer (size 1, 2, 4, 8); raises a fault */
static int l_read(lua_State *L)
{
	uint64_t x;
	uint64_t addr = tdl_check_addr(L, 1);
	struct td_error *err = td_program_read_uint(tdl_get(L)->prog, addr, check_read_size(L, 2), &x);
	if (err)
		return tdl_raise(L, err);
	lua_pushinteger(L, (lua_Integer)x);
	return 1;
}

/* td.read_bytes(addr, len) -> string, or nil and a fault (at most 4096 bytes: a name, a formatted field) */
static int l_read_bytes(lua_State *L)
{
	uint64_t addr = tdl_check_addr(L, 1);
	lua_Integer len = tdl_check_integer(L, 2);
	char buf[4096];
	if (len < 0 || len > (lua_Integer)sizeof(buf))
		return tdl_arg_error(L, 2, "0 to %d bytes expected, got %I", (int)sizeof(buf), len);
	struct td_error *err = td_program_read(tdl_get(L)->prog, addr, buf, (size_t)len);
	if (err)
		return tdl_fail(L, err, TDL_FAULT);
	lua_pushlstring(L, buf, (size_t)len);
	return 1;
}

/*
 * td.digest(addr, len) -> a 64-bit hash (FNV-1a) of len bytes (up to 1 MiB),
 * or nil and a fault: whether memory changed between snapshots (a session's
 * "did this task move") without keeping the bytes.
 */
static int l_digest(lua_State *L)
{
	uint64_t addr = tdl_check_addr(L, 1);
	lua_Integer len = tdl_check_integer(L, 2);
	if (len < 0 || len > (1 << 20))
		return tdl_arg_error(L, 2, "0 to 1048576 bytes expected, got %I", len);
	uint64_t h = TD_FNV_OFFSET;
	unsigned char buf[4096];
	for (lua_Integer done = 0; done < len; ) {
		size_t n = (size_t)(len - done) < sizeof(buf) ? (size_t)(len - done) : sizeof(buf);
		struct td_error *err = td_program_read(tdl_get(L)->prog, addr + (uint64_t)done, buf, n);
		if (err)
			return tdl_fail(L, err, TDL_FAULT);
		h = td_hash_fnv1a(h, buf, n);
		done += (lua_Integer)n;
	}
	lua_pushinteger(L, (lua_Integer)h);
	return 1;
}

/* td.try_read(addr, size) -> integer, or nil and a fault */
static int l_try_read(lua_State *L)
{
	uint64_t x;
	uint64_t addr = tdl_check_addr(L, 1);
	struct td_error *err = td_program_read_uint(tdl_get(L)->prog, addr, check_read_size(L, 2), &x);
	if (err)
		return tdl_fail(L, err, TDL_FAULT);
	lua_pushinteger(L, (lua_Integer)x);
	return 1;
}

/* td.function_at(addr) -> {name=, T=Type, S=Type, ...template parameters}, or nil and not_found */
static int l_function_at(lua_State *L)
{
	struct td_program *prog = tdl_get(L)->prog;
	Dwarf_Die fn;
	if (!td_program_function_at(prog, tdl_check_addr(L, 1), &fn)) {
		char hex[32];
		hex[td_json_hex(hex, tdl_check_addr(L, 1))] = '\0';
		return tdl_absent(L, "no function at %s", hex);
	}
	lua_newtable(L);
	char *sym = td_program_symbol_at(prog, tdl_check_addr(L, 1));
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
	Dwarf_Die *t = tdl_check_type(L, 1), r, part, variant, member, vt;
	const char *name = tdl_check_string(L, 2);
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
	if (!found)
		return tdl_absent(L, "%s has no template parameter %s", td_type_name(t) ? td_type_name(t) : "the type",
				  name);
	tdl_push_type(L, &r);
	return 1;
}

/* td.id(Type or v) -> a number naming the type (its DIE offset) */
static int l_id(lua_State *L)
{
	Dwarf_Die *t = luaL_testudata(L, 1, TDL_VALUE_MT) ? &tdl_check_value(L, 1)->type : tdl_check_type(L, 1);
	lua_pushinteger(L, (lua_Integer)dwarf_dieoffset(t));
	return 1;
}

/* td.same_type(a, b) */
static int l_same_type(lua_State *L)
{
	lua_pushboolean(L, dwarf_dieoffset(tdl_check_type(L, 1)) == dwarf_dieoffset(tdl_check_type(L, 2)));
	return 1;
}

/*
 * td.decl(v's variant payload Type) -> file, line of the declaration (for
 * SuspendN: the .await; line 0 if unknown), or nil and not_found
 */
static int l_decl(lua_State *L)
{
	Dwarf_Die *t = luaL_testudata(L, 1, TDL_VALUE_MT) ? &tdl_check_value(L, 1)->type : tdl_check_type(L, 1);
	int line;
	const char *file = dwarf_decl_file(t);
	if (!file)
		return tdl_absent(L, "%s has no declaration", td_type_name(t) ? td_type_name(t) : "the type");
	if (dwarf_decl_line(t, &line) != 0)
		line = 0;
	lua_pushstring(L, file);
	lua_pushinteger(L, line);
	return 2;
}

/* td.fields(v or Type) -> { {name=, type=, offset=}, ... } (variant parts: their variants) */
static int l_fields(lua_State *L)
{
	Dwarf_Die *t = luaL_testudata(L, 1, TDL_VALUE_MT) ? &tdl_check_value(L, 1)->type : tdl_check_type(L, 1);
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

/* td.type_by_id(id) -> Type (ids from td.id and td.await_chain) */
static int l_type_by_id(lua_State *L)
{
	Dwarf_Die die;
	lua_Integer id = tdl_check_integer(L, 1);
	if (!td_program_die_at(tdl_get(L)->prog, (uint64_t)id, &die))
		return tdl_absent(L, "no type with id %I", id);
	tdl_push_type(L, &die);
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
	const char *name = tdl_check_string(L, 1);
	len = lua_rawlen(L, 1);
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
	uint64_t n = (uint64_t)tdl_check_integer(L, 1);
	const char *prefix = lua_isnoneornil(L, 2) ? "" : tdl_check_string(L, 2);
	size_t plen = strlen(prefix);
	char buf[96];
	if (plen > sizeof(buf) - 19)
		return tdl_raise_kind(L, TDL_USAGE, "td.hex: prefix too long");
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
	lua_pushlightuserdata(L, (void *)(uintptr_t)(uint64_t)tdl_check_integer(L, 1));
	return 1;
}

/* "0x..." for a td.ptr, "null" for td.null. */
const char *tdl_ptr_text(const void *p, char *buf, size_t size)
{
	if (p == &tdl_null_sentinel || size < 19)
		return "null";
	td_json_hex(buf, (uint64_t)(uintptr_t)p);
	return buf;
}

int tdl_ptr_tostring(lua_State *L)
{
	char buf[32];
	lua_pushstring(L, tdl_ptr_text(lua_touserdata(L, 1), buf, sizeof(buf)));
	return 1;
}

int tdl_ptr_concat(lua_State *L)
{
	luaL_tolstring(L, 1, NULL);
	luaL_tolstring(L, 2, NULL);
	lua_concat(L, 2);
	return 1;
}

/* The td.* functions of this file (lua/internal.h). */
const luaL_Reg tdl_values_functions[] = {
	{ "strip_generics", l_strip_generics },
	{ "hex", l_hex },
	{ "ptr", l_ptr },
	{ "addr", l_addr },
	{ "deref", l_deref },
	{ "pointer", l_pointer },
	{ "uint", l_uint },
	{ "variant", l_variant },
	{ "has", l_has },
	{ "type_of", l_type_of },
	{ "type_name", l_type_name },
	{ "size", l_size },
	{ "offset", l_offset },
	{ "pointee", l_pointee },
	{ "value", l_value },
	{ "cast", l_cast },
	{ "find_type", l_find_type },
	{ "each_type", l_each_type },
	{ "tls", l_tls },
	{ "global", l_global },
	{ "read", l_read },
	{ "try_read", l_try_read },
	{ "read_bytes", l_read_bytes },
	{ "digest", l_digest },
	{ "function_at", l_function_at },
	{ "template", l_template },
	{ "same_type", l_same_type },
	{ "decl", l_decl },
	{ "fields", l_fields },
	{ "is_enum", l_is_enum },
	{ "qualified_name", l_qualified_name },
	{ "id", l_id },
	{ "find_tls", l_find_tls },
	{ "each_function", l_each_function },
	{ "type_by_id", l_type_by_id },
	{ NULL, NULL },
};
