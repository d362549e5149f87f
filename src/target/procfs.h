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
	gid_t gid;         /* real gid */
	pid_t ppid;
	pid_t pgrp, sid;   /* process group and session (as this pid namespace sees them) */
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
	bool readable, writable, executable, shared;
	uint64_t offset;   /* into the mapped file, in bytes */
	uint64_t inode;    /* 0: not backed by a file */
};

/* The process's memory map, sorted by address. *ret is malloc'd. */
struct td_error *td_proc_read_maps(pid_t pid, struct td_mapping **ret, size_t *count_ret);

/* What /proc/PID/smaps adds to a mapping, for a core dump. */
struct td_mapping_detail {
	char *path;          /* file, or [heap], [stack], [vdso], ...; NULL if anonymous */
	uint64_t anonymous;  /* bytes of private copies (a file mapping written to) */
};

/*
 * The memory map with the details of each mapping (details[i] is maps[i]'s),
 * from /proc/PID/smaps: slower than td_proc_read_maps (the kernel walks the
 * page tables). Both arrays are malloc'd: free(*ret) and
 * td_mapping_details_free.
 */
struct td_error *td_proc_read_maps_detailed(pid_t pid, struct td_mapping **ret,
					    struct td_mapping_detail **details_ret, size_t *count_ret);

void td_mapping_details_free(struct td_mapping_detail *details, size_t count);

/* The mapping that contains addr, or NULL. */
const struct td_mapping *td_mapping_find(const struct td_mapping *maps, size_t count,
					 uint64_t addr);

/*
 * The whole of /proc/PID/NAME (auxv, cmdline, ...), however long, up to max
 * bytes. *ret is malloc'd (with a NUL after the *len_ret bytes).
 */
struct td_error *td_proc_read_file(pid_t pid, const char *name, size_t max, char **ret,
				   size_t *len_ret);

/*
 * The path of the process's executable (/proc/TID/exe of its live thread
 * proc_tid), which is also the check that we may inspect the process at all:
 * a process of another user fails with a message that says what to do.
 * st is the process's status (td_proc_check). *ret is malloc'd.
 */
struct td_error *td_proc_exe(pid_t pid, pid_t proc_tid, const struct td_proc_status *st, char **ret);

/* AT_ENTRY from /proc/PID/auxv (0 if unreadable). */
uint64_t td_proc_entry_point(pid_t pid);

#endif
