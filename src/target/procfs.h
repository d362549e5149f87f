/*
 * Reading a live process's /proc entries: existence, state, tracer, threads,
 * names and memory map. Nothing here stops or touches the process.
 */
#ifndef TD_TARGET_PROCFS_H
#define TD_TARGET_PROCFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

struct td_proc_status {
	char state;        /* R, S, D, T, t, Z, X, ... */
	pid_t tgid;        /* != pid when pid names a thread, not a process */
	pid_t tracer_pid;  /* 0 when nobody traces it */
	uid_t uid;         /* real uid */
	char name[16];
};

/*
 * A thread of pid that is alive (not a zombie): pid itself unless its main
 * thread has exited. Its /proc/TID entries (exe, maps, auxv) serve for the
 * process, which a zombie leader's no longer do. 0 if none.
 */
pid_t td_proc_live_thread(pid_t pid);

/* The status of one thread (tid == pid: the process), as it is; false if gone. */
bool td_proc_read_status(pid_t pid, pid_t tid, struct td_proc_status *ret);

/*
 * Fails with a message that says what to do when the process does not exist,
 * is a zombie, is a thread rather than a process, or is traced already.
 */
struct td_error *td_proc_check(pid_t pid, struct td_proc_status *ret);

/* Thread ids of the process, in /proc order. *ret is malloc'd. */
struct td_error *td_proc_list_threads(pid_t pid, pid_t **ret, size_t *count_ret);

/* Name (comm) and scheduler state of one thread; false if it is gone. */
bool td_proc_thread_info(pid_t pid, pid_t tid, char name[16], char *state_ret);

struct td_mapping {
	uint64_t lo, hi;
	bool readable;
};

/* The process's memory map, sorted by address. *ret is malloc'd. */
struct td_error *td_proc_read_maps(pid_t pid, struct td_mapping **ret, size_t *count_ret);

/* The mapping that contains addr, or NULL. */
const struct td_mapping *td_mapping_find(const struct td_mapping *maps, size_t count,
					 uint64_t addr);

/* AT_ENTRY from /proc/PID/auxv (0 if unreadable). */
uint64_t td_proc_entry_point(pid_t pid);

#endif
