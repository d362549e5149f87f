/* Lua files compiled into taskdbg (src/interactive/embed.sh): the session's API and commands. */
#ifndef TD_LUA_EMBEDDED_H
#define TD_LUA_EMBEDDED_H

#include <stddef.h>

struct td_embedded_file {
	const char *name;   /* base name, for messages: "commands.lua:12: ..." */
	const char *text;
	size_t len;
};

/* In load order: api.lua (the taskdbg table) before commands.lua (the REPL). */
extern const struct td_embedded_file td_embedded_files[];
extern const unsigned long td_embedded_count;

#endif
