#include "util/interrupt.h"

#include <time.h>

#include "util/clock.h"

volatile sig_atomic_t td_interrupted;
volatile sig_atomic_t td_interruptible;

bool td_sleep_until(uint64_t deadline_ns)
{
	while (!td_interrupt_pending()) {
		uint64_t now = td_now_ns();
		if (now >= deadline_ns)
			return true;
		uint64_t left = deadline_ns - now;
		if (left > 50000000u)
			left = 50000000u;   /* wakes to see Ctrl-C */
		struct timespec ts = { 0, (long)left };
		nanosleep(&ts, NULL);
	}
	return false;
}
