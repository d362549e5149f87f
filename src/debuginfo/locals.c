#include "debuginfo/locals.h"

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <stdbool.h>
#include <string.h>

#define MAX_VALUE 256   /* bytes of a value assembled from pieces */
#define MAX_STACK 16
#define TD_MAX_SCOPES 64

struct frame_ctx {
	struct td_snapshot *snap;
	const struct td_frame_regs *regs;
	uint64_t cfa, fb;
	bool has_cfa, has_fb;
	Dwarf_Addr bias;
};

/* What a location expression says: a value's address, or its bytes. */
struct location {
	bool in_memory;
	uint64_t addr;
	unsigned char bytes[MAX_VALUE];
	size_t len;
};

static bool reg(const struct frame_ctx *f, uint64_t n, uint64_t *v)
{
	if (n >= TD_FRAME_REGS || !(f->regs->known & (1u << n)))
		return false;
	*v = f->regs->r[n];
	return true;
}

static bool append(struct location *loc, const void *bytes, size_t n, size_t size)
{
	if (loc->len + size > MAX_VALUE)
		return false;
	memset(loc->bytes + loc->len, 0, size);
	memcpy(loc->bytes + loc->len, bytes, n < size ? n : size);
	loc->len += size;
	return true;
}

/*
 * A DWARF expression, evaluated as far as this frame allows. Returns false
 * for anything it cannot know or does not support.
 */
static bool evaluate(const struct frame_ctx *f, const Dwarf_Op *ops, size_t nops, struct location *loc)
{
	uint64_t stack[MAX_STACK];
	size_t sp = 0;
	enum { NONE, IN_REG, STACK_VALUE } pending = NONE;
	uint64_t pending_reg = 0;
	bool pieces = false;
	memset(loc, 0, sizeof(*loc));
#define PUSH(v) do { if (sp == MAX_STACK) return false; stack[sp++] = (v); } while (0)
#define NEED(k) do { if (sp < (k)) return false; } while (0)
	for (size_t i = 0; i < nops; i++) {
		const Dwarf_Op *op = &ops[i];
		uint8_t a = op->atom;
		uint64_t v;
		if (a >= DW_OP_lit0 && a <= DW_OP_lit31) {
			PUSH((uint64_t)(a - DW_OP_lit0));
		} else if (a >= DW_OP_reg0 && a <= DW_OP_reg31) {
			pending = IN_REG;
			pending_reg = a - DW_OP_reg0;
		} else if (a >= DW_OP_breg0 && a <= DW_OP_breg31) {
			if (!reg(f, a - DW_OP_breg0, &v))
				return false;
			PUSH(v + (uint64_t)(int64_t)op->number);
		} else {
			switch (a) {
			case DW_OP_regx:
				pending = IN_REG;
				pending_reg = op->number;
				break;
			case DW_OP_bregx:
				if (!reg(f, op->number, &v))
					return false;
				PUSH(v + (uint64_t)(int64_t)op->number2);
				break;
			case DW_OP_fbreg:
				if (!f->has_fb)
					return false;
				PUSH(f->fb + (uint64_t)(int64_t)op->number);
				break;
			case DW_OP_call_frame_cfa:
				if (!f->has_cfa)
					return false;
				PUSH(f->cfa);
				break;
			case DW_OP_addr:
				PUSH(op->number + f->bias);
				break;
			case DW_OP_const1u: case DW_OP_const2u: case DW_OP_const4u: case DW_OP_const8u:
			case DW_OP_constu:
				PUSH(op->number);
				break;
			case DW_OP_const1s: case DW_OP_const2s: case DW_OP_const4s: case DW_OP_const8s:
			case DW_OP_consts:
				PUSH((uint64_t)(int64_t)op->number);
				break;
			case DW_OP_plus_uconst:
				NEED(1);
				stack[sp - 1] += op->number;
				break;
			case DW_OP_plus: NEED(2); sp--; stack[sp - 1] += stack[sp]; break;
			case DW_OP_minus: NEED(2); sp--; stack[sp - 1] -= stack[sp]; break;
			case DW_OP_and: NEED(2); sp--; stack[sp - 1] &= stack[sp]; break;
			case DW_OP_or: NEED(2); sp--; stack[sp - 1] |= stack[sp]; break;
			case DW_OP_mul: NEED(2); sp--; stack[sp - 1] *= stack[sp]; break;
			case DW_OP_neg: NEED(1); stack[sp - 1] = -stack[sp - 1]; break;
			case DW_OP_not: NEED(1); stack[sp - 1] = ~stack[sp - 1]; break;
			case DW_OP_deref:
			case DW_OP_deref_size: {
				NEED(1);
				size_t size = a == DW_OP_deref ? 8 : (size_t)op->number;
				uint64_t word = 0;
				if (size > 8 || td_snapshot_read(f->snap, stack[sp - 1], &word, size) != size)
					return false;
				stack[sp - 1] = word;
				break;
			}
			case DW_OP_stack_value:
				pending = STACK_VALUE;
				break;
			case DW_OP_piece: {
				size_t size = (size_t)op->number;
				pieces = true;
				if (pending == IN_REG) {
					if (!reg(f, pending_reg, &v) || !append(loc, &v, sizeof(v), size))
						return false;
				} else if (pending == STACK_VALUE) {
					NEED(1);
					v = stack[--sp];
					if (!append(loc, &v, sizeof(v), size))
						return false;
				} else if (sp) {
					unsigned char mem[MAX_VALUE];
					if (size > sizeof(mem) ||
					    td_snapshot_read(f->snap, stack[--sp], mem, size) != size ||
					    !append(loc, mem, size, size))
						return false;
				} else {
					return false;   /* a piece optimized out: the value is not whole */
				}
				pending = NONE;
				break;
			}
			default:
				return false;   /* DW_OP_entry_value, DW_OP_implicit_value, ... */
			}
		}
	}
#undef PUSH
#undef NEED
	if (pieces)
		return pending == NONE && loc->len > 0;
	if (pending == IN_REG) {
		uint64_t v;
		return reg(f, pending_reg, &v) && append(loc, &v, sizeof(v), sizeof(v));
	}
	if (sp == 0)
		return false;
	if (pending == STACK_VALUE)
		return append(loc, &stack[sp - 1], sizeof(stack[0]), sizeof(stack[0]));
	loc->in_memory = true;
	loc->addr = stack[sp - 1];
	return true;
}

/* DW_AT_frame_base of the function: a register's value, the CFA, or an address. */
static void frame_base(struct frame_ctx *f, Dwarf_Die *subprogram, Dwarf_Addr pc)
{
	Dwarf_Attribute attr;
	Dwarf_Op *expr;
	size_t len;
	if (!dwarf_attr(subprogram, DW_AT_frame_base, &attr) ||
	    dwarf_getlocation_addr(&attr, pc, &expr, &len, 1) < 1)
		return;
	struct location loc;
	if (!evaluate(f, expr, len, &loc))
		return;
	if (loc.in_memory) {
		f->fb = loc.addr;
	} else if (loc.len >= 8) {
		memcpy(&f->fb, loc.bytes, 8);
	} else {
		return;
	}
	f->has_fb = true;
}

static bool is_function(int tag)
{
	return tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine;
}

int td_frame_locals(struct td_snapshot *snap, struct td_symbolizer *sym, const struct td_stack *stack,
		    size_t frame, int flags, td_local_fn fn, void *arg)
{
	if (frame >= stack->count || !stack->regs)
		return 0;
	/* A return address is past the call: look things up at the call. */
	uint64_t pc = stack->pcs[frame] - (stack->activation[frame] ? 0 : 1);
	Dwarf_Die scopes[TD_MAX_SCOPES];
	Dwarf_Addr bias = 0;
	int nscopes = td_symbolizer_scopes(sym, pc, scopes, TD_MAX_SCOPES, &bias);
	if (nscopes <= 0)
		return 0;
	struct frame_ctx f = { .snap = snap, .regs = &stack->regs[frame], .bias = bias };
	if (frame + 1 < stack->count && (stack->regs[frame + 1].known & (1u << 7))) {
		f.cfa = stack->regs[frame + 1].r[7];   /* the caller's rsp is this frame's CFA */
		f.has_cfa = true;
	}
	uint64_t sp = (stack->regs[frame].known & (1u << 7)) ? stack->regs[frame].r[7] : 0;
	/* scopes[0] is the out-of-line function: its frame base serves all. */
	frame_base(&f, &scopes[0], pc - bias);
	int reported = 0, functions = 0;
	for (int i = 0; i < nscopes; i++)
		functions += is_function(dwarf_tag(&scopes[i]));
	int depth = functions;
	const char *function = NULL;
	for (int i = 0; i < nscopes; i++) {
		Dwarf_Die *scope = &scopes[i];
		if (is_function(dwarf_tag(scope))) {
			depth--;
			function = dwarf_diename(scope);
		}
		Dwarf_Die child;
		if (dwarf_child(scope, &child) != 0)
			continue;
		do {
			int tag = dwarf_tag(&child);
			if (tag != DW_TAG_variable && tag != DW_TAG_formal_parameter)
				continue;
			Dwarf_Attribute attr, type_attr;
			Dwarf_Op *expr;
			size_t len;
			Dwarf_Attribute name_attr;
			struct td_local local = { .name = dwarf_formstring(dwarf_attr_integrate(&child, DW_AT_name, &name_attr)),
						  .depth = depth,
						  .function = function, .decl_file = dwarf_decl_file(&child),
						  .frame_sp = sp, .frame_cfa = f.has_cfa ? f.cfa : 0 };
			if (!local.name || !dwarf_attr_integrate(&child, DW_AT_type, &type_attr) ||
			    !dwarf_formref_die(&type_attr, &local.type))
				continue;
			struct location loc;
			if (!dwarf_attr(&child, DW_AT_location, &attr) ||
			    dwarf_getlocation_addr(&attr, pc - bias, &expr, &len, 1) < 1 ||
			    !evaluate(&f, expr, len, &loc)) {
				if (!(flags & TD_LOCALS_UNLOCATED))
					continue;
			} else if (loc.in_memory) {
				local.addr = loc.addr;
				local.located = true;
			} else {
				/* Pad to the type's size: the pieces may leave out padding. */
				Dwarf_Word size = 0;
				if (dwarf_aggregate_size(&local.type, &size) == 0 && size > loc.len &&
				    size <= MAX_VALUE) {
					memset(loc.bytes + loc.len, 0, size - loc.len);
					loc.len = size;
				}
				local.addr = td_snapshot_scratch(snap, loc.bytes, loc.len);
				if (!local.addr && !(flags & TD_LOCALS_UNLOCATED))
					continue;
				local.located = local.addr != 0;
			}
			reported++;
			if (fn(&local, arg))
				return reported;
		} while (dwarf_siblingof(&child, &child) == 0);
	}
	return reported;
}
