/* Unit tests of target/syscalls: names, and the blocked-in rule on registers. */
#include <sys/syscall.h>
#include <sys/user.h>

#include "check.h"
#include "target/syscalls.h"

int main(void)
{
	CHECK_STR(td_syscall_name(SYS_read), "read");
	CHECK_STR(td_syscall_name(SYS_futex), "futex");
	CHECK_STR(td_syscall_name(SYS_clock_nanosleep), "clock_nanosleep");
	CHECK(td_syscall_name(-1) == NULL);
	CHECK(td_syscall_name(100000) == NULL);

	struct user_regs_struct r = {0};
	r.orig_rax = SYS_read;
	r.rax = (unsigned long long)-512;  /* -ERESTARTSYS: interrupted while blocked */
	CHECK(td_syscall_blocked_in(&r) == SYS_read);
	r.orig_rax = SYS_clock_nanosleep;
	r.rax = (unsigned long long)-516;  /* -ERESTART_RESTARTBLOCK */
	CHECK(td_syscall_blocked_in(&r) == SYS_clock_nanosleep);
	r.rax = 0;                         /* the call had returned */
	CHECK(td_syscall_blocked_in(&r) == -1);
	r.orig_rax = (unsigned long long)-1;  /* not in a system call at all */
	r.rax = (unsigned long long)-512;
	CHECK(td_syscall_blocked_in(&r) == -1);
	return CHECK_DONE();
}
