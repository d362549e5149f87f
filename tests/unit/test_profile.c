/*
 * profile: stacks merged and sorted, folded files read and written, the
 * speedscope JSON read back with json-c, the SVG checked by xmllint and for
 * its exact titles and colours, a diff's colours.
 */
#include <dirent.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "profile/profile.h"

static char dir[] = "/tmp/td-test-profile-XXXXXX";

static char *path_of(const char *name)
{
	static char buf[4][256];
	static int next;
	char *p = buf[next++ % 4];
	snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
	return p;
}

static void write_bytes(const char *path, const char *bytes, size_t len)
{
	FILE *f = fopen(path, "w");
	fwrite(bytes, 1, len, f);
	fclose(f);
}

static void write_text(const char *path, const char *text)
{
	write_bytes(path, text, strlen(text));
}

static char *read_text(const char *path)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	if (getdelim(&text, &len, '\0', f) < 0) {
		free(text);
		text = NULL;
	}
	fclose(f);
	return text;
}

/* The stacks as folded text, through td_profile_each. */
static void fold(const char *const *frames, size_t n, uint64_t count, void *arg)
{
	FILE *f = arg;
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%s", i ? ";" : "", frames[i]);
	fprintf(f, " %llu\n", (unsigned long long)count);
}

static char *folded(const struct td_profile *p)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	td_profile_each(p, fold, f);
	fclose(f);
	return text;
}

static void check_folded(const struct td_profile *p, const char *want)
{
	char *got = folded(p);
	CHECK_STR(got, want);
	free(got);
}

static void add(struct td_profile *p, const char *stack, uint64_t count)
{
	const char *frames[16];
	char copy[512];
	size_t n = 0;
	snprintf(copy, sizeof(copy), "%s", stack);
	for (char *s = strtok(copy, ","); s && n < 16; s = strtok(NULL, ","))
		frames[n++] = s;
	struct td_error *err = td_profile_add(p, frames, n, count);
	CHECK(err == NULL);
	td_error_destroy(err);
}

static struct td_profile *profile_of(const char *const *stacks, const uint64_t *counts, size_t n)
{
	struct td_profile *p;
	CHECK(td_profile_create(&p) == NULL);
	for (size_t i = 0; i < n; i++)
		add(p, stacks[i], counts[i]);
	return p;
}

static void test_merge_and_order(void)
{
	struct td_profile *p;
	CHECK(td_profile_create(&p) == NULL);
	CHECK(td_profile_total(p) == 0 && td_profile_stacks(p) == 0);
	check_folded(p, "");
	add(p, "b", 1);
	add(p, "a,b", 2);
	add(p, "a", 4);
	add(p, "a,b", 3);
	add(p, "a,a", 8);
	add(p, "a,b", 0);   /* no samples: nothing added */
	add(p, "c", 0);
	CHECK(td_profile_total(p) == 18);
	CHECK(td_profile_stacks(p) == 4);
	/* A stack before the longer ones it starts; names by strcmp. */
	check_folded(p, "a 4\na;a 8\na;b 5\nb 1\n");

	/* Separators in names are replaced, and bytes that are not UTF-8. */
	const char *odd[] = { "x;y\nz\tw", "caf\xc3\xa9 \xff\xc3" };
	CHECK(td_profile_add(p, odd, 2, 1) == NULL);
	check_folded(p, "a 4\na;a 8\na;b 5\nb 1\nx:y z w;caf\xc3\xa9 ?? 1\n");

	struct td_error *err = td_profile_add(p, odd, 0, 1);
	CHECK(err && err->kind == TD_ERR_INTERNAL);
	td_error_destroy(err);
	const char *big[] = { "big" };
	err = td_profile_add(p, big, 1, UINT64_MAX);
	CHECK(err && err->kind == TD_ERR_TARGET);
	td_error_destroy(err);
	CHECK(td_profile_total(p) == 19 && td_profile_stacks(p) == 5);
	td_profile_destroy(p);
}

static const char sample[] =
	"task prof_split::heavy;prof_split::heavy::{async_fn#0};prof_split::heavy_crunch 12\n"
	"\n"
	"[scheduler];tokio::runtime::scheduler::multi_thread::worker::Context::park 5   \n"
	"task prof_split::light;<F as core::future::future::Future>::poll;a b c 7\r\n"
	"  \t\n"
	"task prof_split::heavy;prof_split::heavy::{async_fn#0};prof_split::heavy_crunch 3\n"
	"task prof_split::heavy;prof_split::heavy::{async_fn#0} 2\n";

static const char sample_sorted[] =
	"[scheduler];tokio::runtime::scheduler::multi_thread::worker::Context::park 5\n"
	"task prof_split::heavy;prof_split::heavy::{async_fn#0} 2\n"
	"task prof_split::heavy;prof_split::heavy::{async_fn#0};prof_split::heavy_crunch 15\n"
	"task prof_split::light;<F as core::future::future::Future>::poll;a b c 7\n";

static void test_read_folded(void)
{
	write_text(path_of("in.folded"), sample);
	struct td_profile *p = NULL;
	CHECK(td_profile_read_folded(path_of("in.folded"), &p) == NULL);
	if (!p)
		return;
	CHECK(td_profile_total(p) == 29 && td_profile_stacks(p) == 4);
	check_folded(p, sample_sorted);

	/* Written and read back: the same text, the same stacks. */
	CHECK(td_profile_write(p, path_of("out.folded"), NULL) == NULL);
	char *text = read_text(path_of("out.folded"));
	CHECK_STR(text, sample_sorted);
	free(text);
	CHECK(td_profile_write(p, path_of("out.txt"), NULL) == NULL);
	struct td_profile *again = NULL;
	CHECK(td_profile_read_folded(path_of("out.txt"), &again) == NULL);
	if (again)
		check_folded(again, sample_sorted);
	td_profile_destroy(again);
	td_profile_destroy(p);

	/* The count is after the last space; a frame keeps any other. */
	write_text(path_of("spaces.folded"), "a 1;b  c 2 3\n");
	CHECK(td_profile_read_folded(path_of("spaces.folded"), &p) == NULL);
	check_folded(p, "a 1;b  c 2 3\n");
	td_profile_destroy(p);

	write_text(path_of("empty.folded"), "\n\n");
	CHECK(td_profile_read_folded(path_of("empty.folded"), &p) == NULL);
	CHECK(td_profile_total(p) == 0);
	td_profile_destroy(p);
}

/* A file of text (a string literal: it may hold a NUL) is rejected for its line want_line. */
#define check_malformed(text, want_line) check_malformed_bytes(text, sizeof(text) - 1, want_line)

static void check_malformed_bytes(const char *text, size_t len, const char *want_line)
{
	char want[512];
	snprintf(want, sizeof(want), "%s:%s: not a folded stack (expected `frame;frame;... COUNT`)",
		 path_of("bad.folded"), want_line);
	write_bytes(path_of("bad.folded"), text, len);
	struct td_profile *p = (struct td_profile *)&want;
	struct td_error *err = td_profile_read_folded(path_of("bad.folded"), &p);
	CHECK(err && err->kind == TD_ERR_TARGET);
	CHECK_STR(err ? err->message : NULL, want);
	CHECK(p == (struct td_profile *)&want);   /* untouched */
	td_error_destroy(err);
}

static void test_malformed(void)
{
	check_malformed("a;b 1\n\na;b\n", "3");
	check_malformed("a;b 1x\n", "1");
	check_malformed("a;b -1\n", "1");
	check_malformed("a;b 1.5\n", "1");
	check_malformed("a 1\n 5\n", "2");
	check_malformed("7\n", "1");
	check_malformed("a 18446744073709551616\n", "1");
	check_malformed("a 1\nb\0c 2\n", "2");

	struct td_profile *p;
	struct td_error *err = td_profile_read_folded(path_of("missing.folded"), &p);
	CHECK(err && err->kind == TD_ERR_TARGET);
	CHECK(err && strstr(err->message, "cannot open ") == err->message);
	CHECK(err && strstr(err->message, "missing.folded: No such file or directory\n"));
	td_error_destroy(err);
	err = td_profile_read_folded(dir, &p);
	CHECK(err && err->kind == TD_ERR_TARGET && strstr(err->message, "Is a directory"));
	td_error_destroy(err);
}

/* The names of the files in path, sorted, ',' between them. */
static void check_dir(const char *path, const char *want)
{
	struct dirent **names;
	int n = scandir(path, &names, NULL, alphasort);
	char got[1024] = "";
	for (int i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.') {
			strcat(got, *got ? "," : "");
			strcat(got, names[i]->d_name);
		}
		free(names[i]);
	}
	free(names);
	CHECK_STR(got, want);
}

static void test_write_errors(void)
{
	static const char *const stacks[] = { "a,b" };
	static const uint64_t counts[] = { 1 };
	struct td_profile *p = profile_of(stacks, counts, 1);
	struct td_error *err = td_profile_write(p, path_of("out.png"), NULL);
	CHECK(err && err->kind == TD_ERR_USAGE);
	CHECK(err && strstr(err->message, ".folded (or .txt)") && strstr(err->message, ".svg") &&
	      strstr(err->message, ".json"));
	td_error_destroy(err);
	err = td_profile_write(p, path_of("folded"), NULL);
	CHECK(err && err->kind == TD_ERR_USAGE);
	td_error_destroy(err);
	err = td_profile_write_diff(p, p, path_of("diff.json"), NULL);
	CHECK(err && err->kind == TD_ERR_USAGE && strstr(err->message, "FILE.svg"));
	td_error_destroy(err);

	err = td_profile_write(p, path_of("no/such/dir/out.svg"), NULL);
	CHECK(err && err->kind == TD_ERR_TARGET);
	CHECK(err && strstr(err->message, "cannot create ") == err->message &&
	      strstr(err->message, "No such file or directory\nGive a FILE"));
	td_error_destroy(err);
	/* The rename fails: the temporary file is gone too. */
	CHECK(mkdir(path_of("w"), 0700) == 0 && mkdir(path_of("w/taken.svg"), 0700) == 0);
	err = td_profile_write(p, path_of("w/taken.svg"), NULL);
	CHECK(err && err->kind == TD_ERR_TARGET && strstr(err->message, "cannot write "));
	td_error_destroy(err);
	check_dir(path_of("w"), "taken.svg");
	/* And one that works leaves only itself. */
	CHECK(td_profile_write(p, path_of("w/out.json"), NULL) == NULL);
	check_dir(path_of("w"), "out.json,taken.svg");
	td_profile_destroy(p);
}

static json_object *get(json_object *o, const char *key)
{
	json_object *v = NULL;
	json_object_object_get_ex(o, key, &v);
	return v;
}

static const char *text_of(json_object *o)
{
	return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static void test_speedscope(void)
{
	write_text(path_of("in.folded"), sample);
	struct td_profile *p = NULL;
	CHECK(td_profile_read_folded(path_of("in.folded"), &p) == NULL);
	struct td_profile_meta meta = { .title = "taskdbg record: 1234 (prof_split)",
					.exporter = "taskdbg test" };
	CHECK(td_profile_write(p, path_of("out.json"), &meta) == NULL);
	json_object *file = json_object_from_file(path_of("out.json"));
	CHECK(file != NULL);
	CHECK_STR(json_object_get_string(get(file, "$schema")),
		  "https://www.speedscope.app/file-format-schema.json");
	CHECK_STR(json_object_get_string(get(file, "name")), meta.title);
	CHECK_STR(json_object_get_string(get(file, "exporter")), "taskdbg test");
	CHECK(json_object_get_int(get(file, "activeProfileIndex")) == 0);
	/* Frames in the order the sorted stacks meet them. */
	CHECK_STR(text_of(get(get(file, "shared"), "frames")),
		  "[{\"name\":\"[scheduler]\"},"
		  "{\"name\":\"tokio::runtime::scheduler::multi_thread::worker::Context::park\"},"
		  "{\"name\":\"task prof_split::heavy\"},"
		  "{\"name\":\"prof_split::heavy::{async_fn#0}\"},"
		  "{\"name\":\"prof_split::heavy_crunch\"},"
		  "{\"name\":\"task prof_split::light\"},"
		  "{\"name\":\"<F as core::future::future::Future>::poll\"},"
		  "{\"name\":\"a b c\"}]");
	json_object *profiles = get(file, "profiles");
	CHECK(json_object_array_length(profiles) == 1);
	json_object *profile = json_object_array_get_idx(profiles, 0);
	CHECK_STR(json_object_get_string(get(profile, "type")), "sampled");
	CHECK_STR(json_object_get_string(get(profile, "name")), meta.title);
	CHECK_STR(json_object_get_string(get(profile, "unit")), "none");
	CHECK(json_object_get_int64(get(profile, "startValue")) == 0);
	CHECK(json_object_get_int64(get(profile, "endValue")) == 29);
	CHECK_STR(text_of(get(profile, "samples")), "[[0,1],[2,3],[2,3,4],[5,6,7]]");
	CHECK_STR(text_of(get(profile, "weights")), "[5,2,15,7]");
	json_object_put(file);
	td_profile_destroy(p);
}

/* The fill of the frame whose title starts with title (NULL if none). */
static char *fill_of(const char *svg, const char *title)
{
	static char fill[32];
	char key[256];
	snprintf(key, sizeof(key), "<title>%s", title);
	const char *at = strstr(svg, key);
	at = at ? strstr(at, "fill=\"") : NULL;
	if (!at || sscanf(at, "fill=\"%31[^\"]\"", fill) != 1)
		return NULL;
	return fill;
}

static size_t count_of(const char *s, const char *what)
{
	size_t n = 0;
	for (const char *at = s; (at = strstr(at, what)); at++)
		n++;
	return n;
}

static void check_xml(const char *path)
{
	/* tests/setup-deps installs xmllint (libxml2-utils): without it, this fails. */
	char command[512];
	snprintf(command, sizeof(command), "xmllint --noout '%s'", path);
	CHECK(system(command) == 0);
}

static void test_flamegraph(void)
{
	write_text(path_of("in.folded"), sample);
	struct td_profile *p = NULL;
	CHECK(td_profile_read_folded(path_of("in.folded"), &p) == NULL);
	const char *tiny[] = { "task tiny & <rare>", "it's \"quoted\"" };
	CHECK(td_profile_add(p, tiny, 2, 1) == NULL);   /* 1 of 30: drawn (3.3%) */
	struct td_profile_meta meta = { .title = "taskdbg record: 1234 (a<b>&c)", .subtitle = "99 Hz" };
	CHECK(td_profile_write(p, path_of("out.svg"), &meta) == NULL);
	check_xml(path_of("out.svg"));
	char *svg = read_text(path_of("out.svg"));
	CHECK(svg != NULL);
	if (!svg)
		return;
	/* all, 4 roots, 1 under [scheduler], 2 under heavy, 2 under light, 1 under tiny. */
	CHECK(count_of(svg, "<g class=\"frame") == 11);
	CHECK(count_of(svg, "<script") == 1 && !strstr(svg, "http://www.w3.org/1999/xlink"));
	CHECK(strstr(svg, "<title>all (30 samples, 100.00%)</title>"));
	CHECK(strstr(svg, "<title>task prof_split::heavy (17 samples, 56.67%)</title>"));
	CHECK(strstr(svg, "<title>prof_split::heavy_crunch (15 samples, 50.00%)</title>"));
	CHECK(strstr(svg, "<title>&lt;F as core::future::future::Future&gt;::poll (7 samples, 23.33%)</title>"));
	CHECK(strstr(svg, "<title>task tiny &amp; &lt;rare&gt; (1 sample, 3.33%)</title>"));
	CHECK(strstr(svg, "<title>it&apos;s &quot;quoted&quot; (1 sample, 3.33%)</title>"));
	CHECK(strstr(svg, ">taskdbg record: 1234 (a&lt;b&gt;&amp;c)</text>"));
	CHECK(strstr(svg, ">99 Hz</text>"));
	/*
	 * Text that fits, and text cut: 5 of 30 samples are 196.67 px, 26
	 * characters; 1 sample is 39.33 px, 4 characters.
	 */
	CHECK(strstr(svg, "width=\"196.667\" height=\"15\""));
	CHECK(strstr(svg, ">[scheduler]</text>"));
	CHECK(strstr(svg, ">tokio::runtime::schedule..</text>"));
	CHECK(strstr(svg, "width=\"39.333\" height=\"15\""));
	CHECK(strstr(svg, ">ta..</text>") && strstr(svg, ">it..</text>"));
	/* Colour families: tasks blue-green, taskdbg's [roots] grey, code warm. */
	unsigned r, g, b;
	CHECK(sscanf(fill_of(svg, "task prof_split::heavy (") ?: "", "rgb(%u,%u,%u)", &r, &g, &b) == 3 &&
	      r < 100 && g >= 170 && b >= 160);
	CHECK(sscanf(fill_of(svg, "[scheduler] (") ?: "", "rgb(%u,%u,%u)", &r, &g, &b) == 3 &&
	      r == g && b == r + 5);
	CHECK(sscanf(fill_of(svg, "prof_split::heavy_crunch (") ?: "", "rgb(%u,%u,%u)", &r, &g, &b) == 3 &&
	      r >= 205 && g < 210 && b < 70);
	free(svg);

	/* A frame under 0.1% of the samples is left out. */
	const char *rare[] = { "task prof_split::heavy", "rare" };
	CHECK(td_profile_add(p, rare, 2, 1) == NULL);
	const char *many[] = { "many" };
	CHECK(td_profile_add(p, many, 1, 2000) == NULL);
	CHECK(td_profile_write(p, path_of("out.svg"), NULL) == NULL);
	svg = read_text(path_of("out.svg"));
	CHECK(svg && !strstr(svg, "<title>rare (") && strstr(svg, "<title>many (2000 samples"));
	CHECK(svg && strstr(svg, ">Flame graph</text>"));
	free(svg);
	td_profile_destroy(p);
}

static void test_diff(void)
{
	static const char *const before_stacks[] = { "main,grow", "main,shrink", "main,same", "main,gone" };
	static const uint64_t before_counts[] = { 10, 30, 10, 4 };
	/* Twice the samples: scaled by one half, grow is 30, shrink 10, same 10. */
	static const char *const after_stacks[] = { "main,grow", "main,shrink", "main,same", "main,new" };
	static const uint64_t after_counts[] = { 60, 20, 20, 8 };
	struct td_profile *before = profile_of(before_stacks, before_counts, 4);
	struct td_profile *after = profile_of(after_stacks, after_counts, 4);
	struct td_profile_meta meta = { .title = "before -> after" };
	CHECK(td_profile_write_diff(before, after, path_of("diff.svg"), &meta) == NULL);
	check_xml(path_of("diff.svg"));
	char *svg = read_text(path_of("diff.svg"));
	CHECK(svg != NULL);
	if (!svg)
		return;
	CHECK(strstr(svg, "<title>all (54 samples, 100.00%; +0, +0.00%)</title>"));
	CHECK(strstr(svg, "<title>main (54 samples, 100.00%; +0, +0.00%)</title>"));
	CHECK(strstr(svg, "<title>grow (30 samples, 55.56%; +20, +37.04%)</title>"));
	CHECK(strstr(svg, "<title>shrink (10 samples, 18.52%; -20, -37.04%)</title>"));
	CHECK(strstr(svg, "<title>same (10 samples, 18.52%; +0, +0.00%)</title>"));
	CHECK(strstr(svg, "<title>new (4 samples, 7.41%; +4, +7.41%)</title>"));
	CHECK(!strstr(svg, "<title>gone ("));   /* no samples after: no width */
	/* The largest change is deepest; white for none. */
	CHECK_STR(fill_of(svg, "grow ("), "rgb(255,50,50)");
	CHECK_STR(fill_of(svg, "shrink ("), "rgb(50,50,255)");
	CHECK_STR(fill_of(svg, "same ("), "rgb(255,255,255)");
	CHECK_STR(fill_of(svg, "new ("), "rgb(255,214,214)");
	CHECK(strstr(svg, "scaled to before's 54 samples"));
	free(svg);
	td_profile_destroy(before);
	td_profile_destroy(after);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_merge_and_order();
	test_read_folded();
	test_malformed();
	test_write_errors();
	test_speedscope();
	test_flamegraph();
	test_diff();
	char command[128];
	snprintf(command, sizeof(command), "rm -rf '%s'", dir);
	if (system(command) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return CHECK_DONE();
}
