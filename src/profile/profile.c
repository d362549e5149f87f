#include "profile/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/grow.h"
#include "util/hash.h"


/* An open-addressing set of indexes (into a profile's names or stacks), found by hash. */
struct set {
	struct slot {
		uint64_t hash;
		size_t index;   /* + 1; 0: an empty slot */
	} *slots;
	size_t cap, count;  /* cap: 0 or a power of two */
};

struct td_profile {
	char **names;       /* interned frame names (td_profile_clean's copies) */
	size_t nnames, names_cap;
	struct set name_set;
	struct td_profile_stack *stacks;
	size_t nstacks, stacks_cap;
	struct set stack_set;
	uint64_t total;
	/* Scratch: the stack being added, and td_profile_sorted's array (as long as stacks). */
	const char **path;
	size_t path_cap;
	const struct td_profile_stack **order;
	size_t order_cap;
};



/*
 * The length of the UTF-8 character at s, or 0 if the bytes there are none
 * (or U+FFFE, U+FFFF, which XML does not allow). The second byte's range
 * rules out overlong forms, surrogates and code points past U+10FFFF.
 */
static size_t utf8_char(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0;
	size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
	unsigned char lo = s[0] == 0xe0 ? 0xa0 : s[0] == 0xf0 ? 0x90 : 0x80;
	unsigned char hi = s[0] == 0xed ? 0x9f : s[0] == 0xf4 ? 0x8f : 0xbf;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	}
	if (s[0] == 0xef && s[1] == 0xbf && s[2] >= 0xbe)
		return 0;
	return n;
}

char *td_profile_clean(const char *s)
{
	char *copy = strdup(s);
	if (!copy)
		return NULL;
	unsigned char *c = (unsigned char *)copy;
	while (*c) {
		size_t len = utf8_char(c);
		if (!len)
			*c = '?';
		else if (*c == ';')
			*c = ':';
		else if (*c < 0x20 || *c == 0x7f)
			*c = ' ';
		c += len ? len : 1;
	}
	return copy;
}

static bool set_grow(struct set *s)
{
	size_t cap = s->cap ? s->cap * 2 : 64;
	struct slot *slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return false;
	for (size_t i = 0; i < s->cap; i++) {
		if (!s->slots[i].index)
			continue;
		size_t j = td_hash_slot(s->slots[i].hash, cap);
		while (slots[j].index)
			j = (j + 1) & (cap - 1);
		slots[j] = s->slots[i];
	}
	free(s->slots);
	s->slots = slots;
	s->cap = cap;
	return true;
}

/*
 * The slot of the entry that same() takes for key, or the empty slot where
 * it goes (room made for it first): NULL when out of memory.
 */
static struct slot *set_slot(struct set *s, uint64_t hash,
			     bool (*same)(const struct td_profile *p, size_t index, const void *key),
			     const struct td_profile *p, const void *key)
{
	if ((s->count + 1) * 2 > s->cap && !set_grow(s))
		return NULL;
	size_t j = td_hash_slot(hash, s->cap);
	while (s->slots[j].index &&
	       !(s->slots[j].hash == hash && same(p, s->slots[j].index - 1, key)))
		j = (j + 1) & (s->cap - 1);
	return &s->slots[j];
}

static void set_fill(struct set *s, struct slot *slot, uint64_t hash, size_t index)
{
	*slot = (struct slot){ .hash = hash, .index = index + 1 };
	s->count++;
}

struct td_error *td_profile_create(struct td_profile **ret)
{
	struct td_profile *p = calloc(1, sizeof(*p));
	if (!p)
		return &td_enomem;
	*ret = p;
	return NULL;
}

void td_profile_destroy(struct td_profile *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nnames; i++)
		free(p->names[i]);
	free(p->names);
	free(p->name_set.slots);
	for (size_t i = 0; i < p->nstacks; i++)
		free(p->stacks[i].frames);
	free(p->stacks);
	free(p->stack_set.slots);
	free(p->path);
	free(p->order);
	free(p);
}

static bool same_name(const struct td_profile *p, size_t index, const void *key)
{
	return strcmp(p->names[index], key) == 0;
}

/* The interned copy of name, cleaned: NULL when out of memory. */
static const char *intern(struct td_profile *p, const char *name)
{
	char *clean = td_profile_clean(name);
	if (!clean)
		return NULL;
	uint64_t hash = td_hash_fnv1a(TD_FNV_OFFSET, clean, strlen(clean));
	struct slot *slot = set_slot(&p->name_set, hash, same_name, p, clean);
	if (slot && slot->index) {
		free(clean);
		return p->names[slot->index - 1];
	}
	char **names = slot ? td_grow(p->names, &p->names_cap, p->nnames + 1,
					      sizeof(*names)) : NULL;
	if (!names) {
		free(clean);
		return NULL;
	}
	p->names = names;
	set_fill(&p->name_set, slot, hash, p->nnames);
	names[p->nnames++] = clean;
	return clean;
}

static bool same_stack(const struct td_profile *p, size_t index, const void *key)
{
	const struct td_profile_stack *a = &p->stacks[index], *b = key;
	return a->n == b->n && memcmp(a->frames, b->frames, a->n * sizeof(*a->frames)) == 0;
}

/* Adds key (its frames copied) at slot, with no samples yet. */
static struct td_error *new_stack(struct td_profile *p, struct slot *slot,
				  const struct td_profile_stack *key)
{
	struct td_profile_stack *stacks = td_grow(p->stacks, &p->stacks_cap, p->nstacks + 1,
							  sizeof(*stacks));
	if (!stacks)
		return &td_enomem;
	p->stacks = stacks;
	/* Grown here so that td_profile_sorted, and td_profile_each, need no memory. */
	const struct td_profile_stack **order = td_grow(p->order, &p->order_cap,
								p->nstacks + 1, sizeof(*order));
	if (!order)
		return &td_enomem;
	p->order = order;
	const char **frames = malloc(key->n * sizeof(*frames));
	if (!frames)
		return &td_enomem;
	memcpy(frames, key->frames, key->n * sizeof(*frames));
	stacks[p->nstacks] = (struct td_profile_stack){
		.frames = frames, .n = key->n, .hash = key->hash };
	set_fill(&p->stack_set, slot, key->hash, p->nstacks++);
	return NULL;
}

struct td_error *td_profile_add(struct td_profile *p, const char *const *frames, size_t n,
				uint64_t count)
{
	if (!n)
		return td_error_format(TD_ERR_INTERNAL, "a stack of no frames added to a profile");
	if (count > UINT64_MAX - p->total)
		return td_error_format(TD_ERR_TARGET, "more than 2^64 samples in one profile\n"
				       "Record for a shorter time, or read fewer files into it.");
	if (!count)
		return NULL;
	const char **path = td_grow(p->path, &p->path_cap, n, sizeof(*path));
	if (!path)
		return &td_enomem;
	p->path = path;
	struct td_profile_stack key = { .frames = path, .n = n, .hash = TD_FNV_OFFSET };
	for (size_t i = 0; i < n; i++) {
		if (!(path[i] = intern(p, frames[i])))
			return &td_enomem;
		key.hash = td_hash_fnv1a(key.hash, &path[i], sizeof(path[i]));
	}
	struct slot *slot = set_slot(&p->stack_set, key.hash, same_stack, p, &key);
	if (!slot)
		return &td_enomem;
	if (!slot->index) {
		struct td_error *err = new_stack(p, slot, &key);
		if (err)
			return err;
	}
	p->stacks[slot->index - 1].count += count;
	p->total += count;
	return NULL;
}

uint64_t td_profile_total(const struct td_profile *p)
{
	return p->total;
}

size_t td_profile_stacks(const struct td_profile *p)
{
	return p->nstacks;
}

int td_profile_stack_cmp(const struct td_profile_stack *a, const struct td_profile_stack *b)
{
	size_t n = a->n < b->n ? a->n : b->n;
	for (size_t i = 0; i < n; i++) {
		int c = a->frames[i] == b->frames[i] ? 0 : strcmp(a->frames[i], b->frames[i]);
		if (c)
			return c;
	}
	return (a->n > b->n) - (a->n < b->n);
}

static int compare_sorted(const void *a, const void *b)
{
	return td_profile_stack_cmp(*(const struct td_profile_stack *const *)a,
				    *(const struct td_profile_stack *const *)b);
}

const struct td_profile_stack *const *td_profile_sorted(const struct td_profile *p, size_t *n)
{
	for (size_t i = 0; i < p->nstacks; i++)
		p->order[i] = &p->stacks[i];
	if (p->nstacks)
		qsort(p->order, p->nstacks, sizeof(*p->order), compare_sorted);
	*n = p->nstacks;
	return p->order;
}

void td_profile_each(const struct td_profile *p,
		     void (*fn)(const char *const *frames, size_t n, uint64_t count, void *arg),
		     void *arg)
{
	size_t n;
	const struct td_profile_stack *const *stacks = td_profile_sorted(p, &n);
	for (size_t i = 0; i < n; i++)
		fn(stacks[i]->frames, stacks[i]->n, stacks[i]->count, arg);
}

/* Reading folded stacks. */

struct folded_line {
	const char **frames;
	size_t n, cap;
	uint64_t count;
};

static bool parse_count(const char *s, uint64_t *ret)
{
	uint64_t v = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned digit = (unsigned)(*s - '0');
		if (digit > 9 || v > (UINT64_MAX - digit) / 10)
			return false;
		v = v * 10 + digit;
	}
	*ret = v;
	return true;
}

/*
 * Splits line (len bytes, cut in place) into frames and a count: 1 for a
 * stack, 0 for a blank line, -1 for anything else (-2: out of memory). The
 * count is after the last space or tab; the frames before it may have spaces
 * of their own (and keep any but that one).
 */
static int parse_line(char *line, size_t len, struct folded_line *out)
{
	if (strlen(line) != len)   /* a NUL byte: not text */
		return -1;
	while (len && strchr(" \t\r\n", line[len - 1]))
		line[--len] = '\0';
	if (!len)
		return 0;
	char *sep = line + len;
	while (sep > line && sep[-1] != ' ' && sep[-1] != '\t')
		sep--;
	if (sep <= line + 1 || !parse_count(sep, &out->count))
		return -1;
	sep[-1] = '\0';
	out->n = 0;
	for (char *frame = line; frame; out->n++) {
		const char **frames = td_grow(out->frames, &out->cap, out->n + 1,
						      sizeof(*frames));
		if (!frames)
			return -2;
		out->frames = frames;
		frames[out->n] = frame;
		if ((frame = strchr(frame, ';')))
			*frame++ = '\0';
	}
	return 1;
}

static struct td_error *read_lines(FILE *f, const char *path, struct td_profile *p)
{
	struct folded_line parsed = { 0 };
	char *line = NULL;
	size_t line_cap = 0;
	struct td_error *err = NULL;
	for (size_t number = 1; !err; number++) {
		errno = 0;
		ssize_t len = getline(&line, &line_cap, f);
		if (len < 0) {
			if (errno == ENOMEM)
				err = &td_enomem;
			else if (ferror(f))
				err = td_error_format(TD_ERR_TARGET, "cannot read %s: %s", path,
						      strerror(errno));
			break;
		}
		int kind = parse_line(line, (size_t)len, &parsed);
		if (kind == -2)
			err = &td_enomem;
		else if (kind < 0)
			err = td_error_format(TD_ERR_TARGET, "%s:%zu: not a folded stack "
					      "(expected `frame;frame;... COUNT`)", path, number);
		else if (kind > 0)
			err = td_profile_add(p, parsed.frames, parsed.n, parsed.count);
	}
	free(line);
	free(parsed.frames);
	return err;
}

struct td_error *td_profile_read_folded(const char *path, struct td_profile **ret)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return td_error_format(TD_ERR_TARGET, "cannot open %s: %s\n"
				       "Give the path of a folded-stacks file: one `frame;frame;... COUNT` "
				       "line a stack, root first.", path, strerror(errno));
	struct td_profile *p;
	struct td_error *err = td_profile_create(&p);
	if (!err)
		err = read_lines(f, path, p);
	fclose(f);
	if (err) {
		td_profile_destroy(p);
		return err;
	}
	*ret = p;
	return NULL;
}

/* Writing. */

enum format { FOLDED, FLAMEGRAPH, SPEEDSCOPE };

static const struct {
	const char *extension;
	enum format format;
} formats[] = {
	{ ".folded", FOLDED },
	{ ".txt", FOLDED },
	{ ".svg", FLAMEGRAPH },
	{ ".json", SPEEDSCOPE },
};

static bool format_of(const char *path, enum format *ret)
{
	const char *base = strrchr(path, '/');
	const char *dot = strrchr(base ? base + 1 : path, '.');
	for (size_t i = 0; dot && i < sizeof(formats) / sizeof(formats[0]); i++) {
		if (strcasecmp(dot, formats[i].extension) == 0) {
			*ret = formats[i].format;
			return true;
		}
	}
	return false;
}

static void write_folded(FILE *f, const struct td_profile *p)
{
	size_t n;
	const struct td_profile_stack *const *stacks = td_profile_sorted(p, &n);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < stacks[i]->n; j++) {
			if (j)
				putc(';', f);
			fputs(stacks[i]->frames[j], f);
		}
		fprintf(f, " %" PRIu64 "\n", stacks[i]->count);
	}
}

/* What to write: p in format (a diff when before is not NULL). */
struct job {
	enum format format;
	const struct td_profile *p, *before;
	const struct td_profile_meta *meta;
};

static struct td_error *write_body(FILE *f, const struct job *job)
{
	switch (job->format) {
	case FOLDED:
		write_folded(f, job->p);
		return NULL;
	case SPEEDSCOPE:
		return td_profile_write_speedscope(f, job->p, job->meta);
	case FLAMEGRAPH:
		return td_profile_write_flamegraph(f, job->p, job->before, job->meta);
	}
	return td_error_format(TD_ERR_INTERNAL, "no writer for profile format %d", (int)job->format);
}

/* A new file next to path, made as path would be (mode 0666 less the umask). */
static struct td_error *create_temporary(const char *path, char **name_ret, FILE **ret)
{
	for (unsigned attempt = 0; attempt < 100; attempt++) {
		char *name;
		if (asprintf(&name, "%s.%d-%u.tmp", path, (int)getpid(), attempt) < 0)
			return &td_enomem;
		int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0666);
		if (fd < 0) {
			int saved = errno;
			free(name);
			if (saved == EEXIST)
				continue;
			return td_error_format(TD_ERR_TARGET, "cannot create %s: %s\n"
					       "Give a FILE in a directory that exists and that you can write to.",
					       path, strerror(saved));
		}
		FILE *f = fdopen(fd, "w");
		if (!f) {
			close(fd);
			unlink(name);
			free(name);
			return &td_enomem;
		}
		*name_ret = name;
		*ret = f;
		return NULL;
	}
	return td_error_format(TD_ERR_TARGET, "cannot create %s: 100 temporary files %s.*.tmp are in the way\n"
			       "Remove them (a run of taskdbg that was killed left them).", path, path);
}

/* Writes the file whole or not at all: into a temporary file renamed over path. */
static struct td_error *write_file(const char *path, const struct job *job)
{
	char *temporary = NULL;
	FILE *f = NULL;
	struct td_error *err = create_temporary(path, &temporary, &f);
	if (err)
		return err;
	err = write_body(f, job);
	if (!err && (fflush(f) != 0 || ferror(f)))
		err = td_error_format(TD_ERR_TARGET, "cannot write %s: %s", path, strerror(errno));
	if (fclose(f) != 0 && !err)
		err = td_error_format(TD_ERR_TARGET, "cannot write %s: %s", path, strerror(errno));
	if (!err && rename(temporary, path) < 0)
		err = td_error_format(TD_ERR_TARGET, "cannot write %s: %s", path, strerror(errno));
	if (err)
		unlink(temporary);
	free(temporary);
	return err;
}

struct td_error *td_profile_check_path(const char *path)
{
	enum format format;
	if (!format_of(path, &format))
		return td_error_format(TD_ERR_USAGE, "which format to write %s in? Its extension does not say\n"
				       "Name the file FILE.folded (or .txt) for folded stacks, FILE.svg for "
				       "a flame graph or FILE.json for speedscope.", path);
	return NULL;
}

struct td_error *td_profile_write(const struct td_profile *p, const char *path,
				  const struct td_profile_meta *meta)
{
	struct job job = { .p = p, .meta = meta };
	struct td_error *err = td_profile_check_path(path);
	if (err)
		return err;
	format_of(path, &job.format);
	return write_file(path, &job);
}

struct td_error *td_profile_write_diff(const struct td_profile *before, const struct td_profile *after,
				       const char *path, const struct td_profile_meta *meta)
{
	struct job job = { .p = after, .before = before, .meta = meta };
	if (!format_of(path, &job.format) || job.format != FLAMEGRAPH)
		return td_error_format(TD_ERR_USAGE, "a differential flame graph is an SVG file: "
				       "name it FILE.svg (not %s)", path);
	return write_file(path, &job);
}
