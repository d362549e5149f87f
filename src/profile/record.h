/*
 * Sampling a live process's threads at a rate, each sample attributed to the
 * task, closure or thread whose time it is (profile/attribute.h). Two ways:
 *
 * - perf events (TD_RECORD_PERF): the kernel samples each thread's user
 *   registers and stack top on its own CPU clock; the target is never
 *   stopped. Only time spent running user code is seen.
 * - ptrace stops (TD_RECORD_PTRACE): every 1/rate s the process is stopped,
 *   registers and stack tops copied and the task each worker polls read from
 *   the runtime (the snapshot path, with small stack copies). Every thread is
 *   seen, running or not (wall-clock sampling), so blocked and idle threads
 *   are too.
 *
 * TD_RECORD_AUTO uses perf events when the kernel permits them.
 */
#ifndef TD_PROFILE_RECORD_H
#define TD_PROFILE_RECORD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "model/threads.h"
#include "profile/attribute.h"
#include "snapshot/snapshot.h"
#include "util/error.h"

enum td_record_mode { TD_RECORD_AUTO, TD_RECORD_PERF, TD_RECORD_PTRACE };

struct td_record_options {
	unsigned rate;              /* samples per second (per thread's CPU second with perf) */
	enum td_record_mode mode;
	bool idle;                  /* keep idle samples (they need ptrace stops) */
	/*
	 * ptrace mode: after each stop, the task each thread polls (the runtime
	 * plugin's thread-locals, read from the stop's copy): fills task[i] for
	 * snap->threads[i], -1 where none. May be NULL.
	 */
	void (*current_tasks)(struct td_snapshot *snap, long long *task, void *arg);
	void *arg;
};

/* One attributed sample. task: the task's id where known (ptrace mode), else -1. */
struct td_record_sample {
	pid_t tid;
	const char *thread_name;
	uint64_t time_ns;
	long long task;
	const struct td_sample_path *path;
};

struct td_record_stats {
	enum td_record_mode mode;        /* the mode in use */
	char fallback[320];              /* why perf events were not used, or "" */
	uint64_t samples;                /* given to the callback */
	uint64_t idle;                   /* idle samples left out */
	uint64_t lost;                   /* perf: dropped by the kernel */
	uint64_t unsampled;              /* perf: threads born meanwhile that could not be sampled */
	uint64_t unwound_short;          /* samples whose stack copy ended too soon to tell ([cut short]) */
	uint64_t stops, missed;          /* ptrace: stops made, ticks missed (taskdbg fell behind) */
	uint64_t stop_max_ns, stop_median_ns;
	uint64_t cpu_ns;                 /* the target's threads' CPU time while recording */
	uint64_t wall_ns;
};

struct td_recorder;

/* snap: a live snapshot already taken (its modules, the plugin prepared); borrowed. */
struct td_error *td_recorder_start(struct td_snapshot *snap, const struct td_runtime_frames *frames,
				   const struct td_record_options *opts, struct td_recorder **ret);

/*
 * Samples until deadline_ns (CLOCK_MONOTONIC) or Ctrl-C, calling fn for each
 * sample. Returns an error only when the target cannot be sampled any more
 * (it exited: TD_ERR_TARGET), after giving fn what it got.
 */
struct td_error *td_recorder_run(struct td_recorder *rec, uint64_t deadline_ns,
				 void (*fn)(const struct td_record_sample *s, void *arg), void *arg);

void td_recorder_stats(struct td_recorder *rec, struct td_record_stats *ret);

/* Whether id was seen on a thread in the scheduler's loop (a worker loop's own id, mostly). */
bool td_recorder_loop_id(const struct td_recorder *rec, long long task);
void td_recorder_destroy(struct td_recorder *rec);

const char *td_record_mode_name(enum td_record_mode mode);

#endif
