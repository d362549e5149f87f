#include "target/dump.h"

#include <elf.h>
#include <errno.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/procfs.h>
#include <sys/stat.h>
#include <sys/user.h>
#include <unistd.h>

#include "target/live.h"
#include "target/procfs.h"
#include "util/clock.h"

#if defined(__x86_64__)

/*
 * Up to this much memory is copied into one buffer (faulted in before the
 * stop) and written after it: the target waits for one copy, not for the
 * file. Bigger dumps go through a chunk buffer and are written while stopped.
 */
#define TD_DUMP_BUFFER_MAX (1ull << 30)
#define TD_DUMP_CHUNK (8u << 20)
/* The kernel's xsave area is under 12 KiB even with AMX. */
#define TD_DUMP_XSTATE_MAX (64u * 1024)
/* /proc/PID/auxv is a few hundred bytes; cmdline only fills psargs. */
#define TD_DUMP_AUXV_MAX (64u * 1024)
#define TD_DUMP_CMDLINE_MAX 4096u

struct dump_segment {
	uint64_t lo, hi;
	uint64_t filesz;    /* contents dumped: the whole mapping, its ELF header page, or 0 */
	uint64_t offset;    /* of the contents in the core */
	uint64_t copy_at;   /* of the contents in the copy buffer */
	uint32_t flags;     /* PF_R | PF_W | PF_X */
};

struct dump_thread {
	pid_t tid;
	int signal;   /* caught in signal-delivery-stop: the kernel's pr_cursig */
	struct user_regs_struct regs;
	struct user_fpregs_struct fpregs;
	bool has_fpregs;
	void *xstate;
	size_t xstate_len;
};

/* A growing buffer of ELF notes. */
struct notes {
	unsigned char *buf;
	size_t len, cap;
	bool failed;   /* an allocation failed: reported once, at the end */
};

struct dump {
	pid_t pid, mem_pid;    /* mem_pid: a live thread, for /proc and memory (td_proc_live_thread) */
	struct td_proc_status status;
	const char *path;
	int fd;
	size_t page;
	struct td_mapping *maps;
	struct td_mapping_detail *details;
	size_t nmaps;
	struct dump_segment *segs;
	size_t nsegs;
	uint64_t headers_len;  /* ELF header, program headers, extended-count section header */
	uint64_t data_end;     /* the end of the contents: the notes go there */
	uint64_t copy_size;    /* sum of the segments' filesz */
	unsigned char *copy;   /* copy_size bytes; TD_DUMP_CHUNK when chunked */
	size_t copy_len;
	bool chunked;
	unsigned char *xstate_scratch;
	struct notes process_notes;   /* NT_PRPSINFO, NT_AUXV, NT_FILE: made before the stop */
	struct dump_thread *threads;
	size_t nthreads;
};

static bool note_add(struct notes *n, const char *name, uint32_t type, const void *desc, size_t size)
{
	size_t namesz = strlen(name) + 1;
	size_t need = 12 + ((namesz + 3) & ~(size_t)3) + ((size + 3) & ~(size_t)3);
	if (n->failed)
		return false;
	if (n->len + need > n->cap) {
		size_t cap = n->cap ? n->cap : 4096;
		while (cap < n->len + need)
			cap *= 2;
		unsigned char *grown = realloc(n->buf, cap);
		if (!grown) {
			n->failed = true;
			return false;
		}
		n->buf = grown;
		n->cap = cap;
	}
	unsigned char *p = n->buf + n->len;
	memset(p, 0, need);
	uint32_t header[3] = { (uint32_t)namesz, (uint32_t)size, type };
	memcpy(p, header, sizeof(header));
	memcpy(p + 12, name, namesz);
	if (size)
		memcpy(p + 12 + ((namesz + 3) & ~(size_t)3), desc, size);
	n->len += need;
	return true;
}

static bool has_prefix(const char *s, const char *prefix)
{
	return s && !strncmp(s, prefix, strlen(prefix));
}

/* A file the mapping came from that is still there to read later. */
static bool on_disk(const char *path)
{
	size_t len = path ? strlen(path) : 0;
	return len && path[0] == '/' && (len < 10 || strcmp(path + len - 10, " (deleted)") != 0);
}

/*
 * What the kernel's default coredump_filter keeps: anonymous memory (heap,
 * stacks, [vdso]), everything writable, and private copies of file pages
 * (relocated RELRO data, patched text), whose file no longer says what is in
 * memory. Read-only pages of a file on disk are left out (the core names the
 * file in NT_FILE and readers take them from there), except the first page of
 * a mapped ELF file, which carries its build-id. [vvar] (kernel data that
 * cannot be read) and [vsyscall] are not in the core at all.
 */
static struct td_error *plan_segments(struct dump *d)
{
	d->segs = calloc(d->nmaps ? d->nmaps : 1, sizeof(*d->segs));
	if (!d->segs)
		return &td_enomem;
	for (size_t i = 0; i < d->nmaps; i++) {
		const struct td_mapping *m = &d->maps[i];
		const char *path = d->details[i].path;
		if (has_prefix(path, "[vvar") || has_prefix(path, "[vsyscall]"))
			continue;
		struct dump_segment *s = &d->segs[d->nsegs++];
		s->lo = m->lo;
		s->hi = m->hi;
		s->flags = (m->readable ? PF_R : 0) | (m->writable ? PF_W : 0) | (m->executable ? PF_X : 0);
		if (!m->readable)
			continue;  /* guard pages, reserved address space: nothing to read */
		if (!on_disk(path) || m->writable || d->details[i].anonymous) {
			s->filesz = m->hi - m->lo;
		} else if (m->offset == 0) {
			/* Text does not change: its first bytes can be read before the stop. */
			unsigned char magic[SELFMAG];
			if (td_live_read(d->mem_pid, m->lo, magic, SELFMAG) == SELFMAG &&
			    !memcmp(magic, ELFMAG, SELFMAG))
				s->filesz = d->page < m->hi - m->lo ? d->page : m->hi - m->lo;
		}
	}
	return NULL;
}

/* Offsets in the core: headers, then each segment's contents page-aligned, then the notes. */
static void lay_out(struct dump *d)
{
	uint64_t phnum = d->nsegs + 1;
	d->headers_len = sizeof(Elf64_Ehdr) + phnum * sizeof(Elf64_Phdr) +
		(phnum >= PN_XNUM ? sizeof(Elf64_Shdr) : 0);
	uint64_t off = (d->headers_len + d->page - 1) / d->page * d->page;
	for (size_t i = 0; i < d->nsegs; i++) {
		struct dump_segment *s = &d->segs[i];
		s->offset = off;
		s->copy_at = d->copy_size;
		off += s->filesz;
		d->copy_size += s->filesz;
	}
	d->data_end = off;
}

/* NT_PRPSINFO, NT_AUXV and NT_FILE: nothing in them changes while the target runs. */
static struct td_error *process_notes(struct dump *d)
{
	struct td_error *err;
	char *auxv = NULL, *cmdline = NULL;
	size_t auxv_len = 0, cmdline_len = 0;
	if ((err = td_proc_read_file(d->mem_pid, "auxv", TD_DUMP_AUXV_MAX, &auxv, &auxv_len)))
		return err;
	/* A process may have emptied its own cmdline: not a reason to fail. */
	td_error_destroy(td_proc_read_file(d->mem_pid, "cmdline", TD_DUMP_CMDLINE_MAX, &cmdline, &cmdline_len));

	struct elf_prpsinfo ps;
	memset(&ps, 0, sizeof(ps));
	const char *states = "RSDTZW";
	const char *at = d->status.state ? strchr(states, d->status.state) : NULL;
	ps.pr_state = at ? (char)(at - states) : 0;
	ps.pr_sname = d->status.state ? d->status.state : 'R';
	ps.pr_zomb = d->status.state == 'Z';
	ps.pr_uid = d->status.uid;
	ps.pr_gid = d->status.gid;
	ps.pr_pid = d->pid;
	ps.pr_ppid = d->status.ppid;
	ps.pr_pgrp = d->status.pgrp;
	ps.pr_sid = d->status.sid;
	memcpy(ps.pr_fname, d->status.name, sizeof(ps.pr_fname) < sizeof(d->status.name)
	       ? sizeof(ps.pr_fname) : sizeof(d->status.name));
	/* The arguments as one line, as the kernel writes them (NULs become spaces). */
	size_t n = cmdline_len < sizeof(ps.pr_psargs) - 1 ? cmdline_len : sizeof(ps.pr_psargs) - 1;
	for (size_t i = 0; i < n; i++)
		ps.pr_psargs[i] = cmdline[i] ? cmdline[i] : ' ';
	while (n > 0 && ps.pr_psargs[n - 1] == ' ')
		ps.pr_psargs[--n] = '\0';
	free(cmdline);

	note_add(&d->process_notes, "CORE", NT_PRPSINFO, &ps, sizeof(ps));
	note_add(&d->process_notes, "CORE", NT_AUXV, auxv, auxv_len);
	free(auxv);

	/* NT_FILE: count, page size, {start, end, offset in pages} each, then the paths. */
	size_t nfiles = 0, names_len = 0;
	for (size_t i = 0; i < d->nmaps; i++) {
		if (d->details[i].path && d->details[i].path[0] == '/') {
			nfiles++;
			names_len += strlen(d->details[i].path) + 1;
		}
	}
	size_t size = 16 + nfiles * 24 + names_len;
	unsigned char *desc = malloc(size);
	if (!desc)
		return &td_enomem;
	uint64_t head[2] = { nfiles, d->page };
	memcpy(desc, head, sizeof(head));
	unsigned char *entry = desc + 16;
	char *name = (char *)desc + 16 + nfiles * 24;
	for (size_t i = 0; i < d->nmaps; i++) {
		const char *path = d->details[i].path;
		if (!path || path[0] != '/')
			continue;
		uint64_t e[3] = { d->maps[i].lo, d->maps[i].hi, d->maps[i].offset / d->page };
		memcpy(entry, e, sizeof(e));
		entry += sizeof(e);
		size_t len = strlen(path) + 1;
		memcpy(name, path, len);
		name += len;
	}
	note_add(&d->process_notes, "CORE", NT_FILE, desc, size);
	free(desc);
	return d->process_notes.failed ? &td_enomem : NULL;
}

/*
 * Copies len bytes of target memory at addr into dst. A page that cannot be
 * read (a file mapping past the file's end, device memory) stays zero and the
 * copy goes on after it. Returns the bytes that could not be read.
 */
static size_t copy_memory(const struct dump *d, uint64_t addr, unsigned char *dst, size_t len)
{
	size_t done = 0, missed = 0;
	while (done < len) {
		size_t n = td_live_read(d->mem_pid, addr + done, dst + done, len - done);
		done += n;
		if (done == len)
			break;
		/* Skip to the next page: every round moves on by at least one. */
		size_t skip = d->page - (size_t)((addr + done) % d->page);
		if (skip > len - done)
			skip = len - done;
		memset(dst + done, 0, skip);
		done += skip;
		missed += skip;
	}
	return missed;
}

static struct td_error *write_at(const struct dump *d, const void *buf, size_t len, uint64_t offset)
{
	const unsigned char *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(d->fd, p, len, (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return td_error_format(TD_ERR_TARGET, "cannot write %s: %s%s", d->path,
					       n < 0 ? strerror(errno) : "short write",
					       n < 0 && errno == ENOSPC
					       ? "\nThe disk is full: give a FILE on a disk with room for the core." : "");
		p += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return NULL;
}

static bool page_is_zero(const unsigned char *p, size_t len)
{
	uint64_t acc = 0;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		acc |= w;
	}
	for (; i < len; i++)
		acc |= p[i];
	return acc == 0;
}

/*
 * Writes the runs of pages that are not all zero: untouched stacks and heap
 * become holes in a sparse file, as in the kernel's cores.
 */
static struct td_error *write_sparse(const struct dump *d, const unsigned char *buf, size_t len,
				     uint64_t offset)
{
	size_t i = 0;
	while (i < len) {
		size_t step = d->page < len - i ? d->page : len - i;
		if (page_is_zero(buf + i, step)) {
			i += step;
			continue;
		}
		size_t start = i;
		while (i < len) {
			step = d->page < len - i ? d->page : len - i;
			if (page_is_zero(buf + i, step))
				break;
			i += step;
		}
		struct td_error *err = write_at(d, buf + start, i - start, offset + start);
		if (err)
			return err;
	}
	return NULL;
}

/* Memory that is faulted in now, so that copying into it does not fault while the target waits. */
static void *alloc_touched(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static struct td_error *alloc_buffers(struct dump *d)
{
	d->xstate_scratch = malloc(TD_DUMP_XSTATE_MAX);
	if (!d->xstate_scratch)
		return &td_enomem;
	memset(d->xstate_scratch, 0, TD_DUMP_XSTATE_MAX);
	if (d->copy_size == 0)
		return NULL;
	if (d->copy_size <= TD_DUMP_BUFFER_MAX && (d->copy = alloc_touched(d->copy_size))) {
		d->copy_len = d->copy_size;
		return NULL;
	}
	d->chunked = true;
	d->copy_len = TD_DUMP_CHUNK;
	d->copy = alloc_touched(d->copy_len);
	return d->copy ? NULL : &td_enomem;
}

/*
 * The XSAVE area cut down to the state components up to PKRU (x87, SSE, AVX,
 * MPX, AVX-512, PKRU: those gdb and gcore know). Later ones (AMX tiles: 8 KiB
 * more) make gdb reject the note as of an unexpected size, losing the AVX
 * registers with them; the header's masks (XCR0 in the bytes the kernel
 * reserves for software at 464, XSTATE_BV at 512) are cut to match.
 */
#define TD_XSAVE_XCR0_AT 464
#define TD_XSAVE_BV_AT 512
#define TD_XSAVE_LEGACY_END 576   /* x87/SSE area and XSAVE header */
#define TD_XSAVE_LAST_KNOWN 9     /* PKRU */

static size_t xstate_known_len(unsigned char *xs, size_t len)
{
	if (len < TD_XSAVE_LEGACY_END)
		return len;
	uint64_t xcr0, bv, keep = (2ull << TD_XSAVE_LAST_KNOWN) - 1;
	memcpy(&xcr0, xs + TD_XSAVE_XCR0_AT, 8);
	memcpy(&bv, xs + TD_XSAVE_BV_AT, 8);
	size_t end = TD_XSAVE_LEGACY_END;
	for (unsigned i = 2; i <= TD_XSAVE_LAST_KNOWN; i++) {
		unsigned size, offset, ecx, edx;
		if (!(xcr0 & (1ull << i)) || !__get_cpuid_count(0xd, i, &size, &offset, &ecx, &edx))
			continue;
		/* Supervisor components (ecx bit 0) have no place in the user format. */
		if (!(ecx & 1) && offset + size > end && offset + size <= len)
			end = offset + size;
	}
	xcr0 &= keep;
	bv &= keep;
	memcpy(xs + TD_XSAVE_XCR0_AT, &xcr0, 8);
	memcpy(xs + TD_XSAVE_BV_AT, &bv, 8);
	return end;
}

/* Registers of every stopped thread, the process's main thread first (readers take it for the process). */
static struct td_error *copy_threads(struct dump *d, struct td_live *live)
{
	d->threads = calloc(live->count ? live->count : 1, sizeof(*d->threads));
	if (!d->threads)
		return &td_enomem;
	size_t leader = 0;
	while (leader < live->count && live->threads[leader].tid != d->pid)
		leader++;
	for (size_t k = 0; k < live->count; k++) {
		/* k = 0 takes the leader (if it is there); the others follow in their order. */
		size_t i = leader == live->count ? k : k == 0 ? leader : k <= leader ? k - 1 : k;
		const struct td_live_thread *lt = &live->threads[i];
		if (!lt->stopped)
			continue;  /* uninterruptible: it did not stop, its registers cannot be read */
		struct dump_thread *t = &d->threads[d->nthreads];
		t->tid = lt->tid;
		t->signal = lt->pending_signal;
		struct td_error *err = td_live_get_regs(live, i, &t->regs);
		if (err)
			return err;
		/* The floating-point and vector state are a nicety: a thread without them is still there. */
		size_t len = sizeof(t->fpregs);
		struct td_error *fp = td_live_get_regset(live, i, NT_PRFPREG, &t->fpregs, &len);
		t->has_fpregs = !fp && len == sizeof(t->fpregs);
		td_error_destroy(fp);
		len = TD_DUMP_XSTATE_MAX;
		struct td_error *xs = td_live_get_regset(live, i, NT_X86_XSTATE, d->xstate_scratch, &len);
		if (!xs)
			len = xstate_known_len(d->xstate_scratch, len);
		if (!xs && len > 0 && (t->xstate = malloc(len))) {
			memcpy(t->xstate, d->xstate_scratch, len);
			t->xstate_len = len;
		}
		td_error_destroy(xs);
		d->nthreads++;
	}
	return NULL;
}

/* While stopped, chunked: each chunk copied then written. */
static struct td_error *copy_chunked(struct dump *d)
{
	for (size_t i = 0; i < d->nsegs; i++) {
		const struct dump_segment *s = &d->segs[i];
		for (uint64_t done = 0; done < s->filesz; ) {
			size_t n = s->filesz - done < d->copy_len ? (size_t)(s->filesz - done) : d->copy_len;
			copy_memory(d, s->lo + done, d->copy, n);
			struct td_error *err = write_sparse(d, d->copy, n, s->offset + done);
			if (err)
				return err;
			done += n;
		}
	}
	return NULL;
}

/* The stop: registers and memory copied, then the target runs on, on every path. */
static struct td_error *stop_and_copy(struct dump *d, uint64_t *stopped_ns)
{
	struct td_live *live = NULL;
	uint64_t t0 = td_now_ns();
	struct td_error *err = td_live_stop(d->pid, &live);
	if (!err)
		err = copy_threads(d, live);
	if (!err && d->nthreads == 0)
		err = td_error_format(TD_ERR_TARGET,
			"no thread of process %d stopped (all in uninterruptible sleep): nothing was dumped\n"
			"Try again when it is not blocked in the kernel (disk, NFS, FUSE).", (int)d->pid);
	if (!err && !d->chunked) {
		for (size_t i = 0; i < d->nsegs; i++)
			if (d->segs[i].filesz)
				copy_memory(d, d->segs[i].lo, d->copy + d->segs[i].copy_at, d->segs[i].filesz);
	} else if (!err) {
		err = copy_chunked(d);
	}
	td_live_destroy(live);
	*stopped_ns = td_now_ns() - t0;
	return err;
}

static bool thread_notes(struct notes *n, const struct dump *d, const struct dump_thread *t)
{
	struct elf_prstatus st;
	memset(&st, 0, sizeof(st));
	st.pr_info.si_signo = t->signal;
	st.pr_cursig = (short)t->signal;
	st.pr_pid = t->tid;
	st.pr_ppid = d->status.ppid;
	st.pr_pgrp = d->status.pgrp;
	st.pr_sid = d->status.sid;
	_Static_assert(sizeof(st.pr_reg) == sizeof(t->regs), "elf_gregset_t is user_regs_struct");
	memcpy(&st.pr_reg, &t->regs, sizeof(st.pr_reg));
	st.pr_fpvalid = t->has_fpregs;
	return note_add(n, "CORE", NT_PRSTATUS, &st, sizeof(st));
}

static bool thread_fp_notes(struct notes *n, const struct dump_thread *t)
{
	if (t->has_fpregs && !note_add(n, "CORE", NT_PRFPREG, &t->fpregs, sizeof(t->fpregs)))
		return false;
	return !t->xstate_len || note_add(n, "LINUX", NT_X86_XSTATE, t->xstate, t->xstate_len);
}

static bool notes_append(struct notes *n, const struct notes *more)
{
	if (n->failed)
		return false;
	if (n->len + more->len > n->cap) {
		unsigned char *grown = realloc(n->buf, n->len + more->len);
		if (!grown) {
			n->failed = true;
			return false;
		}
		n->buf = grown;
		n->cap = n->len + more->len;
	}
	memcpy(n->buf + n->len, more->buf, more->len);
	n->len += more->len;
	return true;
}

/*
 * The notes in the kernel's order: readers (gdb) tie NT_PRFPREG to the
 * NT_PRSTATUS before it. The first thread's status, the process's notes,
 * the first thread's FP state, then each other thread's status and FP state.
 */
static struct td_error *build_notes(const struct dump *d, struct notes *n)
{
	for (size_t i = 0; i < d->nthreads; i++) {
		thread_notes(n, d, &d->threads[i]);
		if (i == 0)
			notes_append(n, &d->process_notes);
		thread_fp_notes(n, &d->threads[i]);
	}
	return n->failed ? &td_enomem : NULL;
}

static struct td_error *write_headers(const struct dump *d, uint64_t notes_offset, size_t notes_len)
{
	size_t phnum = d->nsegs + 1;
	unsigned char *buf = calloc(1, d->headers_len);
	if (!buf)
		return &td_enomem;
	Elf64_Ehdr eh;
	memset(&eh, 0, sizeof(eh));
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_ident[EI_OSABI] = ELFOSABI_NONE;
	eh.e_type = ET_CORE;
	eh.e_machine = EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_phoff = sizeof(Elf64_Ehdr);
	eh.e_ehsize = sizeof(Elf64_Ehdr);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	if (phnum >= PN_XNUM) {
		/* Too many for e_phnum: the count goes in section header 0's sh_info. */
		eh.e_phnum = PN_XNUM;
		eh.e_shoff = sizeof(Elf64_Ehdr) + phnum * sizeof(Elf64_Phdr);
		eh.e_shentsize = sizeof(Elf64_Shdr);
		eh.e_shnum = 1;
		Elf64_Shdr sh;
		memset(&sh, 0, sizeof(sh));
		sh.sh_info = (Elf64_Word)phnum;
		memcpy(buf + eh.e_shoff, &sh, sizeof(sh));
	} else {
		eh.e_phnum = (Elf64_Half)phnum;
	}
	memcpy(buf, &eh, sizeof(eh));
	Elf64_Phdr ph = {
		.p_type = PT_NOTE, .p_offset = notes_offset, .p_filesz = notes_len, .p_align = 4 };
	memcpy(buf + sizeof(eh), &ph, sizeof(ph));
	for (size_t i = 0; i < d->nsegs; i++) {
		const struct dump_segment *s = &d->segs[i];
		ph = (Elf64_Phdr){
			.p_type = PT_LOAD, .p_flags = s->flags, .p_offset = s->offset,
			.p_vaddr = s->lo, .p_filesz = s->filesz, .p_memsz = s->hi - s->lo,
			.p_align = d->page };
		memcpy(buf + sizeof(eh) + (i + 1) * sizeof(ph), &ph, sizeof(ph));
	}
	struct td_error *err = write_at(d, buf, d->headers_len, 0);
	free(buf);
	return err;
}

/* After the stop: contents (unless written during it), notes at the end, headers. */
static struct td_error *finish_file(struct dump *d, uint64_t *size_ret)
{
	struct td_error *err = NULL;
	if (!d->chunked) {
		for (size_t i = 0; i < d->nsegs && !err; i++)
			if (d->segs[i].filesz)
				err = write_sparse(d, d->copy + d->segs[i].copy_at, d->segs[i].filesz,
						   d->segs[i].offset);
	}
	if (err)
		return err;
	struct notes n = {0};
	if (!(err = build_notes(d, &n)))
		err = write_at(d, n.buf, n.len, d->data_end);
	if (!err)
		err = write_headers(d, d->data_end, n.len);
	*size_ret = d->data_end + n.len;
	free(n.buf);
	/* Trailing holes (zero pages at the end) need the size set. */
	if (!err && ftruncate(d->fd, (off_t)*size_ret) < 0)
		err = td_error_format(TD_ERR_TARGET, "cannot write %s: %s", d->path, strerror(errno));
	return err;
}

static struct td_error *create_file(struct dump *d)
{
	/* Never blocks on a FIFO; a core is truncated only once it is known to be a regular file. */
	d->fd = open(d->path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0600);
	if (d->fd < 0 && errno == ENXIO)  /* a FIFO nobody reads, a socket */
		return td_error_format(TD_ERR_TARGET, "%s is not a regular file\n"
				       "Give the path of a new file (or of an old core to replace).", d->path);
	if (d->fd < 0)
		return td_error_format(TD_ERR_TARGET, "cannot create %s: %s\n"
				       "Give a FILE in a directory that exists and that you can write to.",
				       d->path, strerror(errno));
	struct stat st;
	if (fstat(d->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(d->fd);
		d->fd = -1;
		return td_error_format(TD_ERR_TARGET, "%s is not a regular file\n"
				       "Give the path of a new file (or of an old core to replace).", d->path);
	}
	if (ftruncate(d->fd, 0) < 0)
		return td_error_format(TD_ERR_TARGET, "cannot truncate %s: %s", d->path, strerror(errno));
	return NULL;
}

static void dump_free(struct dump *d)
{
	if (d->copy)
		munmap(d->copy, d->copy_len);
	free(d->xstate_scratch);
	for (size_t i = 0; i < d->nthreads; i++)
		free(d->threads[i].xstate);
	free(d->threads);
	free(d->process_notes.buf);
	free(d->segs);
	td_mapping_details_free(d->details, d->nmaps);
	free(d->maps);
	if (d->fd >= 0)
		close(d->fd);
}

struct td_error *td_dump_core(pid_t pid, const char *path, struct td_dump_stats *stats)
{
	uint64_t start = td_now_ns();
	struct dump d = { .pid = pid, .path = path, .fd = -1, .page = (size_t)sysconf(_SC_PAGESIZE) };
	struct td_error *err;
	/* Before the stop: whatever can fail, and whatever takes time. */
	if ((err = td_proc_check(pid, &d.status)))
		return err;
	d.mem_pid = td_proc_live_thread(pid);
	if (!d.mem_pid)
		d.mem_pid = pid;
	char *exe = NULL;
	bool made = false;
	if ((err = td_proc_exe(pid, d.mem_pid, &d.status, &exe)))
		return err;
	free(exe);
	if ((err = create_file(&d)))
		goto fail;
	made = true;
	if ((err = td_proc_read_maps_detailed(d.mem_pid, &d.maps, &d.details, &d.nmaps)) ||
	    (err = plan_segments(&d)) || (err = process_notes(&d)))
		goto fail;
	lay_out(&d);
	if ((err = alloc_buffers(&d)))
		goto fail;

	uint64_t stopped_ns = 0, size = 0;
	if ((err = stop_and_copy(&d, &stopped_ns)))
		goto fail;
	if ((err = finish_file(&d, &size)))
		goto fail;
	if (close(d.fd) < 0) {
		d.fd = -1;
		err = td_error_format(TD_ERR_TARGET, "cannot write %s: %s", path, strerror(errno));
		goto fail;
	}
	d.fd = -1;
	if (stats) {
		*stats = (struct td_dump_stats){
			.stopped_ns = stopped_ns, .bytes = size, .threads = d.nthreads };
		for (size_t i = 0; i < d.nsegs; i++) {
			if (d.segs[i].filesz)
				stats->segments_written++;
			else
				stats->segments_skipped++;
		}
	}
	dump_free(&d);
	if (stats)
		stats->wall_ns = td_now_ns() - start;
	return NULL;

fail:
	/* Half a core is worse than none: readers would take it for a whole one. */
	if (made)
		unlink(path);
	dump_free(&d);
	return err;
}

#else

struct td_error *td_dump_core(pid_t pid, const char *path, struct td_dump_stats *stats)
{
	return td_error_format(TD_ERR_TARGET,
		"taskdbg dump writes x86_64 cores only; on this machine use `gcore %d`", (int)pid);
}

#endif
