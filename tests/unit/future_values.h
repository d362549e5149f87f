/*
 * What the unit tests on a core of the Rust fixture future_values share
 * (tests/fixtures/rust/src/bin/future_values.rs): its static PROBE, and a
 * main that opens the core and runs the checks while it is "stopped".
 */
#ifndef TD_TESTS_FUTURE_VALUES_H
#define TD_TESTS_FUTURE_VALUES_H

#include <dwarf.h>
#include <stdio.h>

#include "check.h"
#include "snapshot/snapshot.h"
#include "value/program.h"
#include "value/value.h"

typedef void probe_checks(struct td_program *prog, struct td_value *option, struct td_value *probe);

/* While the core is "stopped": PROBE (an Option<Probe>) and the Probe in its Some, given to the checks. */
static struct td_error *with_probe(struct td_snapshot *snap, void *arg)
{
	struct td_program *prog;
	struct td_error *err = td_program_create(snap, &prog);
	if (err)
		return err;
	Dwarf_Die var, type;
	uint64_t addr;
	struct td_value option, some, probe;
	const char *variant;
	uint64_t discr;
	CHECK(td_program_find(prog, "future_values::PROBE", DW_TAG_variable, &var));
	CHECK(td_die_type(&var, &type));
	CHECK((err = td_program_static_address(prog, &var, &addr)) == NULL);
	td_error_destroy(err);
	td_value_init(&option, prog, &type, addr);
	CHECK(td_type_has_discr(prog, &option.type));
	CHECK((err = td_value_variant(&option, &some, &variant, &discr, NULL)) == NULL);
	td_error_destroy(err);
	CHECK_STR(variant, "Some");
	CHECK((err = td_value_member(&some, "__0", &probe)) == NULL);
	td_error_destroy(err);
	((probe_checks *)arg)(prog, &option, &probe);
	td_program_destroy(prog);
	return NULL;
}

/* main of NAME CORE EXE: the checks run on the core's PROBE. */
static int main_on_core(int argc, char **argv, const char *name, probe_checks *checks)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s CORE EXE (a core of the Rust fixture future_values)\n", name);
		return 2;
	}
	struct td_snapshot_options opts = { .exe = argv[2], .while_stopped = with_probe, .while_stopped_arg = checks };
	struct td_snapshot *snap;
	struct td_error *err = td_snapshot_open_core(argv[1], &opts, &snap);
	if (err) {
		fprintf(stderr, "%s: %s\n", name, err->message);
		td_error_destroy(err);
		return 2;
	}
	td_snapshot_destroy(snap);
	return CHECK_DONE();
}

#endif
