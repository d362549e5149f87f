/*
 * An ELF core file: threads and registers from NT_PRSTATUS, mapped files from
 * NT_FILE, process facts from NT_PRPSINFO and NT_AUXV, memory from PT_LOAD
 * (and, for pages the core did not dump, from the mapped file itself).
 * Hostile input is normal: every size is checked against the file.
 */
#ifndef TD_TARGET_CORE_H
#define TD_TARGET_CORE_H

#include <libelf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "target/decompress.h"
#include "util/error.h"

struct td_core_thread {
	pid_t tid;
	int cursig;                     /* signal that was being delivered, if any */
	struct user_regs_struct regs;   /* same layout as elf_gregset_t on x86_64 */
};

struct td_core_segment {
	uint64_t vaddr, memsz, offset, filesz;
};

struct td_core_file {
	uint64_t start, end, offset;   /* offset in bytes into the file */
	char *path;
	int fd;                        /* opened lazily; -1 closed, -2 unopenable */
};

/*
 * What systemd-coredump records of a crash in the core file's extended
 * attributes (user.coredump.*) and in its journal entry (target/journal.c),
 * when the core comes from it. Numbers are -1 when absent, strings NULL
 * (control characters in them are replaced by '?').
 */
struct td_coredump_meta {
	bool present;                  /* any of them */
	bool from_journal;             /* its journal entry was found */
	long long pid, uid, gid, signal;
	long long timestamp_us;        /* when it crashed: microseconds since the epoch */
	bool has_rlimit;
	uint64_t rlimit;               /* RLIMIT_CORE's soft limit (UINT64_MAX: unlimited) */
	char *comm, *exe, *hostname;
	char *cmdline, *unit;          /* the journal's only */
};

struct td_core {
	char *path;
	int fd;                        /* the core (decompressed: the temporary file) */
	enum td_compression compression;
	uint64_t compressed_size;      /* the file's size when compressed */
	struct td_coredump_meta coredump;
	Elf *elf;
	const unsigned char *image;   /* the whole core, mapped read-only */
	size_t size;

	pid_t pid;
	char fname[17];                /* command name, from NT_PRPSINFO */
	char psargs[81];
	uint64_t entry;                /* AT_ENTRY of the executable */

	struct td_core_thread *threads;
	size_t nthreads;
	struct td_core_segment *segments;
	size_t nsegments;
	struct td_core_file *files;
	size_t nfiles;
};

/*
 * Opens and validates a core file, a plain one or one compressed with zstd,
 * xz or lz4 (decompressed first: target/decompress.h, at most max_size bytes;
 * 0: TD_DECOMPRESS_MAX_DEFAULT; progress may be NULL). *ret is freed with
 * td_core_destroy.
 */
struct td_error *td_core_open_max(const char *path, uint64_t max_size,
				  const struct td_decompress_progress *progress, struct td_core **ret);

/* td_core_open_max with the default cap, no progress. */
struct td_error *td_core_open(const char *path, struct td_core **ret);

/* Reads target memory; returns bytes read (short at the first unmapped byte). */
size_t td_core_read(struct td_core *core, uint64_t addr, void *buf, size_t len);

/* The NT_FILE mapping that contains addr, or NULL. */
const struct td_core_file *td_core_file_at(const struct td_core *core, uint64_t addr);

void td_core_destroy(struct td_core *core);

#endif
