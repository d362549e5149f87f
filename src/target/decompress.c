#include "target/decompress.h"

#include <errno.h>
#include <fcntl.h>
#include <lz4frame.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "util/size.h"

/* Bytes read, and bytes decompressed, per step. */
#define CHUNK (1u << 20)
/* Output between two progress calls. */
#define PROGRESS_EVERY (64ull << 20)
/* xz's dictionary may ask for this much memory; more is refused (xz -9 needs 65 MiB). */
#define XZ_MEMLIMIT (1ull << 30)

enum td_compression td_compression_detect(const void *head, size_t len)
{
	static const unsigned char zstd[] = { 0x28, 0xb5, 0x2f, 0xfd };
	static const unsigned char xz[] = { 0xfd, '7', 'z', 'X', 'Z', 0x00 };
	static const unsigned char lz4[] = { 0x04, 0x22, 0x4d, 0x18 };
	if (len >= sizeof(zstd) && !memcmp(head, zstd, sizeof(zstd)))
		return TD_COMPRESSION_ZSTD;
	if (len >= sizeof(xz) && !memcmp(head, xz, sizeof(xz)))
		return TD_COMPRESSION_XZ;
	if (len >= sizeof(lz4) && !memcmp(head, lz4, sizeof(lz4)))
		return TD_COMPRESSION_LZ4;
	return TD_COMPRESSION_NONE;
}

const char *td_compression_name(enum td_compression kind)
{
	switch (kind) {
	case TD_COMPRESSION_ZSTD: return "zstd";
	case TD_COMPRESSION_XZ: return "xz";
	case TD_COMPRESSION_LZ4: return "lz4";
	default: return "none";
	}
}

/* The command that decompresses path by hand, for messages. */
static const char *by_hand(enum td_compression kind, const char *path, char *buf, size_t size)
{
	switch (kind) {
	case TD_COMPRESSION_ZSTD: snprintf(buf, size, "zstd -d %s -o core", path); break;
	case TD_COMPRESSION_XZ: snprintf(buf, size, "xz -dc %s > core", path); break;
	default: snprintf(buf, size, "lz4 -d %s core", path); break;
	}
	return buf;
}

/* One decompression: where the bytes go, and how many went. */
struct job {
	const char *path;
	enum td_compression kind;
	int in_fd, out_fd;
	const char *where;         /* the temporary file's directory, or "memory" */
	uint64_t size, cap;
	unsigned char *in, *out;
	char by_hand[4200];        /* the command that decompresses it by hand */
	const struct td_decompress_progress *progress;
	uint64_t next_progress;
};

static struct td_error *open_tmpfile(struct job *j)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/var/tmp";
	j->out_fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
	j->where = dir;
	if (j->out_fd >= 0)
		return NULL;
	/* No such directory, or a file system without O_TMPFILE: memory (and swap). */
	j->out_fd = memfd_create("taskdbg-core", MFD_CLOEXEC);
	j->where = "memory";
	if (j->out_fd >= 0)
		return NULL;
	return td_error_format(TD_ERR_TARGET,
		"cannot create a temporary file for the decompressed core file %s: %s\n"
		"Set TMPDIR to a writable directory with room for it, or decompress it by hand "
		"(`%s`) and pass the result.", j->path, strerror(errno), j->by_hand);
}

static struct td_error *cap_error(const struct job *j)
{
	char cap[32], more[32];
	td_format_size(j->cap, cap, sizeof(cap));
	uint64_t twice = j->cap <= (1ull << 62) ? j->cap * 2 : j->cap;
	snprintf(more, sizeof(more), "%lluM", (unsigned long long)(twice >> 20));
	return td_error_format(TD_ERR_TARGET,
		"core file %s decompresses to more than %s, taskdbg's cap on a compressed core\n"
		"Raise the cap with the environment variable TASKDBG_CORE_MAX (e.g. "
		"TASKDBG_CORE_MAX=%s; it needs that much room in %s), or decompress it by hand "
		"(`%s`) and pass the result.",
		j->path, cap, more, strcmp(j->where, "memory") ? j->where : "memory", j->by_hand);
}

static struct td_error *sink(struct job *j, const unsigned char *buf, size_t len)
{
	if (len > j->cap - j->size)
		return cap_error(j);
	while (len) {
		ssize_t n = write(j->out_fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			char done[32];
			int e = n < 0 ? errno : ENOSPC;
			td_format_size(j->size, done, sizeof(done));
			return td_error_format(TD_ERR_TARGET,
				"cannot decompress core file %s into %s: %s (after %s)\n"
				"Set TMPDIR to a directory with room for the whole core, or decompress it "
				"by hand (`%s`) where there is room and pass the result.",
				j->path, j->where, strerror(e), done, j->by_hand);
		}
		buf += n;
		len -= (size_t)n;
		j->size += (uint64_t)n;
	}
	if (j->progress && j->progress->fn && j->size >= j->next_progress) {
		j->progress->fn(j->progress->arg, j->path, j->size, false);
		j->next_progress = j->size + PROGRESS_EVERY;
	}
	return NULL;
}

/* Reads the next chunk into j->in; *got 0 at the end. */
static struct td_error *fill(struct job *j, size_t *got)
{
	for (;;) {
		ssize_t n = read(j->in_fd, j->in, CHUNK);
		if (n >= 0) {
			*got = (size_t)n;
			return NULL;
		}
		if (errno != EINTR)
			return td_error_format(TD_ERR_TARGET, "cannot read core file %s: %s",
					       j->path, strerror(errno));
	}
}

static struct td_error *truncated(const struct job *j)
{
	char done[32];
	td_format_size(j->size, done, sizeof(done));
	return td_error_format(TD_ERR_TARGET,
		"core file %s is cut short: its %s data ends in the middle (after %s decompressed)\n"
		"The file was not completely written or copied. Copy it again (systemd: "
		"`coredumpctl dump PID -o core`), or decompress what is there by hand (`%s`) "
		"and pass the result.", j->path, td_compression_name(j->kind), done, j->by_hand);
}

static struct td_error *corrupt(const struct job *j, const char *why)
{
	char done[32];
	td_format_size(j->size, done, sizeof(done));
	return td_error_format(TD_ERR_TARGET,
		"core file %s is damaged: its %s data is not valid (%s, after %s decompressed)\n"
		"Copy it again from where it was made (systemd: `coredumpctl dump PID -o core`).",
		j->path, td_compression_name(j->kind), why, done);
}

static struct td_error *run_zstd(struct job *j, size_t first)
{
	ZSTD_DStream *ds = ZSTD_createDStream();
	if (!ds)
		return &td_enomem;
	struct td_error *err = NULL;
	/* 0: the last frame ended, and all it held was written. */
	size_t hint = 1;
	size_t got = first;
	while (got) {
		ZSTD_inBuffer in = { j->in, got, 0 };
		ZSTD_outBuffer out;
		do {
			out = (ZSTD_outBuffer){ j->out, CHUNK, 0 };
			hint = ZSTD_decompressStream(ds, &out, &in);
			if (ZSTD_isError(hint)) {
				if (ZSTD_getErrorCode(hint) == ZSTD_error_frameParameter_windowTooLarge)
					err = td_error_format(TD_ERR_TARGET,
						"core file %s was compressed with a zstd window over 128 MiB, "
						"more memory than taskdbg gives a core's decompression\n"
						"Decompress it by hand (`zstd -d --long=31 %s -o core`) "
						"and pass the result.", j->path, j->path);
				else
					err = corrupt(j, ZSTD_getErrorName(hint));
				goto out;
			}
			if ((err = sink(j, j->out, out.pos)))
				goto out;
		} while (in.pos < in.size || out.pos == out.size);
		if ((err = fill(j, &got)))
			goto out;
	}
	if (hint != 0)
		err = truncated(j);
out:
	ZSTD_freeDStream(ds);
	return err;
}

static struct td_error *run_xz(struct job *j, size_t first)
{
	lzma_stream strm = LZMA_STREAM_INIT;
	lzma_ret r = lzma_stream_decoder(&strm, XZ_MEMLIMIT, LZMA_CONCATENATED);
	if (r != LZMA_OK)
		return r == LZMA_MEM_ERROR ? &td_enomem
			: td_error_format(TD_ERR_INTERNAL, "liblzma: cannot start a decoder (%d)", (int)r);
	struct td_error *err = NULL;
	strm.next_in = j->in;
	strm.avail_in = first;
	lzma_action action = LZMA_RUN;
	for (;;) {
		if (strm.avail_in == 0 && action == LZMA_RUN) {
			size_t got;
			if ((err = fill(j, &got)))
				goto out;
			strm.next_in = j->in;
			strm.avail_in = got;
			if (!got)
				action = LZMA_FINISH;
		}
		strm.next_out = j->out;
		strm.avail_out = CHUNK;
		r = lzma_code(&strm, action);
		if ((err = sink(j, j->out, CHUNK - strm.avail_out)))
			goto out;
		if (r == LZMA_STREAM_END)
			break;
		if (r == LZMA_OK)
			continue;
		if (r == LZMA_BUF_ERROR)
			err = truncated(j);
		else if (r == LZMA_MEMLIMIT_ERROR)
			err = td_error_format(TD_ERR_TARGET,
				"core file %s needs more than 1 GiB of memory to decompress (an xz "
				"dictionary of %llu MiB)\nDecompress it by hand (`%s`) "
				"and pass the result.", j->path,
				(unsigned long long)(lzma_memusage(&strm) >> 20), j->by_hand);
		else if (r == LZMA_MEM_ERROR)
			err = &td_enomem;
		else
			err = corrupt(j, r == LZMA_FORMAT_ERROR ? "not an xz stream"
				      : r == LZMA_OPTIONS_ERROR ? "unsupported options"
				      : r == LZMA_DATA_ERROR ? "corrupt data"
				      : "unexpected end or error");
		goto out;
	}
out:
	lzma_end(&strm);
	return err;
}

static struct td_error *run_lz4(struct job *j, size_t first)
{
	LZ4F_dctx *dctx;
	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
		return &td_enomem;
	struct td_error *err = NULL;
	size_t hint = 1, got = first;
	while (got) {
		size_t pos = 0, produced;
		do {
			size_t src = got - pos;
			produced = CHUNK;
			hint = LZ4F_decompress(dctx, j->out, &produced, j->in + pos, &src, NULL);
			if (LZ4F_isError(hint)) {
				err = corrupt(j, LZ4F_getErrorName(hint));
				goto out;
			}
			pos += src;
			if ((err = sink(j, j->out, produced)))
				goto out;
		} while (pos < got || produced == CHUNK);
		if ((err = fill(j, &got)))
			goto out;
	}
	if (hint != 0)
		err = truncated(j);
out:
	LZ4F_freeDecompressionContext(dctx);
	return err;
}

struct td_error *td_decompress_fd(int in_fd, const char *path, uint64_t cap,
				  struct td_decompressed *ret)
{
	return td_decompress_fd_progress(in_fd, path, cap, NULL, ret);
}

struct td_error *td_decompress_fd_progress(int in_fd, const char *path, uint64_t cap,
					   const struct td_decompress_progress *progress,
					   struct td_decompressed *ret)
{
	struct job j = { .path = path, .in_fd = in_fd, .out_fd = -1,
			 .cap = cap ? cap : TD_DECOMPRESS_MAX_DEFAULT, .progress = progress,
			 .next_progress = PROGRESS_EVERY };
	struct td_error *err = NULL;
	j.in = malloc(CHUNK);
	j.out = malloc(CHUNK);
	if (!j.in || !j.out) {
		err = &td_enomem;
		goto out;
	}
	size_t got;
	if ((err = fill(&j, &got)))
		goto out;
	j.kind = td_compression_detect(j.in, got);
	if (j.kind == TD_COMPRESSION_NONE) {
		err = td_error_format(TD_ERR_TARGET,
			"%s is not compressed with zstd, xz or lz4", path);
		goto out;
	}
	by_hand(j.kind, path, j.by_hand, sizeof(j.by_hand));
	if ((err = open_tmpfile(&j)))
		goto out;
	switch (j.kind) {
	case TD_COMPRESSION_ZSTD: err = run_zstd(&j, got); break;
	case TD_COMPRESSION_XZ: err = run_xz(&j, got); break;
	default: err = run_lz4(&j, got); break;
	}
	if (err)
		goto out;
	*ret = (struct td_decompressed){ .fd = j.out_fd, .size = j.size, .kind = j.kind };
	j.out_fd = -1;
out:
	if (progress && progress->fn && j.next_progress > PROGRESS_EVERY)
		progress->fn(progress->arg, path, j.size, true);
	if (j.out_fd >= 0)
		close(j.out_fd);
	free(j.in);
	free(j.out);
	return err;
}
