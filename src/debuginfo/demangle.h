/* Symbol names a person can read: C++, Rust legacy and Rust v0 demangling. */
#ifndef TD_DEBUGINFO_DEMANGLE_H
#define TD_DEBUGINFO_DEMANGLE_H

/*
 * Demangles a C++ or Rust symbol (legacy or v0), without Rust's hash and
 * crate disambiguators and without a trailing ".llvm.NNN". Returns a malloc'd
 * string, or NULL when the name is not mangled.
 */
char *td_demangle(const char *mangled);

/*
 * The name of a function for a stack frame, from its DWARF linkage name and
 * DW_AT_name. Rust closures and async bodies demangle to "{{closure}}"; their
 * DW_AT_name says what they are ("{async_fn#0}", "{async_block#1}"), so that
 * replaces the last path component. Returns a malloc'd string or NULL.
 */
char *td_function_name(const char *linkage_name, const char *dwarf_name);

#endif
