/*
 * Runs a fuzz target's LLVMFuzzerTestOneInput over files and directories of
 * inputs, without libFuzzer: the regression corpus (fuzz/corpus/TARGET/) as
 * an ordinary test, built by any compiler. Exit 0 when every input ran; a
 * crash is the sanitizer's or the signal's, as under libFuzzer.
 *   fuzz-replay-TARGET PATH...
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path, size_t *count)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
		return 2;
	}
	struct stat st;
	if (fstat(fileno(f), &st) != 0) {
		fclose(f);
		return 2;
	}
	size_t size = (size_t)st.st_size;
	/* Its own allocation of exactly size bytes, so ASan sees a read past the end. */
	uint8_t *data = malloc(size ? size : 1);
	if (!data || fread(data, 1, size, f) != size) {
		fprintf(stderr, "replay: cannot read %s\n", path);
		free(data);
		fclose(f);
		return 2;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(data, size);
	free(data);
	(*count)++;
	return 0;
}


static int run_path(const char *path, size_t *count)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return 2;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path, count);
	struct dirent **entries;
	int n = scandir(path, &entries, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "replay: cannot list %s: %s\n", path, strerror(errno));
		return 2;
	}
	int rc = 0;
	for (int i = 0; i < n; i++) {
		const char *name = entries[i]->d_name;
		if (name[0] != '.' && rc == 0) {
			char *child;
			if (asprintf(&child, "%s/%s", path, name) < 0)
				rc = 2;
			else {
				rc = run_path(child, count);
				free(child);
			}
		}
		free(entries[i]);
	}
	free(entries);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s CORPUS-DIR-OR-FILE...\n", argv[0]);
		return 2;
	}
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	size_t count = 0;
	for (int i = 1; i < argc; i++) {
		int rc = run_path(argv[i], &count);
		if (rc)
			return rc;
	}
	if (count == 0) {
		fprintf(stderr, "replay: no inputs found in the paths given\n");
		return 2;
	}
	printf("replay: %zu inputs ran\n", count);
	return 0;
}
