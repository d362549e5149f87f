/*
 * Lua files on disk: the plugins (found in --plugins, $TASKDBG_PLUGIN_PATH,
 * taskdbg's own data directory and the install dir), the detectors' directory
 * and its files, and loading one as a text chunk.
 */
#include "lua/internal.h"

/*
 * The chunk of the file at path, pushed; else an error "WHAT PATH: why".
 * Text only: a precompiled chunk could break the VM's invariants.
 */
struct td_error *tdl_load_chunk(lua_State *L, const char *path, const char *what)
{
	if (tdl_load_text_file(L, path) == LUA_OK)
		return NULL;
	struct td_error *err = td_error_format(TD_ERR_TARGET, "%s %s: %s", what, path, lua_tostring(L, -1));
	lua_pop(L, 1);
	return err;
}

bool tdl_readable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The directory taskdbg's own executable is in ("" if unknown). */
void tdl_own_dir(char *buf, size_t size)
{
	buf[0] = '\0';
	ssize_t n = readlink("/proc/self/exe", buf, size - 1);
	if (n <= 0)
		return;
	buf[n] = '\0';
	char *slash = strrchr(buf, '/');
	if (slash)
		*slash = '\0';
}

static bool same_dir(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && S_ISDIR(sa.st_mode) &&
	       sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/*
 * taskdbg's own SUB directory ("plugins", "detectors"), found from where the
 * binary is, in buf ("" if none). A binary that runs from the very build
 * directory meson configured (the same directory, not a name) is uninstalled:
 * the source tree it was configured from holds SUB, wherever the build
 * directory is. Any other binary is installed: SUB is where the install put it
 * relative to the binary (BINDIR/../share/taskdbg/SUB), so a tree installed
 * with --destdir and moved elsewhere finds its own files. An installed binary
 * never looks in the source tree: that may be gone, or newer than the install.
 */
static void own_data_dir(const char *sub, char *buf, size_t size)
{
	char exe_dir[4096];
	tdl_own_dir(exe_dir, sizeof(exe_dir));
	buf[0] = '\0';
	if (!exe_dir[0])
		return;
	int n;
	if (same_dir(exe_dir, TD_BUILD_ROOT)) {
		n = snprintf(buf, size, "%s/%s", TD_SOURCE_ROOT, sub);
		if (n < 0 || (size_t)n >= size)
			buf[0] = '\0';   /* too long a path: rather none than a wrong one */
		return;
	}
	const char *rel = TD_DATA_FROM_BINDIR;
	if (!rel[0])
		return;
	/* exe_dir is canonical (the kernel's): each "../" is its parent, and messages read without them. */
	for (; strncmp(rel, "../", 3) == 0; rel += 3) {
		char *slash = strrchr(exe_dir, '/');
		if (!slash || slash == exe_dir)
			return;
		*slash = '\0';
	}
	n = snprintf(buf, size, "%s/%s/%s", exe_dir, rel, sub);
	if (n < 0 || (size_t)n >= size)
		buf[0] = '\0';
}

void td_lua_search_dirs_text(const char *sub, char *buf, size_t size)
{
	char own[4096];
	own_data_dir(sub, own, sizeof(own));
	const char *installed = strcmp(sub, "plugins") == 0 ? TD_PLUGIN_DIR : TD_DETECTOR_DIR;
	if (own[0] && strcmp(own, installed) != 0)
		snprintf(buf, size, "%s and %s", own, installed);
	else
		snprintf(buf, size, "%s", installed);
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether a plugin named like the file base (NAME.lua) is already in names[0..n). */
static bool have_plugin(char **names, size_t n, const char *base)
{
	for (size_t i = 0; i < n; i++) {
		const char *b = strrchr(names[i], '/');
		if (strcmp(b ? b + 1 : names[i], base) == 0)
			return true;
	}
	return false;
}

/*
 * Adds dir's NAME.lua files whose NAME is not there yet (not _*.lua: those
 * are modules, for require). False when out of memory; *opened says whether
 * dir could be read.
 */
static bool add_lua_files(const char *dir, char ***names, size_t *n, size_t *cap, bool *opened)
{
	DIR *d = opendir(dir);
	if (opened)
		*opened = d != NULL;
	if (!d)
		return true;
	struct dirent *e;
	bool ok = true;
	while (ok && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len < 5 || e->d_name[0] == '_' || e->d_name[0] == '.' ||
		    strcmp(e->d_name + len - 4, ".lua") != 0 || have_plugin(*names, *n, e->d_name))
			continue;
		char *path;
		if (asprintf(&path, "%s/%s", dir, e->d_name) < 0) {
			ok = false;
			break;
		}
		if (!tdl_readable(path)) {
			free(path);
			continue;
		}
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 8;
			char **grown = realloc(*names, *cap * sizeof(**names));
			if (!grown) {
				free(path);
				ok = false;
				break;
			}
			*names = grown;
		}
		(*names)[(*n)++] = path;
	}
	closedir(d);
	return ok;
}

struct td_error *td_lua_find_plugins(const char *extra_dir, char ***paths_ret, size_t *n_ret)
{
	char own[4096];
	own_data_dir("plugins", own, sizeof(own));
	/* taskdbg's own plugins before the install dir's, which may be another version's. */
	const char *dirs[] = { extra_dir, getenv("TASKDBG_PLUGIN_PATH"), own, TD_PLUGIN_DIR };
	char **names = NULL;
	size_t n = 0, cap = 0;
	bool ok = true;
	for (size_t i = 0; ok && i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (!dirs[i] || !dirs[i][0])
			continue;
		/* $TASKDBG_PLUGIN_PATH may list several directories, ':'-separated. */
		char *copy = strdup(dirs[i]);
		ok = copy != NULL;
		for (char *save = NULL, *d = copy ? strtok_r(copy, ":", &save) : NULL; ok && d;
		     d = strtok_r(NULL, ":", &save))
			ok = add_lua_files(d, &names, &n, &cap, NULL);
		free(copy);
	}
	if (!ok) {
		td_lua_free_paths(names, n);
		return &td_enomem;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), compare_names);   /* names is NULL when none was found */
	*paths_ret = names;
	*n_ret = n;
	return NULL;
}

void td_lua_free_paths(char **paths, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}

/* The detector files of dir (NAME.lua, not the _*.lua modules), sorted. */
struct td_error *tdl_detector_files(const char *dir, char ***ret, size_t *nret)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	bool opened;
	/* Out of memory: no diagnosis, rather than one that silently skipped detectors. */
	if (!add_lua_files(dir, &names, &n, &cap, &opened)) {
		td_lua_free_paths(names, n);
		return &td_enomem;
	}
	if (!opened)
		return td_error_format(TD_ERR_TARGET, "cannot open the detectors directory %s: %s",
				       dir, strerror(errno));
	if (n > 1)
		qsort(names, n, sizeof(*names), compare_names);
	*ret = names;
	*nret = n;
	return NULL;
}

struct td_error *td_lua_find_detectors(char **dir_ret)
{
	char own[4096];
	own_data_dir("detectors", own, sizeof(own));
	const char *dirs[] = { getenv("TASKDBG_DETECTORS"), own, TD_DETECTOR_DIR };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char *lib;
		if (!dirs[i] || !dirs[i][0] || asprintf(&lib, "%s/_lib.lua", dirs[i]) < 0)
			continue;
		bool ok = tdl_readable(lib);
		free(lib);
		if (ok) {
			*dir_ret = strdup(dirs[i]);
			return *dir_ret ? NULL : &td_enomem;
		}
	}
	char looked[8400];
	td_lua_search_dirs_text("detectors", looked, sizeof(looked));
	return td_error_format(TD_ERR_TARGET,
		"no detectors found (looked in $TASKDBG_DETECTORS, %s)\n"
		"Install taskdbg (`meson install -C build`) or set $TASKDBG_DETECTORS to a "
		"directory of detectors.", looked);
}

