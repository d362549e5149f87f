#include "target/journal.h"

#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TD_HAVE_JOURNAL
#include <systemd/sd-journal.h>

#define COREDUMP_MESSAGE_ID "fc2e22bc6ee647b6b90729ab34a250b1"
#define COREDUMP_DIR "/var/lib/systemd/coredump/"

/* Field `name` of the current entry as a string (the part after "NAME="), or NULL. */
static char *field(sd_journal *j, const char *name)
{
	const void *data;
	size_t len, n = strlen(name);
	if (sd_journal_get_data(j, name, &data, &len) < 0 || len <= n + 1)
		return NULL;
	char *s = strndup((const char *)data + n + 1, len - n - 1);
	/* Printed on a terminal: no control characters from the journal. */
	for (char *c = s; c && *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	return s;
}

/* A number field into *v if *v has none yet (-1). */
static void number(sd_journal *j, const char *name, long long *v, bool *present)
{
	char *s = field(j, name), *end;
	if (s && *v < 0) {
		errno = 0;
		long long n = strtoll(s, &end, 10);
		if (!errno && !*end && n >= 0) {
			*v = n;
			*present = true;
		}
	}
	free(s);
}

/* A string field into *v if *v has none yet. */
static void string(sd_journal *j, const char *name, char **v, bool *present)
{
	if (*v)
		return;
	if ((*v = field(j, name)))
		*present = true;
}

void td_journal_coredump(struct td_coredump_meta *m, const char *path)
{
	const char *dir = getenv("TASKDBG_JOURNAL_DIR");
	char real[PATH_MAX];
	if (!realpath(path, real))
		return;
	if (!(dir && *dir) && !m->present && strncmp(real, COREDUMP_DIR, strlen(COREDUMP_DIR)) != 0)
		return;
	sd_journal *j;
	if ((dir && *dir ? sd_journal_open_directory(&j, dir, 0) : sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY)) < 0)
		return;
	char *match = NULL;
	if (asprintf(&match, "COREDUMP_FILENAME=%s", real) < 0)
		match = NULL;
	/* Different fields: both must match. */
	if (match && sd_journal_add_match(j, "MESSAGE_ID=" COREDUMP_MESSAGE_ID, 0) >= 0 &&
	    sd_journal_add_match(j, match, 0) >= 0 && sd_journal_seek_tail(j) >= 0 && sd_journal_previous(j) > 0) {
		m->from_journal = true;
		number(j, "COREDUMP_PID", &m->pid, &m->present);
		number(j, "COREDUMP_UID", &m->uid, &m->present);
		number(j, "COREDUMP_GID", &m->gid, &m->present);
		number(j, "COREDUMP_SIGNAL", &m->signal, &m->present);
		number(j, "COREDUMP_TIMESTAMP", &m->timestamp_us, &m->present);
		string(j, "COREDUMP_COMM", &m->comm, &m->present);
		string(j, "COREDUMP_EXE", &m->exe, &m->present);
		string(j, "COREDUMP_HOSTNAME", &m->hostname, &m->present);
		string(j, "_HOSTNAME", &m->hostname, &m->present);
		string(j, "COREDUMP_CMDLINE", &m->cmdline, &m->present);
		string(j, "COREDUMP_UNIT", &m->unit, &m->present);
		string(j, "COREDUMP_USER_UNIT", &m->unit, &m->present);
	}
	free(match);
	sd_journal_close(j);
}

bool td_journal_built_in(void)
{
	return true;
}

#else

void td_journal_coredump(struct td_coredump_meta *m, const char *path)
{
	(void)m;
	(void)path;
}

bool td_journal_built_in(void)
{
	return false;
}

#endif
