#include "debuginfo/debuginfod.h"

#include <stdlib.h>

#include "config.h"

#ifndef TD_HAVE_DEBUGINFOD

void td_debuginfod_init(const struct td_debuginfod_report *report) { (void)report; }
bool td_debuginfod_built_in(void) { return false; }
const char *td_debuginfod_urls(void) { return NULL; }
void td_debuginfod_fetch_all(Dwfl *dwfl) { (void)dwfl; }
int td_debuginfod_open(Dwfl_Module *mod, bool executable, char **path)
{
	(void)mod, (void)executable, (void)path;
	return -1;
}
const char *td_debuginfod_hint(Dwfl_Module *mod, bool executable)
{
	(void)mod, (void)executable;
	return "";
}

#else

#include <elfutils/debuginfod.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "debuginfo/modules.h"
#include "util/clock.h"

/* The library waits 90 s for a silent server; a debugger's user will not. */
#define TD_DEBUGINFOD_TIMEOUT_S 10
#define TD_DEBUGINFOD_MAXTIME_S 60
/* Progress lines at most this often. */
#define TD_PROGRESS_EVERY_NS 100000000u
/* Names listed in one summary line; the rest are counted. */
#define TD_NAMES_LISTED 6

/* One file asked of the servers in this run (whether it came or not). */
struct fetched {
	char build_id[129];
	bool executable;
	int rc;          /* debuginfod's: an fd (closed since) or -errno */
	char *path;      /* in the cache, if it came */
	char *why;       /* if it did not: what happened */
};

/* Module names for a summary line. */
struct names {
	char text[512];
	size_t count;
};

struct progress_context {
	const char *module;
	const char *build_id;
	bool executable;
	uint64_t last_ns;
};

static const struct td_debuginfod_report *report;
static bool initialized;
static char *urls;
static debuginfod_client *client;
static bool fetching;         /* inside td_debuginfod_fetch_all */
static bool given_up;         /* a server failed or the run's time is spent */
static uint64_t spent_ns;     /* in queries, this run */
static struct fetched *files;
static size_t nfiles, files_capacity;
static struct names not_found, skipped;
static char hint[1024];

void td_debuginfod_init(const struct td_debuginfod_report *r)
{
	if (r && !report)
		report = r;
	if (initialized)
		return;
	initialized = true;
	const char *env = getenv("DEBUGINFOD_URLS");
	if (env && env[strspn(env, " ")])
		urls = strdup(env);
	/* From now on only taskdbg's queries see it (set around each, below). */
	unsetenv("DEBUGINFOD_URLS");
}

bool td_debuginfod_built_in(void)
{
	return true;
}

const char *td_debuginfod_urls(void)
{
	return urls;
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
	if (!report || !report->warn)
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	report->warn(line);
}

static void add_name(struct names *names, const char *path)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	size_t used = strlen(names->text);
	if (names->count < TD_NAMES_LISTED)
		snprintf(names->text + used, sizeof(names->text) - used, "%s%s",
			 names->count ? ", " : "", base);
	names->count++;
}

/* "a, b and 3 more" */
static const char *names_text(const struct names *names, char *buf, size_t size)
{
	if (names->count > TD_NAMES_LISTED)
		snprintf(buf, size, "%s and %zu more", names->text, names->count - TD_NAMES_LISTED);
	else
		snprintf(buf, size, "%s", names->text);
	return buf;
}

static bool build_id_hex(Dwfl_Module *mod, char *out, size_t size)
{
	const unsigned char *bits;
	GElf_Addr vaddr;
	int len = dwfl_module_build_id(mod, &bits, &vaddr);
	if (len <= 0 || (size_t)len * 2 + 1 > size)
		return false;
	for (int i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", bits[i]);
	return true;
}

static struct fetched *find_fetched(const char *build_id, bool executable)
{
	for (size_t i = 0; i < nfiles; i++)
		if (files[i].executable == executable && !strcmp(files[i].build_id, build_id))
			return &files[i];
	return NULL;
}

/* The kernel's vDSO is on no server: not worth a query. */
static bool never_on_a_server(const char *name)
{
	const char *slash = strrchr(name, '/');
	const char *base = slash ? slash + 1 : name;
	return name[0] == '[' || !strncmp(base, "linux-vdso", 10) || !strncmp(base, "linux-gate", 10);
}

static void human_size(long bytes, char *buf, size_t size)
{
	if (bytes < 1024 * 1024)
		snprintf(buf, size, "%.1f KiB", (double)bytes / 1024.0);
	else
		snprintf(buf, size, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
}

static int progress(debuginfod_client *c, long a, long b)
{
	struct progress_context *ctx = debuginfod_get_user_data(c);
	if (!ctx || !report || !report->progress)
		return 0;
	uint64_t now = td_now_ns();
	if (ctx->last_ns && now - ctx->last_ns < TD_PROGRESS_EVERY_NS)
		return 0;
	ctx->last_ns = now;
	/* Until a server answers, a counts the library's rounds, not bytes. */
	const char *url = debuginfod_get_url(c);
	char done[32], total[32], line[1024];
	if (url) {
		human_size(a, done, sizeof(done));
		human_size(b, total, sizeof(total));
		snprintf(line, sizeof(line), "taskdbg: fetching %s for %s (build-id %.12s...) from %s: %s%s%s",
			 ctx->executable ? "the executable" : "debug info", ctx->module, ctx->build_id,
			 url, done, b > 0 ? "/" : "", b > 0 ? total : "");
	} else {
		snprintf(line, sizeof(line), "taskdbg: fetching %s for %s (build-id %.12s...) from %s: waiting",
			 ctx->executable ? "the executable" : "debug info", ctx->module, ctx->build_id,
			 urls);
	}
	report->progress(line);
	/* Never nonzero: libdebuginfod 0.188 caches a cancelled query as "not found" for 10 minutes. */
	return 0;
}

/* Sets name to value for one query, keeping what was there. */
struct env_save {
	const char *name;
	char *old;
	bool set;
};

static void env_push(struct env_save *s, const char *name, const char *value)
{
	const char *old = getenv(name);
	s->name = name;
	s->old = old ? strdup(old) : NULL;
	s->set = setenv(name, value, 1) == 0;
}

static void env_pop(struct env_save *s)
{
	if (!s->set)
		return;
	if (s->old)
		setenv(s->name, s->old, 1);
	else
		unsetenv(s->name);
	free(s->old);
	s->set = false;
}

static long env_seconds(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? strtol(v, NULL, 10) : -1;
}

static unsigned run_maxtime_s(void)
{
	long v = env_seconds("TASKDBG_DEBUGINFOD_MAXTIME");
	return v > 0 ? (unsigned)v : TD_DEBUGINFOD_MAXTIME_S;
}

static struct fetched *new_fetched(const char *build_id, bool executable)
{
	if (nfiles == files_capacity) {
		size_t cap = files_capacity ? 2 * files_capacity : 16;
		struct fetched *grown = realloc(files, cap * sizeof(*files));
		if (!grown)
			return NULL;
		files = grown;
		files_capacity = cap;
	}
	struct fetched *f = &files[nfiles++];
	memset(f, 0, sizeof(*f));
	snprintf(f->build_id, sizeof(f->build_id), "%s", build_id);
	f->executable = executable;
	f->rc = -ENOENT;
	return f;
}

/* What a failed query's code means, for the user. */
static char *explain(int rc, uint64_t took_ns, long maxtime_set, bool maxtime_ours, long timeout,
		     bool answered)
{
	char why[512];
	long took = (long)(took_ns / 1000000000u);
	switch (-rc) {
	case ETIME:
		if (maxtime_set > 0 && took >= maxtime_set && maxtime_ours)
			snprintf(why, sizeof(why), "still not done when the %u s that taskdbg gives debuginfod "
				 "per run were spent (TASKDBG_DEBUGINFOD_MAXTIME)", run_maxtime_s());
		else if (maxtime_set > 0 && took >= maxtime_set)
			snprintf(why, sizeof(why), "not done in DEBUGINFOD_MAXTIME=%ld s", maxtime_set);
		else if (answered)  /* the library's low-speed limit */
			snprintf(why, sizeof(why), "under 100 KiB/s for %ld s (DEBUGINFOD_TIMEOUT)", timeout);
		else
			snprintf(why, sizeof(why), "no answer in %ld s (DEBUGINFOD_TIMEOUT)", timeout);
		break;
	case ECONNREFUSED:
		snprintf(why, sizeof(why), "connection refused (is the server running?)");
		break;
	case EHOSTUNREACH:
		snprintf(why, sizeof(why), "host not found");
		break;
	case ENOENT:
		snprintf(why, sizeof(why), "the server does not have it");
		break;
	case ENOSYS:
		snprintf(why, sizeof(why), "no server in DEBUGINFOD_URLS");
		break;
	default:
		snprintf(why, sizeof(why), "%s", strerror(-rc));
		break;
	}
	return strdup(why);
}

static struct fetched *fetch(Dwfl_Module *mod, const char *build_id, bool executable)
{
	struct fetched *f = new_fetched(build_id, executable);
	if (!f)
		return NULL;
	const char *name = td_module_path(mod);
	if (given_up) {
		f->why = strdup("not asked after an earlier failure");
		add_name(&skipped, name);
		return f;
	}
	uint64_t budget_ns = (uint64_t)run_maxtime_s() * 1000000000u;
	long remaining = spent_ns >= budget_ns ? 0 : (long)((budget_ns - spent_ns) / 1000000000u);
	if (remaining < 1) {
		f->rc = -ETIME;
		f->why = explain(-ETIME, spent_ns, 1, true, 0, false);
		warn("warning: not fetching %s for %s from debuginfod: %s; going on without it",
		     executable ? "the executable" : "debug info", name, f->why);
		given_up = true;
		return f;
	}
	if (!client) {
		client = debuginfod_begin();
		if (!client) {
			f->rc = -errno;
			f->why = explain(f->rc, 0, 0, false, 0, false);
			warn("warning: cannot start a debuginfod client: %s; going on without debuginfod",
			     f->why);
			given_up = true;
			return f;
		}
		debuginfod_set_progressfn(client, progress);
		/*
		 * libdebuginfod 0.188 dprintf()s to its verbose fd even when it is -1
		 * (a timeout), and glibc leaks a buffer each time: give it /dev/null
		 * unless the user asked for its messages.
		 */
		if (!getenv("DEBUGINFOD_VERBOSE")) {
			int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
			if (devnull >= 0)
				debuginfod_set_verbose_fd(client, devnull);
		}
	}

	struct env_save url_env, timeout_env = { 0 }, maxtime_env = { 0 }, retry_env = { 0 };
	env_push(&url_env, "DEBUGINFOD_URLS", urls);
	/*
	 * No retries unless asked: a retry triples the wait for a silent server,
	 * and in libdebuginfod 0.188 the retry of a download that was too slow
	 * fails at once with ENOENT, which it caches as "not found" for 10 minutes.
	 */
	if (!getenv("DEBUGINFOD_RETRY_LIMIT"))
		env_push(&retry_env, "DEBUGINFOD_RETRY_LIMIT", "0");
	long timeout = env_seconds("DEBUGINFOD_TIMEOUT");
	if (timeout < 0) {
		timeout = TD_DEBUGINFOD_TIMEOUT_S;
		char value[16];
		snprintf(value, sizeof(value), "%ld", timeout);
		env_push(&timeout_env, "DEBUGINFOD_TIMEOUT", value);
	}
	/* The library's own limit per query (it gives up with ETIME, caching nothing). */
	long maxtime = env_seconds("DEBUGINFOD_MAXTIME");
	bool maxtime_ours = maxtime <= 0 || maxtime > remaining;
	if (maxtime_ours) {
		maxtime = remaining;
		char value[16];
		snprintf(value, sizeof(value), "%ld", maxtime);
		env_push(&maxtime_env, "DEBUGINFOD_MAXTIME", value);
	}

	struct progress_context ctx = { .module = name, .build_id = build_id, .executable = executable };
	debuginfod_set_user_data(client, &ctx);
	uint64_t t0 = td_now_ns();
	char *path = NULL;
	int rc = executable ? debuginfod_find_executable(client, (const unsigned char *)build_id, 0, &path)
			    : debuginfod_find_debuginfo(client, (const unsigned char *)build_id, 0, &path);
	uint64_t took = td_now_ns() - t0;
	spent_ns += took;
	debuginfod_set_user_data(client, NULL);
	env_pop(&retry_env);
	env_pop(&maxtime_env);
	env_pop(&timeout_env);
	env_pop(&url_env);
	if (ctx.last_ns && report && report->progress)
		report->progress(NULL);

	f->rc = rc;
	if (rc >= 0) {
		close(rc);
		f->path = path;
		return f;
	}
	free(path);
	/* The URL of the download under way, if one began (reset by each query). */
	const char *url = debuginfod_get_url(client);
	f->why = explain(rc, took, maxtime, maxtime_ours, timeout, url != NULL);
	if (rc == -ENOENT) {
		add_name(&not_found, name);
		return f;
	}
	warn("warning: cannot fetch %s for %s (build-id %s) from %s: %s; "
	     "going on without it, and without debuginfod for the rest of this run",
	     executable ? "the executable" : "debug info", name, build_id, url ? url : urls, f->why);
	given_up = true;
	return f;
}

int td_debuginfod_open(Dwfl_Module *mod, bool executable, char **path)
{
	char build_id[129];
	if (!urls || !build_id_hex(mod, build_id, sizeof(build_id)))
		return -1;
	struct fetched *f = find_fetched(build_id, executable);
	if (!f) {
		const char *name = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
		if (!fetching || !name || never_on_a_server(name))
			return -1;
		f = fetch(mod, build_id, executable);
	}
	if (!f || f->rc < 0 || !f->path)
		return -1;
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	*path = strdup(f->path);
	if (!*path) {
		close(fd);
		return -1;
	}
	return fd;
}

static int load_module(Dwfl_Module *mod, void **userdata, const char *name, Dwarf_Addr start, void *arg)
{
	if (!name || never_on_a_server(name))
		return DWARF_CB_OK;
	GElf_Addr bias;
	Dwarf_Addr dwbias;
	/* Each asks its callback (modules.c) when the file is not here: td_debuginfod_open. */
	if (dwfl_module_getelf(mod, &bias))
		dwfl_module_getdwarf(mod, &dwbias);
	return DWARF_CB_OK;
}

void td_debuginfod_fetch_all(Dwfl *dwfl)
{
	td_debuginfod_init(NULL);
	if (!urls)
		return;
	memset(&not_found, 0, sizeof(not_found));
	memset(&skipped, 0, sizeof(skipped));
	fetching = true;
	dwfl_getmodules(dwfl, load_module, NULL, 0);
	fetching = false;
	char list[600];
	if (not_found.count)
		warn("debuginfod (%s) has no debug info for %s; going on without it", urls,
		     names_text(&not_found, list, sizeof(list)));
	if (skipped.count)
		warn("also left without debug info from debuginfod: %s", names_text(&skipped, list, sizeof(list)));
}

const char *td_debuginfod_hint(Dwfl_Module *mod, bool executable)
{
	char build_id[129];
	struct fetched *f = NULL;
	if (urls && build_id_hex(mod, build_id, sizeof(build_id)))
		f = find_fetched(build_id, executable);
	if (!urls)
		snprintf(hint, sizeof(hint), "Or set DEBUGINFOD_URLS to a debuginfod server that has it: "
			 "taskdbg fetches it from there.");
	else if (f && f->why)
		snprintf(hint, sizeof(hint), "debuginfod (%s) did not give it: %s.", urls, f->why);
	else
		hint[0] = '\0';
	return hint;
}

#endif
