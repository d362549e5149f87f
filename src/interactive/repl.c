/*
 * The session's read-eval-print loop. On a terminal: readline (history kept
 * across sessions, tab completion from commands.lua), the background
 * snapshots taken while it waits for a key, Ctrl-C ending the command or
 * the line being typed, output that outgrows the screen paged, colour
 * unless NO_COLOR. Otherwise commands are read from standard input, one a
 * line, for scripts and tests: no prompt, no colour, no pager.
 */
#include "interactive/repl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "cli/cli.h"
#include "util/interrupt.h"

#define HISTORY_MAX 1000

static struct td_hold *repl_hold;

/* Tell the user once when background sampling ends (the process exited, say). */
static void tick(struct td_hold *h)
{
	bool failed = h->sampling_failed;
	struct td_error *err = td_hold_tick(h);
	if (err && !failed) {
		fprintf(stderr, "\ntaskdbg: background snapshots stopped: %s\n", err->message);
		td_error_destroy(err);
		if (rl_line_buffer && isatty(STDIN_FILENO))
			rl_forced_update_display();
	} else {
		td_error_destroy(err);
	}
}

/* $XDG_STATE_HOME/taskdbg/history, made as needed; NULL if there is no home. */
static char *history_path(void)
{
	const char *state = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	char dir[4096];
	if (state && state[0] == '/')
		snprintf(dir, sizeof(dir), "%s/taskdbg", state);
	else if (home && home[0])
		snprintf(dir, sizeof(dir), "%s/.local/state/taskdbg", home);
	else
		return NULL;
	/* mkdir -p */
	for (char *p = dir + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			mkdir(dir, 0700);
			*p = '/';
		}
	}
	mkdir(dir, 0700);
	char *path;
	if (asprintf(&path, "%s/history", dir) < 0)
		return NULL;
	return path;
}

/* ---- output and the pager ---- */

struct page_buffer {
	char *text;
	size_t len;
	FILE *f;
};

static struct page_buffer page;

/* watch and long commands show what they have so far: the buffer goes out unpaged. */
static void flush_page(void)
{
	if (!page.f)
		return;
	fflush(page.f);
	fwrite(page.text, 1, page.len, stdout);
	fflush(stdout);
	fclose(page.f);
	free(page.text);
	page = (struct page_buffer){ 0 };
	td_lua_session_output(repl_hold->s.lua, NULL, NULL);
}

static unsigned terminal_rows(void)
{
	struct winsize ws;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0)
		return ws.ws_row;
	return 24;
}

/* The command's output: through $PAGER (less -FRX if unset) when taller than the screen. */
static void show_page(void)
{
	if (!page.f)
		return;
	fclose(page.f);
	page.f = NULL;
	td_lua_session_output(repl_hold->s.lua, NULL, NULL);
	size_t lines = 0;
	for (size_t i = 0; i < page.len; i++)
		lines += page.text[i] == '\n';
	const char *pager = getenv("PAGER");
	if (!pager || !pager[0])
		pager = "less -FRX";
	FILE *p = NULL;
	if (lines + 1 >= terminal_rows() && strcmp(pager, "cat") != 0) {
		fflush(stdout);
		p = popen(pager, "w");
	}
	if (p) {
		/* The pager owns the terminal: Ctrl-C is for it (quits a less search). */
		fwrite(page.text, 1, page.len, p);
		pclose(p);
	} else {
		fwrite(page.text, 1, page.len, stdout);
	}
	fflush(stdout);
	free(page.text);
	page = (struct page_buffer){ 0 };
}

/* The first word of a line (the command). */
static void command_word(const char *line, char *buf, size_t size)
{
	while (*line == ' ' || *line == '\t')
		line++;
	size_t n = strcspn(line, " \t");
	if (n >= size)
		n = size - 1;
	memcpy(buf, line, n);
	buf[n] = '\0';
}

/* Runs one line; false when it ends the session. */
static bool run_line(struct td_hold *h, const char *line, bool terminal)
{
	char word[32];
	command_word(line, word, sizeof(word));
	if (!word[0])
		return true;
	/* Paged: what a person reads at leisure (not watch or Lua, which show as they go). */
	bool paged = terminal && strcmp(word, "watch") != 0 && strcmp(word, "lua") != 0 &&
		     strcmp(word, "source") != 0;
	if (paged) {
		page.f = open_memstream(&page.text, &page.len);
		if (page.f)
			td_lua_session_output(h->s.lua, page.f, flush_page);
	}
	td_interrupted = 0;
	bool quit = false;
	struct td_error *err = td_lua_session_command(h->s.lua, line, &quit);
	if (page.f)
		show_page();
	if (err) {
		/* Ctrl-C ends the command; the session goes on. */
		if (td_interrupted || strstr(err->message, "interrupted"))
			fprintf(stderr, "(interrupted)\n");
		else
			fprintf(stderr, "taskdbg: %s\n", err->message);
		td_error_destroy(err);
	}
	td_interrupted = 0;
	fflush(stdout);
	return !quit;
}

/* ---- readline ---- */

static char **completions;
static size_t completion_next;

static char *completion_generator(const char *text, int state)
{
	(void)text;
	if (state == 0)
		completion_next = 0;
	if (!completions || !completions[completion_next])
		return NULL;
	return strdup(completions[completion_next++]);
}

static void free_completions(void)
{
	for (size_t i = 0; completions && completions[i]; i++)
		free(completions[i]);
	free(completions);
	completions = NULL;
}

static char **complete(const char *text, int start, int end)
{
	(void)start;
	(void)end;
	free_completions();
	completions = td_lua_session_complete(repl_hold->s.lua, rl_line_buffer, text);
	/* No list at all: a file name (dump, source), readline's own completion. */
	rl_attempted_completion_over = completions != NULL;
	if (!completions || !completions[0])
		return NULL;
	return rl_completion_matches(text, completion_generator);
}

static bool line_done, session_over;
static char *line_read;

static void on_line(char *line)
{
	/* Removed here, not after: readline would show the next prompt as soon as
	 * this returns, before the command's output. */
	rl_callback_handler_remove();
	line_done = true;
	line_read = line;
	if (!line)
		session_over = true;   /* EOF: Ctrl-D */
}

static int run_terminal(struct td_hold *h)
{
	char *hist = history_path();
	using_history();
	stifle_history(HISTORY_MAX);
	if (hist) {
		read_history(hist);
		/* append_history only appends: the first session must make the file. */
		int fd = open(hist, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0)
			close(fd);
	}
	rl_readline_name = "taskdbg";
	rl_catch_signals = 0;   /* SIGINT is ours: it ends a command */
	rl_catch_sigwinch = 1;
	rl_attempted_completion_function = complete;
	rl_basic_word_break_characters = " \t";
	while (!session_over) {
		char *prompt = td_lua_session_prompt(h->s.lua);
		line_done = false;
		rl_callback_handler_install(prompt ? prompt : "taskdbg> ", on_line);
		while (!line_done) {
			long due = td_hold_due_ms(h);
			struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
			int r = poll(&pfd, 1, due < 0 ? -1 : (int)due);
			if (td_interrupted) {
				/* Ctrl-C at the prompt: a fresh line, as bash does. */
				td_interrupted = 0;
				rl_replace_line("", 1);
				rl_crlf();
				/* Installed again, which shows the prompt: rl_on_new_line and
				 * rl_redisplay print nothing when the line was empty already. */
				rl_callback_handler_remove();
				rl_callback_handler_install(prompt ? prompt : "taskdbg> ", on_line);
				continue;
			}
			if (r < 0 && errno != EINTR)
				break;
			if (r > 0)
				rl_callback_read_char();
			else if (r == 0)
				tick(h);
		}
		rl_callback_handler_remove();
		free(prompt);
		if (!line_done)
			break;
		if (!line_read)
			break;
		if (line_read[strspn(line_read, " \t")]) {
			add_history(line_read);
			if (hist)
				append_history(1, hist);
		}
		bool go_on = run_line(h, line_read, true);
		free(line_read);
		line_read = NULL;
		if (!go_on)
			break;
		tick(h);
	}
	if (session_over)
		putchar('\n');
	if (hist)
		history_truncate_file(hist, HISTORY_MAX);
	free(hist);
	free_completions();
	return TD_EXIT_OK;
}

/* ---- standard input that is no terminal ---- */

/*
 * Lines from a pipe or a file. The background snapshots go on while no line
 * has come (a script that sleeps between commands gets its history), so the
 * input is read with read(2) into our own buffer, not through stdio's.
 */
static int run_stream(struct td_hold *h)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	bool eof = false;
	for (;;) {
		char *nl = len ? memchr(buf, '\n', len) : NULL;
		if (!nl && eof && len == 0)
			break;
		if (nl || eof) {
			size_t n = nl ? (size_t)(nl - buf) : len;
			char *line = strndup(buf, n);
			size_t used = nl ? n + 1 : len;
			memmove(buf, buf + used, len - used);
			len -= used;
			bool go_on = line && run_line(h, line, false);
			free(line);
			if (!go_on)
				break;
			tick(h);
			continue;
		}
		long due = td_hold_due_ms(h);
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		int r = poll(&pfd, 1, due < 0 ? -1 : (int)due);
		if (r < 0 && errno == EINTR) {
			td_interrupted = 0;
			continue;
		}
		if (r == 0) {
			tick(h);
			continue;
		}
		if (cap - len < 4096) {
			char *grown = realloc(buf, cap + 65536);
			if (!grown)
				break;
			buf = grown;
			cap += 65536;
		}
		ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			eof = true;
		else
			len += (size_t)n;
	}
	free(buf);
	return TD_EXIT_OK;
}

int td_repl_run(struct td_hold *h)
{
	repl_hold = h;
	bool terminal = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
	const char *no_color = getenv("NO_COLOR");
	td_lua_session_set(h->s.lua, "color", terminal && !(no_color && no_color[0]));
	td_lua_session_set(h->s.lua, "interactive", terminal);
	if (terminal)
		td_cli_save_terminal();
	td_interruptible = 1;
	int code = terminal ? run_terminal(h) : run_stream(h);
	td_interruptible = 0;
	repl_hold = NULL;
	return code;
}
