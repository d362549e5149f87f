/*
 * Debug info (and a core's missing executables) fetched from debuginfod
 * servers through libdebuginfod, under taskdbg's own policy:
 *
 * - only when DEBUGINFOD_URLS names a server, into elfutils' own cache
 *   ($DEBUGINFOD_CACHE_PATH, else ~/.cache/debuginfod_client);
 * - only in td_debuginfod_fetch_all, which the snapshot calls right after the
 *   modules are reported: before a live target is stopped, never during;
 * - each connection gives up after DEBUGINFOD_TIMEOUT seconds (default 10
 *   here, not the library's 90; no retries unless DEBUGINFOD_RETRY_LIMIT
 *   asks for them), the whole run after
 *   TASKDBG_DEBUGINFOD_MAXTIME seconds (default 60), and the first failure
 *   of a server (refused, timed out, ...) ends fetching for the run.
 *
 * libdwfl would query the servers by itself (with its own client, no
 * progress, the library's timeouts, and at any time, also while a target is
 * stopped): td_debuginfod_init takes DEBUGINFOD_URLS out of the process's
 * environment so that it never does, and the files fetched here reach
 * libdwfl through td_debuginfod_open, from the modules' find_elf and
 * find_debuginfo callbacks (debuginfo/modules.c).
 *
 * Built without libdebuginfod (TD_HAVE_DEBUGINFOD unset), all of this does
 * nothing and libdwfl keeps its own behaviour.
 */
#ifndef TD_DEBUGINFO_DEBUGINFOD_H
#define TD_DEBUGINFO_DEBUGINFOD_H

#include <elfutils/libdwfl.h>
#include <stdbool.h>

/* Where the fetches are told about; the command line gives stderr. */
struct td_debuginfod_report {
	/* A progress line (no newline) replacing the last one; NULL: clear it. */
	void (*progress)(const char *line);
	/* One warning (no newline). */
	void (*warn)(const char *line);
};

/*
 * Reads and hides DEBUGINFOD_URLS. Call first on the main thread, before any
 * other thread exists (setenv/unsetenv are not thread-safe); report may be
 * NULL (nothing is said) and must outlive the process's use of this module.
 * Later calls only replace a NULL report.
 */
void td_debuginfod_init(const struct td_debuginfod_report *report);

/* True if built with libdebuginfod. */
bool td_debuginfod_built_in(void);

/* The DEBUGINFOD_URLS taskdbg uses, or NULL if none (or not built in). */
const char *td_debuginfod_urls(void);

/*
 * Fetches what the modules of dwfl miss and the servers have: each module's
 * ELF file (cores: a file not found on this machine) and its debug info.
 * Loads every module's ELF and DWARF (what is found) on the way. Main
 * thread only, with no other thread running; nothing to do (and nothing
 * loaded) without DEBUGINFOD_URLS.
 */
void td_debuginfod_fetch_all(Dwfl *dwfl);

/*
 * For a find_elf (executable) or find_debuginfo callback: the file fetched
 * for mod's build-id, opened, with its path in *path (malloc'd); -1 if none.
 * While td_debuginfod_fetch_all runs, a file not fetched yet is fetched now.
 * Any thread (it only reads what the fetches left).
 */
int td_debuginfod_open(Dwfl_Module *mod, bool executable, char **path);

/*
 * A sentence for an error about mod's missing debug info (or, if executable,
 * its missing file): why debuginfod did not give it, or how to use one; ""
 * if there is nothing to say. Static storage, valid until the next call.
 */
const char *td_debuginfod_hint(Dwfl_Module *mod, bool executable);

#endif
