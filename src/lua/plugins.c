/*
 * The plugin and detector protocol: finding plugins and detectors on disk,
 * loading a plugin, calling its entries, running scripts, and diagnose's
 * orchestration of the detectors.
 */
#include "lua/internal.h"

/*
 * The chunk of the file at path, pushed; else an error "WHAT PATH: why".
 * Text only: a precompiled chunk could break the VM's invariants.
 */
static struct td_error *load_chunk(lua_State *L, const char *path, const char *what)
{
	if (tdl_load_text_file(L, path) == LUA_OK)
		return NULL;
	struct td_error *err = td_error_format(TD_ERR_TARGET, "%s %s: %s", what, path, lua_tostring(L, -1));
	lua_pop(L, 1);
	return err;
}

struct td_error *td_lua_load_plugin(struct td_lua *lua, const char *path)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	struct td_error *err = load_chunk(L, path, "plugin");
	if (err)
		return err;
	/* Its modules: require loads from its own directory only. */
	tdl_push_dir_of(L, path);
	tdl_push_module_env(L, lua_tostring(L, -1));
	lua_remove(L, -2);
	lua_setupvalue(L, -2, 1);  /* the chunk's _ENV */
	if (tdl_pcall(lua, 0, 1, TD_LUA_OTHER_MS) != LUA_OK || !lua_istable(L, -1)) {
		err = td_error_format(TD_ERR_TARGET, "plugin %s: %s", path,
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

/*
 * When no plugin recognises a runtime: a plugin with no runtime in its
 * model, so that every command runs the same way (stacks, thread-level
 * findings) and says why the list is empty.
 */
static const char no_runtime_plugin[] =
	"local why = ...\n"
	"local function none() return { runtimes = setmetatable({}, { __array = true }), none_found = why } end\n"
	"local function nothing() end\n"
	"return { name = 'none', prepare = nothing, prepare_threads = nothing, snapshot = nothing,\n"
	"         sample = nothing, finish = none, walk = none,\n"
	"         current_tasks = function() return setmetatable({}, { __array = true }) end }\n";

/*
 * Loads every plugin of paths and asks each whether its runtime is in the
 * program (detect(), DWARF only); the one that says yes becomes the plugin.
 */
static struct td_error *choose_plugin(struct td_lua *lua, char *const *paths, size_t n)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	struct td_error *err = NULL;
	const char *chosen = NULL;
	for (size_t i = 0; i < n && !err; i++) {
		if ((err = td_lua_load_plugin(lua, paths[i])))
			break;
		lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
		int plugin = lua_gettop(L);
		bool called, yes = false;
		err = tdl_call_entry(lua, "detect", TD_LUA_OTHER_MS, false, &called);
		if (!err) {
			yes = lua_toboolean(L, -1);
			lua_pop(L, 1);
		}
		if (!err && yes && chosen) {
			err = td_error_format(TD_ERR_TARGET,
				"plugins %s and %s both find their runtime in this program; taskdbg reads one "
				"runtime per process for now\nRemove one of them from the plugin path.",
				chosen, paths[i]);
		} else if (!err && yes) {
			chosen = paths[i];
			lua_pushvalue(L, plugin);
			lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.chosen");
		}
		lua_settop(L, plugin - 1);
	}
	if (err) {
		lua_settop(L, base);
		return err;
	}
	if (chosen) {
		lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.chosen");
		lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
		lua_pushnil(L);
		lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.chosen");
		free(lua->plugin_path);
		lua->plugin_path = strdup(chosen);
		lua_settop(L, base);
		return lua->plugin_path ? NULL : &td_enomem;
	}
	/* None: why, naming the plugins asked. */
	lua_settop(L, base);
	luaL_Buffer why;
	luaL_buffinit(L, &why);
	luaL_addstring(&why, "no plugin recognises an async runtime in this program (plugins asked:");
	for (size_t i = 0; i < n; i++) {
		const char *b = strrchr(paths[i], '/');
		luaL_addchar(&why, ' ');
		luaL_addstring(&why, b ? b + 1 : paths[i]);
	}
	luaL_addstring(&why, n ? ")" : " none)");
	luaL_pushresult(&why);
	if (luaL_loadbufferx(L, no_runtime_plugin, sizeof(no_runtime_plugin) - 1, "=none", "t") != LUA_OK) {
		lua_settop(L, base);
		return td_error_format(TD_ERR_INTERNAL, "the no-runtime plugin does not load");
	}
	lua_insert(L, -2);
	if (tdl_pcall(lua, 1, 1, TD_LUA_OTHER_MS) != LUA_OK) {
		lua_settop(L, base);
		return &td_enomem;
	}
	lua_setfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	free(lua->plugin_path);
	lua->plugin_path = NULL;
	lua_settop(L, base);
	return NULL;
}

struct td_error *td_lua_open_runtime(struct td_snapshot *snap, char *const *paths, size_t n,
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
	if ((err = choose_plugin(lua, paths, n)) ||
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

struct td_error *td_lua_sample(struct td_lua *lua, bool last)
{
	td_program_forget_memory(lua->prog);
	const struct td_snapshot *snap = td_program_snapshot(lua->prog);
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	lua_createtable(L, 0, 3);
	int s = lua_gettop(L);
	lua_pushnumber(L, (lua_Number)td_now_ns() / 1e6);
	lua_setfield(L, s, "t");
	lua_createtable(L, 0, (int)snap->nthreads);
	for (size_t i = 0; i < snap->nthreads; i++) {
		const struct td_snapshot_thread *t = &snap->threads[i];
		lua_createtable(L, 0, 3);
		const char *sc = td_syscall_name(t->syscall);
		if (sc) {
			lua_pushstring(L, sc);
			lua_setfield(L, -2, "syscall");
		}
		if (sc && strcmp(sc, "futex") == 0) {
			uint64_t futex = t->regs.rdi;
			lua_pushinteger(L, (lua_Integer)futex);
			lua_setfield(L, -2, "futex");
			/*
			 * A thread in pthread_mutex_lock waits on the mutex's first
			 * word; glibc keeps the holder's tid 8 bytes further (x86_64
			 * pthread_mutex_t: __lock, __count, __owner). Meaningless for
			 * other futexes: the deadlock detector reads it only for
			 * threads whose stack is in pthread_mutex_lock, and only from
			 * the last sample, so earlier stops do not pay for it.
			 */
			uint32_t owner;
			struct td_error *err = last ? td_program_read(lua->prog, futex + 8, &owner, sizeof(owner)) : NULL;
			if (last && !err) {
				lua_pushinteger(L, owner);
				lua_setfield(L, -2, "mutex_owner");
			}
			td_error_destroy(err);
		}
		lua_rawseti(L, -2, t->tid);
	}
	lua_setfield(L, s, "threads");
	lua_newtable(L);
	lua_setfield(L, s, "runtimes");
	/* The runtime's part: which task each thread polls, which are ready... */
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin");
	if (lua_getfield(L, -1, "sample") == LUA_TFUNCTION) {
		lua_pushvalue(L, s);
		if (tdl_pcall(lua, 1, 0, TD_LUA_STOPPED_MS) != LUA_OK) {
			struct td_error *err = tdl_plugin_failure(lua, "sample");
			lua_settop(L, base);
			return err;
		}
	}
	lua_settop(L, s);
	luaL_getsubtable(L, LUA_REGISTRYINDEX, "taskdbg.samples");
	lua_pushvalue(L, s);
	lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
	lua_settop(L, base);
	return NULL;
}

struct td_error *td_lua_run_script(struct td_lua *lua, const char *path, char **args, int nargs,
				   bool target_stopped, struct json_object **ret)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	struct td_error *err = load_chunk(L, path, "script");
	if (err)
		return err;
	tdl_push_sandbox(L);
	lua_createtable(L, nargs, 0);
	for (int i = 0; i < nargs; i++) {
		lua_pushstring(L, args[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "args");
	lua_setupvalue(L, -2, 1);
	if (tdl_pcall(lua, 0, 1, target_stopped ? TD_LUA_STOPPED_MS : TD_LUA_OTHER_MS) != LUA_OK) {
		err = td_error_format(TD_ERR_TARGET, "script %s failed: %s", path, lua_tostring(L, -1));
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
		if (!readable(path)) {
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
	own_dir(exe_dir, sizeof(exe_dir));
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
	qsort(names, n, sizeof(*names), compare_names);
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
static struct td_error *lua_files(const char *dir, char ***ret, size_t *nret)
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
	qsort(names, n, sizeof(*names), compare_names);
	*ret = names;
	*nret = n;
	return NULL;
}

struct td_error *tdl_run_detectors(struct td_lua *lua, const char *dir, char *const *files, size_t nfiles,
				   int ctx)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	struct td_error *err = NULL;
	/* Each detector file is a module: it returns {name=, severity=, run=}. */
	lua_createtable(L, (int)nfiles, 0);
	int list = lua_gettop(L);
	for (size_t i = 0; i < nfiles && !err; i++) {
		if ((err = load_chunk(L, files[i], "detector")))
			break;
		tdl_push_module_env(L, dir);
		lua_setupvalue(L, -2, 1);
		if (tdl_pcall(lua, 0, 1, TD_LUA_OTHER_MS) != LUA_OK) {
			err = td_error_format(TD_ERR_TARGET, "detector %s: %s", files[i], lua_tostring(L, -1));
			break;
		}
		bool ok = lua_istable(L, -1) && lua_getfield(L, -1, "name") == LUA_TSTRING &&
			  lua_getfield(L, -2, "severity") == LUA_TNUMBER && lua_isinteger(L, -1) &&
			  lua_getfield(L, -3, "run") == LUA_TFUNCTION;
		if (!ok) {
			err = td_error_format(TD_ERR_TARGET, "detector %s: it must return "
					      "{name = STRING, severity = INTEGER, run = FUNCTION}", files[i]);
			break;
		}
		lua_settop(L, list + 1);
		lua_rawseti(L, list, (lua_Integer)i + 1);
	}
	if (err) {
		lua_settop(L, base);
		return err;
	}
	/* _lib.lua runs them, in order of severity, and merges what they find. */
	tdl_push_require(L, dir);
	lua_pushliteral(L, "_lib");
	if (tdl_pcall(lua, 1, 1, TD_LUA_OTHER_MS) != LUA_OK || !lua_istable(L, -1) ||
	    lua_getfield(L, -1, "run_detectors") != LUA_TFUNCTION) {
		err = td_error_format(TD_ERR_TARGET, "detectors in %s: no _lib.lua with a function run_detectors (%s)",
				      dir, lua_isstring(L, -1) ? lua_tostring(L, -1) : "not there");
		lua_settop(L, base);
		return err;
	}
	lua_pushvalue(L, ctx);
	lua_pushvalue(L, list);
	if (tdl_pcall(lua, 2, 1, TD_LUA_OTHER_MS) != LUA_OK) {
		err = td_error_format(TD_ERR_TARGET, "diagnosis failed: %s", lua_tostring(L, -1));
		lua_settop(L, base);
		return err;
	}
	lua_replace(L, base + 1);
	lua_settop(L, base + 1);
	return NULL;
}

struct td_error *td_lua_diagnose(struct td_lua *lua, const char *dir, struct json_object *threads,
				 struct json_object *options, struct json_object **ret)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	struct td_error *err = NULL;
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
	lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.samples");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_newtable(L);
	}
	lua_setfield(L, ctx, "samples");
	tdl_push_json(L, threads, 0);
	lua_setfield(L, ctx, "threads");
	tdl_push_json(L, options, 0);
	lua_setfield(L, ctx, "options");
	/* What the plugin declares of its runtime: frames, resource classes, advice. */
	lua_createtable(L, 0, 4);
	static const char *const declared[] = { "name", "frames", "resources", "advice", NULL };
	for (int i = 0; declared[i]; i++) {
		lua_getfield(L, plugin, declared[i]);
		lua_setfield(L, -2, declared[i]);
	}
	lua_setfield(L, ctx, "runtime");
	if ((err = tdl_diagnose_ctx(lua, dir, ctx)))
		goto out;
	tdl_keep_alive(L, -1);
	*ret = tdl_to_json(L, -1, 0);
out:
	lua_settop(L, base);
	return err;
}

struct td_error *tdl_diagnose_ctx(struct td_lua *lua, const char *dir, int ctx)
{
	char **files = NULL;
	size_t nfiles = 0;
	struct td_error *err = lua_files(dir, &files, &nfiles);
	if (!err)
		err = tdl_run_detectors(lua, dir, files, nfiles, ctx);
	td_lua_free_paths(files, nfiles);
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

/* The strings of the table at idx's field key (a list), copied: NULL-terminated. */
static bool copy_strings(lua_State *L, int idx, const char *key, char ***ret)
{
	*ret = NULL;
	if (lua_getfield(L, idx, key) != LUA_TTABLE) {
		lua_pop(L, 1);
		return true;
	}
	size_t n = lua_rawlen(L, -1), k = 0;
	char **list = calloc(n + 1, sizeof(*list));
	bool ok = list != NULL;
	for (size_t i = 1; ok && i <= n; i++) {
		if (lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING)
			ok = (list[k++] = strdup(lua_tostring(L, -1))) != NULL;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	*ret = list;
	return ok;
}

struct td_error *td_lua_runtime_frames(struct td_lua *lua, struct td_runtime_frames *out)
{
	lua_State *L = lua->L;
	int base = lua_gettop(L);
	*out = (struct td_runtime_frames){ 0 };
	bool ok = true;
	if (lua_getfield(L, LUA_REGISTRYINDEX, "taskdbg.plugin") == LUA_TTABLE &&
	    lua_getfield(L, -1, "frames") == LUA_TTABLE) {
		int frames = lua_gettop(L);
		ok = copy_strings(L, frames, "worker", &out->worker) &&
		     copy_strings(L, frames, "blocking", &out->blocking) &&
		     copy_strings(L, frames, "drives", &out->drives) &&
		     copy_strings(L, frames, "poll", &out->poll) &&
		     copy_strings(L, frames, "poll_async", &out->poll_async) &&
		     copy_strings(L, frames, "poll_blocking", &out->poll_blocking);
	}
	lua_settop(L, base);
	if (!ok) {
		td_runtime_frames_free(out);
		return &td_enomem;
	}
	return NULL;
}
