/* taskdbg bt [--json] [--full] [--exe PATH] TARGET: every thread's stack, then exit. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/session.h"
#include "lua/binding.h"
#include "model/threads.h"
#include "report/bt.h"
#include "util/timing.h"

static const char bt_help[] =
	"usage: taskdbg bt [--json] [--full] [--exe PATH] [--plugins DIR] TARGET\n"
	"\n"
	"Print every thread's stack (inline frames expanded, with source lines), then exit.\n"
	"TARGET is a process id or a core file. A live process is stopped only while its\n"
	"registers and stack tops are copied (well under a millisecond), then runs on.\n"
	"A core file may be compressed with zstd, xz or lz4 (as systemd-coredump stores\n"
	"them): it is decompressed into $TMPDIR (default /var/tmp), at most\n"
	"TASKDBG_CORE_MAX bytes (default 32G).\n"
	"\n"
	"Each run of frames of the program's dependencies (tokio, std, libc...) is folded\n"
	"into one line, \"... 38 frames in tokio, std\"; frame #0, the program's own\n"
	"frames and the calls they make are always shown. Modules without debug info\n"
	"(DWARF) are named from their symbol tables (function+0xOFFSET, or\n"
	"?? (module+0xOFFSET)), said once on stderr.\n"
	"\n"
	"The runtime plugins (--plugins) give the threads their roles and tasks.\n"
	"\n"
	TD_SESSION_HELP_JSON
	"  --full                  every frame, none folded (--json always has every frame)\n"
	TD_SESSION_HELP;

/*
 * The task each thread polls comes from the runtime plugin's thread-locals,
 * read during the stop. It is a nicety: if the plugin cannot help (no runtime
 * in the program, a plugin that fails), bt goes on with task null.
 */
static struct td_error *bt_before_stop(struct td_snapshot *snap, void *arg)
{
	struct td_session *s = arg;
	td_error_destroy(td_session_runtime(s, snap, "prepare_threads"));
	return NULL;
}

/*
 * After the stop: each thread's TLS block was copied during it, so CONTEXT
 * reads still give what the thread was polling then, and the target does not
 * wait for them. The id counts only where the stack shows an async task polled.
 */
static struct td_error *assign_tasks(struct td_session *s)
{
	const struct td_thread_list *list = s->threads;
	long long *task = malloc((list->count ? list->count : 1) * sizeof(*task));
	if (!task)
		return &td_enomem;
	td_session_current_tasks(s, s->snap, task);
	for (size_t t = 0; t < list->count; t++)
		if (td_thread_polls_async_task(list, &list->threads[t]))
			list->threads[t].task = task[t];
	free(task);
	return NULL;
}

static int bt_option(struct td_session *s, int c, const char *arg, void *ctx)
{
	(void)s;
	(void)arg;
	if (c == 'f')
		*(bool *)ctx = true;
	return -1;
}

int td_cmd_bt(int argc, char **argv)
{
	static const struct option options[] = {
		TD_SESSION_OPTIONS,
		{ "full", no_argument, NULL, 'f' },
		{ 0 },
	};
	struct td_session s = { .command = "bt" };
	bool full = false;
	int code = td_session_parse(&s, argc, argv, options, bt_help, 1, bt_option, &full, NULL);
	if (code != -1)
		return code;
	/* Optional: without a plugin there are stacks all the same. */
	struct td_error *err = td_session_find_plugins(&s, true);
	if (!err)
		err = td_session_open(&s, bt_before_stop, NULL, &s);
	if (!err)
		err = td_session_threads(&s);
	if (!err)
		err = assign_tasks(&s);
	if (!err) {
		if (s.json)
			td_report_bt_json(stdout, s.snap, s.threads);
		else
			td_report_bt_text(stdout, s.snap, s.threads, full);
		/* On stderr: stdout stays the stacks alone, the same with or without debug info. */
		td_report_nodebug_note(stderr, s.snap, s.threads);
		td_timing_mark("output");
		td_timing_report();
	}
	return td_session_end(&s, err, TD_EXIT_OK);
}
