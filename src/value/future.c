#include "value/future.h"

#include <dwarf.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "value/program.h"

bool td_future_is_async_body(Dwarf_Die *t)
{
	const char *name = dwarf_diename(t);
	return name && strncmp(name, "{async_", 7) == 0;
}

/* The type of a function's first formal parameter (through its abstract origin). */
static bool first_param_type(Dwarf_Die *fn, Dwarf_Die *ret)
{
	Dwarf_Die die = *fn, child;
	for (int hop = 0; hop < 3; hop++) {
		if (dwarf_child(&die, &child) == 0) {
			do {
				if (dwarf_tag(&child) == DW_TAG_formal_parameter)
					return td_die_type(&child, ret);
			} while (dwarf_siblingof(&child, &child) == 0);
		}
		Dwarf_Attribute attr;
		if (!dwarf_attr(&die, DW_AT_abstract_origin, &attr) &&
		    !dwarf_attr(&die, DW_AT_specification, &attr))
			return false;
		if (!dwarf_formref_die(&attr, &die))
			return false;
	}
	return false;
}

bool td_future_pin_inner(struct td_value *v)
{
	const char *name = dwarf_diename(&v->type);
	Dwarf_Die inner;
	uint64_t off;
	if (!name || strncmp(name, "Pin<", 4) != 0 ||
	    !(td_type_member(&v->type, "pointer", &inner, &off) ||
	      td_type_member(&v->type, "__pointer", &inner, &off)))
		return false;
	td_value_init(v, v->prog, &inner, v->address + off);
	return true;
}

bool td_future_unbox(struct td_value *v)
{
	struct td_value u = *v;
	bool unboxed = false;
	for (int hop = 0; hop < 4; hop++) {
		if (td_future_pin_inner(&u))
			continue;
		const char *name = dwarf_diename(&u.type);
		/* Rust before 1.67 (Debian 12's 1.63) wraps each async body T in a GenFuture<T>(T). */
		if (name && strncmp(name, "GenFuture<", 10) == 0) {
			Dwarf_Die inner;
			uint64_t off;
			if (!td_type_member(&u.type, "__0", &inner, &off) || !td_future_is_async_body(&inner))
				break;
			td_value_init(&u, u.prog, &inner, u.address + off);
			unboxed = true;
			continue;
		}
		/* A `&mut dyn Future` is laid out as a dyn box: what #[tokio::test] hands block_on. */
		bool dyn_ref = name && strncmp(name, "&mut dyn ", 9) == 0 && dwarf_tag(&u.type) != DW_TAG_pointer_type;
		if (!name || (strncmp(name, "alloc::boxed::Box<", 18) != 0 && !dyn_ref))
			break;
		uint64_t data, vtable, size, poll, want;
		if (dwarf_tag(&u.type) == DW_TAG_pointer_type) {
			Dwarf_Die pointee;
			if (!td_die_type(&u.type, &pointee) ||
			    td_program_read_uint(u.prog, u.address, 8, &data) || !data)
				return false;
			td_value_init(&u, u.prog, &pointee, data);
			unboxed = true;
			continue;
		}
		Dwarf_Die t, fn, param;
		uint64_t off_data, off_vtable;
		if (!td_type_member(&u.type, "pointer", &t, &off_data) ||
		    !td_type_member(&u.type, "vtable", &t, &off_vtable) ||
		    td_program_read_uint(u.prog, u.address + off_data, 8, &data) || !data ||
		    td_program_read_uint(u.prog, u.address + off_vtable, 8, &vtable) || !vtable ||
		    td_program_read_uint(u.prog, vtable + 8, 8, &size) ||
		    td_program_read_uint(u.prog, vtable + 24, 8, &poll) ||
		    !td_program_function_at(u.prog, poll, &fn) || !first_param_type(&fn, &param))
			return false;
		struct td_value self = { .prog = u.prog, .type = param };
		Dwarf_Die future;
		if (!td_future_pin_inner(&self) || !td_die_type(&self.type, &future) ||
		    !td_type_size(&future, &want) || want != size)
			return false;
		td_value_init(&u, u.prog, &future, data);
		unboxed = true;
	}
	if (unboxed)
		*v = u;
	return unboxed;
}

/*
 * A search inside a future's value for a value of a wanted type: the async
 * body a wrapper polls (td_future_inner_async), or a named leaf such as a
 * socket's PollEvented (td_future_find). Through fields, the active variant
 * of enums and boxes; through references too if through_refs (what a leaf
 * future borrows, such as the stream a read future reads, is what it waits
 * on). Whether a type can hold one at all is worked out once per type from
 * DWARF and memoized (memo, which), so a leaf that cannot costs a lookup.
 */
struct finder {
	const char *prefix;          /* a type path's beginning; NULL: an async body */
	const char *base;            /* its last component, what DWARF names the type */
	struct td_program *prog;
	size_t base_len;
	uint64_t which;              /* memo extra: which prefix */
	bool through_refs;
	bool past_async;             /* named search: also inside async bodies met on the way */
	int budget;                  /* values visited, at most */
	bool fixed;                  /* cleared when the way down depends on the value */
	struct td_value *path;       /* the values on the way down (not the one found), if not NULL */
	int npath, max_path;
};

/* DWARF names a type by its last path component ("PollEvented<..>"); its namespaces are its parents. */
static bool finder_match(const struct finder *f, Dwarf_Die *t)
{
	if (!f->prefix)
		return td_future_is_async_body(t);
	const char *name = dwarf_diename(t);
	if (!name || strncmp(name, f->base, f->base_len) != 0 || dwarf_tag(t) == DW_TAG_pointer_type)
		return false;
	if (f->base == f->prefix)
		return true;
	/* The qualified name is a walk of the unit: once per type. */
	bool *memo = td_program_memo_get(f->prog, TD_MEMO_NAMED, dwarf_dieoffset(t), f->which);
	if (memo)
		return *memo;
	char *full = td_program_qualified_name(f->prog, t);
	bool yes = full && strncmp(full, f->prefix, strlen(f->prefix)) == 0;
	free(full);
	if ((memo = malloc(sizeof(*memo)))) {
		*memo = yes;
		td_program_memo_put(f->prog, TD_MEMO_NAMED, dwarf_dieoffset(t), f->which, memo);
	}
	return yes;
}

static bool is_ref_name(const char *name)
{
	return name && name[0] == '&';
}

/* A type met again while it is being worked out counts as not (recursive types). */
#define TD_DESCEND_TYPE_DEPTH 48
static bool members_may_hold(struct td_program *prog, const struct finder *f, Dwarf_Die *parent, int depth);

static bool may_hold(struct td_program *prog, const struct finder *f, Dwarf_Die *t, int depth)
{
	/* The memo first: a per-task call on a leaf type costs a lookup, no DWARF (libdw locks). */
	enum td_memo_kind kind = f->prefix ? TD_MEMO_HOLDS_NAMED : TD_MEMO_HOLDS_ASYNC;
	uint64_t key = dwarf_dieoffset(t);
	bool *memo = td_program_memo_get(prog, kind, key, f->which);
	if (memo)
		return *memo;
	if (depth > TD_DESCEND_TYPE_DEPTH)
		return false;
	if (!(memo = malloc(sizeof(*memo))))
		return false;
	*memo = false;  /* while being worked out */
	td_program_memo_put(prog, kind, key, f->which, memo);
	if (finder_match(f, t)) {
		*memo = true;
		return true;
	}
	bool yes = false;
	const char *name = dwarf_diename(t);
	int tag = dwarf_tag(t);
	if (tag == DW_TAG_pointer_type) {
		Dwarf_Die pointee;
		yes = name && (strncmp(name, "alloc::boxed::Box<", 18) == 0 || (f->through_refs && is_ref_name(name))) &&
		      td_die_type(t, &pointee) && may_hold(prog, f, &pointee, depth + 1);
	} else if (tag == DW_TAG_structure_type || tag == DW_TAG_union_type) {
		/* A box of a dyn Future may hold anything; a reference to one is no ownership. */
		if (name && strncmp(name, "alloc::boxed::Box<(dyn core::future::future::Future", 51) == 0)
			yes = true;
		else if (name && (name[0] == '&' || strncmp(name, "*const ", 7) == 0 || strncmp(name, "*mut ", 5) == 0 ||
				  strncmp(name, "Arc<", 4) == 0 || strncmp(name, "Rc<", 3) == 0 ||
				  strncmp(name, "Weak<", 5) == 0))
			yes = false;
		else
			yes = members_may_hold(prog, f, t, depth);
	}
	*memo = yes;
	return yes;
}

/* Members of a struct, and of every variant of its variant part. */
static bool members_may_hold(struct td_program *prog, const struct finder *f, Dwarf_Die *parent, int depth)
{
	Dwarf_Die child;
	if (dwarf_child(parent, &child) != 0)
		return false;
	do {
		int tag = dwarf_tag(&child);
		Dwarf_Die type;
		if (tag == DW_TAG_member && td_die_type(&child, &type) && may_hold(prog, f, &type, depth + 1))
			return true;
		if ((tag == DW_TAG_variant_part || tag == DW_TAG_variant) && members_may_hold(prog, f, &child, depth))
			return true;
	} while (dwarf_siblingof(&child, &child) == 0);
	return false;
}

#define TD_DESCEND_DEPTH 32
#define TD_DESCEND_VALUES 256
static bool find_in(struct td_value *v, struct finder *f, int depth);
static bool members_find(struct td_value *v, struct finder *f, Dwarf_Die *parent, int depth);

/* Into u (a value inside v) and on from there; v is kept on the path if found. */
static bool find_below(struct td_value *v, struct td_value *u, struct finder *f, int depth)
{
	int mark = f->npath;
	if (f->path && f->npath < f->max_path)
		f->path[f->npath++] = *v;
	if (find_in(u, f, depth + 1)) {
		*v = *u;
		return true;
	}
	f->npath = mark;
	return false;
}

static bool find_in(struct td_value *v, struct finder *f, int depth)
{
	if (--f->budget < 0 || depth > TD_DESCEND_DEPTH || !may_hold(v->prog, f, &v->type, 0))
		return false;
	if (finder_match(f, &v->type))
		return true;
	if (f->prefix && !f->past_async && td_future_is_async_body(&v->type))
		return false;
	struct td_value u = *v;
	if (td_future_unbox(&u)) {
		f->fixed = false;
		return find_below(v, &u, f, depth);
	}
	const char *name = dwarf_diename(&v->type);
	if (f->through_refs && dwarf_tag(&v->type) == DW_TAG_pointer_type && is_ref_name(name)) {
		Dwarf_Die pointee;
		uint64_t target;
		if (!td_die_type(&v->type, &pointee) || td_program_read_uint(v->prog, v->address, 8, &target) || !target)
			return false;
		td_value_init(&u, v->prog, &pointee, target);
		f->fixed = false;
		return find_below(v, &u, f, depth);
	}
	if (dwarf_tag(&v->type) != DW_TAG_structure_type)
		return false;
	/* An enum: only its active variant's payload is alive. */
	if (!td_type_has_discr(v->prog, &v->type))
		return members_find(v, f, &v->type, depth);
	const char *vname;
	uint64_t discr;
	struct td_error *err = td_value_variant(v, &u, &vname, &discr, NULL);
	if (err) {
		td_error_destroy(err);
		return false;
	}
	f->fixed = false;
	return find_below(v, &u, f, depth);
}

/*
 * The members of a struct (parent: the struct) in turn. A variant part
 * without a discriminant (an enum with one inhabited variant, such as
 * hyper's ProtoServer without http2: its H2 variant holds a type that has no
 * values) is tried variant by variant, in order.
 */
static bool members_find(struct td_value *v, struct finder *f, Dwarf_Die *parent, int depth)
{
	Dwarf_Die child;
	if (dwarf_child(parent, &child) != 0)
		return false;
	do {
		Dwarf_Die type, variant;
		uint64_t off;
		int tag = dwarf_tag(&child);
		if (tag == DW_TAG_variant_part) {
			Dwarf_Attribute attr;
			if (dwarf_attr(&child, DW_AT_discr, &attr) || dwarf_child(&child, &variant) != 0)
				continue;
			do {
				f->fixed = false;   /* which variant holds it depends on deeper values */
				if (dwarf_tag(&variant) == DW_TAG_variant && members_find(v, f, &variant, depth))
					return true;
			} while (dwarf_siblingof(&variant, &variant) == 0);
			continue;
		}
		if (tag != DW_TAG_member || !td_die_type(&child, &type) ||
		    !td_member_offset(&child, &off) || !may_hold(v->prog, f, &type, 0))
			continue;
		struct td_value m;
		td_value_init(&m, v->prog, &type, v->address + off);
		if (find_below(v, &m, f, depth))
			return true;
	} while (dwarf_siblingof(&child, &child) == 0);
	return false;
}

/*
 * A way down that reads nothing (struct fields only: Timeout's `value`,
 * Instrumented's `inner`) is the same for every value of the type: it is
 * remembered per type, so 100,000 tasks awaiting through one wrapper type
 * cost one walk and then an offset each.
 */
struct fixed_path { Dwarf_Die type; uint64_t offset; };

/*
 * find_in from v; with remember, the way down is looked up first and, when it
 * read nothing, remembered per (type, extra: which search).
 */
static bool find_remembered(struct td_value *v, struct finder *f, uint64_t extra, bool remember)
{
	uint64_t key = dwarf_dieoffset(&v->type);
	struct fixed_path *fp = remember ? td_program_memo_get(v->prog, TD_MEMO_FIXED_PATH, key, extra) : NULL;
	if (fp) {
		td_value_init(v, v->prog, &fp->type, v->address + fp->offset);
		return true;
	}
	f->fixed = true;
	struct td_value u = *v;
	if (!find_in(&u, f, 0))
		return false;
	if (remember && f->fixed && u.address >= v->address && (fp = malloc(sizeof(*fp)))) {
		fp->type = u.type;
		fp->offset = u.address - v->address;
		td_program_memo_put(v->prog, TD_MEMO_FIXED_PATH, key, extra, fp);
	}
	*v = u;
	return true;
}

bool td_future_inner_async(struct td_value *v)
{
	if (td_future_is_async_body(&v->type))
		return false;
	struct finder f = { .budget = TD_DESCEND_VALUES };
	return find_remembered(v, &f, 0, true);
}

/* The prefixes asked for so far: a prefix's index tells its memo entries apart. */
#define TD_FIND_PREFIXES 32
static char *find_prefixes[TD_FIND_PREFIXES];

/* A finder for a named search; false if too many prefixes were asked for. */
static bool named_finder(struct finder *f, struct td_program *prog, const char *prefix, bool past_async)
{
	uint64_t which = 0;
	while (which < TD_FIND_PREFIXES && find_prefixes[which] && strcmp(find_prefixes[which], prefix) != 0)
		which++;
	if (which == TD_FIND_PREFIXES)
		return false;
	if (!find_prefixes[which] && !(find_prefixes[which] = strdup(prefix)))
		return false;
	*f = (struct finder){ .prefix = prefix, .base = prefix, .prog = prog, .which = which + 1, .through_refs = true,
			      .past_async = past_async, .budget = TD_DESCEND_VALUES };
	/* "a::b::C<" -> "C<": the last "::" before any '<'. */
	const char *lt = strchr(prefix, '<');
	for (const char *p = prefix; *p && (!lt || p < lt); p++)
		if (p[0] == ':' && p[1] == ':')
			f->base = p + 2;
	f->base_len = strlen(f->base);
	return true;
}

bool td_future_never_holds(struct td_value *v, const char *prefix, bool past_async)
{
	struct finder f;
	if (!named_finder(&f, v->prog, prefix, past_async))
		return false;
	return !may_hold(v->prog, &f, &v->type, 0) ||
	       (!past_async && td_future_is_async_body(&v->type) && !finder_match(&f, &v->type));
}

int td_future_find(struct td_value *v, const char *prefix, bool past_async, struct td_value *path, int max_path)
{
	struct finder f;
	if (!named_finder(&f, v->prog, prefix, past_async))
		return -1;
	f.path = path;
	f.max_path = max_path;
	/* As for inner_async, per prefix (which) and past_async; not when the path is wanted. */
	if (!find_remembered(v, &f, f.which << 1 | past_async, !path))
		return -1;
	return f.npath;
}

/* The decl_file of an async body's first variant (Unresumed): the file the async fn is written in. */
static const char *own_file(Dwarf_Die *state)
{
	Dwarf_Die part, variant, member;
	if (dwarf_child(state, &part) != 0)
		return NULL;
	do {
		if (dwarf_tag(&part) != DW_TAG_variant_part || dwarf_child(&part, &variant) != 0)
			continue;
		do {
			if (dwarf_tag(&variant) == DW_TAG_variant && dwarf_child(&variant, &member) == 0)
				return dwarf_decl_file(&member);
		} while (dwarf_siblingof(&variant, &variant) == 0);
	} while (dwarf_siblingof(&part, &part) == 0);
	return NULL;
}

const char *td_future_body_file(Dwarf_Die *state)
{
	return own_file(state);
}

/* Two units may spell one file differently: "src/main.rs" and "/home/x/app/src/main.rs". */
static bool same_file(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la < lb) {
		const char *t = a; a = b; b = t;
		size_t l = la; la = lb; lb = l;
	}
	return strcmp(a + la - lb, b) == 0 && (la == lb || a[la - lb - 1] == '/');
}

struct site_search {
	const char *file;           /* the async fn's own file */
	const char *names[64];      /* the suspend point's locals */
	const char *types[64];      /* and their types' names (the function may be in another unit) */
	int n;
	int line;                   /* the latest declaration found there */
};

/* The variables of fn (through lexical blocks) named like the suspend point's locals. */
static void scan_locals(Dwarf_Die *die, struct site_search *s, int depth)
{
	Dwarf_Die child;
	if (depth > 16 || dwarf_child(die, &child) != 0)
		return;
	do {
		int tag = dwarf_tag(&child);
		if (tag == DW_TAG_lexical_block) {
			scan_locals(&child, s, depth + 1);
			continue;
		}
		if (tag != DW_TAG_variable)
			continue;
		const char *name = dwarf_diename(&child), *file = dwarf_decl_file(&child);
		int line;
		Dwarf_Die type;
		if (!name || !file || !same_file(file, s->file) || dwarf_decl_line(&child, &line) != 0)
			continue;
		for (int i = 0; i < s->n; i++) {
			const char *tn = td_die_type(&child, &type) ? dwarf_diename(&type) : NULL;
			if (strcmp(name, s->names[i]) == 0 && (!tn || !s->types[i] || strcmp(tn, s->types[i]) == 0)) {
				if (line > s->line)
					s->line = line;
				break;
			}
		}
	} while (dwarf_siblingof(&child, &child) == 0);
}

bool td_future_foreign_site(Dwarf_Die *state, const char *file)
{
	const char *own = own_file(state);
	return own && file && strcmp(own, file) != 0;
}

bool td_future_macro_site(struct td_program *prog, Dwarf_Die *state, Dwarf_Die *variant_type,
			  const char *file, const char **ret_file, int *ret_line)
{
	struct site_search s = { .file = own_file(state) };
	if (!s.file || !file || strcmp(s.file, file) == 0)
		return false;
	Dwarf_Die member, type;
	if (dwarf_child(variant_type, &member) == 0) {
		do {
			const char *name = dwarf_diename(&member);
			if (dwarf_tag(&member) != DW_TAG_member || !name || strcmp(name, "__awaitee") == 0 ||
			    s.n == (int)(sizeof(s.names) / sizeof(s.names[0])))
				continue;
			s.names[s.n] = name;
			s.types[s.n++] = td_die_type(&member, &type) ? dwarf_diename(&type) : NULL;
		} while (dwarf_siblingof(&member, &member) == 0);
	}
	/* The body's function: "a::b::{async_fn_env#0}<T>" is declared by "a::b::{async_fn#0}". */
	char *path = td_program_qualified_name(prog, state);
	if (!path)
		return false;
	char *gen = strrchr(path, '}');
	if (gen && gen[1] == '<')
		gen[1] = '\0';
	char *env = strstr(path, "_env#");
	bool found = false;
	Dwarf_Die fn;
	if (env && s.n > 0) {
		memmove(env, env + 4, strlen(env + 4) + 1);
		if (td_program_find(prog, path, DW_TAG_subprogram, &fn)) {
			scan_locals(&fn, &s, 0);
			found = s.line > 0;
		}
	}
	free(path);
	if (found) {
		*ret_file = s.file;
		*ret_line = s.line;
	}
	return found;
}

static bool is_pointer(Dwarf_Die *t)
{
	return dwarf_tag(t) == DW_TAG_pointer_type || dwarf_tag(t) == DW_TAG_reference_type;
}

/*
 * The tuple a pointer type leads to: a pointer to a tuple (1 hop) or to a
 * pointer to one (2: a closure borrowing a `&mut (..)` local). Returns the
 * hops (0: none) and the tuple type. From DWARF types alone.
 */
static int tuple_through(Dwarf_Die *ptr, Dwarf_Die *tuple)
{
	Dwarf_Die type = *ptr;
	for (int hop = 1; hop <= 2 && td_die_type(&type, tuple); hop++) {
		const char *name = dwarf_diename(tuple);
		if (name && name[0] == '(' && dwarf_tag(tuple) == DW_TAG_structure_type)
			return hop;
		if (!is_pointer(tuple))
			return 0;
		type = *tuple;
	}
	return 0;
}

/*
 * The tuple a pointer member of v (through struct members, depth-first,
 * never through pointers) points at inside [lo, hi). Sets *tuple.
 */
static bool find_tuple_ref(struct td_value *v, uint64_t lo, uint64_t hi, int depth, int *budget,
			   struct td_value *tuple)
{
	Dwarf_Die child;
	if (depth > 4 || dwarf_tag(&v->type) != DW_TAG_structure_type || dwarf_child(&v->type, &child) != 0)
		return false;
	do {
		Dwarf_Die type;
		uint64_t off;
		if (--*budget < 0)
			return false;
		if (dwarf_tag(&child) != DW_TAG_member || !td_die_type(&child, &type) || !td_member_offset(&child, &off))
			continue;
		if (is_pointer(&type)) {
			/* A closure borrowing `futures`, itself a `&mut (..)` local: up to two reads. */
			Dwarf_Die pointee;
			int hops = tuple_through(&type, &pointee);
			uint64_t at = v->address + off;
			for (int hop = 0; hop < hops; hop++) {
				struct td_error *err = td_program_read_uint(v->prog, at, 8, &at);
				if (err) {
					td_error_destroy(err);
					break;
				}
				if (at < lo || at >= hi)
					break;
				if (hop == hops - 1) {
					td_value_init(tuple, v->prog, &pointee, at);
					return true;
				}
			}
			continue;
		}
		struct td_value m;
		td_value_init(&m, v->prog, &type, v->address + off);
		if (find_tuple_ref(&m, lo, hi, depth + 1, budget, tuple))
			return true;
	} while (dwarf_siblingof(&child, &child) == 0);
	return false;
}

/*
 * Whether a value of type t can hold (through struct members, 4 deep, not
 * through pointers) a pointer to a tuple: worked out once per type, so a
 * leaf future (a channel's receiver, a Sleep) costs one lookup per task.
 */
static bool may_ref_tuple(struct td_program *prog, Dwarf_Die *t, int depth)
{
	if (depth > 4 || dwarf_tag(t) != DW_TAG_structure_type)
		return false;
	uint64_t key = dwarf_dieoffset(t);
	bool *memo = td_program_memo_get(prog, TD_MEMO_TUPLE_REF, key, 0);
	if (memo)
		return *memo;
	if (!(memo = malloc(sizeof(*memo))))
		return false;
	*memo = false;  /* while being worked out */
	td_program_memo_put(prog, TD_MEMO_TUPLE_REF, key, 0, memo);
	bool yes = false;
	Dwarf_Die child, type, pointee;
	if (dwarf_child(t, &child) == 0) {
		do {
			if (dwarf_tag(&child) != DW_TAG_member || !td_die_type(&child, &type))
				continue;
			if (is_pointer(&type))
				yes = tuple_through(&type, &pointee) > 0;
			else
				yes = may_ref_tuple(prog, &type, depth + 1);
		} while (!yes && dwarf_siblingof(&child, &child) == 0);
	}
	*memo = yes;
	return yes;
}

bool td_future_may_have_children(struct td_value *v)
{
	return may_ref_tuple(v->prog, &v->type, 0);
}

int td_future_children(struct td_value *awaitee, uint64_t lo, uint64_t hi, struct td_value *out, int max)
{
	struct td_value tuple;
	int budget = 64, n = 0;
	if (!may_ref_tuple(awaitee->prog, &awaitee->type, 0) ||
	    !find_tuple_ref(awaitee, lo, hi, 0, &budget, &tuple))
		return 0;
	Dwarf_Die child, type;
	if (dwarf_child(&tuple.type, &child) != 0)
		return 0;
	do {
		uint64_t off;
		if (n < max && dwarf_tag(&child) == DW_TAG_member && td_die_type(&child, &type) &&
		    td_member_offset(&child, &off))
			td_value_init(&out[n++], tuple.prog, &type, tuple.address + off);
	} while (dwarf_siblingof(&child, &child) == 0);
	return n;
}

const char *td_future_live_payload(struct td_value *v)
{
	const char *last = NULL;
	for (int hop = 0; hop < 4; hop++) {
		struct td_value payload;
		const char *name;
		uint64_t discr;
		if (dwarf_tag(&v->type) != DW_TAG_structure_type)
			break;
		struct td_error *err = td_value_variant(v, &payload, &name, &discr, NULL);
		if (err) {
			td_error_destroy(err);
			break;
		}
		last = name;
		/* The variant's one field, if it has exactly one. */
		Dwarf_Die child, type, only;
		uint64_t off = 0;
		int fields = 0;
		if (dwarf_child(&payload.type, &child) == 0) {
			do {
				if (dwarf_tag(&child) == DW_TAG_member && td_die_type(&child, &type) &&
				    td_member_offset(&child, &off)) {
					only = type;
					fields++;
				}
			} while (dwarf_siblingof(&child, &child) == 0);
		}
		if (fields != 1)
			break;
		/* off is the last (only) member's */
		td_value_init(v, v->prog, &only, payload.address + off);
	}
	return last;
}

/*
 * Type-level work before a stop: from a task's future type down through the
 * types its async bodies' states hold (awaited futures, held guards), every
 * per-type fact a walk asks for is worked out now (whether a type can hold an
 * async body, point at a select!/join! tuple, hold one named like each of
 * prefixes). Bounded in depth and in types; leaves[] gets the types awaited
 * that are no async body (at most max), for a caller's own per-type work.
 */
#define TD_PREWARM_DEPTH 12
#define TD_PREWARM_TYPES 4096
struct prewarm {
	struct td_program *prog;
	const char *const *prefixes;
	int nprefixes, budget, nleaves, max;
	uint64_t *leaves;
};

static void prewarm_type(struct prewarm *pw, Dwarf_Die *t, int depth, bool awaited);

static void prewarm_members(struct prewarm *pw, Dwarf_Die *parent, int depth, bool async_body)
{
	Dwarf_Die child, type;
	if (dwarf_child(parent, &child) != 0)
		return;
	do {
		int tag = dwarf_tag(&child);
		if (tag == DW_TAG_variant_part || tag == DW_TAG_variant) {
			prewarm_members(pw, &child, depth, async_body);
		} else if (tag == DW_TAG_member && td_die_type(&child, &type)) {
			const char *name = dwarf_diename(&child);
			/* In an async body's state: what it awaits (and what it holds); a variant's payload struct. */
			bool awaited = async_body && name && strcmp(name, "__awaitee") == 0;
			prewarm_type(pw, &type, depth + 1, awaited);
		}
	} while (dwarf_siblingof(&child, &child) == 0);
}

static void prewarm_type(struct prewarm *pw, Dwarf_Die *t, int depth, bool awaited)
{
	if (depth > TD_PREWARM_DEPTH || --pw->budget < 0)
		return;
	int tag = dwarf_tag(t);
	if (tag != DW_TAG_structure_type && tag != DW_TAG_union_type)
		return;
	uint64_t key = dwarf_dieoffset(t);
	if (td_program_memo_get(pw->prog, TD_MEMO_PREWARMED, key, awaited))
		return;
	bool *mark = malloc(sizeof(*mark));
	if (!mark)
		return;
	*mark = true;
	td_program_memo_put(pw->prog, TD_MEMO_PREWARMED, key, awaited, mark);
	struct finder async_f = { .budget = TD_DESCEND_VALUES };
	bool holds_async = may_hold(pw->prog, &async_f, t, 0);
	may_ref_tuple(pw->prog, t, 0);
	td_type_has_discr(pw->prog, t);
	for (int i = 0; i < pw->nprefixes; i++) {
		struct finder f;
		if (named_finder(&f, pw->prog, pw->prefixes[i], false))
			may_hold(pw->prog, &f, t, 0);
	}
	bool body = td_future_is_async_body(t);
	if (awaited && !body && pw->nleaves < pw->max)
		pw->leaves[pw->nleaves++] = key;
	/* Into async bodies' states, and into wrappers down to the async bodies they hold. */
	if (body || (awaited && holds_async))
		prewarm_members(pw, t, depth, body);
}

int td_future_prewarm(struct td_program *prog, Dwarf_Die *type, const char *const *prefixes, int nprefixes,
		      uint64_t *leaves, int max)
{
	struct prewarm pw = { .prog = prog, .prefixes = prefixes, .nprefixes = nprefixes,
			      .budget = TD_PREWARM_TYPES, .leaves = leaves, .max = max };
	prewarm_type(&pw, type, 0, true);
	return pw.nleaves;
}

/*
 * A future that holds two or more futures by value and polls them together
 * (futures-util's Select: Option<(A, B)>, its Join: two MaybeDone, an
 * Either's is one at a time): where, going down through fields, live
 * variants and boxes, a struct first has two or more members that can hold
 * an async body. Whether a type can fork at all is worked out once per type.
 */
static bool may_fork(struct td_program *prog, Dwarf_Die *t, int depth)
{
	if (depth > TD_DESCEND_TYPE_DEPTH || td_future_is_async_body(t))
		return false;
	uint64_t key = dwarf_dieoffset(t);
	bool *memo = td_program_memo_get(prog, TD_MEMO_FORK, key, 0);
	if (memo)
		return *memo;
	if (!(memo = malloc(sizeof(*memo))))
		return false;
	*memo = false;  /* while being worked out */
	td_program_memo_put(prog, TD_MEMO_FORK, key, 0, memo);
	struct finder af = { .budget = TD_DESCEND_VALUES };
	bool yes = false;
	const char *name = dwarf_diename(t);
	int tag = dwarf_tag(t);
	Dwarf_Die child, type, pointee;
	if (tag == DW_TAG_pointer_type) {
		yes = name && strncmp(name, "alloc::boxed::Box<", 18) == 0 && td_die_type(t, &pointee) &&
		      may_fork(prog, &pointee, depth + 1);
	} else if (tag == DW_TAG_structure_type && may_hold(prog, &af, t, 0) && dwarf_child(t, &child) == 0) {
		int direct = 0;
		do {
			int ctag = dwarf_tag(&child);
			if (ctag == DW_TAG_member && td_die_type(&child, &type) && may_hold(prog, &af, &type, 0)) {
				direct++;
				yes |= may_fork(prog, &type, depth + 1);
			} else if (ctag == DW_TAG_variant_part) {
				Dwarf_Die variant, member;
				if (dwarf_child(&child, &variant) != 0)
					continue;
				do {
					if (dwarf_tag(&variant) == DW_TAG_variant && dwarf_child(&variant, &member) == 0)
						do {
							if (dwarf_tag(&member) == DW_TAG_member && td_die_type(&member, &type) &&
							    may_hold(prog, &af, &type, 0))
								yes |= may_fork(prog, &type, depth + 1);
						} while (dwarf_siblingof(&member, &member) == 0);
				} while (dwarf_siblingof(&variant, &variant) == 0);
			}
		} while (dwarf_siblingof(&child, &child) == 0);
		yes |= direct >= 2;
	}
	*memo = yes;
	return yes;
}

bool td_future_may_fork(struct td_value *v)
{
	return may_fork(v->prog, &v->type, 0);
}

static int fork_in(struct td_value *v, struct td_value *out, int max, int depth, int *budget)
{
	if (--*budget < 0 || depth > TD_DESCEND_DEPTH || !may_fork(v->prog, &v->type, 0))
		return 0;
	struct td_value u = *v;
	if (td_future_unbox(&u))
		return fork_in(&u, out, max, depth + 1, budget);
	if (dwarf_tag(&v->type) != DW_TAG_structure_type)
		return 0;
	if (td_type_has_discr(v->prog, &v->type)) {
		const char *vname;
		uint64_t discr;
		struct td_error *err = td_value_variant(v, &u, &vname, &discr, NULL);
		if (err) {
			td_error_destroy(err);
			return 0;
		}
		return fork_in(&u, out, max, depth + 1, budget);
	}
	struct finder af = { .budget = TD_DESCEND_VALUES };
	struct td_value members[64];
	int n = 0;
	Dwarf_Die child, type;
	uint64_t off;
	if (dwarf_child(&v->type, &child) != 0)
		return 0;
	do {
		if (dwarf_tag(&child) == DW_TAG_member && td_die_type(&child, &type) && td_member_offset(&child, &off) &&
		    may_hold(v->prog, &af, &type, 0) && n < 64)
			td_value_init(&members[n++], v->prog, &type, v->address + off);
	} while (dwarf_siblingof(&child, &child) == 0);
	if (n == 1)
		return fork_in(&members[0], out, max, depth + 1, budget);
	if (n < 2)
		return 0;
	for (int i = 0; i < n && i < max; i++)
		out[i] = members[i];
	return n < max ? n : max;
}

int td_future_fork(struct td_value *v, struct td_value *out, int max)
{
	int budget = TD_DESCEND_VALUES;
	return fork_in(v, out, max, 0, &budget);
}
