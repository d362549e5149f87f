/*
 * Fuzz target: a compressed core (zstd, xz, lz4, as systemd-coredump writes
 * them), decompressed by td_decompress_fd alone, with a 64 MiB cap. Bad or
 * cut-short input, or a bomb over the cap, must give an error; what comes
 * out must be exactly as long as it says and never over the cap.
 */
#include <stdint.h>
#include <unistd.h>

#include "memfile.h"
#include "target/decompress.h"
#include "util/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct td_fuzz_file *file = td_fuzz_file(data, size);
	lseek(file->fd, 0, SEEK_SET);   /* td_decompress_fd reads on from the file's offset */
	const uint64_t cap = 64u << 20;
	struct td_decompressed out;
	struct td_error *err = td_decompress_fd(file->fd, "fuzz input", cap, &out);
	if (err) {
		if (!err->message || !*err->message)
			__builtin_trap();
		td_error_destroy(err);
		return 0;
	}
	if (out.size > cap || lseek(out.fd, 0, SEEK_END) != (off_t)out.size)
		__builtin_trap();
	close(out.fd);
	return 0;
}
