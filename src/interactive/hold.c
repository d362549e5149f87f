#include "interactive/hold.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "report/bt.h"
#include "target/dump.h"
#include "util/clock.h"
#include "util/interrupt.h"

/* Before the first stop: the runtime's plugin, types and offsets. */
static struct td_error *prepare_before_stop(struct td_snapshot *snap, void *arg)
{
	struct td_hold *h = arg;
	struct td_error *err = td_session_runtime(&h->s, snap, "prepare");
	if (!err)
		td_cli_reserve_cache(snap, h->s.lua);
	return err;
}

/* A stop of the history: the sample diagnose's detectors read, then the runtime's walk. */
static struct td_error *walk_while_stopped(struct td_snapshot *snap, void *arg)
{
	struct td_hold *h = arg;
	(void)snap;
	struct td_error *err = td_lua_sample(h->s.lua, true);
	return err ? err : td_lua_call_stopped(h->s.lua, "snapshot");
}

/* A stop of diagnose's window: the sample only. */
static struct td_error *sample_while_stopped(struct td_snapshot *snap, void *arg)
{
	struct td_hold *h = arg;
	(void)snap;
	return td_lua_sample(h->s.lua, false);
}

static void note_stop(struct td_hold *h)
{
	h->snapshots++;
	h->last_ns = td_now_ns();
	h->last_stopped_ns = h->s.snap->stopped_ns;
	if (h->last_stopped_ns > h->max_stopped_ns)
		h->max_stopped_ns = h->last_stopped_ns;
}

/*
 * After a stop with a walk: the stacks are new, the model and the history
 * too. The next background snapshot is due an interval after this work ends,
 * so that two never come back to back when the model takes long to make.
 */
static struct td_error *after_walk(struct td_hold *h)
{
	td_thread_list_destroy(h->s.threads);
	h->s.threads = NULL;
	struct td_error *err = td_lua_session_snapshot(h->s.lua);
	h->last_ns = td_now_ns();
	return err;
}

struct td_error *td_hold_refresh(struct td_hold *h)
{
	if (!h->live)
		return NULL;
	uint64_t start = td_now_ns();
	struct td_snapshot_options opts = { .while_stopped = walk_while_stopped, .while_stopped_arg = h,
					    .pause_stopped_ms = td_cli_test_pause_ms() };
	struct td_error *err = td_snapshot_retake(h->s.snap, &opts);
	if (err)
		return err;
	note_stop(h);
	err = after_walk(h);
	h->last_work_ns = h->last_ns - start;
	return err;
}

double td_hold_gap_ms(const struct td_hold *h)
{
	/*
	 * The background never costs the target more than TD_HOLD_STOPPED_SHARE
	 * of its time stopped, nor taskdbg more than half a core: on a service
	 * whose snapshot stops it 20 ms (or takes taskdbg a second to read, with
	 * 100,000 tasks), snapshots come farther apart than --interval asks.
	 */
	double gap = h->interval_ms;
	double stopped = (double)h->last_stopped_ns / 1e6 / TD_HOLD_STOPPED_SHARE;
	double work = (double)h->last_work_ns / 1e6;
	if (stopped > gap)
		gap = stopped;
	if (work > gap)
		gap = work;
	return gap;
}

/* diagnose's window in a session: samples every interval, then a stop with the walk. */
static struct td_error *op_watch(void *ctx, double window_ms, double interval_ms)
{
	struct td_hold *h = ctx;
	if (!h->live)
		return NULL;
	if (interval_ms < 1)
		interval_ms = 1;
	struct td_snapshot_options opts = { .while_stopped = sample_while_stopped, .while_stopped_arg = h };
	unsigned stops = 0;
	struct td_error *err = td_session_sample_window(h->s.snap, window_ms, interval_ms, &opts, &stops,
							&h->max_stopped_ns);
	return err ? err : td_hold_refresh(h);
}

static struct td_error *op_refresh(void *ctx)
{
	return td_hold_refresh(ctx);
}

/* One JSON entry per thread: its stack (threads) or the runs bt folds (folds). */
static struct td_error *per_thread(struct td_hold *h, bool folds, struct json_object **ret)
{
	struct td_error *err = NULL;
	if (!h->s.threads && (err = td_session_threads(&h->s)))
		return err;
	struct json_object *a = json_object_new_array();
	for (size_t i = 0; i < h->s.threads->count; i++) {
		const struct td_thread_view *v = &h->s.threads->threads[i];
		json_object_array_add(a, folds ? td_report_folds_json(v, h->s.snap->exe)
					       : td_report_thread_json(v));
	}
	*ret = a;
	return NULL;
}

static struct td_error *op_threads(void *ctx, struct json_object **ret)
{
	return per_thread(ctx, false, ret);
}

static struct td_error *op_folds(void *ctx, struct json_object **ret)
{
	return per_thread(ctx, true, ret);
}

/* `dump FILE`: a core of the live target, from a stop of its own (target/dump.c). */
static struct td_error *op_dump(void *ctx, const char *path, struct json_object **ret)
{
	struct td_hold *h = ctx;
	struct td_dump_stats stats;
	struct td_error *err = td_dump_core(h->s.snap->pid, path, &stats);
	if (err)
		return err;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "path", json_object_new_string(path));
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)stats.bytes));
	json_object_object_add(o, "threads", json_object_new_int64((int64_t)stats.threads));
	json_object_object_add(o, "stopped_ms", json_object_new_double((double)stats.stopped_ns / 1e6));
	json_object_object_add(o, "ms", json_object_new_double((double)stats.wall_ns / 1e6));
	*ret = o;
	return NULL;
}

static struct json_object *op_target(void *ctx)
{
	struct td_hold *h = ctx;
	const struct td_snapshot *snap = h->s.snap;
	struct json_object *o = td_report_target_json(snap);
	json_object_object_add(o, "kind", json_object_new_string(h->live ? "live" : "core"));
	json_object_object_add(o, "snapshots", json_object_new_int64(h->snapshots));
	json_object_object_add(o, "interval_ms", json_object_new_double(h->live ? h->interval_ms : 0));
	json_object_object_add(o, "keep", json_object_new_int64(h->keep));
	json_object_object_add(o, "work_ms", json_object_new_double((double)h->last_work_ns / 1e6));
	json_object_object_add(o, "gap_ms", json_object_new_double(h->live && h->interval_ms > 0 ? td_hold_gap_ms(h) : 0));
	json_object_object_add(o, "stopped_ms", json_object_new_double((double)h->last_stopped_ns / 1e6));
	json_object_object_add(o, "max_stopped_ms", json_object_new_double((double)h->max_stopped_ns / 1e6));
	json_object_object_add(o, "age_ms", json_object_new_double(
		h->live ? (double)(td_now_ns() - h->last_ns) / 1e6 : 0));
	json_object_object_add(o, "sampling", json_object_new_boolean(
		h->live && h->interval_ms > 0 && !h->sampling_failed));
	return o;
}

struct td_error *td_hold_open(struct td_hold *h, const char *target, const char *exe, const char *plugins,
			      unsigned keep, double interval_ms)
{
	*h = (struct td_hold){ .s = { .command = "attach", .exe = exe, .plugins = plugins, .target = target },
			       .keep = keep ? keep : 1, .interval_ms = interval_ms };
	h->ops = (struct td_lua_session_ops){
		.ctx = h, .refresh = op_refresh, .watch = op_watch, .threads = op_threads,
		.folds = op_folds,
		.target = op_target,
	};
	/* No plugin at all still gives stacks (the built-in no-runtime plugin). */
	struct td_error *err = td_session_find_plugins(&h->s, true);
	if (!err)
		err = td_lua_find_detectors(&h->detectors);
	h->ops.detectors = h->detectors;
	if (!err)
		err = td_session_open(&h->s, prepare_before_stop, walk_while_stopped, h);
	if (err)
		return err;
	h->live = h->s.snap->kind == TD_SNAPSHOT_LIVE;
	if (h->live)
		h->ops.dump = op_dump;
	note_stop(h);
	if (!(err = td_lua_session_open(h->s.lua, &h->ops)))
		err = after_walk(h);
	return err;
}

long td_hold_due_ms(const struct td_hold *h)
{
	if (!h->live || h->interval_ms <= 0 || h->sampling_failed)
		return -1;
	uint64_t due = h->last_ns + (uint64_t)(td_hold_gap_ms(h) * 1e6), now = td_now_ns();
	return due <= now ? 0 : (long)((due - now) / 1000000u) + 1;
}

struct td_error *td_hold_tick(struct td_hold *h)
{
	if (td_hold_due_ms(h) != 0)
		return NULL;
	struct td_error *err = td_hold_refresh(h);
	if (err && td_interrupt_pending()) {
		/*
		 * Ctrl-C while a background snapshot ran is for the prompt (a line
		 * to clear), not for the snapshot: it is taken again at the next tick.
		 */
		td_error_destroy(err);
		return NULL;
	}
	if (err)
		h->sampling_failed = true;
	return err;
}

void td_hold_close(struct td_hold *h)
{
	td_session_free(&h->s);
	free(h->detectors);
	h->detectors = NULL;
}
