/*
 * td-fold: a folded-stacks file to any file profile/profile.h writes, or two
 * of them to a differential flame graph; for checks of the files by hand or
 * in a browser (tests/tools/render-svg.sh), before `taskdbg record` can.
 *
 *   td-fold [-t TITLE] [-s SUBTITLE] [-b BEFORE.folded] IN.folded OUT.{folded,txt,svg,json}
 */
#include <stdio.h>
#include <unistd.h>

#include "profile/profile.h"

static int fail(struct td_error *err)
{
	fprintf(stderr, "td-fold: %s\n", err->message);
	int status = err->kind == TD_ERR_USAGE ? 64 : 2;
	td_error_destroy(err);
	return status;
}

int main(int argc, char **argv)
{
	struct td_profile_meta meta = { .exporter = "td-fold" };
	const char *before_path = NULL;
	int opt;
	while ((opt = getopt(argc, argv, "t:s:b:")) != -1) {
		switch (opt) {
		case 't': meta.title = optarg; break;
		case 's': meta.subtitle = optarg; break;
		case 'b': before_path = optarg; break;
		default: return 64;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: td-fold [-t TITLE] [-s SUBTITLE] [-b BEFORE.folded] "
			"IN.folded OUT.{folded,txt,svg,json}\n");
		return 64;
	}
	struct td_profile *p = NULL, *before = NULL;
	struct td_error *err = td_profile_read_folded(argv[optind], &p);
	if (!err && before_path)
		err = td_profile_read_folded(before_path, &before);
	if (!err)
		err = before ? td_profile_write_diff(before, p, argv[optind + 1], &meta)
			     : td_profile_write(p, argv[optind + 1], &meta);
	td_profile_destroy(p);
	td_profile_destroy(before);
	return err ? fail(err) : 0;
}
