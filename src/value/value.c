#include "value/value.h"

#include <dwarf.h>
#include <stdlib.h>
#include <string.h>

/* Typedef chains longer than this are malformed. */
#define TD_MAX_TYPE_CHAIN 32

void td_type_strip(Dwarf_Die *type)
{
	for (int i = 0; i < TD_MAX_TYPE_CHAIN; i++) {
		switch (dwarf_tag(type)) {
		case DW_TAG_typedef: case DW_TAG_const_type: case DW_TAG_volatile_type:
		case DW_TAG_restrict_type: case DW_TAG_atomic_type: {
			Dwarf_Attribute attr;
			if (!dwarf_formref_die(dwarf_attr(type, DW_AT_type, &attr), type))
				return;
			break;
		}
		default:
			return;
		}
	}
}

const char *td_type_name(Dwarf_Die *type)
{
	return dwarf_diename(type);
}

bool td_type_size(Dwarf_Die *type, uint64_t *ret)
{
	Dwarf_Word size;
	if (dwarf_aggregate_size(type, &size) != 0)
		return false;
	*ret = size;
	return true;
}

bool td_die_type(Dwarf_Die *die, Dwarf_Die *ret)
{
	Dwarf_Attribute attr;
	if (!dwarf_formref_die(dwarf_attr_integrate(die, DW_AT_type, &attr), ret))
		return false;
	td_type_strip(ret);
	return true;
}

bool td_member_offset(Dwarf_Die *member, uint64_t *ret)
{
	Dwarf_Attribute attr;
	Dwarf_Word off = 0;
	if (dwarf_attr(member, DW_AT_data_member_location, &attr) &&
	    dwarf_formudata(&attr, &off) != 0)
		return false;
	*ret = off;
	return true;
}

bool td_type_member(Dwarf_Die *type, const char *name, Dwarf_Die *type_ret, uint64_t *offset_ret)
{
	Dwarf_Die child;
	if (dwarf_child(type, &child) != 0)
		return false;
	do {
		if (dwarf_tag(&child) == DW_TAG_member) {
			const char *n = dwarf_diename(&child);
			if (n && strcmp(n, name) == 0)
				return td_die_type(&child, type_ret) && td_member_offset(&child, offset_ret);
		}
	} while (dwarf_siblingof(&child, &child) == 0);
	return false;
}

void td_value_init(struct td_value *v, struct td_program *prog, Dwarf_Die *type, uint64_t address)
{
	v->prog = prog;
	v->type = *type;
	td_type_strip(&v->type);
	v->address = address;
}

static const char *type_label(const struct td_value *v)
{
	const char *name = dwarf_diename((Dwarf_Die *)&v->type);
	return name ? name : "(unnamed type)";
}

struct td_error *td_value_member(const struct td_value *v, const char *name, struct td_value *ret)
{
	int tag = dwarf_tag((Dwarf_Die *)&v->type);
	if (tag != DW_TAG_structure_type && tag != DW_TAG_union_type && tag != DW_TAG_class_type)
		return td_error_not_found("%s is not a struct: no field %s", type_label(v), name);
	Dwarf_Die type;
	uint64_t off;
	if (!td_type_member((Dwarf_Die *)&v->type, name, &type, &off))
		return td_error_not_found("%s has no field %s", type_label(v), name);
	td_value_init(ret, v->prog, &type, v->address + off);
	return NULL;
}

struct td_error *td_value_pointer(const struct td_value *v, uint64_t *ret)
{
	int tag = dwarf_tag((Dwarf_Die *)&v->type);
	if (tag != DW_TAG_pointer_type && tag != DW_TAG_reference_type &&
	    tag != DW_TAG_rvalue_reference_type)
		return td_error_not_found("%s is not a pointer", type_label(v));
	return td_program_read_uint(v->prog, v->address, 8, ret);
}

struct td_error *td_value_deref(const struct td_value *v, struct td_value *ret)
{
	uint64_t p;
	struct td_error *err = td_value_pointer(v, &p);
	if (err)
		return err;
	Dwarf_Die pointee;
	if (!td_die_type((Dwarf_Die *)&v->type, &pointee))
		return td_error_not_found("cannot follow a pointer to void");
	if (p == 0)
		return td_error_fault(0, "null pointer to %s",
				      dwarf_diename(&pointee) ? dwarf_diename(&pointee) : "value");
	td_value_init(ret, v->prog, &pointee, p);
	return NULL;
}

struct td_error *td_value_uint(const struct td_value *v, uint64_t *ret)
{
	uint64_t size;
	if (!td_type_size((Dwarf_Die *)&v->type, &size))
		return td_error_not_found("%s has no known size", type_label(v));
	return td_program_read_uint(v->prog, v->address, (size_t)size, ret);
}

static bool variant_part(Dwarf_Die *type, Dwarf_Die *ret)
{
	Dwarf_Die child;
	if (dwarf_child(type, &child) != 0)
		return false;
	do {
		if (dwarf_tag(&child) == DW_TAG_variant_part) {
			*ret = child;
			return true;
		}
	} while (dwarf_siblingof(&child, &child) == 0);
	return false;
}

/*
 * Memo (TD_MEMO_DISCR, TD_MEMO_VARIANT): where a type's discriminant is
 * (size 0: the type is no enum with one), and what one value of it means.
 */

struct discr_memo {
	uint64_t offset, size;
};

bool td_type_has_discr(struct td_program *prog, Dwarf_Die *type)
{
	uint64_t toff = dwarf_dieoffset(type);
	struct discr_memo *dm = td_program_memo_get(prog, TD_MEMO_DISCR, toff, 0);
	if (dm)
		return dm->size != 0;
	Dwarf_Die part, discr, discr_type;
	Dwarf_Attribute attr;
	struct discr_memo fresh = { 0, 0 };
	if (dwarf_tag(type) != DW_TAG_enumeration_type && variant_part(type, &part) &&
	    dwarf_formref_die(dwarf_attr(&part, DW_AT_discr, &attr), &discr) &&
	    td_die_type(&discr, &discr_type) && td_member_offset(&discr, &fresh.offset))
		td_type_size(&discr_type, &fresh.size);
	else
		fresh.size = 0;
	if (!(dm = malloc(sizeof(*dm))))
		return fresh.size != 0;
	*dm = fresh;
	td_program_memo_put(prog, TD_MEMO_DISCR, toff, 0, dm);
	return fresh.size != 0;
}

struct variant_memo {
	Dwarf_Die member, payload_type;
	uint64_t payload_offset;
	const char *name;
};

static struct td_error *decode_variant(const struct td_value *v, uint64_t value, uint64_t mask,
				       Dwarf_Die *part, struct variant_memo *ret)
{
	Dwarf_Attribute attr;
	Dwarf_Die child, match, fallback;
	bool found = false, have_fallback = false;
	if (dwarf_child(part, &child) == 0) {
		do {
			if (dwarf_tag(&child) != DW_TAG_variant)
				continue;
			Dwarf_Word want;
			if (dwarf_attr(&child, DW_AT_discr_value, &attr)) {
				/* Signed forms sign-extend: compare within the discriminant's width. */
				Dwarf_Sword sw;
				if (attr.form == DW_FORM_sdata && dwarf_formsdata(&attr, &sw) == 0)
					want = (Dwarf_Word)sw;
				else if (dwarf_formudata(&attr, &want) != 0)
					continue;
				if ((want & mask) == (value & mask)) {
					match = child;
					found = true;
					break;
				}
			} else {
				/* The dataful variant of a niche-encoded enum has no value. */
				fallback = child;
				have_fallback = true;
			}
		} while (dwarf_siblingof(&child, &child) == 0);
	}
	if (!found && !have_fallback)
		return td_error_fault(v->address, "%s: discriminant %llu matches no variant",
				      type_label(v), (unsigned long long)value);
	Dwarf_Die variant = found ? match : fallback, member;
	if (dwarf_child(&variant, &member) != 0)
		return td_error_not_found("%s: empty variant", type_label(v));
	while (dwarf_tag(&member) != DW_TAG_member)
		if (dwarf_siblingof(&member, &member) != 0)
			return td_error_not_found("%s: empty variant", type_label(v));
	if (!td_die_type(&member, &ret->payload_type) || !td_member_offset(&member, &ret->payload_offset))
		return td_error_not_found("%s: unreadable variant", type_label(v));
	ret->member = member;
	/* Generators name variants "0", "1", ...; their types say "Suspend0". */
	const char *name = dwarf_diename(&member);
	if (!name || (name[0] >= '0' && name[0] <= '9'))
		name = dwarf_diename(&ret->payload_type);
	ret->name = name ? name : "?";
	return NULL;
}

/* A C-like enum (DW_TAG_enumeration_type): the enumerator whose value is stored. */
static struct td_error *enumerator(const struct td_value *v, struct td_value *ret,
				   const char **name_ret, uint64_t *discr_ret, Dwarf_Die *member_ret)
{
	uint64_t size, value;
	struct td_error *err;
	if (!td_type_size((Dwarf_Die *)&v->type, &size))
		return td_error_not_found("%s has no known size", type_label(v));
	if ((err = td_program_read_uint(v->prog, v->address, (size_t)size, &value)))
		return err;
	Dwarf_Die child;
	if (dwarf_child((Dwarf_Die *)&v->type, &child) == 0) {
		do {
			Dwarf_Attribute attr;
			Dwarf_Word want;
			if (dwarf_tag(&child) == DW_TAG_enumerator &&
			    dwarf_formudata(dwarf_attr(&child, DW_AT_const_value, &attr), &want) == 0 &&
			    want == value) {
				*ret = *v;
				*name_ret = dwarf_diename(&child) ? dwarf_diename(&child) : "?";
				*discr_ret = value;
				if (member_ret)
					*member_ret = child;
				return NULL;
			}
		} while (dwarf_siblingof(&child, &child) == 0);
	}
	return td_error_fault(v->address, "%s: value %llu is no enumerator", type_label(v),
			      (unsigned long long)value);
}

struct td_error *td_value_variant(const struct td_value *v, struct td_value *ret,
				  const char **name_ret, uint64_t *discr_ret, Dwarf_Die *member_ret)
{
	if (dwarf_tag((Dwarf_Die *)&v->type) == DW_TAG_enumeration_type)
		return enumerator(v, ret, name_ret, discr_ret, member_ret);
	/* Decoding a type's variants walks DWARF: once per type, and once per value seen. */
	uint64_t toff = dwarf_dieoffset((Dwarf_Die *)&v->type);
	struct discr_memo *dm = td_program_memo_get(v->prog, TD_MEMO_DISCR, toff, 0);
	Dwarf_Die part;
	if (dm && dm->size == 0)
		return td_error_not_found("%s is not an enum", type_label(v));
	if (!dm) {
		Dwarf_Die discr, discr_type;
		Dwarf_Attribute attr;
		if (!variant_part((Dwarf_Die *)&v->type, &part))
			return td_error_not_found("%s is not an enum", type_label(v));
		if (!dwarf_formref_die(dwarf_attr(&part, DW_AT_discr, &attr), &discr))
			return td_error_not_found("%s: variant part without discriminant", type_label(v));
		struct discr_memo fresh;
		if (!td_die_type(&discr, &discr_type) || !td_member_offset(&discr, &fresh.offset) ||
		    !td_type_size(&discr_type, &fresh.size))
			return td_error_not_found("%s: unreadable discriminant", type_label(v));
		dm = malloc(sizeof(*dm));
		if (!dm)
			return &td_enomem;
		*dm = fresh;
		td_program_memo_put(v->prog, TD_MEMO_DISCR, toff, 0, dm);
	}
	uint64_t value = 0;
	struct td_error *err = td_program_read_uint(v->prog, v->address + dm->offset,
						    (size_t)dm->size, &value);
	if (err)
		return err;
	uint64_t mask = dm->size >= 8 ? ~0ull : (1ull << (8 * dm->size)) - 1;
	value &= mask;
	struct variant_memo *vm = td_program_memo_get(v->prog, TD_MEMO_VARIANT, toff, value);
	if (!vm) {
		if (!variant_part((Dwarf_Die *)&v->type, &part))
			return td_error_not_found("%s is not an enum", type_label(v));
		struct variant_memo fresh;
		if ((err = decode_variant(v, value, mask, &part, &fresh)))
			return err;
		vm = malloc(sizeof(*vm));
		if (!vm)
			return &td_enomem;
		*vm = fresh;
		td_program_memo_put(v->prog, TD_MEMO_VARIANT, toff, value, vm);
	}
	td_value_init(ret, v->prog, &vm->payload_type, v->address + vm->payload_offset);
	*name_ret = vm->name;
	*discr_ret = value;
	if (member_ret)
		*member_ret = vm->member;
	return NULL;
}

struct td_error *td_value_index(const struct td_value *v, uint64_t i, struct td_value *ret)
{
	if (dwarf_tag((Dwarf_Die *)&v->type) != DW_TAG_array_type)
		return td_error_not_found("%s is not an array", type_label(v));
	Dwarf_Die elem;
	uint64_t size;
	if (!td_die_type((Dwarf_Die *)&v->type, &elem) || !td_type_size(&elem, &size))
		return td_error_not_found("array of unknown element size");
	td_value_init(ret, v->prog, &elem, v->address + i * size);
	return NULL;
}

