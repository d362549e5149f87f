/*
 * An ELF core file of a live process, written without a debugger: what the
 * kernel would dump with its default coredump_filter, readable by taskdbg and
 * gdb. The process is stopped only while its registers and memory are copied
 * (td_live_stop: the emergency detach covers it) and runs on afterwards; its
 * memory is never written. x86_64 only.
 */
#ifndef TD_TARGET_DUMP_H
#define TD_TARGET_DUMP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

struct td_dump_stats {
	uint64_t stopped_ns;        /* the target was stopped this long */
	uint64_t wall_ns;           /* the whole dump, file written */
	uint64_t bytes;             /* size of the core file */
	size_t threads;             /* threads in the core (NT_PRSTATUS notes) */
	size_t segments_written;    /* PT_LOAD segments with contents */
	size_t segments_skipped;    /* PT_LOAD segments without (file text, unreadable) */
};

/*
 * Writes a core of process pid to path (created, or truncated; mode 0600:
 * a core holds the process's secrets). Everything that does not need the
 * process stopped is done before the stop, so a bad path or a process we may
 * not inspect fails with nothing stopped. On failure the target runs on and
 * a file this call made is removed. stats may be NULL.
 */
struct td_error *td_dump_core(pid_t pid, const char *path, struct td_dump_stats *stats);

#endif
