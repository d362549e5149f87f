#include "debuginfo/symbolize.h"

#include <dwarf.h>
#include <pthread.h>
#include <signal.h>
#include <elfutils/libdw.h>
#include <stdlib.h>
#include <string.h>

#include "debuginfo/demangle.h"
#include "debuginfo/modules.h"
#include "debuginfo/source.h"
#include "util/hash.h"

/*
 * Rust before 1.67 (Debian 12's 1.63) wraps each async body in GenFuture<T>,
 * whose poll, inlined between every two async fn frames, says nothing (a
 * line of core's future/mod.rs): its frames are left out, so that a stack
 * reads as a newer compiler's build does.
 */
static const char GENERATOR_GLUE[] =
	"<core::future::from_generator::GenFuture<T> as core::future::future::Future>::poll";

/* Inline nesting deeper than this is cut (a hostile or broken DIE tree). */
#define TD_MAX_INLINE_DEPTH 64

struct cache_entry {
	uint64_t key;          /* adjusted pc + 1, so 0 means empty */
	struct td_frame *frames;
	size_t count;
};

/* An address range and its DIE (a function in a CU; a CU in a module), for binary search. */
struct func_range {
	uint64_t lo, hi;
	Dwarf_Die die;
};

/*
 * The functions of one CU sorted by address, built on first use: one walk of
 * the CU instead of one per address (a Rust CU can hold 100,000 DIEs).
 */
struct cu_index {
	Dwarf_Off cu_offset;
	Dwfl_Module *mod;
	struct func_range *funcs;
	size_t count, capacity;
};

/*
 * A module's CUs by address, from each CU's own ranges: for a module whose
 * .debug_aranges libdw refuses as a whole ("invalid DWARF"; rustc 1.63 writes
 * such tables, see module_cudie), where dwfl_module_addrdie then finds no CU.
 */
struct module_cus {
	Dwfl_Module *mod;
	struct func_range *ranges;   /* (die: the CU's) */
	size_t count;
};

/* One Dwfl and the CU indexes built over it; used by one thread at a time. */
struct dwarf_context {
	Dwfl *dwfl;
	bool owns_dwfl;
	struct cu_index *cus;
	size_t ncus;
	struct module_cus *mcus;  /* modules whose aranges libdw refused */
	size_t nmcus;
	Dwfl_Module *last_mod;   /* td_module_is_executable of the last module asked */
	bool last_exec;
	bool last_nodebug;       /* and whether it has no DWARF */
};

struct td_symbolizer {
	struct dwarf_context main;    /* the target's Dwfl: the executable and the rest */
	struct dwarf_context helper;  /* private Dwfl of the helper thread (shared libraries) */
	struct cache_entry *table;
	size_t capacity, used;  /* capacity is a power of two */
	struct cache_entry top; /* the address 2^64-1, whose key would be 0 (a hostile core's pc) */
};

struct td_error *td_symbolizer_create(Dwfl *dwfl, struct td_symbolizer **ret)
{
	struct td_symbolizer *sym = calloc(1, sizeof(*sym));
	if (!sym)
		return &td_enomem;
	sym->main.dwfl = dwfl;
	sym->capacity = 1024;
	sym->table = calloc(sym->capacity, sizeof(*sym->table));
	if (!sym->table) {
		free(sym);
		return &td_enomem;
	}
	*ret = sym;
	return NULL;
}

static const char *attr_string(Dwarf_Die *die, int name)
{
	Dwarf_Attribute attr;
	return dwarf_formstring(dwarf_attr_integrate(die, name, &attr));
}

static char *scope_name(Dwarf_Die *die)
{
	const char *linkage = attr_string(die, DW_AT_linkage_name);
	if (!linkage)
		linkage = attr_string(die, DW_AT_MIPS_linkage_name);
	const char *name = attr_string(die, DW_AT_name);
	if (!linkage && !name)
		return NULL;
	return td_function_name(linkage, name);
}

/*
 * The chain of concrete scopes holding pc, outermost first: the subprogram,
 * then each inlined_subroutine nested in it. dwarf_getscopes stops at the
 * first inline level (it continues in the abstract origin), so walk the CU's
 * tree ourselves, descending only into scopes that contain pc, and into
 * namespaces and types (which may hold functions but have no addresses).
 */
static int find_scope_chain(Dwarf_Die *parent, Dwarf_Addr pc, Dwarf_Die *chain, int depth, int max,
			    bool blocks)
{
	Dwarf_Die child;
	if (dwarf_child(parent, &child) != 0)
		return depth;
	do {
		int tag = dwarf_tag(&child);
		switch (tag) {
		case DW_TAG_subprogram:
		case DW_TAG_inlined_subroutine:
		case DW_TAG_lexical_block:
			if (dwarf_haspc(&child, pc) == 1) {
				if (tag != DW_TAG_lexical_block || blocks) {
					if (depth == max)
						return depth;
					chain[depth++] = child;
				}
				return find_scope_chain(&child, pc, chain, depth, max, blocks);
			}
			break;
		case DW_TAG_namespace:
		case DW_TAG_module:
		case DW_TAG_structure_type:
		case DW_TAG_class_type:
		case DW_TAG_union_type: {
			int found = find_scope_chain(&child, pc, chain, depth, max, blocks);
			if (found > depth)
				return found;
			break;
		}
		default:
			break;
		}
	} while (dwarf_siblingof(&child, &child) == 0);
	return depth;
}

static void index_functions(struct cu_index *idx, Dwarf_Die *parent, int depth)
{
	Dwarf_Die child;
	if (depth > 64 || dwarf_child(parent, &child) != 0)
		return;
	do {
		switch (dwarf_tag(&child)) {
		case DW_TAG_subprogram: {
			Dwarf_Addr base, lo, hi;
			ptrdiff_t off = 0;
			while ((off = dwarf_ranges(&child, off, &base, &lo, &hi)) > 0) {
				if (lo >= hi)
					continue;
				if (idx->count == idx->capacity) {
					size_t cap = idx->capacity ? idx->capacity * 2 : 256;
					struct func_range *grown = realloc(idx->funcs, cap * sizeof(*grown));
					if (!grown)
						return;
					idx->funcs = grown;
					idx->capacity = cap;
				}
				idx->funcs[idx->count++] = (struct func_range){ lo, hi, child };
			}
			break;
		}
		case DW_TAG_namespace:
		case DW_TAG_module:
		case DW_TAG_structure_type:
		case DW_TAG_class_type:
		case DW_TAG_union_type:
			index_functions(idx, &child, depth + 1);
			break;
		default:
			break;
		}
	} while (dwarf_siblingof(&child, &child) == 0);
}

static int compare_range(const void *a, const void *b)
{
	const struct func_range *x = a, *y = b;
	return (x->lo > y->lo) - (x->lo < y->lo);
}

/* How many of the n ranges (sorted by lo) start at or below pc. */
static size_t ranges_at_or_below(const struct func_range *r, size_t n, uint64_t pc)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].lo <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct cu_index *cu_index_get(struct dwarf_context *sym, Dwfl_Module *mod, Dwarf_Die *cudie)
{
	Dwarf_Off off = dwarf_dieoffset(cudie);
	for (size_t i = 0; i < sym->ncus; i++)
		if (sym->cus[i].mod == mod && sym->cus[i].cu_offset == off)
			return &sym->cus[i];
	struct cu_index *grown = realloc(sym->cus, (sym->ncus + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	sym->cus = grown;
	struct cu_index *idx = &sym->cus[sym->ncus++];
	*idx = (struct cu_index){ .cu_offset = off, .mod = mod };
	index_functions(idx, cudie, 0);
	if (idx->count)   /* a unit with no functions: funcs is NULL, which qsort must not get */
		qsort(idx->funcs, idx->count, sizeof(*idx->funcs), compare_range);
	return idx;
}

/* Every CU's ranges of mod's DWARF, sorted, if libdw refuses its aranges; once per module. */
static struct module_cus *module_cus_get(struct dwarf_context *ctx, Dwfl_Module *mod, Dwarf *dw)
{
	for (size_t i = 0; i < ctx->nmcus; i++)
		if (ctx->mcus[i].mod == mod)
			return &ctx->mcus[i];
	struct module_cus *grown = realloc(ctx->mcus, (ctx->nmcus + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	ctx->mcus = grown;
	struct module_cus *m = &ctx->mcus[ctx->nmcus++];
	*m = (struct module_cus){ .mod = mod };
	Dwarf_Aranges *aranges;
	size_t naranges;
	if (dwarf_getaranges(dw, &aranges, &naranges) == 0)
		return m;   /* libdw reads them: an address it finds in no CU is in none */
	size_t cap = 0;
	Dwarf_Off off = 0, next;
	size_t hsize;
	while (dwarf_nextcu(dw, off, &next, &hsize, NULL, NULL, NULL) == 0) {
		Dwarf_Die cu;
		if (dwarf_offdie(dw, off + hsize, &cu)) {
			Dwarf_Addr base, lo, hi;
			ptrdiff_t r = 0;
			while ((r = dwarf_ranges(&cu, r, &base, &lo, &hi)) > 0) {
				/* Code the linker dropped is left at address 0: no pc is there. */
				if (lo >= hi || lo == 0)
					continue;
				if (m->count == cap) {
					size_t ncap = cap ? cap * 2 : 256;
					struct func_range *more = realloc(m->ranges, ncap * sizeof(*more));
					if (!more)
						goto done;
					m->ranges = more;
					cap = ncap;
				}
				m->ranges[m->count++] = (struct func_range){ lo, hi, cu };
			}
		}
		off = next;
	}
done:
	if (m->count)
		qsort(m->ranges, m->count, sizeof(*m->ranges), compare_range);
	return m;
}

/*
 * The CU holding addr, and the module's bias: dwfl_module_addrdie, which
 * reads .debug_aranges; where libdw refuses those (rustc 1.63 lists code
 * the linker dropped, at address 0, and libdw 0.188 then rejects the whole
 * table of some binaries, such as any that links tracing-subscriber), the
 * CU whose own ranges hold addr. Without the fallback such a binary has no
 * DWARF frames, lines or types by address at all.
 */
static Dwarf_Die *module_cudie(struct dwarf_context *ctx, Dwfl_Module *mod, Dwarf_Addr addr, Dwarf_Addr *bias)
{
	Dwarf_Die *cu = dwfl_module_addrdie(mod, addr, bias);
	if (cu)
		return cu;
	Dwarf *dw = dwfl_module_getdwarf(mod, bias);
	if (!dw)
		return NULL;
	struct module_cus *m = module_cus_get(ctx, mod, dw);
	if (!m || !m->count)
		return NULL;
	uint64_t pc = addr - *bias;
	size_t lo = ranges_at_or_below(m->ranges, m->count, pc);
	/* Ranges of different CUs do not overlap: the nearest one below pc, or none. */
	if (lo == 0 || pc >= m->ranges[lo - 1].hi)
		return NULL;
	return &m->ranges[lo - 1].die;
}

/*
 * The scope chain at pc: the function holding it, then its inline instances
 * (and, if blocks, the lexical blocks between them).
 */
static int scope_chain(struct dwarf_context *sym, Dwfl_Module *mod, Dwarf_Die *cudie,
		       Dwarf_Addr pc, Dwarf_Die *chain, int max, bool blocks)
{
	struct cu_index *idx = cu_index_get(sym, mod, cudie);
	if (!idx)
		return find_scope_chain(cudie, pc, chain, 0, max, blocks);
	size_t lo = ranges_at_or_below(idx->funcs, idx->count, pc);
	for (size_t i = lo; i-- > 0 && lo - i <= 8;) {
		struct func_range *f = &idx->funcs[i];
		if (pc >= f->lo && pc < f->hi) {
			chain[0] = f->die;
			return find_scope_chain(&chain[0], pc, chain, 1, max, blocks);
		}
	}
	return 0;
}

static const char *module_basename(Dwfl_Module *mod)
{
	const char *name = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	if (!name)
		return NULL;
	const char *slash = strrchr(name, '/');
	return slash ? slash + 1 : name;
}

static bool push_frame(struct td_frame **frames, size_t *count, size_t *cap, struct td_frame f)
{
	if (*count == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct td_frame *grown = realloc(*frames, ncap * sizeof(*grown));
		if (!grown)
			return false;
		*frames = grown;
		*cap = ncap;
	}
	(*frames)[(*count)++] = f;
	return true;
}

static void symbolize_uncached(struct dwarf_context *sym, uint64_t pc, uint64_t adj,
			       struct td_frame **frames_ret, size_t *count_ret)
{
	struct td_frame *frames = NULL;
	size_t count = 0, cap = 0;
	struct td_frame base = { .pc = pc };

	Dwfl_Module *mod = dwfl_addrmodule(sym->dwfl, adj);
	if (mod) {
		base.module = module_basename(mod);
		Dwarf_Addr bias;
		Dwarf_Die *cudie = module_cudie(sym, mod, adj, &bias);
		Dwfl_Line *line = dwfl_module_getsrc(mod, adj);
		if (line) {
			base.file = dwfl_lineinfo(line, NULL, &base.line, NULL, NULL, NULL);
		} else if (cudie) {
			/* (libdwfl finds lines through the aranges module_cudie may have done without) */
			Dwarf_Line *l = dwarf_getsrc_die(cudie, adj - bias);
			if (l && (base.file = dwarf_linesrc(l, NULL, NULL)) && dwarf_lineno(l, &base.line) != 0)
				base.line = 0;
		}

		if (mod != sym->last_mod) {
			Dwarf_Addr dwbias;
			sym->last_mod = mod;
			sym->last_exec = td_module_is_executable(mod);
			sym->last_nodebug = dwfl_module_getdwarf(mod, &dwbias) == NULL;
		}
		base.nodebug = sym->last_nodebug;
		Dwarf_Die chain[TD_MAX_INLINE_DEPTH];
		int nchain = cudie ? scope_chain(sym, mod, cudie, adj - bias, chain, TD_MAX_INLINE_DEPTH, false) : 0;
		Dwarf_Files *files = NULL;
		size_t nfiles = 0;
		const char *file = base.file;
		base.comp_dir = cudie ? td_source_comp_dir(cudie) : NULL;
		const char *comp_dir = sym->last_exec ? base.comp_dir : NULL;
		const char *workspace = sym->last_exec ? td_source_workspace(mod) : NULL;
		int lineno = base.line;
		/* Innermost first: the deepest inline instance is where pc is. */
		for (int i = nchain - 1; i >= 0; i--) {
			int tag = dwarf_tag(&chain[i]);
			struct td_frame f = base;
			f.function = scope_name(&chain[i]);
			f.file = file;
			f.line = lineno;
			f.own = sym->last_exec && td_source_is_own(workspace, comp_dir, file);
			f.inlined = tag == DW_TAG_inlined_subroutine;
			if (f.function && !strcmp(f.function, GENERATOR_GLUE) && (f.inlined || count > 0)) {
				/* (inlined: its call site is the next frame's line, below; the function
				 * itself: the async body inlined into it stands for it, as it is on newer rustc) */
				free((char *)f.function);
				if (!f.inlined)
					frames[count - 1].inlined = false;
			} else if (!push_frame(&frames, &count, &cap, f)) {
				free((char *)f.function);
				break;
			}
			if (!f.inlined)
				break;
			/* The next (outer) frame is at this inline instance's call site. */
			Dwarf_Attribute attr;
			Dwarf_Word call_file = 0, call_line = 0;
			file = NULL;
			lineno = 0;
			if (dwarf_formudata(dwarf_attr(&chain[i], DW_AT_call_line, &attr), &call_line) == 0)
				lineno = (int)call_line;
			if (dwarf_formudata(dwarf_attr(&chain[i], DW_AT_call_file, &attr), &call_file) == 0 &&
			    (files || dwarf_getsrcfiles(cudie, &files, &nfiles) == 0) && call_file < nfiles)
				file = dwarf_filesrc(files, call_file, NULL, NULL);
		}

		if (count == 0 || frames[count - 1].inlined) {
			/*
			 * No DWARF function here (no debug info): fall back to the ELF
			 * symbol (libdwfl reads .symtab, .dynsym and MiniDebugInfo's),
			 * shown with the offset into it; no symbol either: the offset
			 * into the module.
			 */
			GElf_Off offset;
			GElf_Sym elfsym;
			const char *name = dwfl_module_addrinfo(mod, adj, &offset, &elfsym, NULL, NULL, NULL);
			struct td_frame f = base;
			if (count) {
				f.file = file;
				f.line = lineno;
			}
			f.own = sym->last_exec && td_source_is_own(workspace, comp_dir, f.file);
			if (name) {
				char *demangled = td_demangle(name);
				f.function = demangled ? demangled : strdup(name);
			}
			f.symtab = f.function != NULL;
			if (f.symtab) {
				f.base = adj - offset;
			} else {
				/* The load bias; a module whose file is missing: its lowest address. */
				GElf_Addr elfbias = 0;
				Dwarf_Addr start = 0;
				if (!dwfl_module_getelf(mod, &elfbias))
					dwfl_module_info(mod, NULL, &start, NULL, NULL, NULL, NULL, NULL);
				f.base = elfbias ? elfbias : start;
			}
			if (!push_frame(&frames, &count, &cap, f))
				free((char *)f.function);
		}
	}
	if (count == 0)
		push_frame(&frames, &count, &cap, base);
	/* Out of memory: no frames (count 0); callers show the bare address. */
	*frames_ret = frames;
	*count_ret = count;
}

bool td_frame_offset(const struct td_frame *f, uint64_t *offset)
{
	if (f->function ? !f->symtab : !f->module)
		return false;
	*offset = f->pc - f->base;
	return true;
}

static void context_deinit(struct dwarf_context *ctx)
{
	for (size_t i = 0; i < ctx->ncus; i++)
		free(ctx->cus[i].funcs);
	free(ctx->cus);
	for (size_t i = 0; i < ctx->nmcus; i++)
		free(ctx->mcus[i].ranges);
	free(ctx->mcus);
	if (ctx->owns_dwfl && ctx->dwfl)
		dwfl_end(ctx->dwfl);
}

static struct cache_entry *lookup(struct td_symbolizer *sym, uint64_t key)
{
	size_t mask = sym->capacity - 1;
	size_t i = td_hash_slot(key, sym->capacity);
	while (sym->table[i].key && sym->table[i].key != key)
		i = (i + 1) & mask;
	return &sym->table[i];
}

static void grow(struct td_symbolizer *sym)
{
	struct cache_entry *old = sym->table;
	size_t oldcap = sym->capacity;
	struct cache_entry *table = calloc(oldcap * 2, sizeof(*table));
	if (!table)
		return;  /* keep the fuller table; it still works */
	sym->table = table;
	sym->capacity = oldcap * 2;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].key)
			*lookup(sym, old[i].key) = old[i];
	free(old);
}

size_t td_symbolize(struct td_symbolizer *sym, uint64_t pc, bool is_activation,
		    const struct td_frame **ret)
{
	uint64_t adj = is_activation || pc == 0 ? pc : pc - 1;
	uint64_t key = adj + 1;
	if (key == 0) {
		struct cache_entry *e = &sym->top;
		if (!e->key) {
			symbolize_uncached(&sym->main, pc, adj, &e->frames, &e->count);
			e->key = 1;
		}
		*ret = e->frames;
		return e->count;
	}
	if (sym->used * 2 >= sym->capacity)
		grow(sym);
	struct cache_entry *e = lookup(sym, key);
	if (!e->key && sym->used + 1 < sym->capacity) {
		symbolize_uncached(&sym->main, pc, adj, &e->frames, &e->count);
		e->key = key;
		sym->used++;
	} else if (!e->key) {
		/* Table full and could not grow (out of memory): no frames. */
		*ret = NULL;
		return 0;
	}
	/* The cached frames carry the pc of their first lookup; same adjusted pc, same frames. */
	*ret = e->frames;
	return e->count;
}

/* Work for the helper thread: addresses in shared libraries. */
struct helper_job {
	struct dwarf_context *ctx;
	uint64_t *pcs, *adjs;        /* adjs: addresses to look up, in the helper's Dwfl */
	struct td_frame **frames;
	size_t *counts;
	size_t n;
};

static void *helper_main(void *arg)
{
	struct helper_job *job = arg;
	for (size_t i = 0; i < job->n; i++)
		symbolize_uncached(job->ctx, job->pcs[i], job->adjs[i], &job->frames[i], &job->counts[i]);
	return NULL;
}

static char *no_debuginfo_path;
static const Dwfl_Callbacks helper_callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = td_modules_find_debuginfo,  /* with what debuginfod gave */
	.section_address = dwfl_offline_section_address,
	.debuginfo_path = &no_debuginfo_path,
};

/*
 * Reports mod (of the main Dwfl) in the helper's Dwfl at the same address, so
 * addresses need no translation. Returns false if it cannot be done (no
 * file, as for the vDSO); such modules stay on the main thread.
 */
static bool helper_report(struct dwarf_context *helper, Dwfl_Module *mod)
{
	GElf_Addr bias;
	if (!dwfl_module_getelf(mod, &bias))
		return false;
	const char *name, *file = NULL;
	Dwarf_Addr start, end;
	name = dwfl_module_info(mod, NULL, &start, &end, NULL, NULL, &file, NULL);
	if (!file || file[0] != '/')
		return false;
	if (!helper->dwfl) {
		helper->dwfl = dwfl_begin(&helper_callbacks);
		if (!helper->dwfl)
			return false;
		helper->owns_dwfl = true;
		dwfl_report_begin(helper->dwfl);
	} else {
		dwfl_report_begin_add(helper->dwfl);
	}
	Dwfl_Module *copy = dwfl_report_elf(helper->dwfl, name, file, -1, bias, false);
	dwfl_report_end(helper->dwfl, NULL, NULL);
	GElf_Addr copy_bias;
	if (!copy || !dwfl_module_getelf(copy, &copy_bias) || copy_bias != bias)
		return false;
	Dwarf_Addr copy_start, copy_end;
	dwfl_module_info(copy, NULL, &copy_start, &copy_end, NULL, NULL, NULL, NULL);
	return copy_start == start;
}

void td_symbolize_prefetch(struct td_symbolizer *sym, Dwfl_Module *main_module,
			   const uint64_t *pcs, const bool *activation, size_t n)
{
	/* Unique addresses not cached yet, split between the two threads. */
	struct helper_job job = { .ctx = &sym->helper };
	job.pcs = malloc(n * sizeof(*job.pcs));
	job.adjs = malloc(n * sizeof(*job.adjs));
	job.frames = malloc(n * sizeof(*job.frames));
	job.counts = malloc(n * sizeof(*job.counts));
	uint64_t *mine = malloc(n * 2 * sizeof(*mine));
	Dwfl_Module **reported = malloc(n * sizeof(*reported)), **refused = malloc(n * sizeof(*refused));
	size_t nmine = 0, nreported = 0, nrefused = 0;
	if (!job.pcs || !job.adjs || !job.frames || !job.counts || !mine || !reported || !refused)
		goto out;
	while (sym->used + 2 * n >= sym->capacity / 2) {
		size_t before = sym->capacity;
		grow(sym);
		if (sym->capacity == before)
			goto out;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t adj = activation[i] || pcs[i] == 0 ? pcs[i] : pcs[i] - 1;
		if (adj == UINT64_MAX)
			continue;   /* td_symbolize's own entry (sym->top) */
		struct cache_entry *e = lookup(sym, adj + 1);
		if (e->key)
			continue;
		bool dup = false;
		for (size_t j = 0; j < job.n && !dup; j++)
			dup = job.adjs[j] == adj;
		for (size_t j = 0; j < nmine && !dup; j++)
			dup = mine[2 * j + 1] == adj;
		if (dup)
			continue;
		Dwfl_Module *mod = dwfl_addrmodule(sym->main.dwfl, adj);
		bool helped = false;
		if (mod && mod != main_module) {
			bool known = false, bad = false;
			for (size_t j = 0; j < nreported && !known; j++)
				known = reported[j] == mod;
			for (size_t j = 0; j < nrefused && !bad; j++)
				bad = refused[j] == mod;
			if (!known && !bad) {
				known = helper_report(&sym->helper, mod);
				if (known)
					reported[nreported++] = mod;
				else
					refused[nrefused++] = mod;
			}
			helped = known;
		}
		if (helped) {
			job.pcs[job.n] = pcs[i];
			job.adjs[job.n] = adj;
			job.n++;
		} else {
			mine[2 * nmine] = pcs[i];
			mine[2 * nmine + 1] = adj;
			nmine++;
		}
	}
	pthread_t helper;
	bool started = false;
	if (job.n) {
		/* Signals go to the main thread, which owns the ptrace session. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		started = pthread_create(&helper, NULL, helper_main, &job) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (!started)
			helper_main(&job);
	}
	for (size_t i = 0; i < nmine; i++) {
		struct cache_entry *e = lookup(sym, mine[2 * i + 1] + 1);
		if (e->key)
			continue;
		symbolize_uncached(&sym->main, mine[2 * i], mine[2 * i + 1], &e->frames, &e->count);
		e->key = mine[2 * i + 1] + 1;
		sym->used++;
	}
	if (started)
		pthread_join(helper, NULL);
	for (size_t i = 0; i < job.n; i++) {
		struct cache_entry *e = lookup(sym, job.adjs[i] + 1);
		e->frames = job.frames[i];
		e->count = job.counts[i];
		e->key = job.adjs[i] + 1;
		sym->used++;
	}
out:
	free(job.pcs);
	free(job.adjs);
	free(job.frames);
	free(job.counts);
	free(mine);
	free(reported);
	free(refused);
}

bool td_symbolizer_function_at(struct td_symbolizer *sym, Dwfl_Module *mod, uint64_t addr,
			       Dwarf_Die *ret)
{
	Dwarf_Addr bias;
	Dwarf_Die *cudie = module_cudie(&sym->main, mod, addr, &bias);
	if (!cudie)
		return false;
	Dwarf_Die chain[1];
	if (scope_chain(&sym->main, mod, cudie, addr - bias, chain, 1, false) < 1)
		return false;
	*ret = chain[0];
	return true;
}

int td_symbolizer_scopes(struct td_symbolizer *sym, uint64_t addr, Dwarf_Die *chain, int max,
			 Dwarf_Addr *bias)
{
	Dwfl_Module *mod = dwfl_addrmodule(sym->main.dwfl, addr);
	Dwarf_Die *cudie = mod ? module_cudie(&sym->main, mod, addr, bias) : NULL;
	if (!cudie)
		return 0;
	return scope_chain(&sym->main, mod, cudie, addr - *bias, chain, max, true);
}

void td_symbolizer_destroy(struct td_symbolizer *sym)
{
	if (!sym)
		return;
	for (size_t i = 0; i < sym->capacity; i++) {
		if (!sym->table[i].key)
			continue;
		for (size_t j = 0; j < sym->table[i].count; j++)
			free((char *)sym->table[i].frames[j].function);
		free(sym->table[i].frames);
	}
	for (size_t j = 0; j < sym->top.count; j++)
		free((char *)sym->top.frames[j].function);
	free(sym->top.frames);
	context_deinit(&sym->main);
	context_deinit(&sym->helper);
	free(sym->table);
	free(sym);
}
