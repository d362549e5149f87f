/*
 * The async-future decoder's Lua side: value/chain.c's chains as Lua tables
 * (td.await_chain, td.await_chain_at, td.await_chains), its configuration
 * (td.per_task_awaitee, td.mark_awaitee, td.tag_awaitee), and td.find_inside,
 * td.macro_site, td.prewarm over value/future.c. A shared chain becomes one
 * table per key, kept in the registry: the 100,000 tasks waiting at one
 * place share it, and building it costs nothing after the first.
 */
#include "lua/internal.h"

static int decoder_gc(lua_State *L)
{
	td_chain_decoder_destroy(*(struct td_chain_decoder **)lua_touserdata(L, 1));
	return 0;
}

/* The program's decoder, made on first use; a userdata in the registry frees it when the state closes. */
static struct td_chain_decoder *decoder(lua_State *L)
{
	struct td_lua *lua = tdl_get(L);
	if (lua->chains)
		return lua->chains;
	struct td_chain_decoder **box = lua_newuserdatauv(L, sizeof(*box), 0);
	*box = NULL;
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, decoder_gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	struct td_error *err = td_chain_decoder_create(lua->prog, box);
	if (err)
		return tdl_raise(L, err), NULL;
	lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.chain_decoder");
	return lua->chains = *box;
}

/* Fields of the table on top, left out when 0, NULL or false (as plugins test them). */
static void set_int(lua_State *L, const char *field, uint64_t value)
{
	if (value) {
		lua_pushinteger(L, (lua_Integer)value);
		lua_setfield(L, -2, field);
	}
}

static void set_str(lua_State *L, const char *field, const char *value)
{
	if (value) {
		lua_pushstring(L, value);
		lua_setfield(L, -2, field);
	}
}

static void set_true(lua_State *L, const char *field, bool value)
{
	if (value) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, field);
	}
}

/* Pushes one level; with_addr: the chain is the task's own (addresses, holds), not shared. */
static void push_level(lua_State *L, const struct td_chain_level *l, bool with_addr)
{
	const struct td_chain_state *st = l->state;
	lua_createtable(L, 0, 6);
	set_int(L, "tag", l->tag);
	lua_pushinteger(L, (lua_Integer)st->type);
	lua_setfield(L, -2, "type");
	lua_pushstring(L, st->name);
	lua_setfield(L, -2, "state");
	set_str(L, "file", st->file);
	set_int(L, "line", (uint64_t)st->line);
	set_true(L, "in_macro", st->in_macro);
	set_true(L, "own", st->own);
	set_int(L, "addr", with_addr ? l->addr : 0);
	if (st->has_awaitee) {
		set_int(L, "awaiting", dwarf_dieoffset((Dwarf_Die *)&st->awaitee_type));
		/* Where the awaited future is: plugins follow leaf futures (JoinHandle...). */
		set_int(L, "awaiting_addr", with_addr ? l->addr + st->awaitee_offset : 0);
	}
	if (st->nholds && with_addr) {
		lua_createtable(L, st->nholds, 0);
		for (int h = 0; h < st->nholds; h++) {
			lua_createtable(L, 0, 3);
			set_int(L, "type", st->holds[h].type);
			set_int(L, "addr", l->addr + st->holds[h].offset);
			set_str(L, "name", st->holds[h].name);
			lua_rawseti(L, -2, h + 1);
		}
		lua_setfield(L, -2, "holds");
	}
}

/*
 * A chain as a table: { {type=, state=, file=, line=, in_macro=, own=, addr=,
 * awaiting=, awaiting_addr=, holds=, tag=}, ..., leaf_type=, root_tag=,
 * shared=, error= }; the last level's children = { {elem=, chain=, leaf=,
 * leaf_type=, variant=}, ... }. A shared chain is the registry's table for
 * its key (no addresses, holds or children: it has none particular to a task).
 */
static void push_chain(lua_State *L, const struct td_chain *c)
{
	if (c->shared) {
		if (lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.chains") == LUA_TNIL) {
			lua_pop(L, 1);
			lua_newtable(L);
			lua_pushvalue(L, -1);
			lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.chains");
		}
		lua_pushlstring(L, c->key, c->key_len);
		if (lua_rawget(L, -2) != LUA_TNIL) {
			lua_remove(L, -2);
			return;
		}
		lua_pop(L, 1);
	}
	lua_createtable(L, c->depth, c->shared);
	set_int(L, "leaf_type", c->depth == 0 ? c->leaf_type : 0);
	set_int(L, "root_tag", c->root_tag);
	for (int i = 0; i < c->depth; i++) {
		push_level(L, &c->levels[i], !c->shared);
		if (i == c->depth - 1 && c->nchildren > 0) {
			lua_createtable(L, c->nchildren, 0);
			for (int k = 0; k < c->nchildren; k++) {
				const struct td_chain_child *child = &c->children[k];
				lua_createtable(L, 0, 5);
				set_int(L, "elem", child->elem);
				if (child->chain) {
					push_chain(L, child->chain);
					lua_setfield(L, -2, "chain");
				} else {
					set_str(L, "variant", child->variant);
					set_int(L, "leaf_type", child->leaf_type);
				}
				set_int(L, "leaf", child->leaf);
				lua_rawseti(L, -2, k + 1);
			}
			lua_setfield(L, -2, "children");
		}
		lua_rawseti(L, -2, i + 1);
	}
	/* Decoding stopped (the levels above are right): a td.error, not a string. */
	if (c->error) {
		tdl_push_error(L, TDL_FAULT, NULL, c->error);
		lua_setfield(L, -2, "error");
	}
	if (c->shared) {
		set_true(L, "shared", true);
		lua_pushlstring(L, c->key, c->key_len);
		lua_pushvalue(L, -2);
		lua_rawset(L, -4);
		lua_remove(L, -2);
	}
}

/*
 * td.await_chain(v) -> { {type=id, state=, file=, line=, awaiting=id}, ... }, leaf, tagged
 * The chain of .awaits from an async body down (value/chain.h). leaf: the
 * address of the innermost awaited future that is no async body, or nil. A
 * future that holds no async body gives an empty chain with leaf_type = its
 * type id, and leaf = its address. tagged: see td.await_chains.
 */
static int l_await_chain(lua_State *L)
{
	const struct td_chain *c;
	struct td_error *err = td_chain_build(decoder(L), *tdl_check_value(L, 1), &c);
	if (err)
		return tdl_raise(L, err);
	push_chain(L, c);
	if (!c->leaf && !c->tagged)
		return 1;
	if (c->leaf)
		lua_pushinteger(L, (lua_Integer)c->leaf);
	else
		lua_pushnil(L);
	if (!c->tagged)
		return 2;
	lua_pushinteger(L, (lua_Integer)c->tagged);
	return 3;
}

/*
 * td.await_chain_at(StageType, addr) -> chain, or nil and a td.error
 * A task's Stage<T> enum at addr: if Running, the chain of its future (the
 * payload's first field); one call per task, no values created on the way.
 * A Stage that is not Running (Finished, Consumed) or cannot be read gives
 * nil and an error of kind not_found naming the variant, or the reason.
 */
static int l_await_chain_at(lua_State *L)
{
	const struct td_chain *c;
	const char *reason;
	struct td_error *err = td_chain_build_stage(decoder(L), tdl_check_type(L, 1), tdl_check_addr(L, 2), &c, &reason);
	if (err)
		return tdl_raise(L, err);
	if (c) {
		push_chain(L, c);
		return 1;
	}
	return tdl_absent(L, "%s", reason);
}

/*
 * td.await_chains{nodes=, vtables=, states=, skip_mask=, tagged_max=, marked_max=, stage=function(vtable)}
 *   -> chains, reasons, leaves, tagged, marked
 * td.await_chain_at for a whole column of tasks (td_chain_column): for task
 * i, unless states[i] & skip_mask, the chain of the future in its Stage at
 * nodes[i] + offset, with stage(vtables[i]) -> StageType, offset (asked once
 * per distinct vtable; nil: no chain). reasons[i]: why a task has none.
 * leaves[i], tagged[i], marked[i]: its chain's leaf, tagged and marked
 * addresses (what is particular to the task even when its chain is shared),
 * the last two for the first tagged_max and marked_max tasks (default 0).
 */
static int l_await_chains(lua_State *L)
{
	tdl_check_type_of(L, 1, LUA_TTABLE);
	int nodes = 2, vtables = 3, states = 4, stage_fn = 5;
	lua_getfield(L, 1, "nodes");
	lua_getfield(L, 1, "vtables");
	lua_getfield(L, 1, "states");
	lua_getfield(L, 1, "stage");
	tdl_check_type_of(L, nodes, LUA_TTABLE);
	tdl_check_type_of(L, vtables, LUA_TTABLE);
	tdl_check_type_of(L, states, LUA_TTABLE);
	tdl_check_type_of(L, stage_fn, LUA_TFUNCTION);
	struct td_chain_column col;
	td_chain_column_init(&col, decoder(L), (uint64_t)tdl_spec_int(L, 1, "skip_mask", 0),
			     (long)tdl_spec_int(L, 1, "tagged_max", 0), (long)tdl_spec_int(L, 1, "marked_max", 0));
	lua_Integer n = (lua_Integer)lua_rawlen(L, nodes);
	int out = lua_gettop(L) + 1;   /* chains, reasons, leaves, tagged, marked */
	lua_createtable(L, (int)n, 0);
	for (int i = 1; i < 5; i++)
		lua_newtable(L);
	for (lua_Integer i = 1; i <= n; i++) {
		uint64_t word[3];
		for (int w = 0; w < 3; w++) {
			lua_rawgeti(L, states - w, i);   /* states, vtables, nodes */
			word[w] = (uint64_t)lua_tointeger(L, -1);
			lua_pop(L, 1);
		}
		enum td_chain_task_result result;
		const struct td_chain *c;
		const char *reason;
		uint64_t tagged, marked;
		struct td_error *err;
		while (!(err = td_chain_column_task(&col, word[2], word[1], word[0], &result, &c, &reason, &tagged,
						    &marked)) && result == TD_CHAIN_TASK_NEED_STAGE) {
			lua_pushvalue(L, stage_fn);
			lua_pushinteger(L, (lua_Integer)word[1]);
			lua_call(L, 1, 2);
			Dwarf_Die *type = luaL_testudata(L, -2, TDL_TYPE_MT);
			td_chain_column_stage(&col, word[1], type, type ? (uint64_t)tdl_check_integer(L, -1) : 0);
			lua_pop(L, 2);
		}
		if (err)
			return tdl_raise(L, err);
		const uint64_t words[] = { result == TD_CHAIN_TASK_CHAIN ? c->leaf : 0, tagged, marked };
		for (int w = 0; w < 3; w++) {
			if (words[w]) {
				lua_pushinteger(L, (lua_Integer)words[w]);
				lua_rawseti(L, out + 2 + w, i);
			}
		}
		if (result == TD_CHAIN_TASK_CHAIN) {
			push_chain(L, c);
			lua_rawseti(L, out, i);
		} else if (result == TD_CHAIN_TASK_REASON) {
			lua_pushstring(L, reason);
			lua_rawseti(L, out + 1, i);
		}
	}
	return 5;
}

/*
 * td.macro_site(type_id, state) -> file, line, or nil
 * For a chain level marked in_macro (an .await written inside select! or
 * join!): the user's line that calls the macro. A DWARF search: call it
 * after the stop.
 */
static int l_macro_site(lua_State *L)
{
	const char *file;
	int line;
	const char *state = tdl_check_string(L, 2);
	if (!td_chain_macro_site(tdl_get(L)->prog, (uint64_t)tdl_check_integer(L, 1), state, &file, &line))
		return tdl_absent(L, "no macro call found around state %s", state);
	lua_pushstring(L, file);
	lua_pushinteger(L, line);
	return 2;
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
	struct td_value v = *tdl_check_value(L, 1), path[TD_FIND_PATH];
	const char *prefix = tdl_check_string(L, 2);
	int n = td_future_find(&v, prefix, lua_toboolean(L, 3), path, TD_FIND_PATH);
	if (n < 0)
		return tdl_absent(L, "no %s inside the future", prefix);
	tdl_push_value(L, &v);
	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		tdl_push_value(L, &path[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 2;
}

/* A configuration call's error: a usage error "td.NAME: why" (out of memory as it is). */
static int config_done(lua_State *L, struct td_error *err, const char *name)
{
	if (!err)
		return 0;
	if (err->kind != TD_ERR_USAGE || !name)
		return tdl_raise(L, err);
	lua_pushfstring(L, "td.%s: %s", name, err->message);
	td_error_destroy(err);
	return tdl_raise_kind(L, TDL_USAGE, "%s", lua_tostring(L, -1));
}

/*
 * td.per_task_awaitee(name_beginning): chains awaiting a future whose DWARF
 * name begins so are never shared, and have each level's addr and
 * awaiting_addr (a JoinHandle's task, the socket an accept() borrows).
 */
static int l_per_task_awaitee(lua_State *L)
{
	return config_done(L, td_chain_decoder_per_task(decoder(L), tdl_check_string(L, 1)), NULL);
}

/*
 * td.mark_awaitee(prefix): an awaitee whose DWARF name begins with prefix
 * ("Timeout<") is marked: td.await_chains says per task where the outermost
 * one is (its 5th result), whether or not the chain is shared.
 */
static int l_mark_awaitee(lua_State *L)
{
	return config_done(L, td_chain_decoder_mark(decoder(L), tdl_check_string(L, 1)), "mark_awaitee");
}

/*
 * td.tag_awaitee(prefix, {field, ...}): a future inside a level's awaitee
 * (or a task's own future) whose type path begins with prefix tags the
 * level (`tag`; the chain's `root_tag`) with the word at that path in it
 * (tracing's Instrumented: {"span", "meta"}). One prefix.
 */
static int l_tag_awaitee(lua_State *L)
{
	const char *prefix = tdl_check_string(L, 1), *path[9];
	tdl_check_type_of(L, 2, LUA_TTABLE);
	int n = (int)lua_rawlen(L, 2);
	for (int i = 0; i < n && i < 9; i++) {
		lua_rawgeti(L, 2, i + 1);
		path[i] = tdl_check_string(L, -1);   /* kept alive by the table */
		lua_pop(L, 1);
	}
	return config_done(L, td_chain_decoder_tag(decoder(L), prefix, path, n), "tag_awaitee");
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
	Dwarf_Die *t = tdl_check_type(L, 1);
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
	int nleaves = td_future_prewarm(tdl_get(L)->prog, t, prefixes, n, leaves, TD_PREWARM_LEAVES);
	lua_createtable(L, nleaves, 0);
	for (int i = 0; i < nleaves; i++) {
		lua_pushinteger(L, (lua_Integer)leaves[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* The td.* functions of this file (lua/internal.h). */
const luaL_Reg tdl_chains_functions[] = {
	{ "await_chain", l_await_chain },
	{ "await_chain_at", l_await_chain_at },
	{ "await_chains", l_await_chains },
	{ "macro_site", l_macro_site },
	{ "find_inside", l_find_inside },
	{ "per_task_awaitee", l_per_task_awaitee },
	{ "tag_awaitee", l_tag_awaitee },
	{ "mark_awaitee", l_mark_awaitee },
	{ "prewarm", l_prewarm },
	{ NULL, NULL },
};
