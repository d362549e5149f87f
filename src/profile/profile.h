/*
 * A profile: stacks of frame names, root first, each with a sample count, and
 * the files people read them in: folded stacks (flamegraph.pl, inferno),
 * speedscope's JSON, and a self-contained interactive SVG flame graph, plus
 * the differential flame graph of two folded files.
 *
 * Nothing here knows where samples come from (profile/sampler.c does).
 */
#ifndef TD_PROFILE_PROFILE_H
#define TD_PROFILE_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct td_profile;

/* What a written file says about how it was made (all may be NULL/0). */
struct td_profile_meta {
	const char *title;      /* e.g. "taskdbg record: 1234 (prof_split)" */
	const char *subtitle;   /* e.g. "99 Hz, 5.0 s, 493 samples, perf events" */
	const char *exporter;   /* e.g. "taskdbg 0.1" */
};

struct td_error *td_profile_create(struct td_profile **ret);
void td_profile_destroy(struct td_profile *p);

/*
 * Adds count samples to the stack frames[0..n) (frames[0] the root). Names
 * are copied; a ';' or newline in a name is replaced (folded stacks use them
 * as separators). Equal stacks are merged.
 *
 * The replacements: ';' becomes ':', a control character (newline, tab) a
 * space, a byte that is not UTF-8 '?', so that every file written is valid
 * text, XML and JSON. A count of 0 adds nothing; n of 0 is an error.
 */
struct td_error *td_profile_add(struct td_profile *p, const char *const *frames, size_t n,
				uint64_t count);

/* Total samples, and the number of distinct stacks. */
uint64_t td_profile_total(const struct td_profile *p);
size_t td_profile_stacks(const struct td_profile *p);

/*
 * Calls fn for each distinct stack, in a stable order (sorted by frames):
 * what a test or `top` needs without writing a file.
 *
 * The order is strcmp's, frame by frame from the root, a stack before the
 * longer ones it starts. It is sorted in p's own scratch space (so that
 * this cannot fail): one call at a time on a profile.
 */
void td_profile_each(const struct td_profile *p,
		     void (*fn)(const char *const *frames, size_t n, uint64_t count, void *arg),
		     void *arg);

/*
 * Reads a folded-stacks file ("a;b;c 12" per line). A malformed line is an error naming it.
 *
 * The count is the digits after the line's last space (or tab): frames may
 * have spaces. Blank lines and whitespace at the end of a line are skipped.
 */
struct td_error *td_profile_read_folded(const char *path, struct td_profile **ret);

/*
 * Writes p to path in the format its extension names: ".folded" (also
 * ".txt"), ".svg", ".json" (speedscope). Any other extension is a usage
 * error that lists the three.
 *
 * The file is written whole or not at all: into a temporary file next to
 * it, renamed over path once complete (removed on failure).
 */
struct td_error *td_profile_write(const struct td_profile *p, const char *path,
				  const struct td_profile_meta *meta);

/* A usage error unless path's extension names a format td_profile_write knows. */
struct td_error *td_profile_check_path(const char *path);

/*
 * Differential flame graph of before -> after, written as SVG: widths are
 * after's samples, after normalised so both have the same total; red frames
 * grew, blue shrank, the deeper the colour the larger the change (as
 * difffolded.pl -n with flamegraph.pl, or inferno-diff-folded). A path not
 * ending in ".svg" is a usage error.
 */
struct td_error *td_profile_write_diff(const struct td_profile *before, const struct td_profile *after,
				       const char *path, const struct td_profile_meta *meta);

#endif
