#include "debuginfo/source.h"

#include <ctype.h>
#include <dwarf.h>
#include <gelf.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* Whether s[i..n) is "-X.Y.Z...": a dash, then digits and at least two dots. */
static bool version_at(const char *s, size_t n, size_t i)
{
	if (s[i] != '-' || i + 1 >= n || !isdigit((unsigned char)s[i + 1]))
		return false;
	int dots = 0;
	for (size_t j = i + 1; j < n && (isdigit((unsigned char)s[j]) || s[j] == '.'); j++)
		dots += s[j] == '.';
	return dots >= 2;
}

/* A path component NAME-X.Y.Z... (cargo's directory of a dependency's version); *name_len gets NAME's length. */
static bool versioned_name(const char *s, size_t n, size_t *name_len)
{
	for (size_t i = 1; i < n; i++)
		if (version_at(s, n, i)) {
			*name_len = i;
			return true;
		}
	return false;
}

static bool versioned_component(const char *s, size_t n)
{
	size_t name_len;
	return versioned_name(s, n, &name_len);
}

/* Whether a path lies where cargo or rustc keep code that is not the program's. */
static bool dependency_path(const char *p)
{
	if (!strncmp(p, "/rustc/", 7) || strstr(p, "/registry/") || strstr(p, "/.cargo/git/checkouts/"))
		return true;
	/* Each directory on the way: a versioned crate directory. */
	for (const char *c = p; *c;) {
		while (*c == '/')
			c++;
		const char *end = strchr(c, '/');
		if (!end)
			break;   /* the file's own name does not count */
		if (versioned_component(c, (size_t)(end - c)))
			return true;
		c = end;
	}
	return false;
}

/* Copies n bytes of s into buf as a string; false if they do not fit or n is 0. */
static bool copy_name(const char *s, size_t n, char *buf, size_t size)
{
	if (n == 0 || n >= size)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return true;
}

bool td_source_crate(const char *comp_dir, const char *file, char *buf, size_t size)
{
	if (!file)
		return false;
	char path[4096];
	if (file[0] != '/' && comp_dir && strncmp(file, "library/", 8) != 0) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", comp_dir, file) >= sizeof(path))
			return false;
		file = path;
	}
	const char *git = strstr(file, "/.cargo/git/checkouts/");
	if (git) {
		const char *c = git + strlen("/.cargo/git/checkouts/");
		const char *end = strchr(c, '/');
		const char *dash = end ? memrchr(c, '-', (size_t)(end - c)) : NULL;
		return dash && copy_name(c, (size_t)(dash - c), buf, size);
	}
	for (const char *c = file; *c;) {
		while (*c == '/')
			c++;
		const char *end = strchr(c, '/');
		if (!end)
			break;
		size_t n = (size_t)(end - c);
		size_t name_len;
		if (versioned_name(c, n, &name_len)) {
			/* Debian's rustc sources, /usr/src/rustc-1.63.0/library/core/..: the crate is core. */
			if (name_len != 5 || strncmp(c, "rustc", 5) != 0 || strncmp(end, "/library/", 9) != 0)
				return copy_name(c, name_len, buf, size);
			const char *name = end + 9, *name_end = strchr(name, '/');
			return name_end && copy_name(name, (size_t)(name_end - name), buf, size);
		}
		if (n == 7 && !strncmp(c, "library", 7) && (c == file || !strncmp(file, "/rustc/", 7))) {
			const char *name = end + 1, *name_end = strchr(name, '/');
			return name_end && copy_name(name, (size_t)(name_end - name), buf, size);
		}
		c = end;
	}
	return false;
}

bool td_source_is_own(const char *workspace, const char *comp_dir, const char *file)
{
	if (!file || !*file)
		return false;
	char path[4096];
	if (file[0] != '/' && comp_dir) {
		if (!strncmp(file, "library/", 8) && !strncmp(comp_dir, "/rustc/", 7))
			return false;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", comp_dir, file) >= sizeof(path))
			return false;
		file = path;
	} else if (file[0] != '/') {
		return strncmp(file, "library/", 8) != 0;
	}
	/* Inside the workspace only what is below it counts (its own directory may look versioned). */
	size_t n = workspace ? strlen(workspace) : 0;
	if (n && !strncmp(file, workspace, n) && file[n] == '/')
		return !dependency_path(file + n);
	return !dependency_path(file);
}

const char *td_source_comp_dir(Dwarf_Die *die)
{
	Dwarf_Die cu;
	Dwarf_Attribute attr;
	if (!dwarf_diecu(die, &cu, NULL, NULL))
		return NULL;
	return dwarf_formstring(dwarf_attr(&cu, DW_AT_comp_dir, &attr));
}

bool td_module_is_executable(Dwfl_Module *mod)
{
	GElf_Addr bias;
	Elf *elf = dwfl_module_getelf(mod, &bias);
	GElf_Ehdr eh;
	if (!elf || !gelf_getehdr(elf, &eh))
		return false;
	if (eh.e_type == ET_EXEC)
		return true;
	if (eh.e_type != ET_DYN)
		return false;
	/* A position-independent executable says so in DT_FLAGS_1; a library does not. */
	Elf_Scn *scn = NULL;
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNAMIC)
			continue;
		Elf_Data *data = elf_getdata(scn, NULL);
		size_t n = sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
		for (size_t i = 0; data && i < n; i++) {
			GElf_Dyn dyn;
			if (gelf_getdyn(data, (int)i, &dyn) && dyn.d_tag == DT_FLAGS_1)
				return (dyn.d_un.d_val & DF_1_PIE) != 0;
		}
	}
	return false;
}

/* One module's answer (the executable is one module; a second one is only asked again). */
static pthread_mutex_t workspace_lock = PTHREAD_MUTEX_INITIALIZER;
static Dwfl_Module *workspace_mod;
static const char *workspace_dir;

const char *td_source_workspace(Dwfl_Module *mod)
{
	pthread_mutex_lock(&workspace_lock);
	if (mod == workspace_mod) {
		const char *w = workspace_dir;
		pthread_mutex_unlock(&workspace_lock);
		return w;
	}
	const char *found = NULL;
	const char *name = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	const char *base = name ? strrchr(name, '/') : NULL;
	base = base ? base + 1 : name;
	char crate[256];
	Dwarf_Addr bias;
	Dwarf *dw = dwfl_module_getdwarf(mod, &bias);
	if (base && dw && (size_t)snprintf(crate, sizeof(crate), "/@/%s.", base) < sizeof(crate)) {
		for (char *c = crate; *c; c++)
			if (*c == '-')
				*c = '_';
		Dwarf_Off off = 0, next;
		size_t hsize;
		while (!found && dwarf_nextcu(dw, off, &next, &hsize, NULL, NULL, NULL) == 0) {
			Dwarf_Die cu;
			if (dwarf_offdie(dw, off + hsize, &cu)) {
				const char *cu_name = dwarf_diename(&cu);
				if (cu_name && strstr(cu_name, crate))
					found = td_source_comp_dir(&cu);
			}
			off = next;
		}
	}
	workspace_mod = mod;
	workspace_dir = found;
	pthread_mutex_unlock(&workspace_lock);
	return found;
}
