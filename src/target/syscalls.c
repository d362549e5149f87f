#include "target/syscalls.h"

#include <errno.h>
#include <stddef.h>

#include "syscall-names.h"

/* Kernel-internal restart codes (include/linux/errno.h), never seen by programs. */
#define TD_ERESTARTSYS 512
#define TD_ERESTARTNOINTR 513
#define TD_ERESTARTNOHAND 514
#define TD_ERESTART_RESTARTBLOCK 516

const char *td_syscall_name(long nr)
{
	if (nr < 0 || (size_t)nr >= sizeof(td_syscall_names) / sizeof(td_syscall_names[0]))
		return NULL;
	return td_syscall_names[nr];
}

long td_syscall_blocked_in(const struct user_regs_struct *regs)
{
	long nr = (long)regs->orig_rax;
	long rax = (long)regs->rax;
	if (nr < 0)
		return -1;
	/* Compared as negatives: negating rax could overflow (a crafted core). */
	if (rax == -TD_ERESTARTSYS || rax == -TD_ERESTARTNOINTR || rax == -TD_ERESTARTNOHAND ||
	    rax == -TD_ERESTART_RESTARTBLOCK || rax == -EINTR)
		return nr;
	return -1;
}
