/* Unit tests of debuginfo/source: whose code a source path is, by cargo's and rustc's layout. */
#include <string.h>

#include "check.h"
#include "debuginfo/source.h"

/* Whether td_source_crate names want for file under comp_dir (want NULL: no crate). */
static bool crate_is(const char *comp_dir, const char *file, const char *want)
{
	char buf[64];
	bool found = td_source_crate(comp_dir, file, buf, sizeof(buf));
	return want ? found && !strcmp(buf, want) : !found;
}

int main(void)
{
	const char *ws = "/home/me/myapp-1.2.3";
	/* The user's files: relative to the workspace (cargo runs rustc there), or absolute. */
	CHECK(td_source_is_own(ws, ws, "src/main.rs"));
	CHECK(td_source_is_own(ws, ws, "src/bin/tool.rs"));
	CHECK(td_source_is_own(NULL, "/srv/app", "src/main.rs"));
	CHECK(td_source_is_own(ws, "/tmp/other", "/home/me/myapp-1.2.3/crates/core/src/lib.rs"));
	/* rustc's library, in its two spellings. */
	CHECK(!td_source_is_own(ws, "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860", "library/std/src/rt.rs"));
	CHECK(!td_source_is_own(ws, ws, "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/ops/function.rs"));
	/* Dependencies: a registry (cargo's, Debian's), a git checkout, a versioned directory. */
	CHECK(!td_source_is_own(ws, ws, "/home/me/.cargo/registry/src/index.crates.io-6f17d22bba15001f/tokio-1.44.2/src/lib.rs"));
	CHECK(!td_source_is_own(ws, "/usr/share/cargo/registry/parking_lot-0.12.1", "src/condvar.rs"));
	CHECK(!td_source_is_own(ws, ws, "/home/me/.cargo/git/checkouts/hyper-2f1c/a1b2c3d/src/server.rs"));
	CHECK(!td_source_is_own(ws, "/build/deps/tokio-1.53.1", "src/runtime/park.rs"));
	CHECK(!td_source_is_own(NULL, NULL, "/build/deps/tokio-1.53.1/src/runtime/park.rs"));
	/* Inside the workspace only the part below it counts: a vendored versioned copy is a dependency. */
	CHECK(!td_source_is_own(ws, ws, "vendor/tokio-1.24.2-patched/src/lib.rs"));
	CHECK(td_source_is_own(ws, ws, "tokio-like/src/lib.rs"));
	/* A versioned name for the file itself does not count; one for a directory does. */
	CHECK(td_source_is_own(NULL, "/srv/app", "src/v-1.2.3.rs"));
	/* Nothing to go by. */
	CHECK(!td_source_is_own(ws, ws, NULL));
	CHECK(!td_source_is_own(ws, ws, ""));

	/* The crate of a dependency's file, for bt's folded lines. */
	CHECK(crate_is(NULL, "/home/me/.cargo/registry/src/index.crates.io-6f17d22bba15001f/tokio-1.44.2/src/lib.rs", "tokio"));
	CHECK(crate_is(NULL, "/usr/share/cargo/registry/parking_lot_core-0.9.3/src/parking_lot.rs", "parking_lot_core"));
	CHECK(crate_is("/usr/share/cargo/registry/parking_lot-0.12.1", "src/condvar.rs", "parking_lot"));
	CHECK(crate_is(NULL, "/r/tracing-subscriber-0.3.18/src/fmt/mod.rs", "tracing-subscriber"));
	CHECK(crate_is(NULL, "/home/me/.cargo/git/checkouts/hyper-2f1c/a1b2c3d/src/server.rs", "hyper"));
	CHECK(crate_is(NULL, "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/ops/function.rs", "core"));
	CHECK(crate_is("/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860", "library/std/src/rt.rs", "std"));
	CHECK(crate_is(NULL, "library/alloc/src/boxed.rs", "alloc"));
	/* Debian 12's rustc 1.63 keeps its library sources in a versioned directory. */
	CHECK(crate_is(NULL, "/usr/src/rustc-1.63.0/library/core/src/future/mod.rs", "core"));
	CHECK(crate_is(NULL, "/usr/src/rustc-1.63.0/library/std/src/thread/mod.rs", "std"));
	CHECK(!td_source_is_own(ws, ws, "/usr/src/rustc-1.63.0/library/std/src/thread/mod.rs"));
	/* No crate: a C library's sources, nothing at all, a name too long for buf. */
	CHECK(crate_is(NULL, "../sysdeps/unix/sysv/linux/read.c", NULL));
	CHECK(crate_is(NULL, NULL, NULL));
	CHECK(crate_is(NULL, "/r/a-very-long-crate-name-that-does-not-fit-in-the-64-byte-buffer-of-this-test-0.1.0/src/lib.rs", NULL));
	return CHECK_DONE();
}
