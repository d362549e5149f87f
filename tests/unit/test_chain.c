/*
 * Unit tests of value/chain (await chains) on a real binary: a core of the
 * Rust fixture future_values, whose static PROBE holds boxed futures of known
 * shapes, none polled yet (see tests/fixtures/rust/src/bin/future_values.rs).
 *   test-chain CORE EXE
 */
#include <dwarf.h>
#include <stdlib.h>

#include "future_values.h"
#include "value/chain.h"
#include "value/future.h"
#include "value/program.h"
#include "value/value.h"

static const char INSTRUMENTED[] = "tracing::instrument::Instrumented<";

static bool ends(const char *s, const char *suffix)
{
	size_t n = s ? strlen(s) : 0, m = strlen(suffix);
	return s && n >= m && strcmp(s + n - m, suffix) == 0;
}

/* PROBE's field `name`: the box, as a chain is built from (td_chain_build unboxes it). */
static struct td_value probe_field(struct td_value *probe, const char *name)
{
	struct td_value f = { 0 };
	struct td_error *err = td_value_member(probe, name, &f);
	CHECK(err == NULL);
	td_error_destroy(err);
	return f;
}

/* The future in field `name`'s box. */
static struct td_value unboxed(struct td_value *probe, const char *name)
{
	struct td_value f = probe_field(probe, name);
	CHECK(td_future_unbox(&f));
	return f;
}

static const struct td_chain *chain_of(struct td_chain_decoder *dec, struct td_value *probe, const char *name)
{
	const struct td_chain *c = NULL;
	struct td_error *err = td_chain_build(dec, probe_field(probe, name), &c);
	CHECK(err == NULL && c != NULL);
	td_error_destroy(err);
	return c;
}

/* The qualified name of the type at a DIE offset (freed by the caller). */
static char *type_name(struct td_program *prog, uint64_t type)
{
	Dwarf_Die die;
	return td_program_die_at(prog, type, &die) ? td_program_qualified_name(prog, &die) : NULL;
}

/* One level, Unresumed (never polled), of the async body named body, declared at file:line. */
static void check_unresumed(struct td_program *prog, const struct td_chain *c, const char *body, int line)
{
	CHECK(c->depth == 1);
	if (c->depth < 1)
		return;
	const struct td_chain_state *st = c->levels[0].state;
	char *name = type_name(prog, st->type);
	CHECK_STR(name, body);
	free(name);
	CHECK_STR(st->name, "Unresumed");
	CHECK(ends(st->file, "src/bin/future_values.rs"));
	CHECK(st->line == line);
	CHECK(st->discr == 0);
	CHECK(!st->has_awaitee && !st->in_macro && st->nholds == 0);
	CHECK(c->leaf == 0 && c->leaf_type == 0 && c->nchildren == 0 && c->error == NULL);
}

static void run_checks(struct td_program *prog, struct td_value *option, struct td_value *probe)
{

	struct td_chain_decoder *dec;
	struct td_error *err = td_chain_decoder_create(prog, &dec);
	CHECK(err == NULL);
	if (err)
		return;
	const char *const span_meta[] = { "span", "meta" };
	CHECK(td_chain_decoder_tag(dec, INSTRUMENTED, span_meta, 2) == NULL);
	err = td_chain_decoder_tag(dec, INSTRUMENTED, span_meta, 2);
	CHECK(err && err->kind == TD_ERR_USAGE);   /* one prefix */
	td_error_destroy(err);
	CHECK(td_chain_decoder_per_task(dec, "JoinHandle<") == NULL);

	/* plain: leaf(1), an async fn never polled: one level, at the fn's line, shared. */
	const struct td_chain *c = chain_of(dec, probe, "plain");
	check_unresumed(prog, c, "future_values::leaf::{async_fn_env#0}", 35);
	CHECK(c->levels[0].state->own);
	CHECK(c->levels[0].addr == unboxed(probe, "plain").address);
	CHECK(c->shared && c->root_tag == 0 && c->tagged == 0 && c->marked == 0);
	char plain_key[64];
	size_t plain_len = c->key_len;
	CHECK(plain_len == 2);   /* one state slot, no tags */
	memcpy(plain_key, c->key, plain_len < sizeof(plain_key) ? plain_len : sizeof(plain_key));
	const struct td_chain_state *leaf_state = c->levels[0].state;
	/* The same chain again: the same state (memoized), the same key. */
	c = chain_of(dec, probe, "plain");
	CHECK(c->levels[0].state == leaf_state);
	CHECK(c->shared && c->key_len == plain_len && memcmp(c->key, plain_key, plain_len) == 0);

	/*
	 * wrapped: timeout(leaf(2).instrument(span)): through the Timeout and the
	 * Instrumented to leaf's body, never polled (its type is another unit's
	 * DIE: another state, another key). The Instrumented inside the task's
	 * future tags the chain with its span's metadata: none here (no
	 * subscriber, a disabled span), but where the span is is told.
	 */
	struct td_value wrapped = unboxed(probe, "wrapped"), inst = wrapped, body = wrapped;
	CHECK(td_future_find(&inst, INSTRUMENTED, false, NULL, 0) == 0);
	CHECK(td_future_inner_async(&body));
	Dwarf_Die span_type;
	uint64_t span_off = 0;
	CHECK(td_type_member(&inst.type, "span", &span_type, &span_off));
	c = chain_of(dec, probe, "wrapped");
	check_unresumed(prog, c, "future_values::leaf::{async_fn_env#0}", 35);
	CHECK(c->levels[0].state != leaf_state);
	CHECK(c->levels[0].addr == body.address);
	CHECK(c->root_tag == 0 && c->levels[0].tag == 0);
	CHECK(c->tagged != 0 && c->tagged == inst.address + span_off);
	CHECK(c->shared && c->key_len == plain_len && memcmp(c->key, plain_key, plain_len) != 0);

	/* sleep: no async body: an empty chain whose leaf is the Sleep itself. */
	struct td_value sleep = unboxed(probe, "sleep");
	c = chain_of(dec, probe, "sleep");
	CHECK(c->depth == 0 && c->error == NULL && c->root_tag == 0);
	char *leaf_name = type_name(prog, c->leaf_type);
	CHECK_STR(leaf_name, "tokio::time::sleep::Sleep");
	free(leaf_name);
	CHECK(c->leaf == sleep.address);
	CHECK(c->shared && c->key_len == 16);

	/* reading and borrowing: async blocks in main's async block, never polled. */
	c = chain_of(dec, probe, "reading");
	check_unresumed(prog, c, "future_values::main::{async_block#0}::{async_block_env#0}", 56);
	CHECK(c->shared);
	c = chain_of(dec, probe, "borrowing");
	check_unresumed(prog, c, "future_values::main::{async_block#0}::{async_block_env#1}", 62);

	/* A Stage is no future to start from here: PROBE's Option is no Stage (no Running variant). */
	const char *reason = NULL;
	CHECK((err = td_chain_build_stage(dec, &option->type, option->address, &c, &reason)) == NULL);
	td_error_destroy(err);
	CHECK(c == NULL);
	CHECK_STR(reason, "Some");

	td_chain_decoder_destroy(dec);
}

int main(int argc, char **argv)
{
	return main_on_core(argc, argv, "test-chain", run_checks);
}
