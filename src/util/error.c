#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

struct td_error td_enomem = {
	.kind = TD_ERR_NOMEM,
	.message = "out of memory",
	.is_static = true,
};

static struct td_error *error_vformat(enum td_error_kind kind, enum td_error_cause cause,
				      uint64_t address, const char *fmt, va_list ap)
{
	struct td_error *err = malloc(sizeof(*err));
	if (!err)
		return &td_enomem;
	if (vasprintf(&err->message, fmt, ap) < 0) {
		free(err);
		return &td_enomem;
	}
	err->kind = kind;
	err->is_static = false;
	err->cause = cause;
	err->address = address;
	return err;
}

struct td_error *td_error_format(enum td_error_kind kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	struct td_error *err = error_vformat(kind, TD_CAUSE_OTHER, 0, fmt, ap);
	va_end(ap);
	return err;
}

struct td_error *td_error_fault(uint64_t address, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	struct td_error *err = error_vformat(TD_ERR_TARGET, TD_CAUSE_FAULT, address, fmt, ap);
	va_end(ap);
	return err;
}

struct td_error *td_error_not_found(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	struct td_error *err = error_vformat(TD_ERR_TARGET, TD_CAUSE_NOT_FOUND, 0, fmt, ap);
	va_end(ap);
	return err;
}

void td_error_destroy(struct td_error *err)
{
	if (!err || err->is_static)
		return;
	free(err->message);
	free(err);
}
