/*
 * The snapshot's threads and frames for Lua: td.threads, td.frame_locals.
 */
#include "lua/internal.h"

/*
 * td.threads() -> { {tid=, name=, state=, syscall=, futex=}, ... }
 * syscall: the name of the system call the thread was blocked in at the
 * snapshot (nil if none); futex: for a thread blocked in futex, the address of
 * the futex word it waits on (its first argument), which names the lock.
 */
static int l_threads(lua_State *L)
{
	struct td_snapshot *snap = td_program_snapshot(tdl_get(L)->prog);
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
	tdl_push_type(L, &type);
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
 * reported without addr. An unknown thread, or a stack that cannot be
 * unwound, gives an empty table and the error.
 */
static int l_frame_locals(lua_State *L)
{
	lua_Integer tid = tdl_check_integer(L, 1);
	lua_Integer max = tdl_opt_integer(L, 2, TD_MAX_FRAMES);
	int flags = lua_toboolean(L, 3) ? TD_LOCALS_UNLOCATED : 0;
	struct td_snapshot *snap = td_program_snapshot(tdl_get(L)->prog);
	size_t index = snap->nthreads;
	for (size_t i = 0; i < snap->nthreads; i++)
		if (snap->threads[i].tid == tid)
			index = i;
	lua_newtable(L);
	if (index == snap->nthreads) {
		tdl_push_error(L, TDL_NOT_FOUND, NULL, lua_pushfstring(L, "no thread %I in the snapshot", tid));
		lua_remove(L, -2);
		return 2;
	}
	const struct td_stack *stacks;
	struct td_error *err = td_unwind_all(snap, &stacks);
	if (err) {
		tdl_fail(L, err, TDL_NOT_FOUND);   /* (nil and the error: the error is kept) */
		lua_remove(L, -2);
		return 2;
	}
	struct locals_out out = { .L = L, .table = lua_gettop(L) };
	for (size_t j = 0; j < stacks[index].count && (lua_Integer)j < max; j++) {
		out.frame = j;
		td_frame_locals(snap, td_program_symbolizer(tdl_get(L)->prog), &stacks[index], j,
				flags, push_local, &out);
	}
	return 1;
}

/* The td.* functions of this file (lua/internal.h). */
const luaL_Reg tdl_target_functions[] = {
	{ "frame_locals", l_frame_locals },
	{ "threads", l_threads },
	{ NULL, NULL },
};
