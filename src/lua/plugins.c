/*
 * The plugin and detector protocol: finding plugins and detectors on disk,
 * loading a plugin, calling its entries, running scripts, and diagnose's
 * orchestration of the detectors.
 */
#include "lua/internal.h"

struct td_error *td_lua_load_plugin(struct td_lua *lua, const char *path)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	/* Text only: a precompiled chunk could break the VM's invariants. */
	if (tdl_load_text_file(L, path) != LUA_OK) {
		struct td_error *err = td_error_format(TD_ERR_TARGET, "plugin %s: %s", path, lua_tostring(L, -1));
		lua_settop(L, base);
		return err;
	}
	tdl_push_sandbox(L);
	lua_setupvalue(L, -2, 1);  /* the chunk's _ENV */
	if (tdl_pcall(lua, 0, 1, TD_LUA_OTHER_MS) != LUA_OK || !lua_istable(L, -1)) {
		struct td_error *err = td_error_format(TD_ERR_TARGET, "plugin %s: %s", path,
			lua_isstring(L, -1) ? lua_tostring(L, -1) : "did not return a table");
		lua_settop(L, base);
		return err;
	}
	free(lua->plugin_path);
	lua->plugin_path = strdup(path);
	lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	lua_settop(L, base);
	return NULL;
}

struct td_error *td_lua_open_plugin(struct td_snapshot *snap, const char *path,
				    const char *prepare, struct td_lua **ret)
{
	struct td_program *prog;
	struct td_error *err = td_program_create(snap, &prog);
	if (err)
		return err;
	struct td_lua *lua;
	if ((err = td_lua_create(prog, &lua))) {
		td_program_destroy(prog);
		return err;
	}
	lua->owns_prog = true;
	if ((err = td_lua_load_plugin(lua, path)) ||
	    (err = td_lua_call_plugin(lua, prepare, false, NULL))) {
		td_lua_destroy(lua);
		return err;
	}
	*ret = lua;
	return NULL;
}

struct td_error *td_lua_call_plugin(struct td_lua *lua, const char *entry, bool target_stopped,
				    struct json_object **ret)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	bool called;
	struct td_error *err = tdl_call_entry(lua, entry, target_stopped ? TD_LUA_STOPPED_MS : TD_LUA_OTHER_MS,
					  !ret, &called);
	if (!err && called && ret) {
		td_timing_mark("plugin call");
		tdl_keep_alive(L, -1);
		*ret = tdl_to_json(L, -1, 0);
		td_timing_mark("plugin result to JSON");
	}
	lua_settop(L, base);
	return err;
}

struct td_error *td_lua_call_keep(struct td_lua *lua, const char *entry)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	bool called;
	struct td_error *err = tdl_call_entry(lua, entry, TD_LUA_OTHER_MS, false, &called);
	if (!err)
		lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.result");
	lua_settop(L, base);
	if (!err)
		td_timing_mark("plugin call");
	return err;
}

struct td_error *td_lua_call_stopped(struct td_lua *lua, const char *entry)
{
	/* What the page cache holds was read before this stop: stale now. */
	td_program_forget_memory(lua->prog);
	return td_lua_call_plugin(lua, entry, true, NULL);
}

struct td_error *td_lua_run_script(struct td_lua *lua, const char *path, char **args, int nargs,
				   bool target_stopped, struct json_object **ret)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	if (tdl_load_text_file(L, path) != LUA_OK) {
		struct td_error *err = td_error_format(TD_ERR_TARGET, "script %s: %s", path, lua_tostring(L, -1));
		lua_settop(L, base);
		return err;
	}
	tdl_push_sandbox(L);
	lua_createtable(L, nargs, 0);
	for (int i = 0; i < nargs; i++) {
		lua_pushstring(L, args[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "args");
	lua_setupvalue(L, -2, 1);
	if (tdl_pcall(lua, 0, 1, target_stopped ? TD_LUA_STOPPED_MS : TD_LUA_OTHER_MS) != LUA_OK) {
		struct td_error *err = td_error_format(TD_ERR_TARGET, "script %s failed: %s", path,
						       lua_tostring(L, -1));
		lua_settop(L, base);
		return err;
	}
	if (lua_istable(L, -1))
		tdl_keep_alive(L, -1);
	*ret = lua_istable(L, -1) ? tdl_to_json(L, -1, 0) : NULL;
	lua_settop(L, base);
	return NULL;
}

static bool readable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The directory taskdbg's own executable is in ("" if unknown): a build dir sits in the source tree. */
static void own_dir(char *buf, size_t size)
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

struct td_error *td_lua_find_plugin(const char *name, const char *extra_dir, char **path_ret)
{
	char exe_dir[4096];
	own_dir(exe_dir, sizeof(exe_dir));
	const char *env = getenv("TASKDBG_PLUGIN_PATH");
	char source_tree[4200];
	/* A build directory sits in the source tree: <src>/build/taskdbg -> <src>/plugins. */
	snprintf(source_tree, sizeof(source_tree), "%s/../plugins", exe_dir);
	const char *dirs[] = { extra_dir, env, TD_PLUGIN_DIR, exe_dir[0] ? source_tree : NULL };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (!dirs[i] || !dirs[i][0])
			continue;
		/* $TASKDBG_PLUGIN_PATH may list several directories, ':'-separated. */
		char *copy = strdup(dirs[i]);
		if (!copy)
			return &td_enomem;
		for (char *save = NULL, *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
			char *path;
			if (asprintf(&path, "%s/%s.lua", d, name) < 0) {
				free(copy);
				return &td_enomem;
			}
			if (readable(path)) {
				free(copy);
				*path_ret = path;
				return NULL;
			}
			free(path);
		}
		free(copy);
	}
	return td_error_format(TD_ERR_TARGET,
		"no plugin %s.lua found (looked in --plugins, $TASKDBG_PLUGIN_PATH, %s and the "
		"source tree)\nInstall taskdbg (`ninja -C build install`) or pass --plugins DIR.",
		name, TD_PLUGIN_DIR);
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.lua files of dir, sorted (so _lib.lua comes before the detectors). */
static struct td_error *lua_files(const char *dir, char ***ret, size_t *nret)
{
	DIR *d = opendir(dir);
	if (!d)
		return td_error_format(TD_ERR_TARGET, "cannot open the detectors directory %s: %s",
				       dir, strerror(errno));
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	bool enomem = false;
	while (!enomem && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len < 5 || strcmp(e->d_name + len - 4, ".lua") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			char **grown = realloc(names, cap * sizeof(*names));
			if (!(enomem = !grown))
				names = grown;
		}
		if (!enomem && !(enomem = asprintf(&names[n], "%s/%s", dir, e->d_name) < 0))
			n++;
	}
	closedir(d);
	/* Out of memory: no diagnosis, rather than one that silently skipped detectors. */
	if (enomem) {
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
		return &td_enomem;
	}
	qsort(names, n, sizeof(*names), compare_names);
	*ret = names;
	*nret = n;
	return NULL;
}

struct td_error *td_lua_diagnose(struct td_lua *lua, const char *dir, struct json_object *threads,
				 struct json_object *options, struct json_object **ret)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	struct td_error *err = NULL;
	char **files = NULL;
	size_t nfiles = 0;
	if ((err = lua_files(dir, &files, &nfiles)))
		return err;
	/* The context every detector gets: the runtime model, samples, threads, options. */
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	if (!lua_istable(L, -1)) {
		err = td_error_format(TD_ERR_INTERNAL, "no plugin loaded");
		goto out;
	}
	int plugin = lua_gettop(L);
	lua_createtable(L, 0, 5);
	int ctx = lua_gettop(L);
	lua_getfield(L, plugin, "finish");
	if (tdl_pcall(lua, 0, 1, TD_LUA_OTHER_MS) != LUA_OK) {
		err = tdl_plugin_failure(lua, "finish");
		goto out;
	}
	lua_setfield(L, ctx, "model");
	/*
	 * Optional, each a table for the detectors (an empty one if the plugin
	 * has no such entry): the locks and channel ends each thread's stack
	 * frames hold; the blocking pool each thread runs in or shuts down.
	 */
	static const char *const extras[] = { "thread_holds", "blocking_pools", NULL };
	for (int i = 0; extras[i]; i++) {
		lua_getfield(L, plugin, extras[i]);
		if (lua_isfunction(L, -1)) {
			if (tdl_pcall(lua, 0, 1, TD_LUA_OTHER_MS) != LUA_OK) {
				err = tdl_plugin_failure(lua, extras[i]);
				goto out;
			}
		} else {
			lua_pop(L, 1);
			lua_newtable(L);
		}
		lua_setfield(L, ctx, extras[i]);
	}
	lua_getfield(L, plugin, "samples");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_newtable(L);
	}
	lua_setfield(L, ctx, "samples");
	tdl_push_json(L, threads, 0);
	lua_setfield(L, ctx, "threads");
	tdl_push_json(L, options, 0);
	lua_setfield(L, ctx, "options");
	/* One environment shared by every file of dir: _lib.lua's helpers are the others' too. */
	tdl_push_sandbox(L);
	int env = lua_gettop(L);
	lua_newtable(L);
	lua_setfield(L, env, "detectors");
	for (size_t i = 0; i < nfiles; i++) {
		if (tdl_load_text_file(L, files[i]) != LUA_OK) {
			err = td_error_format(TD_ERR_TARGET, "detector %s: %s", files[i], lua_tostring(L, -1));
			goto out;
		}
		lua_pushvalue(L, env);
		lua_setupvalue(L, -2, 1);
		if (tdl_pcall(lua, 0, 0, TD_LUA_OTHER_MS) != LUA_OK) {
			err = td_error_format(TD_ERR_TARGET, "detector %s: %s", files[i], lua_tostring(L, -1));
			goto out;
		}
	}
	/* Detectors run by name, each adding to one list of findings. */
	lua_getfield(L, env, "run_detectors");
	if (!lua_isfunction(L, -1)) {
		err = td_error_format(TD_ERR_TARGET, "detectors in %s: no function run_detectors "
				      "(is _lib.lua there?)", dir);
		goto out;
	}
	lua_pushvalue(L, ctx);
	if (tdl_pcall(lua, 1, 1, TD_LUA_OTHER_MS) != LUA_OK) {
		err = td_error_format(TD_ERR_TARGET, "diagnosis failed: %s", lua_tostring(L, -1));
		goto out;
	}
	tdl_keep_alive(L, -1);
	*ret = tdl_to_json(L, -1, 0);
out:
	lua_settop(L, base);
	for (size_t i = 0; i < nfiles; i++)
		free(files[i]);
	free(files);
	return err;
}

struct td_error *td_lua_find_detectors(char **dir_ret)
{
	char exe_dir[4096];
	own_dir(exe_dir, sizeof(exe_dir));
	char source_tree[4200];
	snprintf(source_tree, sizeof(source_tree), "%s/../detectors", exe_dir);
	const char *dirs[] = { getenv("TASKDBG_DETECTORS"), TD_DETECTOR_DIR, exe_dir[0] ? source_tree : NULL };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char *lib;
		if (!dirs[i] || !dirs[i][0] || asprintf(&lib, "%s/_lib.lua", dirs[i]) < 0)
			continue;
		bool ok = readable(lib);
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
