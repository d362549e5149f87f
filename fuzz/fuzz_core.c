/*
 * Fuzz target: a core file. The input is the whole file, opened with
 * td_core_open as `taskdbg bt CORE` opens it (ELF header, program headers,
 * PT_NOTE notes: NT_PRSTATUS, NT_PRPSINFO, NT_AUXV, NT_FILE; PT_LOAD
 * segments), then walked as far as taskdbg goes without the executable.
 * An input with a zstd, xz or lz4 magic goes through the decompressor first.
 * Bad input must give an error, never a crash.
 */
#include <stdint.h>
#include <stdlib.h>

#include "core_walk.h"
#include "memfile.h"
#include "target/core.h"
#include "util/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct td_fuzz_file *file = td_fuzz_file(data, size);
	struct td_core *core;
	/* A compressed input is decompressed first (target/decompress.c): at most 64 MiB. */
	struct td_error *err = td_core_open_max(file->path, 64u << 20, NULL, &core);
	if (err) {
		/* Every refusal says why. */
		if (!err->message || !*err->message)
			__builtin_trap();
		td_error_destroy(err);
		return 0;
	}
	td_fuzz_core_walk(core, data, size);
	td_core_destroy(core);
	return 0;
}
