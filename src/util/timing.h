/*
 * Phase timings for benchmarks: with TASKDBG_TIMING set in the environment,
 * each td_timing_mark records the time since the previous mark, and
 * td_timing_report prints them on stderr. Costs nothing when unset.
 */
#ifndef TD_UTIL_TIMING_H
#define TD_UTIL_TIMING_H

void td_timing_mark(const char *phase);
void td_timing_report(void);

#endif
