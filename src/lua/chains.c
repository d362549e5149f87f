/*
 * The async-future decoder's Lua side: await chains (td.await_chain,
 * td.await_chains) built over value/future.c, per-task marks and tags
 * (td.per_task_awaitee, td.mark_awaitee, td.tag_awaitee), td.find_inside,
 * td.macro_site, td.prewarm.
 */
#include "lua/internal.h"

/* Fields worth naming in a suspended state: handles to tasks, guards, permits, channel ends. */
#define TD_CHAIN_MAX_HOLDS 8
/* Type names of held values: a prefix ending in '<' (generic types), else the whole name. */
static const char *const held_kinds[] = {
	"JoinHandle<", "MutexGuard<", "OwnedMutexGuard<", "RwLockReadGuard<", "RwLockWriteGuard<",
	"SemaphorePermit", "OwnedSemaphorePermit", "Sender<", "Receiver<", "UnboundedSender<",
	"UnboundedReceiver<", NULL,
};

/* One decoded state of an async body: cached per (type, discriminant). */
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
	struct td_lua *lua = tdl_get(L);
	lua->last_tagged = 0;
	push_await_chain(L, *tdl_check_value(L, 1), &leaf);
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
	td_value_init(&stage, tdl_get(L)->prog, stage_type, addr);
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
		struct td_program *prog = tdl_get(L)->prog;
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
	return push_stage_chain(L, tdl_check_type(L, 1), tdl_check_addr(L, 2), NULL);
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
	uint64_t skip = (uint64_t)tdl_spec_int(L, 1, "skip_mask", 0);
	lua_Integer tagged_max = tdl_spec_int(L, 1, "tagged_max", 0), ntagged = 0;
	lua_Integer marked_max = tdl_spec_int(L, 1, "marked_max", 0), nmarked = 0;
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
			cache[c].has = luaL_testudata(L, -2, TDL_TYPE_MT) != NULL;
			if (cache[c].has) {
				cache[c].type = *(Dwarf_Die *)lua_touserdata(L, -2);
				cache[c].offset = (uint64_t)luaL_checkinteger(L, -1);
			}
			lua_pop(L, 2);
		}
		if (!cache[c].has)
			continue;
		uint64_t leaf = 0;
		tdl_get(L)->last_tagged = 0;
		tdl_get(L)->last_marked = 0;
		int pushed = push_stage_chain(L, &cache[c].type, node + cache[c].offset, &leaf);
		if (tdl_get(L)->last_tagged && ntagged < tagged_max) {
			ntagged++;
			lua_pushinteger(L, (lua_Integer)tdl_get(L)->last_tagged);
			lua_rawseti(L, tagged, i);
		}
		if (tdl_get(L)->last_marked && nmarked < marked_max) {
			nmarked++;
			lua_pushinteger(L, (lua_Integer)tdl_get(L)->last_marked);
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
	struct td_lua *lua = tdl_get(L);
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
	struct td_lua *lua = tdl_get(L);
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
	struct td_program *prog = tdl_get(L)->prog;
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
	struct td_value v = *tdl_check_value(L, 1), path[TD_FIND_PATH];
	int n = td_future_find(&v, luaL_checkstring(L, 2), lua_toboolean(L, 3), path, TD_FIND_PATH);
	if (n < 0)
		return 0;
	tdl_push_value(L, &v);
	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		tdl_push_value(L, &path[i]);
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
	struct td_lua *lua = tdl_get(L);
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
	struct td_lua *lua = tdl_get(L);
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
	struct td_lua *lua = tdl_get(L);
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
