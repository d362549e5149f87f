#include "snapshot/snapshot.h"
#include "util/clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <signal.h>
#include <unistd.h>

#include "debuginfo/modules.h"
#include "snapshot/unwind.h"
#include "target/live.h"
#include "target/procfs.h"
#include "target/syscalls.h"
#include "util/timing.h"

/* Below the stack pointer the x86_64 ABI lets leaf functions keep data. */
#define TD_RED_ZONE 128
/* Stack copied when the stack's mapping is unknown (a thread born meanwhile). */
#define TD_STACK_COPY_UNKNOWN (64 * 1024)
/*
 * Buffer space prepared (and touched) per thread before the stop: copying into
 * fresh pages would take a page fault per 4 KiB while the target waits.
 */
#define TD_STACK_ARENA_PER_THREAD (32 * 1024)
#define TD_STACK_ARENA_MAX (16 * 1024 * 1024)

static struct td_snapshot *snapshot_new(enum td_snapshot_kind kind)
{
	struct td_snapshot *snap = calloc(1, sizeof(*snap));
	if (snap)
		snap->kind = kind;
	return snap;
}

/*
 * Copies every thread's stack, from below its stack pointer up to the end of
 * the stack's mapping (where glibc also keeps the thread's TLS), in one
 * process_vm_readv for all threads.
 */
static void copy_stacks(struct td_snapshot *snap, const struct td_mapping *maps, size_t nmaps,
			size_t stack_max)
{
	size_t arena_used = 0;
	size_t n = snap->nthreads;
	/* One range per thread for its stack, one for its static TLS block. */
	struct iovec *local = calloc(2 * n, sizeof(*local)), *remote = calloc(2 * n, sizeof(*remote));
	if (!local || !remote)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct td_snapshot_thread *t = &snap->threads[i];
		if (!t->stopped)
			continue;
		uint64_t sp = t->regs.rsp;
		uint64_t lo = sp > TD_RED_ZONE ? sp - TD_RED_ZONE : 0;
		const struct td_mapping *m = td_mapping_find(maps, nmaps, sp);
		uint64_t hi = m ? m->hi : sp + TD_STACK_COPY_UNKNOWN;
		if (m && lo < m->lo)
			lo = m->lo;
		if (hi - lo > stack_max)
			hi = lo + stack_max;
		size_t size = hi - lo;
		if (snap->stack_arena && snap->stack_arena_size - arena_used >= size) {
			t->stack = snap->stack_arena + arena_used;
			arena_used += (size + 63) & ~(size_t)63;
		} else {
			t->stack = malloc(size);
			t->stack_owned = true;
		}
		if (!t->stack)
			continue;
		t->stack_addr = lo;
		t->stack_len = hi - lo;
		local[i] = (struct iovec){ t->stack, t->stack_len };
		remote[i] = (struct iovec){ (void *)(uintptr_t)lo, t->stack_len };
		/*
		 * The TLS block (x86_64: just below fs_base) lets runtime plugins
		 * read thread-locals after the stop and still see stop-time values.
		 */
		size_t tls = (size_t)snap->tls_block_size;
		if (tls && t->regs.fs_base > tls && snap->stack_arena &&
		    snap->stack_arena_size - arena_used >= tls) {
			t->tls = snap->stack_arena + arena_used;
			arena_used += (tls + 63) & ~(size_t)63;
			t->tls_addr = t->regs.fs_base - tls;
			t->tls_len = tls;
			local[n + i] = (struct iovec){ t->tls, tls };
			remote[n + i] = (struct iovec){ (void *)(uintptr_t)t->tls_addr, tls };
		}
	}
	/* One call for all; if any range faults, fall back to one call per range. */
	size_t total = 0;
	for (size_t i = 0; i < 2 * n; i++)
		total += local[i].iov_len;
	ssize_t got = n ? process_vm_readv(snap->mem_pid, local, 2 * n, remote, 2 * n, 0) : 0;
	if (got < 0 || (size_t)got != total) {
		for (size_t i = 0; i < n; i++) {
			struct td_snapshot_thread *t = &snap->threads[i];
			if (t->stack)
				t->stack_len = td_live_read(snap->mem_pid, t->stack_addr, t->stack, t->stack_len);
			if (t->tls)
				t->tls_len = td_live_read(snap->mem_pid, t->tls_addr, t->tls, t->tls_len);
		}
	}
out:
	free(local);
	free(remote);
}

/* Forgets the threads of an earlier stop (live snapshots taken again). */
static void drop_threads(struct td_snapshot *snap)
{
	td_stacks_destroy(snap->stacks, snap->nthreads);
	snap->stacks = NULL;
	for (size_t i = 0; i < snap->nthreads; i++)
		if (snap->threads[i].stack_owned)
			free(snap->threads[i].stack);
	free(snap->threads);
	snap->threads = NULL;
	snap->nthreads = 0;
	snap->unwind_next = 0;
	snap->scratch_len = 0;
}

/* Room for n threads (zeroed): a stop's or a core's. */
static struct td_error *alloc_threads(struct td_snapshot *snap, size_t n)
{
	snap->threads = calloc(n ? n : 1, sizeof(*snap->threads));
	if (!snap->threads)
		return &td_enomem;
	snap->nthreads = n;
	return NULL;
}

uint64_t td_snapshot_scratch(struct td_snapshot *snap, const void *bytes, size_t len)
{
	size_t at = (snap->scratch_len + 15) & ~(size_t)15;
	if (len > (1u << 20) || at + len > (64u << 20))
		return 0;
	if (at + len > snap->scratch_cap) {
		size_t cap = snap->scratch_cap ? snap->scratch_cap : 4096;
		while (cap < at + len)
			cap *= 2;
		unsigned char *grown = realloc(snap->scratch, cap);
		if (!grown)
			return 0;
		snap->scratch = grown;
		snap->scratch_cap = cap;
	}
	memcpy(snap->scratch + at, bytes, len);
	snap->scratch_len = at + len;
	return TD_SCRATCH_BASE + at;
}

/*
 * One stop of a live target: thread names and states and the memory map read
 * before it, then stop, registers, stacks and TLS copied, while_stopped,
 * resume. before_stop runs only on the first stop (first = true).
 */
static struct td_error *stop_and_copy(struct td_snapshot *snap, const struct td_snapshot_options *opts,
				      bool first)
{
	struct td_error *err;
	pid_t pid = snap->pid;
	struct td_mapping *maps = NULL;
	size_t nmaps = 0;
	struct td_live *live = NULL;
	struct td_snapshot_thread *pre = NULL;
	if ((err = td_proc_read_maps(snap->mem_pid, &maps, &nmaps)))
		return err;
	/* Names and states as they are before the stop (during it, all read 't'). */
	pid_t *pre_tids = NULL;
	size_t npre = 0;
	if ((err = td_proc_list_threads(pid, &pre_tids, &npre)))
		goto out;
	pre = calloc(npre ? npre : 1, sizeof(*pre));
	if (!pre) {
		free(pre_tids);
		err = &td_enomem;
		goto out;
	}
	for (size_t i = 0; i < npre; i++) {
		pre[i].tid = pre_tids[i];
		pre[i].has_name = td_proc_thread_info(pid, pre_tids[i], pre[i].name, &pre[i].state);
	}
	free(pre_tids);

	td_timing_mark("threads and maps");
	if (first && opts && opts->before_stop && (err = opts->before_stop(snap, opts->while_stopped_arg)))
		goto out;
	/* Stack buffers, touched now so the copy during the stop does not fault. */
	size_t arena = npre * TD_STACK_ARENA_PER_THREAD + TD_STACK_ARENA_PER_THREAD;
	if (arena > TD_STACK_ARENA_MAX)
		arena = TD_STACK_ARENA_MAX;
	if (arena > snap->stack_arena_size) {
		free(snap->stack_arena);
		snap->stack_arena = malloc(arena);
		snap->stack_arena_size = snap->stack_arena ? arena : 0;
		if (snap->stack_arena)
			memset(snap->stack_arena, 0, arena);
	}
	drop_threads(snap);
	/* The stop: as short as we can make it. */
	uint64_t t0 = td_now_ns();
	if ((err = td_live_stop(pid, &live)))
		goto out;
	if ((err = alloc_threads(snap, live->count)))
		goto out;
	for (size_t i = 0; i < live->count; i++) {
		struct td_snapshot_thread *t = &snap->threads[i];
		t->tid = live->threads[i].tid;
		t->syscall = -1;
		t->stopped = live->threads[i].stopped;
		if (!t->stopped)
			continue;  /* uninterruptible: it would not stop; nothing to read */
		if ((err = td_live_get_regs(live, i, &t->regs)))
			goto out;
		t->syscall = td_syscall_blocked_in(&t->regs);
	}
	copy_stacks(snap, maps, nmaps, opts && opts->stack_max ? opts->stack_max : TD_STACK_COPY_MAX);
	if (opts && opts->while_stopped && (err = opts->while_stopped(snap, opts->while_stopped_arg)))
		goto out;
	if (opts && opts->pause_stopped_ms)
		usleep(opts->pause_stopped_ms * 1000u);
	td_live_detach(live);
	snap->stopped_ns = td_now_ns() - t0;
	td_live_destroy(live);
	live = NULL;

	td_timing_mark("stop, copy, detach");
	/* Threads born during the attach get their name and state now. */
	for (size_t i = 0; i < snap->nthreads; i++) {
		struct td_snapshot_thread *t = &snap->threads[i];
		const struct td_snapshot_thread *p = NULL;
		for (size_t j = 0; j < npre && !p; j++)
			if (pre[j].tid == t->tid && pre[j].has_name)
				p = &pre[j];
		if (p) {
			memcpy(t->name, p->name, sizeof(t->name));
			t->state = p->state;
			t->has_name = true;
		} else {
			t->has_name = td_proc_thread_info(pid, t->tid, t->name, &t->state);
		}
	}
out:
	td_live_destroy(live);  /* resumes the target if still stopped (error paths) */
	free(pre);
	free(maps);
	return err;
}

struct td_error *td_snapshot_take_live(pid_t pid, const struct td_snapshot_options *opts,
				       struct td_snapshot **ret)
{
	struct td_error *err;
	struct td_proc_status status;
	if ((err = td_proc_check(pid, &status)))
		return err;

	struct td_snapshot *snap = snapshot_new(TD_SNAPSHOT_LIVE);
	if (!snap)
		return &td_enomem;
	snap->pid = pid;
	snap->comm = strdup(status.name);

	/* Everything that can be done without stopping the process comes first. */
	pid_t proc_tid = td_proc_live_thread(pid);  /* the leader, unless it exited */
	if (!proc_tid)
		proc_tid = pid;
	snap->mem_pid = proc_tid;
	if ((err = td_proc_exe(pid, proc_tid, &status, &snap->exe)))
		goto fail;
	td_timing_mark("proc checks");
	if ((err = td_modules_report_live(proc_tid, &snap->dwfl)))
		goto fail;
	td_timing_mark("report modules");
	char what[64];
	snprintf(what, sizeof(what), "process %d", (int)pid);
	if ((err = td_modules_check_exe(snap->dwfl, td_proc_entry_point(proc_tid), what, NULL,
					&snap->exe_module)))
		goto fail;
	td_timing_mark("check executable");
	snap->tls_block_size = td_modules_tls_block_size(snap->exe_module);
	if ((err = stop_and_copy(snap, opts, true)))
		goto fail;
	*ret = snap;
	return NULL;

fail:
	td_snapshot_destroy(snap);
	return err;
}

struct td_error *td_snapshot_retake(struct td_snapshot *snap, const struct td_snapshot_options *opts)
{
	if (snap->kind != TD_SNAPSHOT_LIVE)
		return td_error_format(TD_ERR_INTERNAL, "a core file is one snapshot; it cannot be retaken");
	if (kill(snap->pid, 0) != 0 && errno == ESRCH)
		return td_error_format(TD_ERR_TARGET, "process %d exited", (int)snap->pid);
	pid_t tid = td_proc_live_thread(snap->pid);
	if (tid)
		snap->mem_pid = tid;
	return stop_and_copy(snap, opts, false);
}

struct td_error *td_snapshot_open_core(const char *path, const struct td_snapshot_options *opts,
				       struct td_snapshot **ret)
{
	struct td_error *err;
	struct td_snapshot *snap = snapshot_new(TD_SNAPSHOT_CORE);
	if (!snap)
		return &td_enomem;
	if ((err = td_core_open_max(path, opts ? opts->core_max : 0,
				    opts ? opts->core_progress : NULL, &snap->core)))
		goto fail;
	struct td_core *core = snap->core;
	snap->pid = core->pid;
	snap->core_path = strdup(path);
	snap->comm = strdup(core->fname);
	if ((err = td_modules_report_core(core, opts ? opts->exe : NULL, &snap->dwfl)))
		goto fail;
	char what[4200 + 16];
	snprintf(what, sizeof(what), "core file %s", path);
	Dwfl_Module *exe_mod;
	if ((err = td_modules_check_exe(snap->dwfl, core->entry, what, opts ? opts->exe : NULL, &exe_mod)))
		goto fail;
	snap->exe = strdup(td_module_path(exe_mod));
	snap->exe_module = exe_mod;

	if ((err = alloc_threads(snap, core->nthreads)))
		goto fail;
	for (size_t i = 0; i < core->nthreads; i++) {
		struct td_snapshot_thread *t = &snap->threads[i];
		t->tid = core->threads[i].tid;
		t->stopped = true;
		t->regs = core->threads[i].regs;
		t->syscall = td_syscall_blocked_in(&t->regs);
		/* A core records only the process's name (that of its main thread). */
		if (t->tid == core->pid && core->fname[0]) {
			/* pr_fname holds the kernel's comm: at most 15 bytes. */
			size_t len = strnlen(core->fname, sizeof(t->name) - 1);
			memcpy(t->name, core->fname, len);
			t->name[len] = '\0';
			t->has_name = true;
		}
	}
	if (opts && opts->before_stop && (err = opts->before_stop(snap, opts->while_stopped_arg)))
		goto fail;
	if (opts && opts->while_stopped && (err = opts->while_stopped(snap, opts->while_stopped_arg)))
		goto fail;
	*ret = snap;
	return NULL;
fail:
	td_snapshot_destroy(snap);
	return err;
}

/* Copies from one range copied during the stop, if addr is in it. */
static bool read_copy(uint64_t base, size_t size, const unsigned char *copy, uint64_t addr,
		      void *buf, size_t len, size_t *done)
{
	if (!copy || addr < base || addr - base >= size)
		return false;
	size_t off = (size_t)(addr - base);
	*done = size - off < len ? size - off : len;
	memcpy(buf, copy + off, *done);
	return true;
}

/* Copies the part of a copied range that falls inside [addr, addr + len) into buf. */
static void overlay(uint64_t base, size_t size, const unsigned char *copy, uint64_t addr, void *buf, size_t len)
{
	if (!copy || !size)
		return;
	uint64_t lo = base > addr ? base : addr;
	uint64_t hi = base + size < addr + len ? base + size : addr + len;
	if (lo < hi)
		memcpy((unsigned char *)buf + (lo - addr), copy + (lo - base), (size_t)(hi - lo));
}

size_t td_snapshot_read(struct td_snapshot *snap, uint64_t addr, void *buf, size_t len)
{
	if (addr >= TD_SCRATCH_BASE) {
		size_t n;
		return read_copy(TD_SCRATCH_BASE, snap->scratch_len, snap->scratch, addr, buf, len, &n) ? n : 0;
	}
	for (size_t i = 0; i < snap->nthreads; i++) {
		struct td_snapshot_thread *t = &snap->threads[i];
		size_t n;
		if (read_copy(t->tls_addr, t->tls_len, t->tls, addr, buf, len, &n) ||
		    read_copy(t->stack_addr, t->stack_len, t->stack, addr, buf, len, &n)) {
			if (n == len)
				return n;
			return n + td_snapshot_read(snap, addr + n, (char *)buf + n, len - n);
		}
	}
	if (snap->kind == TD_SNAPSHOT_CORE)
		return td_core_read(snap->core, addr, buf, len);
	/* Not copied during the stop: read it now from the running process. */
	size_t got = td_live_read(snap->mem_pid, addr, buf, len);
	/*
	 * A read that starts before a copied range (a page-cache fill of the
	 * page a thread's TLS block starts in) still takes what the stop
	 * copied: the live bytes there have changed since.
	 */
	for (size_t i = 0; got && i < snap->nthreads; i++) {
		struct td_snapshot_thread *t = &snap->threads[i];
		overlay(t->tls_addr, t->tls_len, t->tls, addr, buf, got);
		overlay(t->stack_addr, t->stack_len, t->stack, addr, buf, got);
	}
	return got;
}

void td_snapshot_destroy(struct td_snapshot *snap)
{
	if (!snap)
		return;
	drop_threads(snap);
	free(snap->stack_arena);
	free(snap->scratch);
	if (snap->dwfl)
		dwfl_end(snap->dwfl);
	td_core_destroy(snap->core);
	free(snap->exe);
	free(snap->core_path);
	free(snap->comm);
	free(snap);
}
