/*
 * Lua files on disk: the plugins (found in --plugins, $TASKDBG_PLUGIN_PATH,
 * the install dir and the source tree), the detectors' directory and its
 * files, and loading one as a text chunk.
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

/* The directory taskdbg's own executable is in ("" if unknown): a build dir sits in the source tree. */
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
	char exe_dir[4096];
	tdl_own_dir(exe_dir, sizeof(exe_dir));
	const char *env = getenv("TASKDBG_PLUGIN_PATH");
	char source_tree[4200];
	/* A build directory sits in the source tree: <src>/build/taskdbg -> <src>/plugins. */
	snprintf(source_tree, sizeof(source_tree), "%s/../plugins", exe_dir);
	const char *dirs[] = { extra_dir, env, TD_PLUGIN_DIR, exe_dir[0] ? source_tree : NULL };
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
	char exe_dir[4096];
	tdl_own_dir(exe_dir, sizeof(exe_dir));
	char source_tree[4200];
	snprintf(source_tree, sizeof(source_tree), "%s/../detectors", exe_dir);
	const char *dirs[] = { getenv("TASKDBG_DETECTORS"), TD_DETECTOR_DIR, exe_dir[0] ? source_tree : NULL };
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
	return td_error_format(TD_ERR_TARGET,
		"no detectors found (looked in $TASKDBG_DETECTORS, %s and the source tree)\n"
		"Install taskdbg (`ninja -C build install`).", TD_DETECTOR_DIR);
}

