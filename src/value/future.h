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
 * poll function, checked against the vtable's size). False (v unchanged) if v
 * is no box, or the box cannot be read.
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

#endif
