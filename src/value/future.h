/*
 * Rust futures as values: what an async fn's state machine is, the future a
 * box (Pin<Box<F>>, Box<dyn Future>, &mut dyn Future) holds, and the async
 * body a future that is no state machine runs inside it (a wrapper such as
 * tokio's Timeout, tracing's Instrumented, a combinator, a framework's
 * connection future). Reads through the value's program; never raises.
 */
#ifndef TD_VALUE_FUTURE_H
#define TD_VALUE_FUTURE_H

#include <stdbool.h>

#include "value/value.h"

/* Whether t is an async body's state machine ({async_fn_env#0}, {async_block_env#N}). */
bool td_future_is_async_body(Dwarf_Die *t);

/* Pin<P>'s P (its one field, `pointer`, or `__pointer` in newer Rust). False: v is no Pin. */
bool td_future_pin_inner(struct td_value *v);

/*
 * A boxed future: Pin<Box<F>> or Box<F>, Pin<Box<dyn Future>>, Pin<&mut dyn
 * Future>. *v becomes the future in the box (a dyn one named by its vtable's
 * poll function, checked against the vtable's size), and an async body in the
 * GenFuture<T> rustc before 1.67 wraps it in. False (v unchanged) if v is
 * none of these, or the box cannot be read.
 */
bool td_future_unbox(struct td_value *v);

/*
 * The async body inside a future that is none: the first one found, depth
 * first, through fields, the active variant of enums (Option, a wrapper's
 * state) and boxes; never through references, raw pointers or Arcs (what a
 * future points to is not what it polls). Whether a type can hold one at all
 * is worked out once per type from DWARF, so a leaf future (Sleep, a channel's
 * receiver, a semaphore's Acquire) costs a lookup. Bounded in depth and in
 * values visited. False (v unchanged) if there is none.
 */
bool td_future_inner_async(struct td_value *v);

/*
 * The first value inside v whose type's name begins with prefix (a socket's
 * `tokio::io::poll_evented::PollEvented<`), searched as td_future_inner_async
 * searches, and through `&`/`&mut` references too (a read future borrows its
 * stream). *v becomes it; path[] gets the values on the way down from v (v
 * first, at most max_path, so a caller can look beside the way: a
 * connection's peer address). past_async: also inside the async bodies met
 * (a suspended async fn's borrowed `&self`); else they are opaque (what a
 * future awaits through its own chain is not its own). Returns how many, or
 * -1 if none is found.
 */
int td_future_find(struct td_value *v, const char *prefix, bool past_async, struct td_value *path, int max_path);

/* Whether no value of v's type can hold what td_future_find looks for (so a caller may remember the type). */
bool td_future_never_holds(struct td_value *v, const char *prefix, bool past_async);

/*
 * The futures a future that is no async body polls by reference: select! and
 * join! keep their branches in a tuple, a local of the async body that
 * awaits them, and poll them through a closure holding `&mut` to it. If a
 * pointer member of awaitee (through its struct members, not through
 * pointers) points at a tuple inside [lo, hi) (the awaiting body's state),
 * out[] gets the tuple's elements, at most max. Returns how many.
 */
int td_future_children(struct td_value *awaitee, uint64_t lo, uint64_t hi, struct td_value *out, int max);

/* Whether v's type can hold such a pointer at all (memoized per type: cheap for leaf futures). */
bool td_future_may_have_children(struct td_value *v);

/*
 * Into an enum's live variant while it has exactly one field (MaybeDone's
 * Future(F) or Done(T), Option's Some): *v becomes that field. Returns the
 * last variant's name (NULL: v is no enum), so a caller can tell a pending
 * branch from a finished one.
 */
const char *td_future_live_payload(struct td_value *v);

/*
 * Where an .await written inside a macro (select!, join!) is in the user's
 * source. rustc names such a suspend point by the macro's own source (its
 * variant's decl_file is not the async fn's file), but declares the locals
 * the macro made at the line that calls it. If variant_type (the suspend
 * point's variant) is declared in another file than the async body state's
 * own, the returned file and line become the latest declaration, in the body's own
 * file, of a local the suspend point keeps (matched by name and type), found
 * in the body's function. False if file is the body's own, or none is found.
 * A search of the body's function in DWARF: not while the target is stopped.
 */
bool td_future_macro_site(struct td_program *prog, Dwarf_Die *state, Dwarf_Die *variant_type,
			  const char *file, const char **ret_file, int *ret_line);

/* Whether a suspend point declared in file is in another file than its async body (state): cheap. */
bool td_future_foreign_site(Dwarf_Die *state, const char *file);

/* The file an async body's fn is written in (its first variant's), or NULL. */
const char *td_future_body_file(Dwarf_Die *state);
/*
 * The futures a future holds by value and polls together (futures-util's
 * select(a, b), join(a, b)): going down through fields, live variants and
 * boxes, the members of the first struct with two or more members that can
 * hold an async body. out[] gets them, at most max; returns how many (0: no
 * such fork, the future polls one at a time, as a Timeout or an Either).
 */
int td_future_fork(struct td_value *v, struct td_value *out, int max);

/* Whether v's type can fork so at all (memoized per type: cheap for the rest). */
bool td_future_may_fork(struct td_value *v);

/*
 * Before a stop: the per-type facts the searches above ask for, worked out
 * for type and the types its async bodies' states hold, down through
 * wrappers (see future.c). leaves[] gets the awaited types that are no async
 * body, at most max; returns how many.
 */
int td_future_prewarm(struct td_program *prog, Dwarf_Die *type, const char *const *prefixes, int nprefixes,
		      uint64_t *leaves, int max);
#endif
