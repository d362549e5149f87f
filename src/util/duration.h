/* Durations as users write them, the same in every command, session and script. */
#ifndef TD_UTIL_DURATION_H
#define TD_UTIL_DURATION_H

#include <stdbool.h>

/* "500ms", "2s", "1.5s", "250us", "1m"; a bare number is seconds. False if malformed (or over a day). */
bool td_parse_duration_ms(const char *s, double *ms);

#endif
