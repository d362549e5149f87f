/* `taskdbg tasks` output: the JSON of docs/cli-contract.md and a text a person can scan. */
#ifndef TD_REPORT_TASKS_H
#define TD_REPORT_TASKS_H

#include <stdbool.h>
#include <stdio.h>

#include <json-c/json.h>

#include "model/threads.h"
#include "snapshot/snapshot.h"

struct td_tasks_text_options {
	bool chains;   /* every task's whole await chain */
	bool all;      /* never group */
};

/*
 * on: which thread polls which task, for the threads' "task"; write_runtimes
 * writes the runtimes array (the plugin's model, straight from its tables:
 * lua/json_text.h) and may fail.
 */
void td_report_tasks_json(FILE *out, const struct td_snapshot *snap,
			  const struct td_thread_list *list, const struct td_task_on *on, size_t non,
			  struct td_error *(*write_runtimes)(FILE *out, void *arg), void *arg,
			  struct td_error **err);
/* model: {"runtimes": [...]} as the runtime plugin returned it (borrowed). */
void td_report_tasks_text(FILE *out, const struct td_snapshot *snap,
			  const struct td_thread_list *list, struct json_object *model,
			  const struct td_tasks_text_options *opts);

#endif
