#include "util/timing.h"
#include "util/clock.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define TD_TIMING_MAX 32

static struct {
	const char *phase;
	uint64_t ns;
} marks[TD_TIMING_MAX];
static int nmarks = -1;  /* -1: not yet known whether enabled */
static uint64_t last_ns, start_ns;

static bool enabled(void)
{
	if (nmarks == -1) {
		nmarks = getenv("TASKDBG_TIMING") ? 0 : -2;
		start_ns = last_ns = td_now_ns();
	}
	return nmarks >= 0;
}

void td_timing_mark(const char *phase)
{
	if (!enabled() || nmarks == TD_TIMING_MAX)
		return;
	uint64_t t = td_now_ns();
	marks[nmarks].phase = phase;
	marks[nmarks].ns = t - last_ns;
	nmarks++;
	last_ns = t;
}

void td_timing_report(void)
{
	if (!enabled())
		return;
	for (int i = 0; i < nmarks; i++)
		fprintf(stderr, "timing: %-24s %9.3f ms\n", marks[i].phase, (double)marks[i].ns / 1e6);
	fprintf(stderr, "timing: %-24s %9.3f ms\n", "total", (double)(last_ns - start_ns) / 1e6);
}
