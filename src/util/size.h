/* Sizes as users write them (environment variables, options). */
#ifndef TD_UTIL_SIZE_H
#define TD_UTIL_SIZE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * "1048576", "512K", "64M", "32G", "1T" (powers of 1024; "KiB", "MB", ...
 * read the same; case does not matter). False if malformed, zero or over
 * 2^63 bytes.
 */
bool td_parse_size(const char *s, uint64_t *ret);

/* "32 GiB", "512 MiB", "1.5 GiB", "4096 bytes", into buf. */
const char *td_format_size(uint64_t bytes, char *buf, unsigned long size);

#endif
