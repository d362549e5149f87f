/*
 * The fuzz input as a file: the parsers under test take a path or an fd, as
 * they do for a user's core or binary. One memfd per process, rewritten for
 * each input (no disk, no temp files left behind); "/proc/self/fd/N" names it.
 */
#ifndef TD_FUZZ_MEMFILE_H
#define TD_FUZZ_MEMFILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

struct td_fuzz_file {
	int fd;
	char path[32];
};

/* Holds data in the process's memfd; aborts if it cannot (a harness fault, not a finding). */
static inline const struct td_fuzz_file *td_fuzz_file(const uint8_t *data, size_t size)
{
	static struct td_fuzz_file file = { .fd = -1 };
	if (file.fd < 0) {
		file.fd = memfd_create("taskdbg-fuzz", MFD_CLOEXEC);
		if (file.fd < 0) {
			perror("fuzz: memfd_create");
			abort();
		}
		snprintf(file.path, sizeof(file.path), "/proc/self/fd/%d", file.fd);
	}
	if (ftruncate(file.fd, 0) != 0 || (size && pwrite(file.fd, data, size, 0) != (ssize_t)size)) {
		perror("fuzz: writing the input to its memfd");
		abort();
	}
	return &file;
}

#endif
