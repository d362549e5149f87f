/*
 * A program: a snapshot seen through the executable's DWARF. Cached memory
 * reads, globals and thread-locals by qualified name, types by name, the
 * function at an address. Everything is looked up lazily: nothing walks all
 * of DWARF up front (a Rust binary's DWARF runs to hundreds of MB).
 */
#ifndef TD_VALUE_PROGRAM_H
#define TD_VALUE_PROGRAM_H

#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/snapshot.h"
#include "util/error.h"

struct td_program;

/* The program borrows snap, which must outlive it. */
struct td_error *td_program_create(struct td_snapshot *snap, struct td_program **ret);
void td_program_destroy(struct td_program *prog);

/* The program's symbolizer (its function index): frames, scopes, frame locals. */
struct td_symbolizer;
struct td_symbolizer *td_program_symbolizer(struct td_program *prog);

struct td_snapshot *td_program_snapshot(struct td_program *prog);

/* Whether the source file a DIE of the executable names is the program's own (debuginfo/source.h). */
bool td_program_own_source(struct td_program *prog, Dwarf_Die *die, const char *file);

/* Load bias of the executable: DWARF addresses + bias = addresses in the target. */
uint64_t td_program_bias(struct td_program *prog);

/* Drops every cached page: what was read before a stop is stale once it begins. */
void td_program_forget_memory(struct td_program *prog);

/*
 * Reads len bytes at addr through a page cache; fails (with a message naming
 * the address) unless all of them could be read.
 */
struct td_error *td_program_read(struct td_program *prog, uint64_t addr, void *buf, size_t len);

/* Reads an unsigned integer of size 1, 2, 4 or 8 (little-endian). */
struct td_error *td_program_read_uint(struct td_program *prog, uint64_t addr, size_t size,
				      uint64_t *ret);

/*
 * Finds a DIE by its qualified Rust/C++ path ("tokio::runtime::context::CONTEXT")
 * walking only the namespaces on the path, in the compilation units of the
 * path's first component (its crate) first. tag 0 accepts any tag. Generic
 * names match exactly as DWARF spells them. Returns false if not found.
 */
bool td_program_find(struct td_program *prog, const char *path, int tag, Dwarf_Die *ret);

/*
 * Every DIE with the given tag directly inside the namespace path whose name
 * starts with prefix ("Cell<"), across all units; cb returns false to stop.
 */
void td_program_each_in_namespace(struct td_program *prog, const char *ns_path, int tag,
				  const char *prefix,
				  bool (*cb)(Dwarf_Die *die, void *arg), void *arg);

/*
 * A thread-local variable of the executable (one with a TLS location) named by
 * path, or anywhere inside the namespace path names: Rust's thread_local!
 * puts the storage at NAME::{constant#0}::{closure#N}::__RUST_STD_INTERNAL_VAL.
 */
bool td_program_find_tls(struct td_program *prog, const char *path, Dwarf_Die *ret);

/*
 * The address of a thread-local variable (a DW_TAG_variable whose location is
 * a TLS offset) of the main executable in thread tid, from its fs_base.
 */
struct td_error *td_program_tls_address(struct td_program *prog, Dwarf_Die *var, pid_t tid,
					uint64_t *ret);

/* The address of a static variable. */
struct td_error *td_program_static_address(struct td_program *prog, Dwarf_Die *var, uint64_t *ret);

/*
 * A memo for facts derived from DWARF, keyed by what the fact is about (kind:
 * one of these, so two layers never read each other's facts), a DIE offset
 * and an extra word (0 if unused): value is malloc'd and owned by the program
 * from then on. NULL if absent.
 */
enum td_memo_kind {
	TD_MEMO_DISCR = 1,      /* value.c: where an enum's discriminant is */
	TD_MEMO_VARIANT,        /* value.c: what one discriminant value means (extra: the value) */
	TD_MEMO_RUNNING,        /* value/chain.c: where a task Stage's Running future is */
	TD_MEMO_HOLDS_ASYNC,    /* future.c: whether a type can hold an async body */
	TD_MEMO_FIXED_PATH,     /* future.c: a way down to the async body that reads nothing */
	TD_MEMO_TUPLE_REF,      /* future.c: whether a type can point at a select!/join! tuple */
	TD_MEMO_HOLDS_NAMED,    /* future.c: whether a type can hold one named like ... (extra: which) */
	TD_MEMO_NAMED,          /* future.c: whether a type's path begins like ... (extra: which) */
	TD_MEMO_PREWARMED,      /* future.c: a type td_future_prewarm has been through (extra: as awaited) */
	TD_MEMO_FORK,           /* future.c: whether a type can hold two futures it polls together */
};
void *td_program_memo_get(struct td_program *prog, enum td_memo_kind kind, uint64_t die_offset, uint64_t extra);
void td_program_memo_put(struct td_program *prog, enum td_memo_kind kind, uint64_t die_offset, uint64_t extra,
			 void *value);

/*
 * Room for about `bytes` of the target's memory in the program's page cache,
 * faulted in now: call it before a live target is stopped, so the stop pays
 * for copying the target's pages and not for our own page faults.
 */
void td_program_reserve(struct td_program *prog, size_t bytes);

/*
 * The qualified name of a type (or any DIE): the names of the namespaces and
 * types around it, "crate::module::{async_fn_env#0}<..>", from an index
 * of the DIE's unit built once (a name is then a few lookups, not a walk of
 * the unit). NULL if it has none; free the string.
 */
char *td_program_qualified_name(struct td_program *prog, Dwarf_Die *die);

/* The DIE at a .debug_info offset (what td.id hands out). */
bool td_program_die_at(struct td_program *prog, uint64_t offset, Dwarf_Die *ret);

/* The DW_TAG_subprogram whose code holds addr (e.g. a vtable's poll function). */
bool td_program_function_at(struct td_program *prog, uint64_t addr, Dwarf_Die *ret);

/* The demangled name of the ELF symbol at exactly addr, or NULL (malloc'd). */
char *td_program_symbol_at(struct td_program *prog, uint64_t addr);

#endif
