/*
 * What the files of src/profile share (not an API for the rest of taskdbg:
 * that is profile/profile.h): a profile's stacks in their sorted order, and
 * the writers of each file format.
 */
#ifndef TD_PROFILE_INTERNAL_H
#define TD_PROFILE_INTERNAL_H

#include <stdio.h>

#include "profile/profile.h"

/* One distinct stack. */
struct td_profile_stack {
	const char **frames;   /* root first; interned (equal names are one pointer) */
	size_t n;              /* at least 1 */
	uint64_t count;
	uint64_t hash;
};

/*
 * p's stacks sorted by frames (names compared with strcmp, root first, a
 * stack before the longer ones it starts): every stack under one path is
 * next to the others. *n gets their number. Valid until p changes; the
 * array is p's, so one caller at a time.
 */
const struct td_profile_stack *const *td_profile_sorted(const struct td_profile *p, size_t *n);

/* The order of td_profile_sorted, for stacks of two profiles. */
int td_profile_stack_cmp(const struct td_profile_stack *a, const struct td_profile_stack *b);

/*
 * A copy of s fit for every file we write (malloc'd, NULL when out of
 * memory): ';' becomes ':', control characters (newline, tab) spaces, bytes
 * that are not UTF-8 '?'. Frame names are stored this way, and titles go
 * through it before they are written.
 */
char *td_profile_clean(const char *s);

/* The writers: p's samples to f; the caller checks f for write errors. */
struct td_error *td_profile_write_speedscope(FILE *f, const struct td_profile *p,
					     const struct td_profile_meta *meta);
/* A diff when before is not NULL (p is then the profile after). */
struct td_error *td_profile_write_flamegraph(FILE *f, const struct td_profile *p,
					     const struct td_profile *before,
					     const struct td_profile_meta *meta);

#endif
