/*
 * Typed values: a DWARF type plus an address in a program's snapshot. Fields
 * by name, pointers followed, Rust enums decoded (DW_TAG_variant_part, niche
 * encodings included), integers read. Every read is bounded and checked; a
 * bad pointer is an error value, never a crash.
 */
#ifndef TD_VALUE_VALUE_H
#define TD_VALUE_VALUE_H

#include <elfutils/libdw.h>
#include <stdbool.h>
#include <stdint.h>

#include "value/program.h"

struct td_value {
	struct td_program *prog;
	Dwarf_Die type;     /* typedefs and qualifiers already stripped */
	uint64_t address;
};

/* Follows typedef, const, volatile, restrict and atomic to the real type. */
void td_type_strip(Dwarf_Die *type);

/* The type's name, or NULL (pointers: NULL). */
const char *td_type_name(Dwarf_Die *type);

/* Size in bytes, or false if unknown. */
bool td_type_size(Dwarf_Die *type, uint64_t *ret);

/* The DW_AT_type of a DIE (member, variable, pointer, template parameter), stripped. */
bool td_die_type(Dwarf_Die *die, Dwarf_Die *ret);

/* A DW_TAG_member's offset within its struct (DW_AT_data_member_location). */
bool td_member_offset(Dwarf_Die *member, uint64_t *ret);

/* A direct member by name: its type and offset within the struct. */
bool td_type_member(Dwarf_Die *type, const char *name, Dwarf_Die *type_ret, uint64_t *offset_ret);

/* A value of type at address. */
void td_value_init(struct td_value *v, struct td_program *prog, Dwarf_Die *type, uint64_t address);

/* v.name: a direct member of a struct or union. */
struct td_error *td_value_member(const struct td_value *v, const char *name, struct td_value *ret);

/* *v, for a pointer or reference. */
struct td_error *td_value_deref(const struct td_value *v, struct td_value *ret);

/* The pointer an pointer-typed value holds. */
struct td_error *td_value_pointer(const struct td_value *v, uint64_t *ret);

/* An integer, boolean, char or enumeration of 1, 2, 4 or 8 bytes, zero-extended. */
struct td_error *td_value_uint(const struct td_value *v, uint64_t *ret);

/* Whether type is an enum with a discriminant (what td_value_variant decodes); memoized. */
bool td_type_has_discr(struct td_program *prog, Dwarf_Die *type);

/*
 * The active variant of a Rust enum (or async state machine): its member
 * (*ret: the payload struct, named like "Some" or "Suspend0"), its name, and
 * the discriminant value read, and (if member_ret) the variant's member DIE,
 * For a C-like enum: the value itself, the enumerator's name and value.
 * whose declaration line is, for an async fn's SuspendN, the `.await`. For a
 * type without a variant part, an error.
 */
struct td_error *td_value_variant(const struct td_value *v, struct td_value *ret,
				  const char **name_ret, uint64_t *discr_ret, Dwarf_Die *member_ret);


/* v[i] for an array type. */
struct td_error *td_value_index(const struct td_value *v, uint64_t i, struct td_value *ret);

#endif
