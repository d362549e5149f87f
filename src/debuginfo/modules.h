/*
 * The modules (executable and shared libraries) of a target, through libdwfl,
 * and the checks that the executable is there, is the right one and has
 * debug info (which only reading the runtime needs). Nothing here touches
 * the target's threads.
 */
#ifndef TD_DEBUGINFO_MODULES_H
#define TD_DEBUGINFO_MODULES_H

#include <elfutils/libdwfl.h>
#include <stdint.h>
#include <sys/types.h>

#include "target/core.h"
#include "util/error.h"

/*
 * libdwfl's find_debuginfo callback: the standard search (build-id and
 * .gnu_debuglink under /usr/lib/debug, next to the file), then what
 * debuginfod gave (debuginfo/debuginfod.h).
 */
int td_modules_find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, GElf_Addr base,
			      const char *file_name, const char *debuglink_file, GElf_Word debuglink_crc,
			      char **debuginfo_file_name);

/*
 * Reports the modules mapped in a live process (from /proc/PID/maps), and
 * fetches what they miss from debuginfod: before the process is stopped.
 */
struct td_error *td_modules_report_live(pid_t pid, Dwfl **ret);

/*
 * Reports the modules of a core (and fetches what they miss from debuginfod);
 * exe, if not NULL, overrides the core's notes.
 */
struct td_error *td_modules_report_core(struct td_core *core, const char *exe, Dwfl **ret);

/*
 * Finds the executable's module (the one holding the entry point) and checks
 * that its file was found and matches the target's build-id. It may lack
 * DWARF (stacks are then named from its symbol table): see below.
 * what names the target in messages ("process 123", "core file core.1").
 */
struct td_error *td_modules_check_exe(Dwfl *dwfl, uint64_t entry, const char *what,
				      const char *exe_override, Dwfl_Module **ret);

/*
 * Whether mod has DWARF (its own, or a separate debug file found); if not,
 * the error that says what needs it and how to get it. Reading a runtime's
 * structures (td_program_create) needs the executable's.
 */
struct td_error *td_modules_require_dwarf(Dwfl_Module *mod);

/*
 * round_up(PT_TLS.p_memsz, p_align) of a module: the size of its static TLS
 * block (x86_64: it ends at the thread pointer). 0 if none or over 64 KiB.
 */
uint64_t td_modules_tls_block_size(Dwfl_Module *mod);

/* The file name of a module's ELF file, or its reported name. */
const char *td_module_path(Dwfl_Module *mod);

#endif
