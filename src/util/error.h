/*
 * Errors are values: library code returns a struct td_error * (NULL means
 * success) and never prints or exits. Only the command-line layer turns an
 * error into a message on stderr and an exit code.
 */
#ifndef TD_UTIL_ERROR_H
#define TD_UTIL_ERROR_H

#include <stdbool.h>

enum td_error_kind {
	TD_ERR_TARGET = 1,   /* the job cannot be done on this target: exit 2 */
	TD_ERR_USAGE,        /* the command line is wrong: exit 64 */
	TD_ERR_NOMEM,
	TD_ERR_INTERNAL,     /* a bug of ours; still exit 2, never a crash */
};

struct td_error {
	enum td_error_kind kind;
	/* One or more lines: what happened, then what to do about it. */
	char *message;
	bool is_static;
};

extern struct td_error td_enomem;

/* Returns a new error; on allocation failure returns &td_enomem. */
struct td_error *td_error_format(enum td_error_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Frees an error (static errors are left alone). NULL is fine. */
void td_error_destroy(struct td_error *err);

#endif
