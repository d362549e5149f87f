/*
 * Compressed core files, as systemd-coredump stores them (zstd today; xz and
 * lz4 with older systemd or other settings): recognised by their magic bytes,
 * never by their name, and streamed into an anonymous temporary file that the
 * caller maps like a plain core. The decompressed size is capped; hostile
 * input (truncated, corrupt, a bomb) is an error, never a crash or a hang.
 */
#ifndef TD_TARGET_DECOMPRESS_H
#define TD_TARGET_DECOMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* The default cap on a decompressed core (TASKDBG_CORE_MAX overrides it). */
#define TD_DECOMPRESS_MAX_DEFAULT (32ull << 30)

enum td_compression {
	TD_COMPRESSION_NONE = 0,
	TD_COMPRESSION_ZSTD,   /* 28 b5 2f fd: zstd frames (concatenated frames too) */
	TD_COMPRESSION_XZ,     /* fd 37 7a 58 5a 00: xz streams (concatenated too) */
	TD_COMPRESSION_LZ4,    /* 04 22 4d 18: lz4 frames (not the legacy format) */
};

/* The compression of a file whose first len bytes are head (6 are enough). */
enum td_compression td_compression_detect(const void *head, size_t len);

/* "zstd", "xz", "lz4"; "none". */
const char *td_compression_name(enum td_compression kind);

struct td_decompressed {
	int fd;                    /* the decompressed bytes; the caller closes it */
	uint64_t size;             /* how many */
	enum td_compression kind;  /* what they were compressed with */
};

/*
 * Decompresses what in_fd holds, read from its current offset to its end
 * (a pipe is fine), into a new anonymous file: O_TMPFILE in $TMPDIR (default
 * /var/tmp, on disk, as cores are large), or a memfd where O_TMPFILE is not
 * supported. The file is unlinked from the start: it goes away with its fd.
 *
 * name says what in_fd is in messages ("core file core.zst"). cap bounds the
 * decompressed size (0: TD_DECOMPRESS_MAX_DEFAULT); going over it is an
 * error that says the cap and how to raise it. So are an unknown format, a
 * truncated or corrupt stream, a full disk. in_fd is left open (its offset
 * moved); on error nothing is left behind and *ret is untouched.
 *
 * One call does it all, so a fuzzer can drive it with a memfd.
 */
struct td_error *td_decompress_fd(int in_fd, const char *name, uint64_t cap,
				  struct td_decompressed *ret);

/*
 * How far a long decompression is: called with the bytes written so far,
 * every 64 MiB of output (a core under that never calls it), and once more
 * with finished true when it ends (success or not) if it was called before.
 * The caller shows it (the library prints nothing).
 */
struct td_decompress_progress {
	void (*fn)(void *arg, const char *path, uint64_t done, bool finished);
	void *arg;
};

/* td_decompress_fd with progress (NULL: none). */
struct td_error *td_decompress_fd_progress(int in_fd, const char *name, uint64_t cap,
					   const struct td_decompress_progress *progress,
					   struct td_decompressed *ret);

#endif
