/*
 * Fuzz target: an ELF file with DWARF, as taskdbg reads an executable. The
 * input is the whole file, reported to libdwfl as an offline module (no
 * process, no core), then walked by taskdbg's own code: the symbolizer
 * (functions, inline frames, lines at addresses of the module and of its
 * symbols), the program's lookups by name (td_program_find with the names
 * the DWARF itself holds, qualified names, statics, thread-locals, the
 * walk of a namespace), the value reader on each variable's type (members,
 * enum variants, pointers, array elements, over memory made of the input's
 * bytes), and the locals of a made-up frame at each function
 * (debuginfo/locals.c: location expressions evaluated over registers and a
 * stack made of the input's bytes). Separate debug files are not looked
 * for: the input alone decides what happens.
 */
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "debuginfo/locals.h"
#include "debuginfo/symbolize.h"
#include "memfile.h"
#include "snapshot/snapshot.h"
#include "snapshot/unwind.h"
#include "value/program.h"
#include "value/value.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bounds on the work one input may ask for. */
#define MAX_PCS 48
#define MAX_DIES 300
#define MAX_FRAMES 12
#define STACK_ADDR 0x7ffd00000000ull

static int no_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
			const char *file_name, const char *debuglink_file, GElf_Word debuglink_crc,
			char **debuginfo_file_name)
{
	return -1;
}

static const Dwfl_Callbacks offline_callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = no_debuginfo,
	.section_address = dwfl_offline_section_address,
};

struct td_value;
static void walk_value(const struct td_value *v, int depth, int *budget);

struct locals_state {
	struct td_program *prog;
	int count;
};

static int each_local(const struct td_local *local, void *arg)
{
	struct locals_state *st = arg;
	volatile size_t n = local->name ? strlen(local->name) : 0;
	(void)n;
	if (local->located && st->prog) {
		struct td_value v;
		td_value_init(&v, st->prog, (Dwarf_Die *)&local->type, local->addr);
		int budget = 16;
		walk_value(&v, 0, &budget);
	}
	return ++st->count >= 200;
}

static bool count_die(Dwarf_Die *die, void *arg)
{
	return ++*(int *)arg < 100;
}

/* A value of the type, read as plugins read values: members, variants, pointees, elements. */
static void walk_value(const struct td_value *v, int depth, int *budget)
{
	if (depth > 3 || --*budget < 0)
		return;
	uint64_t size = 0, word;
	volatile size_t n = td_type_name((Dwarf_Die *)&v->type) ? 1 : 0;
	(void)n;
	td_type_size((Dwarf_Die *)&v->type, &size);
	struct td_value next;
	struct td_error *err;
	switch (dwarf_tag((Dwarf_Die *)&v->type)) {
	case DW_TAG_structure_type:
	case DW_TAG_union_type:
	case DW_TAG_class_type: {
		if (td_type_has_discr(v->prog, (Dwarf_Die *)&v->type)) {
			const char *name;
			uint64_t discr;
			Dwarf_Die member;
			err = td_value_variant(v, &next, &name, &discr, &member);
			if (!err)
				walk_value(&next, depth + 1, budget);
			td_error_destroy(err);
		}
		Dwarf_Die child;
		int members = 0;
		if (dwarf_child((Dwarf_Die *)&v->type, &child) != 0)
			break;
		do {
			const char *name = dwarf_diename(&child);
			if (dwarf_tag(&child) != DW_TAG_member || !name)
				continue;
			err = td_value_member(v, name, &next);
			if (!err)
				walk_value(&next, depth + 1, budget);
			td_error_destroy(err);
		} while (++members < 16 && dwarf_siblingof(&child, &child) == 0);
		break;
	}
	case DW_TAG_enumeration_type: {
		const char *name;
		uint64_t discr;
		err = td_value_variant(v, &next, &name, &discr, NULL);
		td_error_destroy(err);
		break;
	}
	case DW_TAG_pointer_type:
	case DW_TAG_reference_type:
	case DW_TAG_rvalue_reference_type:
		err = td_value_pointer(v, &word);
		td_error_destroy(err);
		err = td_value_deref(v, &next);
		if (!err)
			walk_value(&next, depth + 1, budget);
		td_error_destroy(err);
		break;
	case DW_TAG_array_type:
		for (uint64_t i = 0; i < 2; i++) {
			err = td_value_index(v, i, &next);
			if (!err)
				walk_value(&next, depth + 1, budget);
			td_error_destroy(err);
		}
		break;
	default:
		err = td_value_uint(v, &word);
		td_error_destroy(err);
		break;
	}
}

/* The variable's type at an address inside the input's bytes. */
static void walk_variable(struct td_program *prog, Dwarf_Die *var, size_t size)
{
	Dwarf_Die type;
	if (!td_die_type(var, &type))
		return;
	struct td_value v;
	td_value_init(&v, prog, &type, STACK_ADDR + (size ? dwarf_dieoffset(var) % size : 0));
	int budget = 64;
	walk_value(&v, 0, &budget);
}

/* Lookups by the names the DWARF holds, as plugins make them. */
static void walk_names(struct td_program *prog, Dwarf *dw, size_t size)
{
	Dwarf_Off off = 0, next;
	size_t hsize;
	int dies = 0;
	while (dies < MAX_DIES && dwarf_nextcu(dw, off, &next, &hsize, NULL, NULL, NULL) == 0) {
		Dwarf_Die cu, child;
		if (dwarf_offdie(dw, off + hsize, &cu) && dwarf_child(&cu, &child) == 0) {
			do {
				dies++;
				const char *name = dwarf_diename(&child);
				int tag = dwarf_tag(&child);
				char *qualified = td_program_qualified_name(prog, &child);
				Dwarf_Die found;
				if (qualified && td_program_find(prog, qualified, tag, &found)) {
					char *again = td_program_qualified_name(prog, &found);
					free(again);
				}
				if (name && tag == DW_TAG_namespace) {
					int n = 0;
					td_program_each_in_namespace(prog, name, 0, "", count_die, &n);
				}
				if (tag == DW_TAG_variable) {
					walk_variable(prog, &child, size);
					uint64_t addr;
					struct td_error *err = td_program_static_address(prog, &child, &addr);
					td_error_destroy(err);
					if (qualified && td_program_find_tls(prog, qualified, &found)) {
						err = td_program_tls_address(prog, &found, 1, &addr);
						td_error_destroy(err);
					}
				}
				free(qualified);
			} while (dies < MAX_DIES && dwarf_siblingof(&child, &child) == 0);
		}
		off = next;
	}
	Dwarf_Die found;
	td_program_find(prog, "main", DW_TAG_subprogram, &found);
	td_program_find(prog, "tokio::runtime::context::CONTEXT", 0, &found);
	td_program_find_tls(prog, "tokio::runtime::context::CONTEXT", &found);
}

/* The locals of a two-frame stack at pc, registers pointing into the input. */
static void walk_locals(struct td_snapshot *snap, struct td_program *prog, struct td_symbolizer *sym, uint64_t pc, uint64_t ret_pc)
{
	uint64_t pcs[2] = { pc, ret_pc };
	bool activation[2] = { true, false };
	struct td_frame_regs regs[2];
	for (int f = 0; f < 2; f++) {
		regs[f].known = (1u << TD_FRAME_REGS) - 1;
		for (int i = 0; i < TD_FRAME_REGS; i++)
			regs[f].r[i] = STACK_ADDR + 64 * (uint64_t)i + 8 * (uint64_t)f;
	}
	struct td_stack stack = { .pcs = pcs, .activation = activation, .regs = regs, .count = 2 };
	struct locals_state st = { prog, 0 };
	td_frame_locals(snap, sym, &stack, 0, TD_LOCALS_UNLOCATED, each_local, &st);
	snap->scratch_len = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct td_fuzz_file *file = td_fuzz_file(data, size);
	elf_version(EV_CURRENT);
	Dwfl *dwfl = dwfl_begin(&offline_callbacks);
	if (!dwfl)
		return 0;
	dwfl_report_begin(dwfl);
	int fd = dup(file->fd);
	Dwfl_Module *mod = fd < 0 ? NULL : dwfl_report_offline(dwfl, "fuzz", file->path, fd);
	if (fd >= 0 && !mod)
		close(fd);
	dwfl_report_end(dwfl, NULL, NULL);
	if (!mod) {
		dwfl_end(dwfl);
		return 0;
	}

	/* A snapshot of no process: one thread whose stack copy is the input. */
	static struct td_core no_memory;
	struct td_snapshot_thread thread = {
		.tid = 1, .stopped = true, .syscall = -1,
		.stack_addr = STACK_ADDR, .stack_len = size, .stack = (unsigned char *)data,
	};
	thread.regs.fs_base = STACK_ADDR + size / 2;
	struct td_snapshot snap = {
		.kind = TD_SNAPSHOT_CORE, .pid = 1, .exe = "fuzz", .threads = &thread, .nthreads = 1,
		.dwfl = dwfl, .exe_module = mod, .core = &no_memory,
	};

	struct td_program *prog = NULL;
	struct td_symbolizer *sym = NULL;
	struct td_error *err = td_program_create(&snap, &prog);
	if (err) {
		td_error_destroy(err);
		/* No DWARF: the symbolizer still names functions from the symbol table. */
		if ((err = td_symbolizer_create(dwfl, &sym))) {
			td_error_destroy(err);
			dwfl_end(dwfl);
			return 0;
		}
	} else {
		sym = td_program_symbolizer(prog);
	}

	/* Addresses: the module's edges, evenly between, and its symbols. */
	uint64_t pcs[MAX_PCS];
	size_t npcs = 0;
	Dwarf_Addr low = 0, high = 0;
	dwfl_module_info(mod, NULL, &low, &high, NULL, NULL, NULL, NULL);
	for (int i = 0; i < 8; i++)
		pcs[npcs++] = low + (high - low) / 8 * (uint64_t)i;
	int nsyms = dwfl_module_getsymtab(mod);
	for (int i = 1; i < nsyms && npcs < MAX_PCS; i++) {
		GElf_Sym s;
		GElf_Addr addr;
		if (dwfl_module_getsym_info(mod, i, &s, &addr, NULL, NULL, NULL) &&
		    GELF_ST_TYPE(s.st_info) == STT_FUNC && addr)
			pcs[npcs++] = addr + (s.st_size > 1 ? s.st_size / 2 : 0);
	}

	for (size_t i = 0; i < npcs; i++) {
		const struct td_frame *frames;
		size_t n = td_symbolize(sym, pcs[i], true, &frames);
		for (size_t k = 0; k < n; k++) {
			volatile size_t len = (frames[k].function ? strlen(frames[k].function) : 0) +
					      (frames[k].file ? strlen(frames[k].file) : 0);
			(void)len;
		}
		td_symbolize(sym, pcs[i] + 1, false, &frames);
		Dwarf_Die chain[16];
		Dwarf_Addr bias;
		td_symbolizer_scopes(sym, pcs[i], chain, 16, &bias);
	}
	if (prog) {
		for (size_t i = 0; i < npcs; i++) {
			Dwarf_Die fn;
			if (td_program_function_at(prog, pcs[i], &fn))
				free(td_program_qualified_name(prog, &fn));
			free(td_program_symbol_at(prog, pcs[i]));
			if (i < MAX_FRAMES)
				walk_locals(&snap, prog, sym, pcs[i], pcs[(i + 1) % npcs]);
		}
		Dwarf_Addr bias;
		walk_names(prog, dwfl_module_getdwarf(mod, &bias), size);
		td_program_destroy(prog);
	} else {
		td_symbolizer_destroy(sym);
	}
	free(snap.scratch);
	free(snap.stacks);
	dwfl_end(dwfl);
	return 0;
}
