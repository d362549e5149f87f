/*
 * taskdbg diagnose [--json] [--window D] TARGET: run every detector, print findings.
 *
 * A live target is sampled at a steady rate over the window (each sample a
 * short stop: registers, stacks, thread-locals, and the runtime plugin's
 * `sample`), then stopped once more for the full walk of its runtimes
 * (`snapshot`). A core file is one snapshot. The detectors (the Lua files of detectors/)
 * then work on the model, the samples and the threads' stacks, with the
 * target running.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "util/duration.h"
#include "cli/session.h"
#include "lua/binding.h"
#include "model/threads.h"
#include "report/bt.h"
#include "report/diagnose.h"
#include "util/clock.h"
#include "util/timing.h"

static const char diagnose_help[] =
	"usage: taskdbg diagnose [--json] [--window D] [--greedy-threshold D] [--interval D]\n"
	"                        [--exe PATH] [--plugins DIR] TARGET\n"
	"\n"
	"Run every detector on TARGET and print what is wrong: deadlocks, tasks that never\n"
	"yield, blocking calls in async code, runtimes shut down from inside, starved run\n"
	"queues, tasks nothing can wake. Exit code 0: nothing found; 1: findings.\n"
	"\n"
	"A live process is watched for the window, sampled at a steady rate (each sample\n"
	"stops it well under a millisecond for a few threads); a core file is one snapshot\n"
	"(no greedy_task, and starvation only when every worker is blocked in it).\n"
	"\n"
	TD_SESSION_HELP_JSON
	"  --window D              how long to watch a live process (default 1s; 500ms, 2s)\n"
	"  --greedy-threshold D    a poll running longer than this is greedy (default 100ms)\n"
	"  --interval D            time between samples (default 25ms)\n"
	TD_SESSION_HELP;

struct diagnose_job {
	struct td_session *s;
	double window_ms, greedy_ms, interval_ms;
	unsigned samples;            /* stops taken (live) */
	uint64_t max_stopped_ns;
};

static struct td_error *prepare_before_stop(struct td_snapshot *snap, void *arg)
{
	struct diagnose_job *job = arg;
	struct td_error *err = td_session_runtime(job->s, snap, "prepare");
	if (!err)
		td_cli_reserve_cache(snap, job->s->lua);
	return err;
}

static struct td_error *sample_while_stopped(struct td_snapshot *snap, void *arg)
{
	struct diagnose_job *job = arg;
	(void)snap;
	return td_lua_sample(job->s->lua, false);
}

/* The last stop of a window (or a core's only one): a sample, then the full walk. */
static struct td_error *walk_while_stopped(struct td_snapshot *snap, void *arg)
{
	struct diagnose_job *job = arg;
	(void)snap;
	struct td_error *err = td_lua_sample(job->s->lua, true);
	return err ? err : td_lua_call_plugin(job->s->lua, "snapshot", true, NULL);
}

/* The first stop: a live target's first sample, or all a core file gives. */
static struct td_error *first_stop(struct td_snapshot *snap, void *arg)
{
	return snap->kind == TD_SNAPSHOT_LIVE ? sample_while_stopped(snap, arg)
					      : walk_while_stopped(snap, arg);
}

static void note_stop(struct diagnose_job *job, const struct td_snapshot *snap)
{
	job->samples++;
	if (snap->stopped_ns > job->max_stopped_ns)
		job->max_stopped_ns = snap->stopped_ns;
}

/*
 * Live: samples every interval over the window, then a last stop with the
 * full walk. The target runs between stops.
 */
static struct td_error *watch(struct td_snapshot *snap, struct diagnose_job *job, double window_ms,
			      double interval_ms)
{
	struct td_snapshot_options opts = {
		.while_stopped = sample_while_stopped, .while_stopped_arg = job };
	struct td_error *err = td_session_sample_window(snap, window_ms, interval_ms, &opts, &job->samples,
							&job->max_stopped_ns);
	if (err)
		return err;
	opts.while_stopped = walk_while_stopped;
	err = td_snapshot_retake(snap, &opts);
	if (!err)
		note_stop(job, snap);
	return err;
}

static int diagnose_option(struct td_session *s, int c, const char *arg, void *ctx)
{
	struct diagnose_job *job = ctx;
	double *dst = c == 'w' ? &job->window_ms : c == 'g' ? &job->greedy_ms : c == 'i' ? &job->interval_ms : NULL;
	if (dst && !td_parse_duration_ms(arg, dst))
		return td_cli_usage(s->command, "bad duration '%s' (write e.g. 500ms or 2s)", arg);
	return -1;
}

int td_cmd_diagnose(int argc, char **argv)
{
	static const struct option options[] = {
		TD_SESSION_OPTIONS,
		{ "window", required_argument, NULL, 'w' },
		{ "greedy-threshold", required_argument, NULL, 'g' },
		{ "interval", required_argument, NULL, 'i' },
		{ 0 },
	};
	struct td_session s = { .command = "diagnose" };
	struct diagnose_job job = { .s = &s, .window_ms = 1000, .greedy_ms = 100, .interval_ms = 25 };
	int code = td_session_parse(&s, argc, argv, options, diagnose_help, 1, diagnose_option, &job, NULL);
	if (code != -1)
		return code;
	if (job.interval_ms < 1)
		return td_cli_usage("diagnose", "--interval must be at least 1ms");

	char *detectors = NULL;
	struct json_object *threads = NULL, *opts = NULL, *findings = NULL;
	bool live = false;
	code = TD_EXIT_OK;
	struct td_error *err = td_session_find_plugins(&s, false);
	if (!err)
		err = td_lua_find_detectors(&detectors);
	if (!err)
		err = td_session_open(&s, prepare_before_stop, first_stop, &job);
	if (!err && (live = s.snap->kind == TD_SNAPSHOT_LIVE)) {
		note_stop(&job, s.snap);
		err = watch(s.snap, &job, job.window_ms, job.interval_ms);
	}
	td_timing_mark("watch");
	if (!err)
		err = td_session_threads(&s);
	if (!err) {
		threads = json_object_new_array();
		for (size_t i = 0; i < s.threads->count; i++)
			json_object_array_add(threads, td_report_thread_json(&s.threads->threads[i]));
		opts = json_object_new_object();
		json_object_object_add(opts, "live", json_object_new_boolean(live));
		json_object_object_add(opts, "window_ms", json_object_new_double(live ? job.window_ms : 0));
		json_object_object_add(opts, "interval_ms", json_object_new_double(job.interval_ms));
		json_object_object_add(opts, "greedy_threshold_ms", json_object_new_double(job.greedy_ms));
		err = td_lua_diagnose(s.lua, detectors, threads, opts, &findings);
		s.result = findings;   /* freed with the session, before the Lua state whose strings it borrows */
		td_timing_mark("detectors");
	}
	if (!err) {
		struct td_diagnose_run run = {
			.window_ms = live ? job.window_ms : 0, .snapshots = live ? job.samples : 1,
			.max_stopped_us = job.max_stopped_ns / 1000, .threads = s.threads->count,
		};
		if (s.json)
			td_report_diagnose_json(stdout, s.snap, &run, findings);
		else
			td_report_diagnose_text(stdout, s.snap, &run, findings);
		td_timing_mark("output");
		td_timing_report();
		code = json_object_array_length(td_diagnose_findings(findings)) > 0 ? TD_EXIT_FINDINGS : TD_EXIT_OK;
	}
	json_object_put(threads);
	json_object_put(opts);
	free(detectors);
	return td_session_end(&s, err, code);
}
