/* `taskdbg diagnose` output: the JSON of docs/cli-contract.md and a one-screen report. */
#ifndef TD_REPORT_DIAGNOSE_H
#define TD_REPORT_DIAGNOSE_H

#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "snapshot/snapshot.h"

struct td_diagnose_run {
	double window_ms;         /* 0 for a core file */
	unsigned snapshots;
	uint64_t max_stopped_us;  /* longest single stop (live) */
	size_t threads;
};

/*
 * result: {"findings": [FINDING...], "tasks": n, "runtimes": n} as the
 * detectors returned it (borrowed), findings most severe first.
 */
void td_report_diagnose_json(FILE *out, const struct td_snapshot *snap,
			     const struct td_diagnose_run *run, struct json_object *result);
void td_report_diagnose_text(FILE *out, const struct td_snapshot *snap,
			     const struct td_diagnose_run *run, struct json_object *result);

/* The findings array of result (never NULL for a well-formed result). */
struct json_object *td_diagnose_findings(struct json_object *result);

#endif
