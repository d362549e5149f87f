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
void td_report_bt_text(FILE *out, const struct td_snapshot *snap, const struct td_thread_list *list);

#endif
