/*
 * A frozen view of a target: every thread's registers and the top of its
 * stack, and a way to read the rest of memory. A live process is stopped only
 * while this is copied; everything after (unwinding, symbols, analysis) works
 * on the copy while the process runs again. A core file is a snapshot already.
 * Both kinds answer through the same functions.
 */
#ifndef TD_SNAPSHOT_SNAPSHOT_H
#define TD_SNAPSHOT_SNAPSHOT_H

#include <elfutils/libdwfl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "target/core.h"
#include "util/error.h"

/* Upper bound of the stack copied per thread while the target is stopped. */
#define TD_STACK_COPY_MAX (1024 * 1024)

struct td_snapshot_thread {
	pid_t tid;
	char name[16];
	bool has_name;
	char state;                 /* from /proc before the stop; '\0' in a core */
	bool stopped;               /* false: it would not stop (uninterruptible); no registers */
	long syscall;               /* system call it is blocked in, or -1 */
	struct user_regs_struct regs;
	uint64_t stack_addr;        /* the copied range of its stack */
	size_t stack_len;
	unsigned char *stack;       /* in the snapshot's arena, or malloc'd if stack_owned */
	bool stack_owned;
	uint64_t tls_addr;          /* the executable's static TLS block, copied too */
	size_t tls_len;
	unsigned char *tls;         /* in the arena */
};

enum td_snapshot_kind { TD_SNAPSHOT_LIVE, TD_SNAPSHOT_CORE };

struct td_stack;

struct td_snapshot {
	enum td_snapshot_kind kind;
	pid_t pid;
	pid_t mem_pid;              /* live: a living thread, whose address space is read */
	char *exe;                  /* path of the executable */
	struct td_snapshot_thread *threads;
	size_t nthreads;
	uint64_t stopped_ns;        /* live: how long the process stayed stopped */
	Dwfl *dwfl;                 /* modules; owned */
	Dwfl_Module *exe_module;    /* the executable's module in dwfl */
	struct td_core *core;       /* core snapshots; owned */
	char *core_path;
	char *comm;                 /* process name */
	size_t unwind_next;         /* libdwfl's thread iterator (snapshot/unwind.c) */
	bool unwind_attached;       /* dwfl_attach_state done (once per Dwfl) */
	const struct td_snapshot_thread *unwind_sample;   /* td_unwind_sample's thread, while it runs */
	bool unwind_copies_only;    /* unwind from the stack copies alone (a profiler's short ones) */
	unsigned char *stack_arena; /* buffers for the stack copies */
	size_t stack_arena_size;
	uint64_t tls_block_size;    /* round_up(PT_TLS.p_memsz, p_align) of the executable */
	struct td_stack *stacks;    /* unwound threads of this stop, or NULL (snapshot/unwind.c) */
	unsigned char *scratch;     /* values taskdbg made up: see td_snapshot_scratch */
	size_t scratch_len, scratch_cap;
};

/*
 * Where made-up values live: kernel addresses, which no user-space target can
 * map, so they never alias the target's memory (x86_64).
 */
#define TD_SCRATCH_BASE 0xffffc00000000000ull

/*
 * Gives bytes taskdbg assembled (a variable kept in registers, in pieces) an
 * address that td_snapshot_read serves, so they read like any value. Returns
 * 0 if out of memory. Valid until the snapshot is taken again or destroyed.
 */
uint64_t td_snapshot_scratch(struct td_snapshot *snap, const void *bytes, size_t len);

struct td_snapshot_options {
	const char *exe;            /* core: the executable, overriding the notes */
	uint64_t core_max;          /* core: cap on a compressed core's size (0: default) */
	const struct td_decompress_progress *core_progress;   /* core: NULL, or shown while decompressed */
	unsigned pause_stopped_ms;  /* tests only: hold the target stopped this long */
	size_t stack_max;           /* stack copied per thread; 0: TD_STACK_COPY_MAX (a profiler copies less) */
	/*
	 * Work that needs the target's memory consistent (walking a runtime's
	 * structures): called while a live target is stopped, after registers and
	 * stacks are copied; for a core, once it is open. An error aborts the
	 * snapshot (the target is resumed first).
	 */
	struct td_error *(*while_stopped)(struct td_snapshot *snap, void *arg);
	void *while_stopped_arg;
	/*
	 * Work to do before a live target is stopped, once its modules are known
	 * (threads are not yet): resolving types and offsets, so the stop is short.
	 * For a core, called just before while_stopped. Same arg.
	 */
	struct td_error *(*before_stop)(struct td_snapshot *snap, void *arg);
};

/*
 * Stops pid, copies what later work needs, and lets it run again. Checks
 * first (process exists, not traced, the executable is readable; its debug
 * info is checked by what needs it, before the stop) so a target that cannot
 * be analysed is never stopped.
 */
struct td_error *td_snapshot_take_live(pid_t pid, const struct td_snapshot_options *opts,
				       struct td_snapshot **ret);

/*
 * Stops a live target again and refreshes every thread (threads, registers,
 * stacks, TLS; opts->while_stopped runs during the stop; before_stop does
 * not). Modules and debug info are kept. For `diagnose`'s series of samples.
 */
struct td_error *td_snapshot_retake(struct td_snapshot *snap, const struct td_snapshot_options *opts);

/* Opens a core file as a snapshot. */
struct td_error *td_snapshot_open_core(const char *path, const struct td_snapshot_options *opts,
				       struct td_snapshot **ret);

/* Reads target memory as of the snapshot where it was copied; returns bytes read. */
size_t td_snapshot_read(struct td_snapshot *snap, uint64_t addr, void *buf, size_t len);

void td_snapshot_destroy(struct td_snapshot *snap);

#endif
