/*
 * Unit tests of target/decompress and util/size: compressed buffers made with
 * the libraries themselves, round trips, every prefix of a stream (never a
 * crash, always "cut short" or success), flipped bytes, the cap at exactly the
 * size and one byte under it, concatenated frames.
 */
#include <lz4frame.h>
#include <lzma.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#include "check.h"
#include "target/decompress.h"
#include "util/size.h"

/* A memfd holding len bytes of buf, at offset 0. */
static int memfd_of(const void *buf, size_t len)
{
	int fd = memfd_create("test", MFD_CLOEXEC);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) != 0)
		abort();
	return fd;
}

/* Decompresses buf; returns the error (NULL: ok, and the output equals want). */
static struct td_error *run(const void *buf, size_t len, uint64_t cap, const void *want, size_t want_len)
{
	int in = memfd_of(buf, len);
	struct td_decompressed out = { .fd = -1 };
	struct td_error *err = td_decompress_fd(in, "core.x", cap, &out);
	close(in);
	if (err)
		return err;
	CHECK(out.size == want_len);
	unsigned char *got = malloc(want_len + 1);
	CHECK(pread(out.fd, got, want_len + 1, 0) == (ssize_t)want_len);
	CHECK(memcmp(got, want, want_len) == 0);
	free(got);
	close(out.fd);
	return NULL;
}

static void expect_error(const void *buf, size_t len, uint64_t cap, const char *phrase)
{
	struct td_error *err = run(buf, len, cap, NULL, 0);
	if (!err)
		fprintf(stderr, "no error, want \"%s\"\n", phrase);
	CHECK(err != NULL);
	if (!err)
		return;
	if (!strstr(err->message, phrase))
		fprintf(stderr, "want \"%s\" in: %s\n", phrase, err->message);
	CHECK(strstr(err->message, phrase) != NULL);
	CHECK(err->kind == TD_ERR_TARGET);
	td_error_destroy(err);
}

/*
 * Every prefix (a few hundred) is an error, or (cut at a frame's end) less
 * than the data; the whole is the data.
 */
static void prefixes(const unsigned char *z, size_t zlen, const unsigned char *data, size_t len)
{
	size_t step = zlen / 100 + 1;
	for (size_t cut = 0; cut < zlen; cut += step) {
		int in = memfd_of(z, cut);
		struct td_decompressed out = { .fd = -1 };
		struct td_error *err = td_decompress_fd(in, "core.x", 0, &out);
		close(in);
		if (err) {
			td_error_destroy(err);
		} else {
			CHECK(out.size < len);
			close(out.fd);
		}
	}
	CHECK(run(z, zlen, 0, data, len) == NULL);
}

/* Flipped bytes: an error or (rarely, where a byte does not matter) the data; never a crash. */
static void flips(const unsigned char *z, size_t zlen, const unsigned char *data, size_t len)
{
	unsigned char *copy = malloc(zlen);
	for (size_t i = 0; i < zlen; i += zlen / 100 + 1) {
		memcpy(copy, z, zlen);
		copy[i] ^= 0xa5;
		int in = memfd_of(copy, zlen);
		struct td_decompressed out = { .fd = -1 };
		struct td_error *err = td_decompress_fd(in, "core.x", 4 * len, &out);
		close(in);
		if (err)
			td_error_destroy(err);
		else
			close(out.fd);
	}
	free(copy);
	(void)data;
}

int main(void)
{
	/* Something like a core: runs of zeros, text, and noise. */
	size_t len = 768u << 10;
	unsigned char *data = calloc(1, len);
	unsigned seed = 1;
	for (size_t i = 0; i < len; i++) {
		if ((i >> 16) % 3 == 1)
			data[i] = (unsigned char)"tokio::runtime::task "[i % 21];
		else if ((i >> 16) % 3 == 2)
			data[i] = (unsigned char)((seed = seed * 1103515245 + 12345) >> 16);
	}

	/* zstd, two frames back to back. */
	size_t zcap = ZSTD_compressBound(len) * 2;
	unsigned char *z = malloc(zcap);
	size_t half = ZSTD_compress(z, zcap, data, len / 2, 3);
	CHECK(!ZSTD_isError(half));
	size_t rest = ZSTD_compress(z + half, zcap - half, data + len / 2, len - len / 2, 3);
	CHECK(!ZSTD_isError(rest));
	size_t zlen = half + rest;
	CHECK(td_compression_detect(z, zlen) == TD_COMPRESSION_ZSTD);
	CHECK(run(z, zlen, 0, data, len) == NULL);
	CHECK(run(z, zlen, len, data, len) == NULL);          /* exactly the cap */
	expect_error(z, zlen, len - 1, "decompresses to more than 767.9 KiB, taskdbg's cap");
	expect_error(z, zlen / 3, 0, "is cut short: its zstd data ends in the middle");
	expect_error(z, 5, 0, "is cut short");
	prefixes(z, zlen, data, len);
	flips(z, zlen, data, len);
	unsigned char bad[64];
	memcpy(bad, z, sizeof(bad));
	bad[4] = 0xff;   /* frame header descriptor: reserved bit set */
	expect_error(bad, sizeof(bad), 0, "is damaged: its zstd data is not valid");

	/* xz */
	size_t xcap = lzma_stream_buffer_bound(len), xlen = 0;
	unsigned char *x = malloc(xcap);
	CHECK(lzma_easy_buffer_encode(1, LZMA_CHECK_CRC64, NULL, data, len, x, &xlen, xcap) == LZMA_OK);
	CHECK(td_compression_detect(x, xlen) == TD_COMPRESSION_XZ);
	CHECK(run(x, xlen, 0, data, len) == NULL);
	expect_error(x, xlen, 512 << 10, "decompresses to more than 512 KiB");
	expect_error(x, xlen - 1, 0, "is cut short: its xz data ends in the middle");
	prefixes(x, xlen, data, len);
	flips(x, xlen, data, len);

	/* lz4 */
	size_t lcap = LZ4F_compressFrameBound(len, NULL);
	unsigned char *l = malloc(lcap);
	size_t llen = LZ4F_compressFrame(l, lcap, data, len, NULL);
	CHECK(!LZ4F_isError(llen));
	CHECK(td_compression_detect(l, llen) == TD_COMPRESSION_LZ4);
	CHECK(run(l, llen, 0, data, len) == NULL);
	expect_error(l, llen, 4096, "decompresses to more than 4 KiB");
	expect_error(l, llen - 3, 0, "is cut short: its lz4 data ends in the middle");
	prefixes(l, llen, data, len);
	flips(l, llen, data, len);

	/* Neither: an ELF header, text, nothing. */
	CHECK(td_compression_detect("\177ELF\2\1\1", 7) == TD_COMPRESSION_NONE);
	CHECK(td_compression_detect("\x28\xb5\x2f", 3) == TD_COMPRESSION_NONE);
	expect_error("hello, world", 12, 0, "core.x is not compressed with zstd, xz or lz4");
	expect_error("", 0, 0, "is not compressed");

	/* Sizes. */
	uint64_t v = 0;
	CHECK(td_parse_size("32G", &v) && v == 32ull << 30);
	CHECK(td_parse_size("64MiB", &v) && v == 64ull << 20);
	CHECK(td_parse_size("512k", &v) && v == 512ull << 10);
	CHECK(td_parse_size("1TB", &v) && v == 1ull << 40);
	CHECK(td_parse_size("4096", &v) && v == 4096);
	CHECK(!td_parse_size("0", &v) && !td_parse_size("", &v) && !td_parse_size("G", &v));
	CHECK(!td_parse_size("12X", &v) && !td_parse_size("-1", &v) && !td_parse_size("1.5G", &v));
	CHECK(!td_parse_size("99999999999999999999", &v) && !td_parse_size("9000000000T", &v));
	char buf[32];
	CHECK_STR(td_format_size(32ull << 30, buf, sizeof(buf)), "32 GiB");
	CHECK_STR(td_format_size(1536ull << 20, buf, sizeof(buf)), "1.5 GiB");
	CHECK_STR(td_format_size(100, buf, sizeof(buf)), "100 bytes");
	CHECK_STR(td_format_size((1ull << 30) - 1, buf, sizeof(buf)), "1023.9 MiB");

	free(data);
	free(z);
	free(x);
	free(l);
	return CHECK_DONE();
}
