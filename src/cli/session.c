#include "cli/session.h"

#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "config.h"
#include "lua/binding.h"
#include "model/threads.h"
#include "util/clock.h"
#include "util/interrupt.h"
#include "value/program.h"

int td_session_parse(struct td_session *s, int argc, char **argv, const struct option *options,
		     const char *help, int npos, int (*own)(struct td_session *s, int c, const char *arg, void *ctx),
		     void *ctx, int *first)
{
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, s->shortopts ? s->shortopts : "+", options, NULL)) != -1) {
		switch (c) {
		case 'j': s->json = true; break;
		case 'e': s->exe = optarg; break;
		case 'p': s->plugins = optarg; break;
		case 'h': fputs(help, stdout); return TD_EXIT_OK;
		default: {
			if (c == '?' || !own)
				return td_cli_usage(s->command, "unknown option %s", argv[optind - 1]);
			int r = own(s, c, optarg, ctx);
			if (r != -1)
				return r;
		}
		}
	}
	if (first)
		*first = optind;
	if (npos > 0) {
		if (argc - optind != npos)
			return td_cli_usage(s->command, argc - optind < npos ? "TARGET is missing" : "too many arguments");
		s->target = argv[argc - 1];
	}
	return -1;
}

struct td_error *td_session_find_plugins(struct td_session *s, bool optional)
{
	struct td_error *err = td_lua_find_plugins(s->plugins, &s->plugin_paths, &s->nplugins);
	if (err || s->nplugins > 0 || optional)
		return err;
	/* None at all is a broken install, not a program without a runtime. */
	char looked[8400];
	td_lua_search_dirs_text("plugins", looked, sizeof(looked));
	return td_error_format(TD_ERR_TARGET,
		"no runtime plugins found (looked in --plugins, $TASKDBG_PLUGIN_PATH, %s)\n"
		"Install taskdbg (`meson install -C build`) or pass --plugins DIR.", looked);
}

struct td_error *td_session_runtime(struct td_session *s, struct td_snapshot *snap, const char *prepare)
{
	struct td_error *err = td_lua_open_runtime(snap, s->plugin_paths, s->nplugins, prepare, &s->lua);
	if (!err)
		err = td_lua_runtime_frames(s->lua, &s->frames);
	return err;
}

struct td_error *td_session_open(struct td_session *s,
				 struct td_error *(*before_stop)(struct td_snapshot *, void *),
				 struct td_error *(*while_stopped)(struct td_snapshot *, void *), void *arg)
{
	return td_cli_snapshot_with(s->target, s->exe, before_stop, while_stopped, arg, &s->snap);
}

struct td_error *td_session_sample_window(struct td_snapshot *snap, double window_ms, double interval_ms,
					  const struct td_snapshot_options *sample, unsigned *stops,
					  uint64_t *max_stopped_ns)
{
	uint64_t start = td_now_ns(), step = (uint64_t)(interval_ms * 1e6);
	uint64_t end = start + (uint64_t)(window_ms * 1e6);
	for (uint64_t next = start + step; next < end; next += step) {
		if (!td_sleep_until(next))
			return td_error_format(TD_ERR_USAGE, "interrupted");
		struct td_error *err = td_snapshot_retake(snap, sample);
		if (err)
			return err;
		(*stops)++;
		if (snap->stopped_ns > *max_stopped_ns)
			*max_stopped_ns = snap->stopped_ns;
	}
	if (!td_sleep_until(end))
		return td_error_format(TD_ERR_USAGE, "interrupted");
	return NULL;
}

void td_session_current_tasks(struct td_session *s, struct td_snapshot *snap, long long *task)
{
	for (size_t t = 0; t < snap->nthreads; t++)
		task[t] = -1;
	if (!s->lua)
		return;
	struct json_object *result = NULL;
	/* What the page cache holds was read before this stop. */
	td_program_forget_memory(td_lua_program(s->lua));
	td_error_destroy(td_lua_call_plugin(s->lua, "current_tasks", false, &result));
	size_t n = result && json_object_is_type(result, json_type_array) ? json_object_array_length(result) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(result, i), *tid, *id;
		if (!json_object_object_get_ex(e, "tid", &tid) || !json_object_object_get_ex(e, "task", &id))
			continue;
		for (size_t t = 0; t < snap->nthreads; t++)
			if (snap->threads[t].tid == json_object_get_int(tid))
				task[t] = json_object_get_int64(id);
	}
	json_object_put(result);
	/* Called at every stop of a recording: the Lua values behind result go too. */
	td_lua_release_results(s->lua);
}

struct td_error *td_session_threads(struct td_session *s)
{
	return td_thread_list_build(s->snap, &s->frames, &s->threads);
}

int td_session_end(struct td_session *s, struct td_error *err, int code)
{
	if (!err)
		td_cli_exit_early(code);
	td_session_free(s);
	if (err)
		return td_cli_fail(err);
	return fflush(stdout) == 0 ? code : TD_EXIT_FAILED;
}

void td_session_free(struct td_session *s)
{
	json_object_put(s->result);  /* before the Lua state whose strings it borrows */
	td_lua_destroy(s->lua);
	td_thread_list_destroy(s->threads);
	td_snapshot_destroy(s->snap);
	td_runtime_frames_free(&s->frames);
	td_lua_free_paths(s->plugin_paths, s->nplugins);
	*s = (struct td_session){ 0 };
}
