/*
 * From a code address to what a person reads in a stack: function names with
 * inline frames expanded (innermost first), source files and lines. Results
 * are cached per address, since worker threads share most of their frames.
 */
#ifndef TD_DEBUGINFO_SYMBOLIZE_H
#define TD_DEBUGINFO_SYMBOLIZE_H

#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct td_frame {
	uint64_t pc;           /* the unwound address of the physical frame */
	const char *function;  /* NULL if unknown; owned by the symbolizer */
	const char *file;      /* as recorded in DWARF, or NULL; owned by libdw */
	const char *comp_dir;  /* its unit's DW_AT_comp_dir (a relative file is under it), or NULL */
	int line;              /* 0 if unknown */
	bool inlined;          /* an inline frame inside the next (outer) frame */
	const char *module;    /* file name of the module, or NULL */
	bool own;              /* the program's own code (debuginfo/source.h), not a library's */
	bool nodebug;          /* its module has no DWARF (names come from symbol tables) */
	bool symtab;           /* function is an ELF symbol's name (.symtab, .dynsym, MiniDebugInfo) */
	uint64_t base;         /* symtab: the symbol's address; no function: the module's load bias */
};

/*
 * What a frame's text shows after its name: pc - the symbol's address for a
 * name from a symbol table (main+0x1a), pc - the module's load bias (the
 * address addr2line -e FILE takes) for a frame with no name. False when
 * there is none (a name from DWARF, or no module).
 */
bool td_frame_offset(const struct td_frame *f, uint64_t *offset);

struct td_symbolizer;

/* The symbolizer borrows dwfl, which must outlive it. */
struct td_error *td_symbolizer_create(Dwfl *dwfl, struct td_symbolizer **ret);

/*
 * The frames of one physical frame at pc (inline frames first, the real
 * function last). is_activation is false for return addresses, which are
 * looked up at pc - 1 so the call, not the next line, is named. *ret stays
 * valid until the symbolizer is destroyed. Returns the frame count: at least
 * 1, or 0 only when memory ran out.
 */
size_t td_symbolize(struct td_symbolizer *sym, uint64_t pc, bool is_activation,
		    const struct td_frame **ret);

/*
 * Symbolizes many addresses at once into the cache, shared libraries on a
 * helper thread (with a private Dwfl) while this thread does main_module.
 * Opening a library's debug info can cost tens of milliseconds (libc's is
 * compressed), so the two halves overlap. td_symbolize then hits the cache.
 */
void td_symbolize_prefetch(struct td_symbolizer *sym, Dwfl_Module *main_module,
			   const uint64_t *pcs, const bool *activation, size_t n);

/* The DW_TAG_subprogram (concrete, out of line) whose code holds addr in mod. */
bool td_symbolizer_function_at(struct td_symbolizer *sym, Dwfl_Module *mod, uint64_t addr,
			       Dwarf_Die *ret);

/*
 * The scopes holding addr, outermost first: the concrete function, then the
 * lexical blocks and inlined instances inside it down to addr. *bias gets the
 * module's bias (DWARF addresses are addr - bias). Returns the count (0: no
 * debug info there).
 */
int td_symbolizer_scopes(struct td_symbolizer *sym, uint64_t addr, Dwarf_Die *chain, int max,
			 Dwarf_Addr *bias);

void td_symbolizer_destroy(struct td_symbolizer *sym);

#endif
