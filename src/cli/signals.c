/*
 * Never leave a target stopped: whatever ends taskdbg (Ctrl-C, kill, hangup,
 * a crash of our own), detach first, then die as the signal says.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "target/live.h"
#include "util/interrupt.h"

static const int fatal_signals[] = {
	SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE,
	SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS,
};

/* The terminal as a session found it: readline changes its modes while it reads a line. */
static struct termios saved_terminal;
static volatile sig_atomic_t terminal_saved;

void td_cli_save_terminal(void)
{
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_terminal) == 0)
		terminal_saved = 1;
}

static void on_fatal_signal(int sig)
{
	if (sig == SIGINT && td_interruptible) {
		/* An interactive session: Ctrl-C ends the command, not taskdbg. */
		td_interrupted = 1;
		return;
	}
	td_live_emergency_detach();
	/* A session killed at its prompt leaves the terminal as it found it (tcsetattr is async-signal-safe). */
	if (terminal_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_terminal);
	/* Die of the same signal (SA_RESETHAND did this already, except for SIGINT's handler). */
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, NULL);
	raise(sig);
}

void td_cli_install_signal_handlers(void)
{
	/* A stack overflow must still reach the handler. */
	static char altstack[64 * 1024];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	sigaltstack(&ss, NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sa.sa_flags = SA_RESETHAND | SA_ONSTACK | SA_NODEFER;
	sigfillset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++)
		sigaction(fatal_signals[i], &sa, NULL);
	/* SIGINT stays installed: a session's Ctrl-C comes back for the next command. */
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGINT, &sa, NULL);
}
