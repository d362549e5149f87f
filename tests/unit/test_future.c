/*
 * Unit tests of value/future (the descent into futures) on a real binary: a
 * core of the Rust fixture future_values, whose static PROBE holds boxed
 * futures of known shapes (see tests/fixtures/rust/src/bin/future_values.rs).
 *   test-future CORE EXE
 */
#include <dwarf.h>
#include <stdlib.h>

#include "future_values.h"
#include "value/future.h"
#include "value/program.h"
#include "value/value.h"

static const char POLL_EVENTED[] = "tokio::io::poll_evented::PollEvented<";
static const char INSTRUMENTED[] = "tracing::instrument::Instrumented<";

static bool starts(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static const char *name_of(struct td_value *v)
{
	return dwarf_diename(&v->type);
}

/* PROBE's field `name`, unboxed: the future in the box. */
static struct td_value probe_field(struct td_value *probe, const char *name)
{
	struct td_value f = { 0 };
	struct td_error *err = td_value_member(probe, name, &f);
	CHECK(err == NULL);
	td_error_destroy(err);
	CHECK(td_future_unbox(&f));
	return f;
}

static void run_checks(struct td_program *prog, struct td_value *option, struct td_value *probe)
{
	CHECK(!td_type_has_discr(prog, &probe->type));

	/* An async fn's state machine: nothing to look into. */
	struct td_value plain = probe_field(probe, "plain");
	CHECK(td_future_is_async_body(&plain.type));
	CHECK(!td_future_inner_async(&plain));

	/* timeout(leaf(2).instrument(span)): the async body two wrappers down, the same way twice (memo). */
	struct td_value wrapped = probe_field(probe, "wrapped"), w1 = wrapped, w2 = wrapped, inst = wrapped;
	CHECK(starts(name_of(&wrapped), "Timeout<"));
	CHECK(!td_future_is_async_body(&wrapped.type));
	CHECK(td_future_inner_async(&w1) && td_future_is_async_body(&w1.type));
	CHECK(td_future_inner_async(&w2) && w2.address == w1.address);
	CHECK(w1.address >= wrapped.address);
	CHECK(td_future_find(&inst, INSTRUMENTED, false, NULL, 0) == 0);
	CHECK(starts(name_of(&inst), "Instrumented<"));
	CHECK(inst.address >= wrapped.address && inst.address <= w1.address);
	CHECK(!td_future_never_holds(&wrapped, INSTRUMENTED, false));

	/* A tokio Sleep: a leaf, no async body, no branches, no span. */
	struct td_value sleep = probe_field(probe, "sleep"), s1 = sleep;
	CHECK_STR(name_of(&sleep), "Sleep");
	CHECK(!td_future_inner_async(&s1) && s1.address == sleep.address);
	CHECK(!td_future_may_have_children(&sleep));
	CHECK(td_future_never_holds(&sleep, INSTRUMENTED, false));
	CHECK(td_future_find(&s1, POLL_EVENTED, false, NULL, 0) < 0);

	/* An async block owning a TcpStream: opaque unless asked to look past async bodies. */
	struct td_value reading = probe_field(probe, "reading"), r1 = reading, r2 = reading, path[32];
	CHECK(td_future_is_async_body(&reading.type));
	CHECK(td_future_find(&r1, POLL_EVENTED, false, path, 32) < 0 && r1.address == reading.address);
	int n = td_future_find(&r2, POLL_EVENTED, true, path, 32);
	CHECK(n >= 2);
	CHECK(starts(name_of(&r2), "PollEvented<"));
	CHECK(n >= 1 && path[0].address == reading.address);

	/* An async block borrowing one (&mut TcpStream): found through the reference. */
	struct td_value borrowing = probe_field(probe, "borrowing"), b1 = borrowing;
	n = td_future_find(&b1, POLL_EVENTED, true, path, 32);
	CHECK(n >= 2 && starts(name_of(&b1), "PollEvented<"));
	bool through_ref = false;
	for (int i = 0; i < n; i++)
		through_ref |= dwarf_tag(&path[i].type) == DW_TAG_pointer_type &&
			       starts(name_of(&path[i]), "&mut tokio::net::tcp::stream::TcpStream");
	CHECK(through_ref);
	CHECK(b1.address < borrowing.address || b1.address >= borrowing.address + 4096);  /* not inside the box */

}

int main(int argc, char **argv)
{
	return main_on_core(argc, argv, "test-future", run_checks);
}
