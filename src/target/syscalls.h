/* x86_64 system calls: names, and which call a stopped thread sits in. */
#ifndef TD_TARGET_SYSCALLS_H
#define TD_TARGET_SYSCALLS_H

#include <sys/user.h>

/* The name of system call nr, or NULL if unknown. */
const char *td_syscall_name(long nr);

/*
 * The system call a stopped thread was blocked in, or -1. Works alike for a
 * thread stopped by ptrace and one frozen in a core: the kernel interrupted the
 * call, so orig_rax holds its number and rax an -ERESTART* (or -EINTR) result.
 * A call that had already returned leaves its result in rax instead.
 */
long td_syscall_blocked_in(const struct user_regs_struct *regs);

#endif
