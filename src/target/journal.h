#ifndef TD_TARGET_JOURNAL_H
#define TD_TARGET_JOURNAL_H

#include "target/core.h"

/*
 * systemd-coredump's journal entry of the core file at path (MESSAGE_ID
 * fc2e22bc6ee647b6b90729ab34a250b1 with COREDUMP_FILENAME= its absolute
 * path; the newest if several): the fields `coredumpctl info` shows that the
 * file's own extended attributes do not carry (the command line, the unit)
 * and any the attributes lacked. Read from the system journal only for a core
 * that looks like systemd-coredump's (its xattrs, or a path under
 * /var/lib/systemd/coredump/); TASKDBG_JOURNAL_DIR names a directory of
 * journal files to read instead (journalctl -D), for any core. Nothing found,
 * no journal, or taskdbg built without libsystemd: m is left as it was.
 */
void td_journal_coredump(struct td_coredump_meta *m, const char *path);

/* Whether taskdbg was built with libsystemd (--version says). */
bool td_journal_built_in(void);

#endif
