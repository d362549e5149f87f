/*
 * taskdbg record [--rate HZ] [--duration D] [--idle] [--mode M] -o FILE PID:
 * a task-rooted profile of a live process (profile/record.h), written as
 * folded stacks, an SVG flame graph or speedscope JSON (profile/profile.h).
 * taskdbg record --diff A.folded B.folded -o FILE.svg: a differential one.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/session.h"
#include "config.h"
#include "lua/binding.h"
#include "profile/profile.h"
#include "profile/record.h"
#include "util/clock.h"
#include "util/duration.h"
#include "util/interrupt.h"
#include "value/program.h"

static const char record_help[] =
	"usage: taskdbg record [--rate HZ] [--duration D] [--idle] [--mode auto|perf|ptrace]\n"
	"                      -o FILE PID\n"
	"       taskdbg record --diff BEFORE.folded AFTER.folded -o FILE.svg\n"
	"\n"
	"Sample every thread of a live process and write a flame graph rooted in async\n"
	"tasks: a sample on a worker polling a task is filed under `task NAME`, then that\n"
	"task's frames; a worker between polls under [scheduler]; a spawn_blocking closure\n"
	"under [blocking] NAME; other threads under [thread NAME]. FILE's extension picks\n"
	"the format: .folded (flamegraph.pl, inferno), .svg (interactive flame graph),\n"
	".json (speedscope). Ctrl-C ends the recording early and still writes FILE.\n"
	"\n"
	"Sampling uses perf events where the kernel permits them (the target never\n"
	"stops; only running threads are sampled), else ptrace stops (every thread, each\n"
	"stop well under a millisecond). --diff compares two folded files: red grew, blue\n"
	"shrank, after normalising both to the same total.\n"
	"\n"
	"  -o, --output FILE       where to write (.folded, .svg or .json)\n"
	"  --rate HZ               samples per second, 1 to 1000 (default 99; per\n"
	"                          CPU-second of a thread with perf events)\n"
	"  --duration D            how long (default 10s; 0: until Ctrl-C)\n"
	"  --idle                  keep samples of parked threads (needs ptrace stops)\n"
	"  --mode M                auto (default), perf or ptrace\n"
	"  --diff                  BEFORE.folded AFTER.folded: a differential flame graph\n"
	"  --plugins DIR           look for runtime plugins in DIR first\n"
	"  --help                  this text\n";

struct record_job {
	struct td_session *s;
	const char *output;
	double rate, duration_ms;
	bool idle, diff;
	enum td_record_mode mode;
	struct td_profile *profile;
};

static int record_option(struct td_session *s, int c, const char *arg, void *ctx)
{
	struct record_job *job = ctx;
	char *end;
	switch (c) {
	case 'o':
		job->output = arg;
		break;
	case 'r':
		job->rate = (double)strtoul(arg, &end, 10);
		/* Above 1000 Hz, ptrace stops would keep a target stopped much of the time. */
		if (*end || !*arg || job->rate < 1 || job->rate > 1000)
			return td_cli_usage(s->command, "bad rate '%s' (a whole number of Hz from 1 to 1000)", arg);
		break;
	case 'd':
		if (!td_parse_duration_ms(arg, &job->duration_ms))
			return td_cli_usage(s->command, "bad duration '%s' (write e.g. 500ms or 10s)", arg);
		break;
	case 'i':
		job->idle = true;
		break;
	case 'D':
		job->diff = true;
		break;
	case 'm':
		if (!strcmp(arg, "auto"))
			job->mode = TD_RECORD_AUTO;
		else if (!strcmp(arg, "perf"))
			job->mode = TD_RECORD_PERF;
		else if (!strcmp(arg, "ptrace"))
			job->mode = TD_RECORD_PTRACE;
		else
			return td_cli_usage(s->command, "bad mode '%s' (auto, perf or ptrace)", arg);
		break;
	}
	return -1;
}

/* Whether FILE can be written where it is to go (its folder), before the recording. */
static struct td_error *writable(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return &td_enomem;
	char *slash = strrchr(copy, '/');
	const char *dir = slash ? (slash == copy ? "/" : (*slash = '\0', copy)) : ".";
	struct stat st;
	struct td_error *err = NULL;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		err = td_error_format(TD_ERR_TARGET, "cannot write %s: no folder %s", path, dir);
	else if (access(dir, W_OK | X_OK) != 0)
		err = td_error_format(TD_ERR_TARGET, "cannot write %s: folder %s is not writable (%s)", path, dir,
				      strerror(errno));
	else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		err = td_error_format(TD_ERR_TARGET, "cannot write %s: it is a folder", path);
	free(copy);
	return err;
}

static int record_diff(const char *before_path, const char *after_path, const char *output)
{
	struct td_profile *before = NULL, *after = NULL;
	struct td_error *err = td_profile_read_folded(before_path, &before);
	if (!err)
		err = td_profile_read_folded(after_path, &after);
	if (!err) {
		char title[512];
		snprintf(title, sizeof(title), "taskdbg record --diff: %s -> %s", before_path, after_path);
		struct td_profile_meta meta = {
			.title = title,
			.subtitle = "red: grew, blue: shrank (after normalised to before's total)",
			.exporter = "taskdbg " TD_VERSION,
		};
		err = td_profile_write_diff(before, after, output, &meta);
	}
	if (!err)
		fprintf(stderr, "wrote %s (%llu samples before, %llu after)\n", output,
			(unsigned long long)td_profile_total(before), (unsigned long long)td_profile_total(after));
	td_profile_destroy(before);
	td_profile_destroy(after);
	return err ? td_cli_fail(err) : TD_EXIT_OK;
}

static struct td_error *before_stop(struct td_snapshot *snap, void *arg)
{
	struct record_job *job = arg;
	/* Without a runtime there are still threads to profile. */
	td_error_destroy(td_session_runtime(job->s, snap, "prepare_threads"));
	return NULL;
}

/* After a ptrace stop: the task each thread polls, from the plugin's thread-locals. */
static void current_tasks(struct td_snapshot *snap, long long *task, void *arg)
{
	struct record_job *job = arg;
	td_session_current_tasks(job->s, snap, task);
}

static void add_sample(const struct td_record_sample *s, void *arg)
{
	struct record_job *job = arg;
	td_error_destroy(td_profile_add(job->profile, s->path->frames, s->path->n, 1));
}

static void progress(const struct record_job *job, uint64_t start, const struct td_record_stats *st, bool done)
{
	double secs = (double)(td_now_ns() - start) / 1e9;
	if (job->duration_ms > 0)
		fprintf(stderr, "\rrecording %d: %.1f s of %.1f s, %llu samples (%s)  ", (int)job->s->snap->pid,
			secs, job->duration_ms / 1000, (unsigned long long)st->samples, td_record_mode_name(st->mode));
	else
		fprintf(stderr, "\rrecording %d: %.1f s, %llu samples (%s), Ctrl-C to stop  ",
			(int)job->s->snap->pid, secs, (unsigned long long)st->samples, td_record_mode_name(st->mode));
	if (done)
		fputc('\n', stderr);
	fflush(stderr);
}

static void summary(const struct record_job *job, const struct td_record_stats *st)
{
	if (st->fallback[0])
		fprintf(stderr, "record: perf events not used: %s\n", st->fallback);
	double achieved;
	if (st->mode == TD_RECORD_PERF)
		achieved = st->cpu_ns ? (double)st->samples / ((double)st->cpu_ns / 1e9) : 0;
	else
		achieved = st->wall_ns ? (double)st->stops / ((double)st->wall_ns / 1e9) : 0;
	fprintf(stderr, "record: %s, %.0f Hz asked, %.1f Hz achieved%s, %llu samples", td_record_mode_name(st->mode),
		job->rate, achieved, st->mode == TD_RECORD_PERF ? " per CPU-second" : "",
		(unsigned long long)st->samples);
	if (st->idle)
		fprintf(stderr, " (%llu idle left out)", (unsigned long long)st->idle);
	fprintf(stderr, ", %llu lost", (unsigned long long)(st->lost + st->missed));
	if (st->unwound_short)
		fprintf(stderr, ", %llu stacks cut short", (unsigned long long)st->unwound_short);
	if (st->unsampled)
		fprintf(stderr, ", %llu threads not sampled", (unsigned long long)st->unsampled);
	if (st->mode == TD_RECORD_PTRACE)
		fprintf(stderr, ", stops: median %.2f ms, longest %.2f ms", (double)st->stop_median_ns / 1e6,
			(double)st->stop_max_ns / 1e6);
	fprintf(stderr, ", %.2f s\n", (double)st->wall_ns / 1e9);
}

static struct td_error *record(struct record_job *job)
{
	struct td_session *s = job->s;
	struct td_error *err = td_session_open(s, before_stop, NULL, job);
	if (err)
		return err;
	if (s->snap->kind != TD_SNAPSHOT_LIVE)
		return td_error_format(TD_ERR_TARGET, "%s is a core file: record samples a live process "
				       "over time (give a PID)", s->target);
	if ((err = td_profile_create(&job->profile)))
		return err;
	struct td_record_options ro = {
		.rate = (unsigned)job->rate, .mode = job->mode, .idle = job->idle,
		.current_tasks = current_tasks, .arg = job,
	};
	struct td_recorder *rec;
	if ((err = td_recorder_start(s->snap, &s->frames, &ro, &rec)))
		return err;
	struct td_record_stats st;
	td_recorder_stats(rec, &st);
	bool tty = isatty(STDERR_FILENO);
	uint64_t start = td_now_ns();
	uint64_t end = job->duration_ms > 0 ? start + (uint64_t)(job->duration_ms * 1e6) : UINT64_MAX;
	td_interrupted = 0;
	td_interruptible = 1;
	while (!err && !td_interrupt_pending()) {
		uint64_t now = td_now_ns();
		if (now >= end)
			break;
		uint64_t slice = now + 250000000ull < end ? now + 250000000ull : end;
		err = td_recorder_run(rec, slice, add_sample, job);
		if (tty) {
			td_recorder_stats(rec, &st);
			progress(job, start, &st, false);
		}
	}
	td_interruptible = 0;
	td_recorder_stats(rec, &st);
	if (tty)
		progress(job, start, &st, true);
	td_recorder_destroy(rec);
	if (err && td_profile_total(job->profile) == 0)
		return err;
	if (err) {
		fprintf(stderr, "taskdbg: %s; writing what was recorded\n", err->message);
		td_error_destroy(err);
	}
	summary(job, &st);
	char title[256], subtitle[256];
	snprintf(title, sizeof(title), "taskdbg record: %d (%s)", (int)s->snap->pid, s->snap->comm ? s->snap->comm : "?");
	snprintf(subtitle, sizeof(subtitle), "%s, %.0f Hz, %.1f s, %llu samples", td_record_mode_name(st.mode), job->rate,
		 (double)st.wall_ns / 1e9, (unsigned long long)st.samples);
	struct td_profile_meta meta = { .title = title, .subtitle = subtitle, .exporter = "taskdbg " TD_VERSION };
	if ((err = td_profile_write(job->profile, job->output, &meta)))
		return err;
	fprintf(stderr, "wrote %s (%zu stacks, %llu samples)\n", job->output, td_profile_stacks(job->profile),
		(unsigned long long)td_profile_total(job->profile));
	return NULL;
}

int td_cmd_record(int argc, char **argv)
{
	static const struct option options[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "rate", required_argument, NULL, 'r' },
		{ "duration", required_argument, NULL, 'd' },
		{ "idle", no_argument, NULL, 'i' },
		{ "mode", required_argument, NULL, 'm' },
		{ "diff", no_argument, NULL, 'D' },
		{ "plugins", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct td_session s = { .command = "record", .shortopts = "o:" };
	struct record_job job = { .s = &s, .rate = 99, .duration_ms = 10000 };
	int first = 0;
	int code = td_session_parse(&s, argc, argv, options, record_help, 0, record_option, &job, &first);
	if (code != -1)
		return code;
	int npos = argc - first;
	if (!job.output)
		return td_cli_usage("record", "no output file: give -o FILE (.folded, .svg or .json)");
	if (job.diff) {
		if (npos != 2)
			return td_cli_usage("record", "--diff takes two folded files: BEFORE.folded AFTER.folded");
		return record_diff(argv[first], argv[first + 1], job.output);
	}
	if (npos != 1)
		return td_cli_usage("record", npos ? "one PID only" : "no PID given");
	if (job.idle && job.mode == TD_RECORD_PERF)
		return td_cli_usage("record", "--idle needs ptrace stops: perf events sample running threads only");
	s.target = argv[first];
	/* A file we could not write is said before anything is recorded. */
	struct td_error *err = td_profile_check_path(job.output);
	if (err)
		return td_cli_fail(err);
	if ((err = writable(job.output)))
		return td_cli_fail(err);
	err = td_session_find_plugins(&s, true);
	if (!err)
		err = record(&job);
	td_profile_destroy(job.profile);
	return td_session_end(&s, err, TD_EXIT_OK);
}
