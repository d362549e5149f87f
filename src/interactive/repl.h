/* The interactive loop of `taskdbg attach` and `taskdbg core` (commands: commands.lua). */
#ifndef TD_INTERACTIVE_REPL_H
#define TD_INTERACTIVE_REPL_H

#include "interactive/hold.h"

/* Reads and runs commands until quit, detach or end of input; the exit code. */
int td_repl_run(struct td_hold *h);

#endif
