#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

struct td_error td_enomem = {
	.kind = TD_ERR_NOMEM,
	.message = "out of memory",
	.is_static = true,
};

struct td_error *td_error_format(enum td_error_kind kind, const char *fmt, ...)
{
	struct td_error *err = malloc(sizeof(*err));
	if (!err)
		return &td_enomem;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&err->message, fmt, ap);
	va_end(ap);
	if (n < 0) {
		free(err);
		return &td_enomem;
	}
	err->kind = kind;
	err->is_static = false;
	return err;
}

void td_error_destroy(struct td_error *err)
{
	if (!err || err->is_static)
		return;
	free(err->message);
	free(err);
}
