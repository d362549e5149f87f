#include "debuginfo/demangle.h"

#include <demangle.h>
#include <stdlib.h>
#include <string.h>

char *td_demangle(const char *mangled)
{
	if (!mangled || !(mangled[0] == '_' && (mangled[1] == 'Z' || mangled[1] == 'R')))
		return NULL;
	/* libiberty tries Rust first (legacy Rust names look like C++), then C++. */
	char *out = cplus_demangle(mangled, DMGL_PARAMS | DMGL_ANSI);
	if (out)
		return out;
	/* rustc appends ".llvm.<digits>" to some local symbols; demangle without it. */
	const char *dot = strstr(mangled, ".llvm.");
	if (!dot)
		return NULL;
	char *trimmed = strndup(mangled, (size_t)(dot - mangled));
	if (!trimmed)
		return NULL;
	out = cplus_demangle(trimmed, DMGL_PARAMS | DMGL_ANSI);
	free(trimmed);
	return out;
}

/* Start of the last "::"-separated component, ignoring "::" inside <...>. */
static const char *last_component(const char *name)
{
	const char *last = name;
	int depth = 0;
	for (const char *p = name; *p; p++) {
		if (*p == '<')
			depth++;
		else if (*p == '>' && depth > 0)
			depth--;
		else if (depth == 0 && p[0] == ':' && p[1] == ':')
			last = p + 2;
	}
	return last;
}

char *td_function_name(const char *linkage_name, const char *dwarf_name)
{
	char *demangled = td_demangle(linkage_name);
	if (!demangled)
		return strdup(linkage_name ? linkage_name : dwarf_name ? dwarf_name : "??");
	if (dwarf_name && dwarf_name[0] == '{') {
		const char *last = last_component(demangled);
		if (last[0] == '{') {
			/* rustc's DW_AT_name of a closure carries its generic arguments. */
			size_t keep = (size_t)(last - demangled);
			size_t namelen = strcspn(dwarf_name, "<");
			char *named = malloc(keep + namelen + 1);
			if (named) {
				memcpy(named, demangled, keep);
				memcpy(named + keep, dwarf_name, namelen);
				named[keep + namelen] = '\0';
				free(demangled);
				return named;
			}
		}
	}
	return demangled;
}
