/*
 * What taskdbg does with an open core before it needs the executable: the
 * thread list (tids, signals, registers), reads of memory around each
 * thread's registers and at every segment's edges, the NT_FILE mapping of
 * those addresses, and reads at addresses the input itself chooses. Shared
 * by every target whose input ends as a core (plain, compressed).
 */
#ifndef TD_FUZZ_CORE_WALK_H
#define TD_FUZZ_CORE_WALK_H

#include <stdint.h>
#include <string.h>

#include "target/core.h"

/* Reads len (at most 256) bytes at addr and checks the answer is in bounds. */
static inline void td_fuzz_core_probe(struct td_core *core, uint64_t addr, size_t len)
{
	unsigned char buf[256];
	if (len > sizeof(buf))
		len = sizeof(buf);
	size_t n = td_core_read(core, addr, buf, len);
	if (n > len)
		__builtin_trap();
	const struct td_core_file *f = td_core_file_at(core, addr);
	if (f && !(addr >= f->start && addr < f->end))
		__builtin_trap();
	/* Use the bytes, so a read of uninitialised memory would show. */
	volatile unsigned sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += buf[i];
	(void)sum;
}

static inline void td_fuzz_core_walk(struct td_core *core, const uint8_t *data, size_t size)
{
	/* The thread list, as `bt`'s header and `tasks` print it. */
	volatile uint64_t acc = (uint64_t)core->pid + core->entry + strlen(core->fname) + strlen(core->psargs);
	for (size_t i = 0; i < core->nthreads && i < 64; i++) {
		const struct td_core_thread *t = &core->threads[i];
		acc += (uint64_t)t->tid + (uint64_t)t->cursig;
		td_fuzz_core_probe(core, t->regs.rsp, 256);
		td_fuzz_core_probe(core, t->regs.rip, 16);
		td_fuzz_core_probe(core, t->regs.fs_base - 64, 128);
	}
	for (size_t i = 0; i < core->nsegments && i < 64; i++) {
		const struct td_core_segment *s = &core->segments[i];
		td_fuzz_core_probe(core, s->vaddr, 64);
		td_fuzz_core_probe(core, s->vaddr + s->filesz - 8, 64);
		td_fuzz_core_probe(core, s->vaddr + s->memsz - 8, 64);
	}
	for (size_t i = 0; i < core->nfiles && i < 64; i++) {
		acc += strlen(core->files[i].path);
		td_fuzz_core_probe(core, core->files[i].start, 32);
	}
	td_fuzz_core_probe(core, core->entry, 16);
	/* Addresses the input chooses: its last bytes, 8 at a time. */
	for (size_t i = 0; i < 4 && size >= 8 * (i + 1); i++) {
		uint64_t addr;
		memcpy(&addr, data + size - 8 * (i + 1), 8);
		td_fuzz_core_probe(core, addr, (size_t)(addr & 0xff) + 1);
	}
	(void)acc;
}

#endif
