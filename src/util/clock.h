/* Monotonic time, for stop durations, deadlines and budgets. */
#ifndef TD_UTIL_CLOCK_H
#define TD_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds on CLOCK_MONOTONIC. Async-signal-safe. */
static inline uint64_t td_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
