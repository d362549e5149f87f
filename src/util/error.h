/*
 * Errors are values: library code returns a struct td_error * (NULL means
 * success) and never prints or exits. Only the command-line layer turns an
 * error into a message on stderr and an exit code.
 */
#ifndef TD_UTIL_ERROR_H
#define TD_UTIL_ERROR_H

#include <stdbool.h>
#include <stdint.h>

enum td_error_kind {
	TD_ERR_TARGET = 1,   /* the job cannot be done on this target: exit 2 */
	TD_ERR_USAGE,        /* the command line is wrong: exit 64 */
	TD_ERR_NOMEM,
	TD_ERR_INTERNAL,     /* a bug of ours; still exit 2, never a crash */
};

/*
 * What failed, for callers that handle failures differently (the Lua API
 * gives them as error kinds): memory that cannot be read, or something the
 * debug info or the target does not have. Most errors say neither.
 */
enum td_error_cause {
	TD_CAUSE_OTHER = 0,
	TD_CAUSE_FAULT,      /* target memory at `address` cannot be read */
	TD_CAUSE_NOT_FOUND,  /* a type, field, variable or variant the debug info or target lacks */
};

struct td_error {
	enum td_error_kind kind;
	/* One or more lines: what happened, then what to do about it. */
	char *message;
	bool is_static;
	enum td_error_cause cause;
	uint64_t address;    /* TD_CAUSE_FAULT: the first address that could not be read */
};

extern struct td_error td_enomem;

/* Returns a new error; on allocation failure returns &td_enomem. */
struct td_error *td_error_format(enum td_error_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* An error of kind TD_ERR_TARGET and cause TD_CAUSE_FAULT at address. */
struct td_error *td_error_fault(uint64_t address, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* An error of kind TD_ERR_TARGET and cause TD_CAUSE_NOT_FOUND. */
struct td_error *td_error_not_found(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* Frees an error (static errors are left alone). NULL is fine. */
void td_error_destroy(struct td_error *err);

#endif
