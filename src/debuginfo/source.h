/*
 * Which source files are the program's own: the user's code, not the
 * standard library's nor a dependency's. The rule is cargo's and rustc's
 * layout, not a list of crate names:
 *   - rustc's library (/rustc/HASH/library, or library/ under that
 *     comp_dir), crates where cargo puts dependencies (a registry, a git
 *     checkout, any directory named NAME-X.Y.Z) are not;
 *   - anything else is (a C program's sources, a path dependency).
 * Below the workspace of the executable's own crate (the comp_dir of its
 * units: cargo runs rustc there) only the part of a path under it counts:
 * a project checked out as myapp-1.2.3/ is still the program's own.
 * Code in a shared library is never the program's own.
 */
#ifndef TD_DEBUGINFO_SOURCE_H
#define TD_DEBUGINFO_SOURCE_H

#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <stdbool.h>

/*
 * file as DWARF records it; a relative one is under comp_dir (may be NULL).
 * workspace: td_source_workspace's answer, or NULL.
 */
bool td_source_is_own(const char *workspace, const char *comp_dir, const char *file);

/*
 * The crate a dependency's source file belongs to, by the same layout: the
 * NAME of a NAME-X.Y.Z directory (cargo's registry, Debian's
 * /usr/share/cargo/registry, a vendor directory), of a git checkout
 * (.cargo/git/checkouts/NAME-HASH), or std/core/alloc/... for rustc's
 * library/. A relative file is under comp_dir (may be NULL). Copied into
 * buf; false if the path says none.
 */
bool td_source_crate(const char *comp_dir, const char *file, char *buf, size_t size);

/* The DW_AT_comp_dir of the unit that holds die, or NULL. */
const char *td_source_comp_dir(Dwarf_Die *die);

/*
 * The workspace of executable module mod's own crate: the comp_dir of the
 * unit whose name says it is that crate's (ROOT/@/CRATE.HASH-cgu.N, CRATE
 * the file's name with '-' as '_'), or NULL (a C program, a renamed file).
 * Found once per module; the string lives as long as mod's Dwarf.
 */
const char *td_source_workspace(Dwfl_Module *mod);

/* Whether mod is an executable (not a shared library): only its code can be the program's own. */
bool td_module_is_executable(Dwfl_Module *mod);

#endif
