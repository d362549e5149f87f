#include "debuginfo/modules.h"

#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "debuginfo/debuginfod.h"

static char *debuginfo_path = NULL;

/* What debuginfod gave in place of a local search that failed with fd; *name becomes its path. */
static int from_debuginfod(Dwfl_Module *mod, bool executable, char **name, int fd)
{
	char *path = NULL;
	int fetched = td_debuginfod_open(mod, executable, &path);
	if (fetched < 0)
		return fd;
	free(*name);
	*name = path;
	return fetched;
}

int td_modules_find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, GElf_Addr base,
			      const char *file_name, const char *debuglink_file, GElf_Word debuglink_crc,
			      char **debuginfo_file_name)
{
	int fd = dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
					      debuglink_crc, debuginfo_file_name);
	/* A named link without a CRC is libdwfl asking for a dwz alt file: not ours to give. */
	if (fd >= 0 || (debuglink_file && debuglink_crc == 0))
		return fd;
	return from_debuginfod(mod, false, debuginfo_file_name, fd);
}

static const Dwfl_Callbacks live_callbacks = {
	.find_elf = dwfl_linux_proc_find_elf,
	.find_debuginfo = td_modules_find_debuginfo,
	.debuginfo_path = &debuginfo_path,
};

static int core_find_elf(Dwfl_Module *mod, void **userdata, const char *modname,
			 Dwarf_Addr base, char **file_name, Elf **elfp);

static void search_dir_set(const char *dir);

static const Dwfl_Callbacks core_callbacks = {
	.find_elf = core_find_elf,
	.find_debuginfo = td_modules_find_debuginfo,
	.debuginfo_path = &debuginfo_path,
};

struct td_error *td_modules_report_live(pid_t pid, Dwfl **ret)
{
	td_debuginfod_init(NULL);
	Dwfl *dwfl = dwfl_begin(&live_callbacks);
	if (!dwfl)
		return td_error_format(TD_ERR_INTERNAL, "libdwfl: %s", dwfl_errmsg(-1));
	dwfl_report_begin(dwfl);
	int r = dwfl_linux_proc_report(dwfl, pid);
	if (dwfl_report_end(dwfl, NULL, NULL) != 0 || r != 0) {
		struct td_error *err = td_error_format(TD_ERR_TARGET,
			"cannot read the memory map of process %d: %s",
			(int)pid, r > 0 ? strerror(r) : dwfl_errmsg(-1));
		dwfl_end(dwfl);
		return err;
	}
	/* The process runs on while this waits for servers: it is stopped later. */
	td_debuginfod_fetch_all(dwfl);
	*ret = dwfl;
	return NULL;
}

static bool is_directory(const char *path)
{
	struct stat st;
	return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_regular(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

struct td_error *td_modules_report_core(struct td_core *core, const char *exe, Dwfl **ret)
{
	td_debuginfod_init(NULL);
	Dwfl *dwfl = dwfl_begin(&core_callbacks);
	if (!dwfl)
		return td_error_format(TD_ERR_INTERNAL, "libdwfl: %s", dwfl_errmsg(-1));
	search_dir_set(is_directory(exe) ? exe : NULL);
	dwfl_report_begin(dwfl);
	int n = dwfl_core_file_report(dwfl, core->elf, is_directory(exe) ? NULL : exe);
	if (dwfl_report_end(dwfl, NULL, NULL) != 0 || n < 0) {
		struct td_error *err = td_error_format(TD_ERR_TARGET,
			"cannot find the modules of core file %s: %s", core->path, dwfl_errmsg(-1));
		dwfl_end(dwfl);
		return err;
	}
	/* The process runs on while this waits for servers: it is stopped later. */
	td_debuginfod_fetch_all(dwfl);
	*ret = dwfl;
	return NULL;
}

const char *td_module_path(Dwfl_Module *mod)
{
	const char *name, *mainfile = NULL;
	name = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &mainfile, NULL);
	return mainfile ? mainfile : name;
}

static void hex(const unsigned char *bits, int len, char *out, size_t size)
{
	size_t o = 0;
	for (int i = 0; i < len && o + 3 <= size; i++)
		o += (size_t)snprintf(out + o, size - o, "%02x", bits[i]);
	if (o < size)
		out[o] = '\0';
}

/* The build-id of an ELF file on disk, as hex; false if none or unreadable. */
static bool file_build_id(const char *path, char *out, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	elf_version(EV_CURRENT);
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	bool ok = false;
	if (elf) {
		const void *bits;
		ssize_t len = dwelf_elf_gnu_build_id(elf, &bits);
		if (len > 0) {
			hex(bits, (int)len, out, size);
			ok = true;
		}
		elf_end(elf);
	}
	close(fd);
	return ok;
}

/* True if path has a build-id (put in have_id) and it is not want_id. */
static bool build_id_differs(const char *path, const char *want_id, char *have_id, size_t size)
{
	return want_id[0] && file_build_id(path, have_id, size) && strcmp(want_id, have_id) != 0;
}

/*
 * --exe DIR: a directory where a core's modules are looked for first, by
 * their file name and then by build-id (td_modules_report_core sets it; one
 * at a time, as libdwfl's callbacks take no context). Its files' build-ids
 * are read once, when a module is first looked for by build-id.
 */
#define TD_SEARCH_DIR_MAX_FILES 4096
static struct {
	char *dir;
	bool scanned;
	size_t n;
	struct { char *path; char id[128]; } *files;
} search;

static void search_dir_set(const char *dir)
{
	for (size_t i = 0; i < search.n; i++)
		free(search.files[i].path);
	free(search.files);
	free(search.dir);
	memset(&search, 0, sizeof(search));
	search.dir = dir ? strdup(dir) : NULL;
	/* "dir/" names its files "dir/name", not "dir//name". */
	for (size_t n = search.dir ? strlen(search.dir) : 0; n > 1 && search.dir[n - 1] == '/'; n--)
		search.dir[n - 1] = '\0';
}

/* Every ELF file with a build-id directly in the directory (at most TD_SEARCH_DIR_MAX_FILES). */
static void search_dir_scan(void)
{
	search.scanned = true;
	DIR *d = opendir(search.dir);
	if (!d)
		return;
	search.files = calloc(TD_SEARCH_DIR_MAX_FILES, sizeof(*search.files));
	struct dirent *e;
	size_t seen = 0;
	while (search.files && (e = readdir(d)) && seen++ < TD_SEARCH_DIR_MAX_FILES) {
		char *path;
		if (e->d_name[0] == '.' || asprintf(&path, "%s/%s", search.dir, e->d_name) < 0)
			continue;
		if (is_regular(path) && file_build_id(path, search.files[search.n].id,
							sizeof(search.files[search.n].id)))
			search.files[search.n++].path = path;
		else
			free(path);
	}
	closedir(d);
}

/* The file in the search directory for a module: by name, then by build-id; NULL if none. */
static char *search_dir_find(Dwfl_Module *mod, const char *modname)
{
	const unsigned char *bits;
	GElf_Addr vaddr;
	int len = dwfl_module_build_id(mod, &bits, &vaddr);
	char want[128] = "", have[128];
	if (len > 0)
		hex(bits, len, want, sizeof(want));
	char *copy = strdup(modname), *path = NULL;
	if (copy && asprintf(&path, "%s/%s", search.dir, basename(copy)) < 0)
		path = NULL;
	free(copy);
	/* Without a build-id to check, the name alone must do. */
	if (path && is_regular(path) && (want[0] ? file_build_id(path, have, sizeof(have)) &&
					 !strcmp(have, want) : true))
		return path;
	free(path);
	if (!want[0])
		return NULL;
	if (!search.scanned)
		search_dir_scan();
	for (size_t i = 0; i < search.n; i++)
		if (!strcmp(search.files[i].id, want))
			return strdup(search.files[i].path);
	return NULL;
}

static int core_find_elf(Dwfl_Module *mod, void **userdata, const char *modname,
			 Dwarf_Addr base, char **file_name, Elf **elfp)
{
	int fd = dwfl_build_id_find_elf(mod, userdata, modname, base, file_name, elfp);
	if (fd >= 0 || *elfp)
		return fd;
	/* --exe DIR first, then a debuginfod server: a file that is not on this machine. */
	char *path = search.dir && modname ? search_dir_find(mod, modname) : NULL;
	if (!path)
		return from_debuginfod(mod, true, file_name, fd);
	int found = open(path, O_RDONLY | O_CLOEXEC);
	if (found < 0) {
		free(path);
		return from_debuginfod(mod, true, file_name, fd);
	}
	/* libdwfl opens the ELF from fd and checks its build-id again. */
	free(*file_name);
	*file_name = path;
	return found;
}

static struct td_error *mismatch_error(const char *path, const char *what, const char *want_id,
				       const char *have_id)
{
	return td_error_format(TD_ERR_TARGET,
		"%s does not match %s: the program that ran had build-id %s, "
		"but this file has build-id %s\n"
		"It was probably rebuilt since. Pass the binary that ran with --exe PATH.",
		path, what, want_id, have_id);
}

struct td_error *td_modules_check_exe(Dwfl *dwfl, uint64_t entry, const char *what,
				      const char *exe_override, Dwfl_Module **ret)
{
	Dwfl_Module *mod = entry ? dwfl_addrmodule(dwfl, entry) : NULL;
	if (!mod)
		return td_error_format(TD_ERR_TARGET,
			"cannot tell which file is the executable of %s (no entry point in its notes)\n"
			"Pass the executable with --exe PATH.", what);
	const char *name = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	const char *wanted = exe_override ? exe_override : name;
	/* The build-id the target's memory holds: what really ran. */
	const unsigned char *bits;
	GElf_Addr vaddr;
	int len = dwfl_module_build_id(mod, &bits, &vaddr);
	char want_id[128] = "", have_id[128] = "";
	if (len > 0)
		hex(bits, len, want_id, sizeof(want_id));
	/* --exe DIR: files in it were looked for (core_find_elf); messages name them. */
	const char *dir = is_directory(exe_override) ? exe_override : NULL;
	if (dir) {
		exe_override = NULL;
		wanted = name ? name : "?";
	}
	/* libdwfl may find the original by path and never read --exe: check it. */
	if (exe_override && build_id_differs(exe_override, want_id, have_id, sizeof(have_id)))
		return mismatch_error(exe_override, what, want_id, have_id);
	GElf_Addr bias;
	Elf *elf = dwfl_module_getelf(mod, &bias);
	if (!elf && dir) {
		char *copy = strdup(name ? name : ""), *in_dir = NULL;
		if (!copy || asprintf(&in_dir, "%s/%s", search.dir ? search.dir : dir, basename(copy)) < 0)
			in_dir = NULL;
		free(copy);
		struct td_error *err;
		if (in_dir && is_regular(in_dir) && build_id_differs(in_dir, want_id, have_id, sizeof(have_id)))
			err = mismatch_error(in_dir, what, want_id, have_id);
		else if (!is_regular(wanted) || !build_id_differs(wanted, want_id, have_id, sizeof(have_id)))
			err = td_error_format(TD_ERR_TARGET,
				"the executable of %s, %s, is not there, and %s holds no file of that "
				"name or with its build-id (%s)\n"
				"Copy the binary that ran into %s, or pass it with --exe PATH.",
				what, wanted, dir, want_id[0] ? want_id : "none recorded", dir);
		else
			err = mismatch_error(wanted, what, want_id, have_id);
		free(in_dir);
		return err;
	}
	if (!elf) {
		struct stat st;
		if (stat(wanted, &st) != 0) {
			const char *why = strerror(errno), *hint = td_debuginfod_hint(mod, true);
			return td_error_format(TD_ERR_TARGET,
				"the executable of %s, %s, is not there (%s)\n"
				"Copy it back, or pass the binary that ran with --exe PATH (or --exe DIR, a "
				"directory where it is, found by name or build-id).%s%s",
				what, wanted, why, *hint ? " " : "", hint);
		}
		if (build_id_differs(wanted, want_id, have_id, sizeof(have_id)))
			return mismatch_error(wanted, what, want_id, have_id);
		return td_error_format(TD_ERR_TARGET, "cannot read the executable %s of %s: %s\n"
				       "Pass the binary that ran with --exe PATH.",
				       wanted, what, dwfl_errmsg(-1));
	}
	if (ret)
		*ret = mod;
	return NULL;
}

struct td_error *td_modules_require_dwarf(Dwfl_Module *mod)
{
	Dwarf_Addr bias;
	if (dwfl_module_getdwarf(mod, &bias))
		return NULL;
	const char *hint = td_debuginfod_hint(mod, false);
	return td_error_format(TD_ERR_TARGET,
		"%s has no debug info (DWARF), which taskdbg needs to find the runtime's tasks "
		"and read their values (`taskdbg bt` works without it: it names functions from "
		"the symbol table)\n"
		"Rebuild it with debug info (Rust: `[profile.release] debug = true`, and no "
		"`strip`; C: -g), or install its separate debug file (under /usr/lib/debug, found "
		"by build-id).%s%s",
		td_module_path(mod), *hint ? " " : "", hint);
}

uint64_t td_modules_tls_block_size(Dwfl_Module *mod)
{
	GElf_Addr bias;
	Elf *elf = mod ? dwfl_module_getelf(mod, &bias) : NULL;
	size_t phnum;
	if (!elf || elf_getphdrnum(elf, &phnum) != 0)
		return 0;
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_TLS) {
			uint64_t align = ph.p_align ? ph.p_align : 1;
			uint64_t size = (ph.p_memsz + align - 1) / align * align;
			return size <= 65536 ? size : 0;  /* bounded: a huge one is not copied */
		}
	}
	return 0;
}
