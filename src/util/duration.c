#include "util/duration.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool td_parse_duration_ms(const char *s, double *ms)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return false;
	double scale;
	if (!strcmp(end, "ms"))
		scale = 1;
	else if (!strcmp(end, "s") || !*end)
		scale = 1000;
	else if (!strcmp(end, "us"))
		scale = 0.001;
	else if (!strcmp(end, "m") || !strcmp(end, "min"))
		scale = 60000;
	else
		return false;
	*ms = v * scale;
	return *ms <= 24.0 * 3600 * 1000;
}
