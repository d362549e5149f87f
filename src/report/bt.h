/* `taskdbg bt` output: the human text and the JSON of docs/cli-contract.md. */
#ifndef TD_REPORT_BT_H
#define TD_REPORT_BT_H

#include <stdio.h>

#include <json-c/json.h>

#include "model/threads.h"
#include "snapshot/snapshot.h"

/* The "target" object every JSON output starts with. Caller owns the result. */
struct json_object *td_report_target_json(const struct td_snapshot *snap);

/*
 * For a core that systemd-coredump stored: one line of what it recorded
 * (signal, time, pid, uid, exe, host), after the header of every text
 * output. Nothing when the core carries no such metadata.
 */
void td_report_coredump_text(FILE *out, const struct td_snapshot *snap);

/* One THREAD object of docs/cli-contract.md. Caller owns the result. */
struct json_object *td_report_thread_json(const struct td_thread_view *v);

void td_report_bt_json(FILE *out, const struct td_snapshot *snap, const struct td_thread_list *list);
/*
 * Every thread's stack as text. Unless full, each run of two or more frames
 * of the program's dependencies is folded into one line ("... 38 frames in
 * tokio, std"); kept: frame #0, the program's own frames and the call each
 * makes (the frame just inside it). Frame numbers stay the real indices.
 */
void td_report_bt_text(FILE *out, const struct td_snapshot *snap, const struct td_thread_list *list, bool full);

/* One thread's frames, folded as td_report_bt_text does (exe: the executable's path, or NULL). */
void td_report_thread_frames_text(FILE *out, const struct td_thread_view *v, const char *exe, bool full);

/*
 * The runs of v's frames that folded text hides, for the REPL's bt:
 * [{"from": 3, "count": 12, "crates": "tokio, std"}, ...] (from: a frame
 * index). Caller owns the result.
 */
struct json_object *td_report_folds_json(const struct td_thread_view *v, const char *exe);

/* One frame line: "  #3   0x... in main+0x1a from exe", or "... in f at file:line". */
void td_report_frame_text(FILE *out, size_t index, const struct td_frame *f);

/*
 * One line (nothing if none): the modules whose frames in list were named
 * from symbol tables, for lack of debug info, and how to get it.
 */
void td_report_nodebug_note(FILE *out, const struct td_snapshot *snap, const struct td_thread_list *list);

#endif
