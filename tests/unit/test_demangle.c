/* Unit tests of debuginfo/demangle: C++, Rust legacy and v0, closure names. */
#include <stdlib.h>

#include "check.h"
#include "debuginfo/demangle.h"

static void check_demangle(const char *mangled, const char *want)
{
	char *got = td_demangle(mangled);
	CHECK_STR(got, want);
	free(got);
}

static void check_function_name(const char *linkage, const char *dwname, const char *want)
{
	char *got = td_function_name(linkage, dwname);
	CHECK_STR(got, want);
	free(got);
}

int main(void)
{
	/* Rust legacy: hash dropped, $-escapes decoded. */
	check_demangle("_ZN5probe4leaf28_$u7b$$u7b$closure$u7d$$u7d$17hf521fecc0c022870E",
		       "probe::leaf::{{closure}}");
	check_demangle("_ZN5tokio7runtime4task4core17Core$LT$T$C$S$GT$4poll17h45a2efdc7beb48d3E",
		       "tokio::runtime::task::core::Core<T,S>::poll");
	/* rustc's ".llvm.N" suffix on local symbols. */
	check_demangle("_ZN3std2rt10lang_start28_$u7b$$u7b$closure$u7d$$u7d$17h36d73e3f9f725fdfE.llvm.12617924683114541425",
		       "std::rt::lang_start::{{closure}}");
	/* Rust v0 (the standard library is built with it). */
	check_demangle("_RNvNtCsjrHSEGnQ3l9_3std2rt19lang_start_internal", "std::rt::lang_start_internal");
	/* C++ */
	check_demangle("_ZN3foo3barEi", "foo::bar(int)");
	/* Not mangled. */
	CHECK(td_demangle("main") == NULL);
	CHECK(td_demangle(NULL) == NULL);

	/* Async bodies and closures take their DWARF name, without generics. */
	check_function_name("_ZN5probe4leaf28_$u7b$$u7b$closure$u7d$$u7d$17hf521fecc0c022870E",
			    "{async_fn#0}", "probe::leaf::{async_fn#0}");
	check_function_name("_ZN5tokio7runtime4task4core17Core$LT$T$C$S$GT$4poll28_$u7b$$u7b$closure$u7d$$u7d$17h0bb43c7cb4258107E",
			    "{closure#0}<probe::main::{async_block#0}::{async_block_env#0}, alloc::sync::Arc<X>>",
			    "tokio::runtime::task::core::Core<T,S>::poll::{closure#0}");
	/* A plain function keeps its demangled name. */
	check_function_name("_ZN5tokio7runtime4task4core17Core$LT$T$C$S$GT$4poll17h45a2efdc7beb48d3E",
			    "poll<X>", "tokio::runtime::task::core::Core<T,S>::poll");
	/* C: no linkage name. */
	check_function_name(NULL, "reader_main", "reader_main");
	return CHECK_DONE();
}
