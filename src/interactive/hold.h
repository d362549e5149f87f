/*
 * A target held open across the commands of a session (`taskdbg attach`,
 * `taskdbg core`, `taskdbg run`): one snapshot taken again and again (a live
 * target runs between them and is never left stopped), one Lua state with
 * the runtime plugin and the user's API (lua/binding.h, docs/lua-api.md),
 * the history of snapshots (kept in Lua: src/interactive/api.lua).
 */
#ifndef TD_INTERACTIVE_HOLD_H
#define TD_INTERACTIVE_HOLD_H

#include <stdbool.h>
#include <stdint.h>

#include "cli/session.h"
#include "lua/binding.h"

struct td_hold {
	struct td_session s;          /* plugins, snapshot, Lua state, thread list */
	char *detectors;
	bool live;
	unsigned keep;                /* snapshots kept as history */
	double interval_ms;           /* background snapshots (0: none) */
	uint64_t last_ns;             /* when the last snapshot was taken */
	unsigned snapshots;           /* taken so far */
	uint64_t last_stopped_ns, max_stopped_ns;
	uint64_t last_work_ns;        /* the last snapshot: its stop and taskdbg's work after */
	bool sampling_failed;         /* the background stopped: the process is gone */
	struct td_lua_session_ops ops;
};

/* Opens target (a pid or a core file) and takes the first snapshot. */
struct td_error *td_hold_open(struct td_hold *h, const char *target, const char *exe, const char *plugins,
			      unsigned keep, double interval_ms);

/* A new snapshot of a live target now (the `refresh` command; a core: nothing). */
struct td_error *td_hold_refresh(struct td_hold *h);

/* The background keeps a live target stopped at most this share of the time. */
#define TD_HOLD_STOPPED_SHARE 0.05

/*
 * Time between background snapshots: --interval, or more where a snapshot
 * would stop the target more than TD_HOLD_STOPPED_SHARE of the time, or keep
 * taskdbg busy more than half the time (from the last snapshot's figures).
 */
double td_hold_gap_ms(const struct td_hold *h);

/* Milliseconds until the next background snapshot is due (-1: none). */
long td_hold_due_ms(const struct td_hold *h);

/* Takes the background snapshot if due; an error stops the background (said once). */
struct td_error *td_hold_tick(struct td_hold *h);

/* Frees it all; a live target was running already and stays so. */
void td_hold_close(struct td_hold *h);

#endif
