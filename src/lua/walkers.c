/*
 * Bulk walkers: a linked list (td.walk_list) and precomputed pointer paths
 * (td.follow, td.follow_many) in one call each, for 100,000 tasks a stop.
 */
#include "lua/internal.h"
#include "util/map.h"

/* Reads an integer field of a spec table; def if absent; a usage error if no integer. */
lua_Integer tdl_spec_int(lua_State *L, int t, const char *key, lua_Integer def)
{
	lua_getfield(L, t, key);
	int ok = 1;
	lua_Integer v = lua_isnil(L, -1) ? def : lua_tointegerx(L, -1, &ok);
	if (!ok)
		tdl_raise_kind(L, TDL_USAGE, "bad spec: %s must be an integer, not %s", key, luaL_typename(L, -1));
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
	r->last_table = r->last_off = 0;
	lua_getfield(L, t, "via");
	r->via = !lua_isnil(L, -1);
	lua_pop(L, 1);
	if (r->via) {
		r->via_off = (uint64_t)tdl_spec_int(L, t, "via", 0);
		r->via_field = (uint64_t)tdl_spec_int(L, t, "via_field", 0);
	}
	r->at = (uint64_t)tdl_spec_int(L, t, "at", 0);
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
 *   -> { node={...}, name={...}, ... } [, td.error]
 * Follows a singly linked list in C, reading the named fields of every node:
 * a walk of 100,000 nodes is one call, not one per field. Stops at a null
 * next, a node seen before (a cycle), max nodes, or an unreadable address
 * (then the columns so far and a fault error: a cycle is a fault at the node
 * met twice). Out of memory is raised.
 */
#define TD_WALK_MAX_FIELDS 16
static int l_walk_list(lua_State *L)
{
	struct td_program *prog = tdl_get(L)->prog;
	tdl_check_type_of(L, 1, LUA_TTABLE);
	uint64_t node = (uint64_t)tdl_spec_int(L, 1, "first", 0);
	lua_Integer max = tdl_spec_int(L, 1, "max", 10000000);
	struct rel_addr next;
	if (lua_getfield(L, 1, "next") != LUA_TTABLE)
		return tdl_raise_kind(L, TDL_USAGE, "td.walk_list: next = {at = N} (or {via =, via_field =, at =}) is needed");
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
		while (lua_next(L, fields)) {
			/* (lua_tostring on a number key would change it under lua_next: "invalid key to 'next'") */
			if (lua_type(L, -2) != LUA_TSTRING)
				return tdl_raise_kind(L, TDL_USAGE,
						      "td.walk_list: fields are named: fields = {name = {at = N}, ...}");
			if (nfields == TD_WALK_MAX_FIELDS)
				return tdl_raise_kind(L, TDL_USAGE, "td.walk_list: at most %d fields", TD_WALK_MAX_FIELDS);
			if (!lua_istable(L, -1))
				return tdl_raise_kind(L, TDL_USAGE, "td.walk_list: field %s is not a table {at = N}",
						      lua_tostring(L, -2));
			names[nfields] = lua_tostring(L, -2);  /* kept alive by the spec table */
			spec_rel(L, lua_gettop(L), &rel[nfields]);
			sizes[nfields] = (size_t)tdl_spec_int(L, lua_gettop(L), "size", 8);
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
	struct td_map seen = { 0 };
	struct td_error *err = NULL;
	lua_Integer count = 0;
	while (node && count < max && vals) {
		bool added;
		if (!td_map_put(&seen, node, &added)) {
			err = &td_enomem;
			break;
		}
		if (!added) {
			err = td_error_fault(node, "the list loops back to 0x%llx", (unsigned long long)node);
			break;
		}
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
	if (!vals && !err)
		err = &td_enomem;
	td_map_free(&seen);
	if (err && err->kind == TD_ERR_NOMEM) {
		free(vals);
		return tdl_raise(L, err);
	}
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
		tdl_fail(L, err, TDL_FAULT);   /* nil and the error: the error follows the columns */
		lua_remove(L, -2);
		return 2;
	}
	return 1;
}

/*
 * td.follow(addr, steps) -> addr, or nil and a fault error
 * A precomputed path through memory, in one call: each step >= 0 adds an
 * offset, -1 reads the pointer at the current address (a fault if it is
 * unreadable, or null: then the error's address is 0). Plugins compute steps
 * once per type (td.offset, td.pointee) and follow them per instance without
 * creating values.
 */
/*
 * One step of a td.follow path: add an offset (>= 0), or read the pointer
 * there (-1). False at a null pointer (*err NULL) or an unreadable one
 * (*err says why).
 */
static bool follow_step(struct td_program *prog, uint64_t *addr, lua_Integer step, struct td_error **err)
{
	*err = NULL;
	if (step >= 0) {
		*addr += (uint64_t)step;
		return true;
	}
	uint64_t p = 0;
	*err = td_program_read(prog, *addr, &p, sizeof(p));
	bool ok = !*err && p != 0;
	if (ok)
		*addr = p;
	return ok;
}

static int l_follow(lua_State *L)
{
	uint64_t addr = tdl_check_addr(L, 1);
	tdl_check_type_of(L, 2, LUA_TTABLE);
	lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
	struct td_program *prog = tdl_get(L)->prog;
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, 2, i);
		lua_Integer step = lua_tointeger(L, -1);
		lua_pop(L, 1);
		struct td_error *err;
		if (!follow_step(prog, &addr, step, &err)) {
			if (err)
				return tdl_fail(L, err, TDL_FAULT);
			return tdl_fail(L, td_error_fault(0, "null pointer at 0x%llx (step %lld)",
							   (unsigned long long)addr, (long long)i), TDL_FAULT);
		}
	}
	lua_pushinteger(L, (lua_Integer)addr);
	return 1;
}

/*
 * td.follow_many(addrs, steps [, keys, set]) -> { [k] = address reached } [, td.error]:
 * td.follow for every address of a table (any keys; the result has the same
 * keys, and none where a pointer on the way is null or unreadable), in one
 * call: the plugin resolves 100,000 awaited futures to their locks or
 * channels while the target is stopped. With keys and set, only the k whose
 * set[keys[k]] is true (the tasks whose chain awaits one type). A null
 * pointer is no error; the first unreadable one is given as a fault after
 * the table, and out of memory is raised.
 */
static int l_follow_many(lua_State *L)
{
	tdl_check_type_of(L, 1, LUA_TTABLE);
	tdl_check_type_of(L, 2, LUA_TTABLE);
	lua_Integer steps[64];
	lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
	if (n > 64)
		return tdl_raise_kind(L, TDL_USAGE, "td.follow_many: more than 64 steps");
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, 2, i);
		steps[i - 1] = lua_tointeger(L, -1);
		lua_pop(L, 1);
	}
	bool select = !lua_isnoneornil(L, 3);
	if (select) {
		tdl_check_type_of(L, 3, LUA_TTABLE);
		tdl_check_type_of(L, 4, LUA_TTABLE);
	}
	struct td_program *prog = tdl_get(L)->prog;
	struct td_error *first = NULL;   /* the first unreadable pointer */
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
		for (lua_Integer i = 0; ok && i < n; i++) {
			struct td_error *err;
			ok = follow_step(prog, &addr, steps[i], &err);
			if (err && err->kind == TD_ERR_NOMEM) {
				td_error_destroy(first);
				return tdl_raise(L, err);
			}
			if (err && !first)
				first = err;
			else
				td_error_destroy(err);
		}
		lua_pop(L, 1);
		if (ok) {
			lua_pushvalue(L, -1);
			lua_pushinteger(L, (lua_Integer)addr);
			lua_rawset(L, out);
		}
	}
	if (first) {
		tdl_fail(L, first, TDL_FAULT);
		lua_remove(L, -2);   /* (the nil before the error) */
		return 2;
	}
	return 1;
}

/* The td.* functions of this file (lua/internal.h). */
const luaL_Reg tdl_walkers_functions[] = {
	{ "follow", l_follow },
	{ "follow_many", l_follow_many },
	{ "walk_list", l_walk_list },
	{ NULL, NULL },
};
