#include "value/program.h"

#include "debuginfo/source.h"

#include <dwarf.h>
#include <gelf.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>

#include "debuginfo/demangle.h"
#include "debuginfo/modules.h"
#include "debuginfo/symbolize.h"
#include "util/hash.h"
#include "util/map.h"

#define TD_PAGE_SIZE 4096u
/* Pages kept; a walk of 100,000 tasks touches a few tens of thousands. */
#define TD_CACHE_MAX_PAGES (256u * 1024u)
/* Path components and namespace nesting a lookup follows at most. */
#define TD_PATH_MAX_COMPONENTS 32

struct page {
	uint64_t number;     /* page address / TD_PAGE_SIZE, + 1 so 0 means empty */
	uint32_t valid;      /* bytes readable from the start of the page */
	bool owns;           /* data is an allocation of its own (else: inside a read-ahead block's first page's) */
	unsigned char *data;
};

/* Lookups by path, remembered: plugins ask for the same few paths per thread. */
struct path_entry {
	char *path;
	int kind;          /* tag, or -1 for a thread-local search */
	bool found;
	Dwarf_Die die;
};

/* A memo of DWARF-derived facts, keyed by a pair (what code asks for, twice). */
struct memo_entry {
	uint64_t k1, k2;
	bool used;
	void *value;  /* malloc'd, owned */
};

struct td_program {
	struct td_snapshot *snap;
	struct memo_entry *memo;
	size_t nmemo, memo_cap;
	struct path_entry *paths;
	size_t npaths;
	Dwfl_Module *exe;
	Dwarf *dwarf;
	Dwarf_Addr bias;
	uint64_t tls_block_size;   /* round_up(PT_TLS.p_memsz, p_align), 0 if no TLS */
	struct td_symbolizer *sym;
	struct page *pages;
	size_t npages, capacity;   /* capacity: power of two */
	unsigned char *arena;      /* pre-faulted room for pages (td_program_reserve), or NULL */
	size_t arena_size, arena_used;
	struct cu_parents *cus;    /* per unit: the parent of each DIE that can name a scope */
	size_t ncus;
};

struct td_error *td_program_create(struct td_snapshot *snap, struct td_program **ret)
{
	struct td_program *prog = calloc(1, sizeof(*prog));
	if (!prog)
		return &td_enomem;
	prog->snap = snap;
	prog->exe = snap->exe_module;
	struct td_error *err;
	if ((err = td_modules_require_dwarf(prog->exe)))
		goto fail;
	prog->dwarf = dwfl_module_getdwarf(prog->exe, &prog->bias);
	prog->tls_block_size = td_modules_tls_block_size(prog->exe);
	if ((err = td_symbolizer_create(snap->dwfl, &prog->sym)))
		goto fail;
	prog->capacity = 1024;
	prog->pages = calloc(prog->capacity, sizeof(*prog->pages));
	if (!prog->pages) {
		err = &td_enomem;
		goto fail;
	}
	*ret = prog;
	return NULL;
fail:
	td_program_destroy(prog);
	return err;
}

/*
 * Parents within a unit, for qualified names: DWARF keeps no parent links,
 * and finding one means walking the unit from its start (rustc emits no
 * DW_AT_sibling, so each sibling step parses the subtree it skips): a
 * millisecond a type in a big unit. One walk per unit records the parent
 * of every namespace, type and function; a name is then its parents' names.
 */
struct cu_parents {
	uint64_t cu;                 /* the unit DIE's offset */
	struct td_map parents;       /* DIE offset -> its parent's offset */
};

static bool names_scope(int tag)
{
	return tag == DW_TAG_namespace || tag == DW_TAG_structure_type || tag == DW_TAG_union_type ||
	       tag == DW_TAG_enumeration_type || tag == DW_TAG_subprogram || tag == DW_TAG_base_type ||
	       tag == DW_TAG_variant_part || tag == DW_TAG_variant || tag == DW_TAG_pointer_type;
}

/* Out of memory, a parent is not recorded: its DIE's name then lacks namespaces. */
static void parents_put(struct cu_parents *cp, uint64_t key, uint64_t parent)
{
	bool added;
	uint64_t *slot = td_map_put(&cp->parents, key, &added);
	if (slot)
		*slot = parent;
}

static bool parents_get(const struct cu_parents *cp, uint64_t key, uint64_t *parent)
{
	const uint64_t *slot = td_map_get(&cp->parents, key);
	if (slot)
		*parent = *slot;
	return slot != NULL;
}

static void parents_walk(struct cu_parents *cp, Dwarf_Die *parent, int depth)
{
	Dwarf_Die child;
	if (depth > 64 || dwarf_child(parent, &child) != 0)
		return;
	uint64_t poff = dwarf_dieoffset(parent);
	do {
		int tag = dwarf_tag(&child);
		if (!names_scope(tag))
			continue;
		parents_put(cp, dwarf_dieoffset(&child), poff);
		if (tag != DW_TAG_base_type && tag != DW_TAG_pointer_type)
			parents_walk(cp, &child, depth + 1);
	} while (dwarf_siblingof(&child, &child) == 0);
}

static struct cu_parents *unit_parents(struct td_program *prog, Dwarf_Die *cu)
{
	uint64_t off = dwarf_dieoffset(cu);
	for (size_t i = 0; i < prog->ncus; i++)
		if (prog->cus[i].cu == off)
			return &prog->cus[i];
	struct cu_parents *grown = realloc(prog->cus, (prog->ncus + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	prog->cus = grown;
	struct cu_parents *cp = &prog->cus[prog->ncus++];
	*cp = (struct cu_parents){ .cu = off };
	parents_walk(cp, cu, 0);
	return cp;
}

/* The same, the slow way: down from the unit to the DIE, every sibling on the way parsed. */
static char *walk_qualified_name(Dwarf_Die *die)
{
	Dwarf_Die cu;
	if (!dwarf_diecu(die, &cu, NULL, NULL))
		return NULL;
	Dwarf_Off target = dwarf_dieoffset(die);
	/* Siblings come in offset order: descend into the last one starting at or before target. */
	char buf[4096];
	size_t len = 0;
	Dwarf_Die parent = cu;
	for (int depth = 0; depth < 64; depth++) {
		Dwarf_Die child, best;
		bool have = false;
		if (dwarf_child(&parent, &child) != 0)
			return NULL;
		do {
			if (dwarf_dieoffset(&child) > target)
				break;
			best = child;
			have = true;
		} while (dwarf_siblingof(&child, &child) == 0);
		if (!have)
			return NULL;
		const char *name = dwarf_diename(&best);
		if (name) {
			int n = snprintf(buf + len, sizeof(buf) - len, "%s%s", len ? "::" : "", name);
			if (n < 0 || (size_t)n >= sizeof(buf) - len)
				return NULL;
			len += (size_t)n;
		}
		if (dwarf_dieoffset(&best) == target)
			return strdup(buf);
		parent = best;
	}
	return NULL;
}

char *td_program_qualified_name(struct td_program *prog, Dwarf_Die *die)
{
	Dwarf_Die cu, d;
	if (!dwarf_diecu(die, &cu, NULL, NULL))
		return NULL;
	struct cu_parents *cp = unit_parents(prog, &cu);
	if (!cp)
		return walk_qualified_name(die);
	const char *names[64];
	int n = 0;
	uint64_t off = dwarf_dieoffset(die), cu_off = dwarf_dieoffset(&cu);
	while (off != cu_off && n < 64) {
		uint64_t parent;
		if (!dwarf_offdie(prog->dwarf, off, &d) || !parents_get(cp, off, &parent))
			return walk_qualified_name(die);   /* not a scope the walk recorded */
		const char *name = dwarf_diename(&d);
		if (name)
			names[n++] = name;
		off = parent;
	}
	char buf[4096];
	size_t len = 0;
	for (int i = n - 1; i >= 0; i--) {
		int w = snprintf(buf + len, sizeof(buf) - len, "%s%s", len ? "::" : "", names[i]);
		if (w < 0 || (size_t)w >= sizeof(buf) - len)
			return NULL;
		len += (size_t)w;
	}
	return strdup(buf);
}

void td_program_forget_memory(struct td_program *prog)
{
	for (size_t i = 0; i < prog->capacity; i++) {
		if (prog->pages[i].owns)
			free(prog->pages[i].data);
		prog->pages[i] = (struct page){ 0 };
	}
	prog->npages = 0;
	prog->arena_used = 0;   /* the arena's pages are room again (and already faulted in) */
}

static struct path_entry *path_cached(struct td_program *prog, const char *path, int kind)
{
	for (size_t i = 0; i < prog->npaths; i++)
		if (prog->paths[i].kind == kind && strcmp(prog->paths[i].path, path) == 0)
			return &prog->paths[i];
	return NULL;
}

static void path_remember(struct td_program *prog, const char *path, int kind, bool found,
			  Dwarf_Die *die)
{
	struct path_entry *grown = realloc(prog->paths, (prog->npaths + 1) * sizeof(*grown));
	if (!grown)
		return;
	prog->paths = grown;
	char *copy = strdup(path);
	if (!copy)
		return;
	prog->paths[prog->npaths++] = (struct path_entry){ copy, kind, found, found ? *die : (Dwarf_Die){ 0 } };
}

static size_t memo_slot(struct memo_entry *memo, size_t cap, uint64_t k1, uint64_t k2)
{
	size_t i = td_hash_slot(k1 ^ (k2 * 0xC2B2AE3D27D4EB4Full), cap);
	while (memo[i].used && (memo[i].k1 != k1 || memo[i].k2 != k2))
		i = (i + 1) & (cap - 1);
	return i;
}

void *td_program_memo_get(struct td_program *prog, enum td_memo_kind kind, uint64_t die_offset, uint64_t extra)
{
	uint64_t k1 = extra, k2 = ((uint64_t)kind << 56) ^ die_offset;
	if (!prog->memo)
		return NULL;
	struct memo_entry *e = &prog->memo[memo_slot(prog->memo, prog->memo_cap, k1, k2)];
	return e->used ? e->value : NULL;
}

void td_program_memo_put(struct td_program *prog, enum td_memo_kind kind, uint64_t die_offset, uint64_t extra,
			 void *value)
{
	uint64_t k1 = extra, k2 = ((uint64_t)kind << 56) ^ die_offset;
	if ((prog->nmemo + 1) * 2 > prog->memo_cap) {
		size_t cap = prog->memo_cap ? prog->memo_cap * 2 : 256;
		struct memo_entry *grown = calloc(cap, sizeof(*grown));
		if (!grown) {
			free(value);
			return;
		}
		for (size_t i = 0; i < prog->memo_cap; i++)
			if (prog->memo[i].used)
				grown[memo_slot(grown, cap, prog->memo[i].k1, prog->memo[i].k2)] = prog->memo[i];
		free(prog->memo);
		prog->memo = grown;
		prog->memo_cap = cap;
	}
	struct memo_entry *e = &prog->memo[memo_slot(prog->memo, prog->memo_cap, k1, k2)];
	if (e->used) {
		free(e->value);
	} else {
		prog->nmemo++;
	}
	*e = (struct memo_entry){ k1, k2, true, value };
}

void td_program_destroy(struct td_program *prog)
{
	if (!prog)
		return;
	for (size_t i = 0; i < prog->memo_cap; i++)
		if (prog->memo[i].used)
			free(prog->memo[i].value);
	free(prog->memo);
	for (size_t i = 0; i < prog->npaths; i++)
		free(prog->paths[i].path);
	free(prog->paths);
	for (size_t i = 0; prog->pages && i < prog->capacity; i++)
		if (prog->pages[i].owns)
			free(prog->pages[i].data);
	free(prog->pages);
	for (size_t i = 0; i < prog->ncus; i++) {
		td_map_free(&prog->cus[i].parents);
	}
	free(prog->cus);
	if (prog->arena)
		munmap(prog->arena, prog->arena_size);
	td_symbolizer_destroy(prog->sym);
	free(prog);
}

bool td_program_own_source(struct td_program *prog, Dwarf_Die *die, const char *file)
{
	return td_source_is_own(td_source_workspace(prog->exe), td_source_comp_dir(die), file);
}

uint64_t td_program_bias(struct td_program *prog)
{
	return prog->bias;
}

struct td_symbolizer *td_program_symbolizer(struct td_program *prog)
{
	return prog->sym;
}

struct td_snapshot *td_program_snapshot(struct td_program *prog)
{
	return prog->snap;
}

static struct page *page_slot(struct page *pages, size_t capacity, uint64_t number)
{
	size_t mask = capacity - 1;
	size_t i = td_hash_slot(number, capacity);
	while (pages[i].number && pages[i].number != number)
		i = (i + 1) & mask;
	return &pages[i];
}

static bool page_cached(struct td_program *prog, uint64_t number)
{
	return page_slot(prog->pages, prog->capacity, number + 1)->number != 0;
}

/* Makes room for one more page; false if out of memory. */
static bool grow_pages(struct td_program *prog)
{
	if ((prog->npages + 1) * 2 <= prog->capacity)
		return true;
	size_t cap = prog->capacity * 2;
	struct page *grown = calloc(cap, sizeof(*grown));
	if (!grown)
		return false;
	for (size_t i = 0; i < prog->capacity; i++)
		if (prog->pages[i].number)
			*page_slot(grown, cap, prog->pages[i].number) = prog->pages[i];
	free(prog->pages);
	prog->pages = grown;
	prog->capacity = cap;
	return true;
}

/*
 * Room for n pages of cache: from the reserved arena while it lasts (owns =
 * false: the arena is freed as a whole), else malloc (owns = true).
 */
static unsigned char *page_room(struct td_program *prog, size_t n, bool *owns)
{
	size_t want = n * TD_PAGE_SIZE;
	if (prog->arena && prog->arena_size - prog->arena_used >= want) {
		unsigned char *room = prog->arena + prog->arena_used;
		prog->arena_used += want;
		*owns = false;
		return room;
	}
	*owns = true;
	return malloc(want);
}

void td_program_reserve(struct td_program *prog, size_t bytes)
{
	if (prog->arena || bytes < TD_PAGE_SIZE)
		return;
	bytes -= bytes % TD_PAGE_SIZE;
	/* MAP_POPULATE: the page faults (zeroing, accounting) happen now, not while the target is stopped. */
	void *a = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (a == MAP_FAILED)
		return;
	prog->arena = a;
	prog->arena_size = bytes;
	prog->arena_used = 0;
}

/* Files a page whose bytes are already in data (owns: data is its own allocation). */
static struct page *add_page(struct td_program *prog, uint64_t number, unsigned char *data, size_t valid, bool owns)
{
	if (!grow_pages(prog))
		return NULL;
	struct page *p = page_slot(prog->pages, prog->capacity, number + 1);
	*p = (struct page){ .number = number + 1, .valid = (uint32_t)valid, .owns = owns, .data = data };
	prog->npages++;
	return p;
}

/*
 * Read-ahead: when the page next to a missed one is cached, the reads run
 * through memory in one direction (tokio's owned list, allocated in order,
 * is walked newest first: downward), and the next TD_READ_AHEAD pages that
 * way are read in one call. 100,000 tasks: 5,000 reads become ~400.
 */
#define TD_READ_AHEAD 16

static const struct page *read_ahead(struct td_program *prog, uint64_t number)
{
	int dir = 0;
	if (number > 0 && page_cached(prog, number - 1))
		dir = 1;
	else if (number + 1 != 0 && page_cached(prog, number + 1))
		dir = -1;
	if (!dir || prog->npages + TD_READ_AHEAD >= TD_CACHE_MAX_PAGES)
		return NULL;
	uint64_t lo = number, n = 1;
	while (n < TD_READ_AHEAD) {
		uint64_t next = dir > 0 ? lo + n : lo - 1;
		if ((dir < 0 && lo == 0) || page_cached(prog, next))
			break;
		if (dir < 0)
			lo = next;
		n++;
	}
	if (n == 1)
		return NULL;
	/* Read straight into one block the pages share (the first page owns it, if malloc'd): no copy. */
	bool owns;
	unsigned char *block = page_room(prog, (size_t)n, &owns);
	if (!block)
		return NULL;
	size_t got = td_snapshot_read(prog->snap, lo * TD_PAGE_SIZE, block, n * TD_PAGE_SIZE);
	if (got < (number - lo + 1) * TD_PAGE_SIZE) {
		if (owns)
			free(block);
		return NULL;  /* the missed page is not in what was read: read it alone */
	}
	const struct page *wanted = NULL;
	for (uint64_t k = 0; k < n && k * TD_PAGE_SIZE < got; k++) {
		size_t valid = got - k * TD_PAGE_SIZE;
		struct page *p = add_page(prog, lo + k, block + k * TD_PAGE_SIZE,
					  valid > TD_PAGE_SIZE ? TD_PAGE_SIZE : valid, owns && k == 0);
		if (!p) {
			if (owns && k == 0)
				free(block);
			return NULL;  /* the pages filed so far keep the block */
		}
		if (lo + k == number)
			wanted = p;
	}
	return wanted;
}

static const struct page *get_page(struct td_program *prog, uint64_t number)
{
	struct page *p = page_slot(prog->pages, prog->capacity, number + 1);
	if (p->number)
		return p;
	if (prog->npages >= TD_CACHE_MAX_PAGES) {
		/* Full: serve this read without caching it. */
		static unsigned char scratch[TD_PAGE_SIZE];
		static struct page uncached = { .data = scratch };
		uncached.valid = (uint32_t)td_snapshot_read(prog->snap, number * TD_PAGE_SIZE, scratch, TD_PAGE_SIZE);
		return &uncached;
	}
	const struct page *ahead = read_ahead(prog, number);
	if (ahead)
		return ahead;
	bool owns;
	unsigned char *data = page_room(prog, 1, &owns);
	if (!data)
		return NULL;
	size_t valid = td_snapshot_read(prog->snap, number * TD_PAGE_SIZE, data, TD_PAGE_SIZE);
	const struct page *fresh = add_page(prog, number, data, valid, owns);
	if (!fresh && owns)
		free(data);
	return fresh;
}

struct td_error *td_program_read(struct td_program *prog, uint64_t addr, void *buf, size_t len)
{
	size_t done = 0;
	/* Made-up values (snapshot scratch) change between calls: never cached. */
	if (addr >= TD_SCRATCH_BASE) {
		if (td_snapshot_read(prog->snap, addr, buf, len) == len)
			return NULL;
		return td_error_fault(addr, "cannot read %zu bytes at 0x%llx: past a value taskdbg made up",
				      len, (unsigned long long)addr);
	}
	while (done < len) {
		uint64_t a = addr + done;
		if (a < addr)
			break;  /* wrapped around */
		const struct page *p = get_page(prog, a / TD_PAGE_SIZE);
		if (!p)
			return &td_enomem;
		size_t off = (size_t)(a % TD_PAGE_SIZE);
		if (off >= p->valid)
			break;
		size_t n = p->valid - off;
		if (n > len - done)
			n = len - done;
		memcpy((char *)buf + done, p->data + off, n);
		done += n;
	}
	if (done < len)
		return td_error_fault(addr + done, "cannot read %zu bytes at 0x%llx: not mapped in the %s",
				      len, (unsigned long long)(addr + done),
				      prog->snap->kind == TD_SNAPSHOT_CORE ? "core" : "process");
	return NULL;
}

struct td_error *td_program_read_uint(struct td_program *prog, uint64_t addr, size_t size,
				      uint64_t *ret)
{
	if (size != 1 && size != 2 && size != 4 && size != 8)
		return td_error_format(TD_ERR_INTERNAL, "cannot read an integer of %zu bytes", size);
	uint64_t v = 0;
	struct td_error *err = td_program_read(prog, addr, &v, size);
	if (!err)
		*ret = v;
	return err;
}

/* Splits "a::b<c::d>::e" at top-level "::" into components (in buf). */
static int split_path(const char *path, char *buf, size_t size, const char **comps, int max)
{
	size_t len = strlen(path);
	if (len + 1 > size)
		return -1;
	memcpy(buf, path, len + 1);
	int n = 0, depth = 0;
	comps[n++] = buf;
	for (char *p = buf; *p; p++) {
		if (*p == '<' || *p == '(' || *p == '[')
			depth++;
		else if ((*p == '>' || *p == ')' || *p == ']') && depth > 0)
			depth--;
		else if (depth == 0 && p[0] == ':' && p[1] == ':') {
			if (n == max)
				return -1;
			*p = '\0';
			comps[n++] = p + 2;
			p++;
		}
	}
	return n;
}

static bool die_name_is(Dwarf_Die *die, const char *name)
{
	const char *n = dwarf_diename(die);
	return n && strcmp(n, name) == 0;
}

/* Depth-first along the path: namespaces (and types, for nested items) named comps[0..]. */
static bool find_in(Dwarf_Die *parent, const char **comps, int n, int tag, Dwarf_Die *ret)
{
	Dwarf_Die child;
	if (dwarf_child(parent, &child) != 0)
		return false;
	do {
		if (!die_name_is(&child, comps[0]))
			continue;
		int t = dwarf_tag(&child);
		if (n == 1) {
			/* A declaration is not the complete type: keep looking. */
			if ((tag == 0 || t == tag) && !dwarf_hasattr(&child, DW_AT_declaration)) {
				*ret = child;
				return true;
			}
		} else if ((t == DW_TAG_namespace || t == DW_TAG_structure_type ||
			    t == DW_TAG_union_type || t == DW_TAG_enumeration_type) &&
			   find_in(&child, comps + 1, n - 1, tag, ret)) {
			return true;
		}
	} while (dwarf_siblingof(&child, &child) == 0);
	return false;
}

/* Calls cb for each unit's DIE: units of crate first (rustc names them ".../@/CRATE.hash-cgu.N"). */
static bool each_unit(struct td_program *prog, const char *crate,
		      bool (*cb)(Dwarf_Die *cu, void *arg), void *arg)
{
	char needle[256];
	snprintf(needle, sizeof(needle), "/@/%s.", crate ? crate : "");
	for (int pass = crate ? 0 : 1; pass < 2; pass++) {
		Dwarf_Off off = 0, next;
		size_t hsize;
		while (dwarf_nextcu(prog->dwarf, off, &next, &hsize, NULL, NULL, NULL) == 0) {
			Dwarf_Die cu;
			if (dwarf_offdie(prog->dwarf, off + hsize, &cu)) {
				const char *name = dwarf_diename(&cu);
				bool ours = name && strstr(name, needle);
				if ((pass == 0) == ours && !cb(&cu, arg))
					return true;
			}
			off = next;
		}
	}
	return false;
}

struct find_state {
	const char **comps;
	int n, tag;
	Dwarf_Die *ret;
	bool found;
};

static bool find_unit_cb(Dwarf_Die *cu, void *arg)
{
	struct find_state *st = arg;
	st->found = find_in(cu, st->comps, st->n, st->tag, st->ret);
	return !st->found;
}

static bool find_uncached(struct td_program *prog, const char *path, int tag, Dwarf_Die *ret);

bool td_program_find(struct td_program *prog, const char *path, int tag, Dwarf_Die *ret)
{
	struct path_entry *e = path_cached(prog, path, tag);
	if (e) {
		if (e->found)
			*ret = e->die;
		return e->found;
	}
	bool found = find_uncached(prog, path, tag, ret);
	path_remember(prog, path, tag, found, ret);
	return found;
}

static bool find_uncached(struct td_program *prog, const char *path, int tag, Dwarf_Die *ret)
{
	char buf[4096];
	const char *comps[TD_PATH_MAX_COMPONENTS];
	int n = split_path(path, buf, sizeof(buf), comps, TD_PATH_MAX_COMPONENTS);
	if (n <= 0)
		return false;
	struct find_state st = { comps, n, tag, ret, false };
	each_unit(prog, n > 1 ? comps[0] : NULL, find_unit_cb, &st);
	return st.found;
}

struct each_state {
	const char **comps;
	int n, tag;
	const char *prefix;
	bool (*cb)(Dwarf_Die *, void *);
	void *arg;
	bool stop;
};

static void each_in(Dwarf_Die *parent, struct each_state *st, int level)
{
	Dwarf_Die child;
	if (st->stop || dwarf_child(parent, &child) != 0)
		return;
	do {
		if (level < st->n) {
			if (dwarf_tag(&child) == DW_TAG_namespace && die_name_is(&child, st->comps[level]))
				each_in(&child, st, level + 1);
		} else {
			const char *name = dwarf_diename(&child);
			if ((st->tag == 0 || dwarf_tag(&child) == st->tag) && name &&
			    strncmp(name, st->prefix, strlen(st->prefix)) == 0 &&
			    !dwarf_hasattr(&child, DW_AT_declaration) && !st->cb(&child, st->arg)) {
				st->stop = true;
				return;
			}
		}
	} while (!st->stop && dwarf_siblingof(&child, &child) == 0);
}

static bool each_unit_cb(Dwarf_Die *cu, void *arg)
{
	struct each_state *st = arg;
	each_in(cu, st, 0);
	return !st->stop;
}

void td_program_each_in_namespace(struct td_program *prog, const char *ns_path, int tag,
				  const char *prefix,
				  bool (*cb)(Dwarf_Die *die, void *arg), void *arg)
{
	char buf[4096];
	const char *comps[TD_PATH_MAX_COMPONENTS];
	int n = split_path(ns_path, buf, sizeof(buf), comps, TD_PATH_MAX_COMPONENTS);
	if (n <= 0)
		return;
	struct each_state st = { comps, n, tag, prefix ? prefix : "", cb, arg, false };
	/* Generic instances live in the units that instantiate them: every unit. */
	each_unit(prog, NULL, each_unit_cb, &st);
}

/* The constant operand of a one- or two-operation location expression. */
static bool location_constant(Dwarf_Die *var, unsigned *second_op, uint64_t *ret)
{
	Dwarf_Attribute attr;
	Dwarf_Op *ops;
	size_t nops;
	if (!dwarf_attr(var, DW_AT_location, &attr) || dwarf_getlocation(&attr, &ops, &nops) != 0 ||
	    nops == 0 || nops > 2)
		return false;
	switch (ops[0].atom) {
	case DW_OP_addr: case DW_OP_const1u: case DW_OP_const2u: case DW_OP_const4u:
	case DW_OP_const8u: case DW_OP_constu:
		*ret = ops[0].number;
		break;
	default:
		return false;
	}
	*second_op = nops == 2 ? ops[1].atom : 0;
	return true;
}

static bool has_tls_location(Dwarf_Die *var)
{
	uint64_t offset;
	unsigned op;
	return location_constant(var, &op, &offset) &&
	       (op == DW_OP_GNU_push_tls_address || op == DW_OP_form_tls_address);
}

/* A thread-local variable with a location anywhere below die (bounded depth). */
static bool find_tls_below(Dwarf_Die *die, int depth, Dwarf_Die *ret)
{
	Dwarf_Die child;
	if (depth > 6 || dwarf_child(die, &child) != 0)
		return false;
	do {
		int tag = dwarf_tag(&child);
		if (tag == DW_TAG_variable && has_tls_location(&child)) {
			*ret = child;
			return true;
		}
		if (tag == DW_TAG_namespace && find_tls_below(&child, depth + 1, ret))
			return true;
	} while (dwarf_siblingof(&child, &child) == 0);
	return false;
}

struct tls_state {
	const char **comps;
	int n;
	Dwarf_Die *ret;
	bool found;
};

static void tls_in(Dwarf_Die *parent, struct tls_state *st, int level)
{
	Dwarf_Die child;
	if (st->found || dwarf_child(parent, &child) != 0)
		return;
	do {
		if (!die_name_is(&child, st->comps[level]))
			continue;
		if (level + 1 < st->n) {
			if (dwarf_tag(&child) == DW_TAG_namespace)
				tls_in(&child, st, level + 1);
		} else if (dwarf_tag(&child) == DW_TAG_variable ? has_tls_location(&child)
			   : find_tls_below(&child, 0, st->ret)) {
			if (dwarf_tag(&child) == DW_TAG_variable)
				*st->ret = child;
			st->found = true;
		}
	} while (!st->found && dwarf_siblingof(&child, &child) == 0);
}

static bool tls_unit_cb(Dwarf_Die *cu, void *arg)
{
	struct tls_state *st = arg;
	tls_in(cu, st, 0);
	return !st->found;
}

static bool find_tls_uncached(struct td_program *prog, const char *path, Dwarf_Die *ret);

bool td_program_find_tls(struct td_program *prog, const char *path, Dwarf_Die *ret)
{
	struct path_entry *e = path_cached(prog, path, -1);
	if (e) {
		if (e->found)
			*ret = e->die;
		return e->found;
	}
	bool found = find_tls_uncached(prog, path, ret);
	path_remember(prog, path, -1, found, ret);
	return found;
}

static bool find_tls_uncached(struct td_program *prog, const char *path, Dwarf_Die *ret)
{
	char buf[4096];
	const char *comps[TD_PATH_MAX_COMPONENTS];
	int n = split_path(path, buf, sizeof(buf), comps, TD_PATH_MAX_COMPONENTS);
	if (n <= 0)
		return false;
	struct tls_state st = { comps, n, ret, false };
	each_unit(prog, n > 1 ? comps[0] : NULL, tls_unit_cb, &st);
	return st.found;
}

struct td_error *td_program_tls_address(struct td_program *prog, Dwarf_Die *var, pid_t tid,
					uint64_t *ret)
{
	uint64_t offset;
	unsigned op;
	if (!location_constant(var, &op, &offset) ||
	    (op != DW_OP_GNU_push_tls_address && op != DW_OP_form_tls_address))
		return td_error_not_found("%s is not a thread-local of the executable",
					  dwarf_diename(var) ? dwarf_diename(var) : "variable");
	if (!prog->tls_block_size)
		return td_error_not_found("the executable has no TLS segment");
	for (size_t i = 0; i < prog->snap->nthreads; i++) {
		if (prog->snap->threads[i].tid == tid) {
			/* x86_64 variant II: the static TLS block ends at the thread pointer. */
			*ret = prog->snap->threads[i].regs.fs_base - prog->tls_block_size + offset;
			return NULL;
		}
	}
	return td_error_not_found("no thread %d in the snapshot", (int)tid);
}

struct td_error *td_program_static_address(struct td_program *prog, Dwarf_Die *var, uint64_t *ret)
{
	uint64_t addr;
	unsigned op;
	if (!location_constant(var, &op, &addr) || op != 0)
		return td_error_not_found("%s has no static address",
					  dwarf_diename(var) ? dwarf_diename(var) : "variable");
	*ret = addr + prog->bias;
	return NULL;
}

bool td_program_function_at(struct td_program *prog, uint64_t addr, Dwarf_Die *ret)
{
	return td_symbolizer_function_at(prog->sym, prog->exe, addr, ret);
}

char *td_program_symbol_at(struct td_program *prog, uint64_t addr)
{
	GElf_Sym sym;
	GElf_Off off;
	const char *name = dwfl_module_addrinfo(prog->exe, addr, &off, &sym, NULL, NULL, NULL);
	if (!name || off != 0)
		return NULL;
	char *d = td_demangle(name);
	return d ? d : strdup(name);
}

bool td_program_die_at(struct td_program *prog, uint64_t offset, Dwarf_Die *ret)
{
	return dwarf_offdie(prog->dwarf, (Dwarf_Off)offset, ret) != NULL;
}
