#include "util/size.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

bool td_parse_size(const char *s, uint64_t *ret)
{
	if (!s || !isdigit((unsigned char)*s))
		return false;
	uint64_t n = 0;
	for (; isdigit((unsigned char)*s); s++) {
		if (n > (UINT64_MAX - 9) / 10)
			return false;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	unsigned shift = 0;
	switch (toupper((unsigned char)*s)) {
	case '\0': break;
	case 'K': shift = 10; break;
	case 'M': shift = 20; break;
	case 'G': shift = 30; break;
	case 'T': shift = 40; break;
	default: return false;
	}
	if (*s) {
		s++;
		/* "G", "GB", "GiB" */
		if (!*s || !strcasecmp(s, "B") || !strcasecmp(s, "iB"))
			;
		else
			return false;
	}
	if (n == 0 || n > (1ull << 63) >> shift)
		return false;
	*ret = n << shift;
	return true;
}

const char *td_format_size(uint64_t bytes, char *buf, unsigned long size)
{
	static const char *units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	if (bytes < 1024) {
		snprintf(buf, size, "%llu bytes", (unsigned long long)bytes);
		return buf;
	}
	double v = (double)bytes / 1024;
	unsigned u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	/* Rounded down: a cap of 1 GiB - 1 is not "1024.0 MiB". */
	uint64_t tenths = (uint64_t)(v * 10);
	if (tenths % 10 == 0 && v == (double)(uint64_t)v)
		snprintf(buf, size, "%llu %s", (unsigned long long)v, units[u]);
	else
		snprintf(buf, size, "%llu.%llu %s", (unsigned long long)(tenths / 10),
			 (unsigned long long)(tenths % 10), units[u]);
	return buf;
}
