#include "target/procfs.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A process never has more threads than this in practice; bounds our lists. */
#define TD_MAX_THREADS 65536
#define TD_MAX_MAPPINGS 1048576

static ssize_t read_small_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	while (len + 1 < size) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return (ssize_t)len;
}

pid_t td_proc_live_thread(pid_t pid)
{
	/* The leader whenever it lives: other threads may come and go (and after
	 * pid wrap-around their ids can sort before it). */
	char lname[16], lstate;
	if (td_proc_thread_info(pid, pid, lname, &lstate) && lstate != 'Z' && lstate != 'X')
		return pid;
	pid_t *tids;
	size_t n;
	struct td_error *err = td_proc_list_threads(pid, &tids, &n);
	if (err) {
		td_error_destroy(err);
		return 0;
	}
	pid_t live = 0;
	for (size_t i = 0; i < n && !live; i++) {
		char name[16], state;
		if (td_proc_thread_info(pid, tids[i], name, &state) && state != 'Z' && state != 'X')
			live = tids[i];
	}
	free(tids);
	return live;
}

bool td_proc_read_status(pid_t pid, pid_t tid, struct td_proc_status *ret)
{
	char path[96], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
	if (read_small_file(path, buf, sizeof(buf)) < 0)
		return false;
	struct td_proc_status st = {0};
	for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (!strncmp(line, "Name:\t", 6))
			sscanf(line + 6, "%15[^\n]", st.name);
		else if (!strncmp(line, "State:\t", 7))
			st.state = line[7];
		else if (!strncmp(line, "Tgid:\t", 6))
			st.tgid = (pid_t)atoi(line + 6);
		else if (!strncmp(line, "TracerPid:\t", 11))
			st.tracer_pid = (pid_t)atoi(line + 11);
		else if (!strncmp(line, "Uid:\t", 5))
			st.uid = (uid_t)strtoul(line + 5, NULL, 10);
		else if (!strncmp(line, "Gid:\t", 5))
			st.gid = (gid_t)strtoul(line + 5, NULL, 10);
		else if (!strncmp(line, "PPid:\t", 6))
			st.ppid = (pid_t)atoi(line + 6);
		else if (!strncmp(line, "NSpgid:\t", 8))
			st.pgrp = (pid_t)atoi(line + 8);
		else if (!strncmp(line, "NSsid:\t", 7))
			st.sid = (pid_t)atoi(line + 7);
	}
	*ret = st;
	return true;
}

struct td_error *td_proc_check(pid_t pid, struct td_proc_status *ret)
{
	struct td_proc_status st;
	if (!td_proc_read_status(pid, pid, &st)) {
		if (errno == ENOENT || errno == ESRCH)
			return td_error_format(TD_ERR_TARGET,
				"no process with id %d\n"
				"Check the id with `ps -e` or `pgrep NAME`; the process may have exited.",
				(int)pid);
		return td_error_format(TD_ERR_TARGET, "cannot read /proc/%d/status: %s",
				       (int)pid, strerror(errno));
	}
	/*
	 * A main thread that called pthread_exit shows as a zombie while the other
	 * threads run on: the process is a zombie only when every thread is.
	 */
	if ((st.state == 'Z' || st.state == 'X') && !td_proc_live_thread(pid))
		return td_error_format(TD_ERR_TARGET,
			"process %d (%s) is a zombie: it has exited and only waits for its parent to reap it\n"
			"There is nothing left to inspect. If it crashed, look for its core file and run "
			"`taskdbg bt CORE`.", (int)pid, st.name);
	if (st.tgid && st.tgid != pid)
		return td_error_format(TD_ERR_TARGET,
			"%d is a thread of process %d, not a process\n"
			"Run `taskdbg bt %d`: it shows every thread of the process.",
			(int)pid, (int)st.tgid, (int)st.tgid);
	if (st.tracer_pid) {
		char tname[64] = "?", tpath[64];
		snprintf(tpath, sizeof(tpath), "/proc/%d/comm", (int)st.tracer_pid);
		if (read_small_file(tpath, tname, sizeof(tname)) > 0)
			tname[strcspn(tname, "\n")] = '\0';
		return td_error_format(TD_ERR_TARGET,
			"process %d (%s) is already traced by process %d (%s)\n"
			"Only one debugger can trace a process at a time: detach %s first "
			"(in gdb: `detach`), then run taskdbg again.",
			(int)pid, st.name, (int)st.tracer_pid, tname, tname);
	}
	if (ret)
		*ret = st;
	return NULL;
}

static int compare_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
	return (x > y) - (x < y);
}

struct td_error *td_proc_list_threads(pid_t pid, pid_t **ret, size_t *count_ret)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *dir = opendir(path);
	if (!dir)
		return td_error_format(TD_ERR_TARGET,
			"no process with id %d\nCheck the id with `ps -e`; the process may have exited.",
			(int)pid);
	size_t count = 0, cap = 64;
	pid_t *tids = malloc(cap * sizeof(*tids));
	if (!tids) {
		closedir(dir);
		return &td_enomem;
	}
	struct dirent *ent;
	while ((ent = readdir(dir))) {
		if (ent->d_name[0] < '0' || ent->d_name[0] > '9')
			continue;
		if (count == TD_MAX_THREADS)
			break;
		if (count == cap) {
			pid_t *grown = realloc(tids, 2 * cap * sizeof(*tids));
			if (!grown) {
				free(tids);
				closedir(dir);
				return &td_enomem;
			}
			tids = grown;
			cap *= 2;
		}
		tids[count++] = (pid_t)atoi(ent->d_name);
	}
	closedir(dir);
	qsort(tids, count, sizeof(*tids), compare_pid);
	*ret = tids;
	*count_ret = count;
	return NULL;
}

bool td_proc_thread_info(pid_t pid, pid_t tid, char name[16], char *state_ret)
{
	char path[96], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	if (read_small_file(path, buf, sizeof(buf)) <= 0)
		return false;
	/* "tid (comm) S ...": comm may itself contain ") ", so split at the last ')'. */
	char *open = strchr(buf, '('), *close = strrchr(buf, ')');
	if (!open || !close || close < open || close[1] != ' ')
		return false;
	size_t len = (size_t)(close - open - 1);
	if (len > 15)
		len = 15;
	memcpy(name, open + 1, len);
	name[len] = '\0';
	*state_ret = close[2];
	return true;
}

static int compare_mapping(const void *a, const void *b)
{
	const struct td_mapping *x = a, *y = b;
	return (x->lo > y->lo) - (x->lo < y->lo);
}

/*
 * Calls each() for every mapping line of /proc/PID/maps (or smaps, whose
 * other lines go to each() with m NULL), at most TD_MAX_MAPPINGS of them.
 * path points into the line (NULL for an anonymous mapping). each() returns
 * false to stop on an allocation failure, reported as ENOMEM.
 */
static struct td_error *for_each_mapping(pid_t pid, const char *file,
					 bool (*each)(void *ctx, const struct td_mapping *m, const char *line),
					 void *ctx)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	FILE *f = fopen(path, "re");
	if (!f)
		return td_error_format(TD_ERR_TARGET, "cannot read %s: %s\n"
				       "Run taskdbg as the process's user or as root.",
				       path, strerror(errno));
	size_t count = 0;
	bool ok = true;
	char line[4096 + 256];
	while (ok && fgets(line, sizeof(line), f) && count < TD_MAX_MAPPINGS) {
		unsigned long long lo, hi, offset, inode;
		char perms[8];
		int name_at = 0;
		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "%llx-%llx %7s %llx %*x:%*x %llu %n", &lo, &hi, perms, &offset,
			   &inode, &name_at) < 5 || name_at == 0) {
			ok = each(ctx, NULL, line);
			continue;
		}
		struct td_mapping m = {
			.lo = lo, .hi = hi, .offset = offset, .inode = inode,
			.readable = perms[0] == 'r', .writable = perms[1] == 'w',
			.executable = perms[2] == 'x', .shared = perms[3] == 's',
		};
		ok = each(ctx, &m, line[name_at] ? line + name_at : NULL);
		count++;
	}
	fclose(f);
	return ok ? NULL : &td_enomem;
}

struct maps_list {
	struct td_mapping *maps;
	size_t count, cap;
};

static bool maps_list_add(struct maps_list *list, const struct td_mapping *m)
{
	if (list->count == list->cap) {
		size_t cap = list->cap ? 2 * list->cap : 256;
		struct td_mapping *grown = realloc(list->maps, cap * sizeof(*grown));
		if (!grown)
			return false;
		list->maps = grown;
		list->cap = cap;
	}
	list->maps[list->count++] = *m;
	return true;
}

static bool add_mapping(void *ctx, const struct td_mapping *m, const char *path)
{
	return !m || maps_list_add(ctx, m);
}

struct td_error *td_proc_read_maps(pid_t pid, struct td_mapping **ret, size_t *count_ret)
{
	struct maps_list list = {0};
	struct td_error *err = for_each_mapping(pid, "maps", add_mapping, &list);
	if (err) {
		free(list.maps);
		return err;
	}
	qsort(list.maps, list.count, sizeof(*list.maps), compare_mapping);
	*ret = list.maps;
	*count_ret = list.count;
	return NULL;
}

struct full_maps {
	struct maps_list list;
	struct td_mapping_detail *details;
	size_t cap;
};

static bool add_mapping_detail(void *ctx, const struct td_mapping *m, const char *line)
{
	struct full_maps *full = ctx;
	if (!m) {
		/* smaps: "Anonymous:   12 kB" belongs to the mapping above it. */
		unsigned long long kb;
		if (full->list.count && sscanf(line, "Anonymous: %llu kB", &kb) == 1)
			full->details[full->list.count - 1].anonymous = kb * 1024;
		return true;
	}
	if (full->list.count == full->cap) {
		size_t cap = full->cap ? 2 * full->cap : 256;
		struct td_mapping_detail *grown = realloc(full->details, cap * sizeof(*grown));
		if (!grown)
			return false;
		full->details = grown;
		full->cap = cap;
	}
	char *path = line ? strdup(line) : NULL;
	if ((line && !path) || !maps_list_add(&full->list, m)) {
		free(path);
		return false;
	}
	full->details[full->list.count - 1] = (struct td_mapping_detail){ .path = path };
	return true;
}

struct td_error *td_proc_read_maps_detailed(pid_t pid, struct td_mapping **ret,
					    struct td_mapping_detail **details_ret, size_t *count_ret)
{
	struct full_maps full = {0};
	/* smaps is sorted by address already, like maps: the two arrays stay in step. */
	struct td_error *err = for_each_mapping(pid, "smaps", add_mapping_detail, &full);
	if (err) {
		td_mapping_details_free(full.details, full.list.count);
		free(full.list.maps);
		return err;
	}
	*ret = full.list.maps;
	*details_ret = full.details;
	*count_ret = full.list.count;
	return NULL;
}

void td_mapping_details_free(struct td_mapping_detail *details, size_t count)
{
	for (size_t i = 0; details && i < count; i++)
		free(details[i].path);
	free(details);
}

const struct td_mapping *td_mapping_find(const struct td_mapping *maps, size_t count,
					 uint64_t addr)
{
	size_t lo = 0, hi = count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (addr < maps[mid].lo)
			hi = mid;
		else if (addr >= maps[mid].hi)
			lo = mid + 1;
		else
			return &maps[mid];
	}
	return NULL;
}

struct td_error *td_proc_read_file(pid_t pid, const char *name, size_t max, char **ret,
				   size_t *len_ret)
{
	char path[96];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return td_error_format(TD_ERR_TARGET, "cannot read %s: %s", path, strerror(errno));
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap + 1);
	while (buf && len < max) {
		if (len == cap) {
			char *grown = realloc(buf, 2 * cap + 1);
			if (!grown) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = grown;
			cap *= 2;
		}
		size_t want = cap - len < max - len ? cap - len : max - len;
		ssize_t n = read(fd, buf + len, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;
			free(buf);
			close(fd);
			return td_error_format(TD_ERR_TARGET, "cannot read %s: %s", path, strerror(saved));
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (!buf)
		return &td_enomem;
	buf[len] = '\0';
	*ret = buf;
	*len_ret = len;
	return NULL;
}

struct td_error *td_proc_exe(pid_t pid, pid_t proc_tid, const struct td_proc_status *st, char **ret)
{
	char link[64], exe[4096];
	snprintf(link, sizeof(link), "/proc/%d/exe", (int)proc_tid);
	ssize_t len = readlink(link, exe, sizeof(exe) - 1);
	if (len < 0)
		return errno == EACCES || errno == EPERM
			? td_error_format(TD_ERR_TARGET,
				"permission denied to inspect process %d (%s, owned by uid %u)\n"
				"Run taskdbg as the same user as the process, or as root.",
				(int)pid, st->name, (unsigned)st->uid)
			: td_error_format(TD_ERR_TARGET, "cannot read %s: %s", link, strerror(errno));
	exe[len] = '\0';
	*ret = strdup(exe);
	return *ret ? NULL : &td_enomem;
}

uint64_t td_proc_entry_point(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/auxv", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	Elf64_auxv_t aux[128];
	ssize_t n = read(fd, aux, sizeof(aux));
	close(fd);
	for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(aux[0]); i++)
		if (aux[i].a_type == AT_ENTRY)
			return aux[i].a_un.a_val;
	return 0;
}
