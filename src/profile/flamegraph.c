/*
 * A flame graph as one self-contained SVG file (no fonts, scripts or styles
 * from elsewhere): the root at the bottom, a rectangle per path (equal
 * paths merged), as wide as its samples. Its script zooms into a frame on a
 * click and searches frames by regular expression.
 *
 * A differential one (before -> after) has after's widths, after scaled to
 * before's total (as difffolded.pl -n), and each frame coloured by the
 * change of its path's samples: red grew, blue shrank.
 */
#include "profile/internal.h"
#include "util/grow.h"
#include "util/hash.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"

/* Geometry, in pixels. */
#define WIDTH 1200
#define PAD 10          /* left and right */
#define TOP 72          /* title, subtitle, legend, buttons */
#define BOTTOM 28       /* the frame under the pointer, the share a search matched */
#define FRAME_H 16
#define CHAR_W 7.2      /* a character of 12px monospace, to know what fits in a frame */
#define SPAN (WIDTH - 2 * PAD)
/* Frames narrower than this share of all samples are left out. */
#define MIN_SHARE 0.001

/* A path's rectangle. */
struct frame {
	const char *name;
	size_t depth;      /* 0: "all", under every stack */
	double x, value;   /* the samples on its left, and its own (after, scaled, in a diff) */
	double before;     /* in a diff: before's samples on the same path */
};

struct graph {
	struct frame *frames;   /* a parent before its children */
	size_t n, cap;
	size_t *open;           /* open[d]: the frame at depth d of the last path added */
	size_t open_cap;
	const struct td_profile_stack *last;
	double x;               /* where the next path starts */
	/* What drawing needs. */
	bool diff;
	double total;           /* the samples of the whole width */
	double base;            /* the samples percentages are of: total, or before's if after has none */
	double scaled_to;       /* in a diff: before's total, if after was scaled to it */
	double max_change;      /* the largest |value - before| of a frame drawn */
	size_t depth;           /* of the deepest frame drawn */
};

static double absolute(double v)
{
	return v < 0 ? -v : v;
}

static long long rounded(double v)
{
	return (long long)(v < 0 ? v - 0.5 : v + 0.5);
}

static struct td_error *new_frame(struct graph *g, const char *name, size_t depth)
{
	struct frame *frames = td_grow(g->frames, &g->cap, g->n + 1, sizeof(*frames));
	size_t *open = td_grow(g->open, &g->open_cap, depth + 1, sizeof(*open));
	if (frames)
		g->frames = frames;
	if (open)
		g->open = open;
	if (!frames || !open)
		return &td_enomem;
	frames[g->n] = (struct frame){ .name = name, .depth = depth, .x = g->x };
	open[depth] = g->n++;
	return NULL;
}

static size_t common_prefix(const struct td_profile_stack *a, const struct td_profile_stack *b)
{
	size_t i = 0;
	while (a && i < a->n && i < b->n && strcmp(a->frames[i], b->frames[i]) == 0)
		i++;
	return i;
}

/*
 * Adds a path's samples. Paths come in td_profile_sorted's order, so the
 * frames it shares with the last path are still open and the others start
 * where the last path ended.
 */
static struct td_error *add_path(struct graph *g, const struct td_profile_stack *s, double value,
				 double before)
{
	struct td_error *err;
	size_t common = common_prefix(g->last, s);
	for (size_t depth = common + 1; depth <= s->n; depth++) {
		if ((err = new_frame(g, s->frames[depth - 1], depth)))
			return err;
	}
	for (size_t depth = 0; depth <= s->n; depth++) {
		g->frames[g->open[depth]].value += value;
		g->frames[g->open[depth]].before += before;
	}
	g->last = s;
	g->x += value;
	return NULL;
}

static struct td_error *add_profile(struct graph *g, const struct td_profile *p)
{
	size_t n;
	const struct td_profile_stack *const *stacks = td_profile_sorted(p, &n);
	struct td_error *err = NULL;
	for (size_t i = 0; i < n && !err; i++)
		err = add_path(g, stacks[i], (double)stacks[i]->count, (double)stacks[i]->count);
	return err;
}

/* The paths of both, merged in order; after's samples scaled by scale. */
static struct td_error *add_diff(struct graph *g, const struct td_profile *before,
				 const struct td_profile *after, double scale)
{
	size_t nb, na, i = 0, j = 0;
	const struct td_profile_stack *const *b = td_profile_sorted(before, &nb);
	const struct td_profile_stack *const *a = td_profile_sorted(after, &na);
	struct td_error *err = NULL;
	while (!err && (i < nb || j < na)) {
		int c = i == nb ? 1 : j == na ? -1 : td_profile_stack_cmp(b[i], a[j]);
		double was = c <= 0 ? (double)b[i]->count : 0;
		double now = c >= 0 ? (double)a[j]->count * scale : 0;
		err = add_path(g, c <= 0 ? b[i] : a[j], now, was);
		i += c <= 0;
		j += c >= 0;
	}
	return err;
}

static bool drawn(const struct graph *g, const struct frame *f)
{
	return f->depth == 0 || (g->total > 0 && f->value >= MIN_SHARE * g->total);
}

static struct td_error *build(struct graph *g, const struct td_profile *p,
			      const struct td_profile *before)
{
	struct td_error *err = new_frame(g, "all", 0);
	if (err)
		return err;
	if (before) {
		double b = (double)td_profile_total(before), a = (double)td_profile_total(p);
		g->scaled_to = b > 0 && a > 0 ? b : 0;
		err = add_diff(g, before, p, g->scaled_to ? b / a : 1);
	} else {
		err = add_profile(g, p);
	}
	g->diff = before != NULL;
	g->total = g->frames[0].value;
	g->base = g->total > 0 ? g->total : g->frames[0].before > 0 ? g->frames[0].before : 1;
	for (size_t i = 0; i < g->n; i++) {
		const struct frame *f = &g->frames[i];
		if (!drawn(g, f))
			continue;
		if (f->depth > g->depth)
			g->depth = f->depth;
		if (absolute(f->value - f->before) > g->max_change)
			g->max_change = absolute(f->value - f->before);
	}
	return err;
}

/* Text. */

/* s's first len bytes as XML character data or an attribute value. */
static void put_xml(FILE *f, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		switch (s[i]) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default: putc(s[i], f);
		}
	}
}

/* A meta string (cleaned first: it may come from a process's name) as XML. */
static struct td_error *put_meta(FILE *f, const char *s)
{
	char *clean = td_profile_clean(s ? s : "");
	if (!clean)
		return &td_enomem;
	put_xml(f, clean, strlen(clean));
	free(clean);
	return NULL;
}

/*
 * As much of name as fits in width pixels, ".." marking a cut, nothing when
 * not 3 characters fit (the script does the same after a zoom).
 */
static void put_clipped(FILE *f, const char *name, double width)
{
	long fit = (long)((width - 6) / CHAR_W);
	if (fit < 3)
		return;
	size_t cut = 0, len = strlen(name);
	long chars = 0;
	for (size_t i = 0; i < len && chars <= fit; i++) {
		if (((unsigned char)name[i] & 0xc0) == 0x80)
			continue;   /* inside a UTF-8 character */
		if (++chars == fit - 1)
			cut = i;
	}
	if (chars <= fit) {
		put_xml(f, name, len);
	} else {
		put_xml(f, name, cut);
		fputs("..", f);
	}
}

/* Colours. */

struct rgb {
	unsigned r, g, b;
};

static uint32_t name_hash(const char *s)
{
	uint64_t h = td_hash_fnv1a(TD_FNV_OFFSET, s, strlen(s));
	return (uint32_t)(h ^ (h >> 32));
}

/*
 * A colour of the name's own, the same in every graph: warm for code,
 * blue-green for a task (taskdbg's root "task NAME"), grey for taskdbg's
 * other roots ("[scheduler]", "[idle]").
 */
static struct rgb name_colour(const char *name)
{
	uint32_t h = name_hash(name);
	unsigned a = h & 0xff, b = (h >> 8) & 0xff, c = (h >> 16) & 0xff;
	if (strncmp(name, "task ", 5) == 0)
		return (struct rgb){ 40 + a % 60, 170 + b % 50, 160 + c % 50 };
	if (name[0] == '[')
		return (struct rgb){ 170 + a % 40, 170 + a % 40, 175 + a % 40 };
	return (struct rgb){ 205 + a % 51, 60 + b % 150, 20 + c % 50 };
}

/* Red for a path that grew, blue for one that shrank, the deeper the more; white unchanged. */
static struct rgb change_colour(double change, double max_change)
{
	if (rounded(change) == 0 || max_change <= 0)
		return (struct rgb){ 255, 255, 255 };
	unsigned fade = 255 - (unsigned)rounded(205 * absolute(change) / max_change);
	return change > 0 ? (struct rgb){ 255, fade, fade } : (struct rgb){ fade, fade, 255 };
}

/* "NAME (N samples, P%)", and in a diff "; +D, +X%)": X the change's share of all samples. */
static void put_title(FILE *f, const struct graph *g, const struct frame *fr)
{
	long long samples = rounded(fr->value), change = rounded(fr->value - fr->before);
	fputs("<title>", f);
	put_xml(f, fr->name, strlen(fr->name));
	fprintf(f, " (%lld %s, %.2f%%", samples, samples == 1 ? "sample" : "samples",
		100 * fr->value / g->base);
	if (g->diff)
		fprintf(f, "; %+lld, %+.2f%%", change, 100.0 * (double)change / g->base);
	fputs(")</title>", f);
}

static void put_frame(FILE *f, const struct graph *g, const struct frame *fr)
{
	double scale = g->total > 0 ? SPAN / g->total : 0;
	double x = PAD + fr->x * scale, width = fr->depth ? fr->value * scale : SPAN;
	int y = TOP + (int)(g->depth - fr->depth) * FRAME_H;
	/* "all" is one of taskdbg's roots too. */
	struct rgb c = g->diff ? change_colour(fr->value - fr->before, g->max_change)
			       : name_colour(fr->depth ? fr->name : "[all]");
	fprintf(f, "<g class=\"frame%s\">", fr->depth ? "" : " root");
	put_title(f, g, fr);
	fprintf(f, "<rect x=\"%.3f\" y=\"%d\" width=\"%.3f\" height=\"%d\" rx=\"2\" "
		"fill=\"rgb(%u,%u,%u)\"/><text x=\"%.3f\" y=\"%.1f\">",
		x, y, width, FRAME_H - 1, c.r, c.g, c.b, x + 3, y + 11.5);
	put_clipped(f, fr->name, width);
	fputs("</text></g>\n", f);
}

/* The page. */

static const char style[] =
	"<style type=\"text/css\"><![CDATA[\n"
	"text { font-family: monospace; font-size: 12px; fill: #000; }\n"
	"text.title { font-size: 17px; }\n"
	"text.legend, text.details, text.matched { fill: #333; }\n"
	"g.frame, text.button { cursor: pointer; }\n"
	"g.frame:hover rect { stroke: #000; stroke-width: 0.5; }\n"
	"text.button:hover { fill: #a00; }\n"
	"]]></style>\n";

/*
 * The script: it finds its svg as the last one so far (it runs as the
 * parser meets it, the svg's last child; in an HTML page too), and a
 * frame's name in its title, before the last " (".
 */
static const char script[] =
	"<script type=\"text/ecmascript\"><![CDATA[\n"
	"\"use strict\";\n"
	"(function () {\n"
	"	var svgs = document.getElementsByTagNameNS(\"http://www.w3.org/2000/svg\", \"svg\");\n"
	"	var svg = svgs[svgs.length - 1];\n"
	"	var W = +svg.getAttribute(\"width\"), PAD = 10, CHAR_W = 7.2, EPS = 0.002;\n"
	"	var MATCH = \"rgb(230,0,230)\";\n"
	"	var details = svg.querySelector(\".details\"), matched = svg.querySelector(\".matched\");\n"
	"	var resetButton = svg.querySelector(\".reset\");\n"
	"	var frames = [], query = \"\";\n"
	"\n"
	"	/* What fits of name in w pixels (as the C writer cut it). */\n"
	"	function clip(name, w) {\n"
	"		var fit = Math.floor((w - 6) / CHAR_W);\n"
	"		if (fit < 3)\n"
	"			return \"\";\n"
	"		return name.length <= fit ? name : name.substring(0, fit - 2) + \"..\";\n"
	"	}\n"
	"	function place(f, x, w, look) {\n"
	"		f.rect.setAttribute(\"x\", x.toFixed(3));\n"
	"		f.rect.setAttribute(\"width\", w.toFixed(3));\n"
	"		f.text.setAttribute(\"x\", (x + 3).toFixed(3));\n"
	"		f.text.textContent = clip(f.name, w);\n"
	"		f.g.style.display = look === \"hidden\" ? \"none\" : \"\";\n"
	"		f.g.style.opacity = look === \"dim\" ? \"0.5\" : \"\";\n"
	"	}\n"
	"	/* z's subtree fills the width; its ancestors (below it) span it, dimmed. */\n"
	"	function zoom(z) {\n"
	"		var scale = (W - 2 * PAD) / z.w;\n"
	"		frames.forEach(function (f) {\n"
	"			var inside = f.x >= z.x - EPS && f.x + f.w <= z.x + z.w + EPS;\n"
	"			var spans = f.x <= z.x + EPS && f.x + f.w >= z.x + z.w - EPS;\n"
	"			if (f.y >= z.y && spans)\n"
	"				place(f, PAD, W - 2 * PAD, f === z ? \"\" : \"dim\");\n"
	"			else if (f.y < z.y && inside)\n"
	"				place(f, PAD + (f.x - z.x) * scale, f.w * scale, \"\");\n"
	"			else\n"
	"				place(f, f.x, f.w, \"hidden\");\n"
	"		});\n"
	"		resetButton.style.opacity = \"\";\n"
	"	}\n"
	"	function reset() {\n"
	"		frames.forEach(function (f) { place(f, f.x, f.w, \"\"); });\n"
	"		resetButton.style.opacity = \"0.4\";\n"
	"	}\n"
	"	/* The share of the width under matching frames, a match inside a match counted once. */\n"
	"	function share(hits) {\n"
	"		var sum = 0, end = -Infinity;\n"
	"		hits.sort(function (a, b) { return a.x - b.x || b.w - a.w; });\n"
	"		hits.forEach(function (f) {\n"
	"			if (f.x >= end - EPS) {\n"
	"				sum += f.w;\n"
	"				end = f.x + f.w;\n"
	"			}\n"
	"		});\n"
	"		return 100 * sum / (W - 2 * PAD);\n"
	"	}\n"
	"	/* Frames matching pattern (a regular expression, else its text) turn magenta. */\n"
	"	function search(pattern) {\n"
	"		var re = null, hits = [];\n"
	"		if (pattern) {\n"
	"			try {\n"
	"				re = new RegExp(pattern);\n"
	"			} catch (e) {\n"
	"				re = new RegExp(pattern.replace(/[.*+?^${}()|[\\]\\\\]/g, \"\\\\$&\"));\n"
	"			}\n"
	"		}\n"
	"		frames.forEach(function (f) {\n"
	"			var hit = re !== null && !f.root && re.test(f.name);\n"
	"			f.rect.setAttribute(\"fill\", hit ? MATCH : f.fill);\n"
	"			if (hit)\n"
	"				hits.push(f);\n"
	"		});\n"
	"		query = pattern || \"\";\n"
	"		matched.textContent = re ? \"Matched: \" + share(hits).toFixed(1) + \"%\" : \"\";\n"
	"	}\n"
	"	function askSearch() {\n"
	"		var pattern = window.prompt(\"Search frames for (a regular expression; empty to clear):\", query);\n"
	"		if (pattern !== null)\n"
	"			search(pattern);\n"
	"	}\n"
	"\n"
	"	Array.prototype.forEach.call(svg.querySelectorAll(\"g.frame\"), function (g) {\n"
	"		var rect = g.querySelector(\"rect\"), title = g.querySelector(\"title\").textContent;\n"
	"		var f = { g: g, rect: rect, text: g.querySelector(\"text\"), title: title,\n"
	"			name: title.substring(0, title.lastIndexOf(\" (\")),\n"
	"			root: g.classList.contains(\"root\"), fill: rect.getAttribute(\"fill\"),\n"
	"			x: +rect.getAttribute(\"x\"), w: +rect.getAttribute(\"width\"), y: +rect.getAttribute(\"y\") };\n"
	"		frames.push(f);\n"
	"		g.addEventListener(\"click\", function () { zoom(f); });\n"
	"		g.addEventListener(\"mouseover\", function () { details.textContent = f.title; });\n"
	"		g.addEventListener(\"mouseout\", function () { details.textContent = \"\"; });\n"
	"	});\n"
	"	resetButton.addEventListener(\"click\", reset);\n"
	"	svg.querySelector(\".search\").addEventListener(\"click\", askSearch);\n"
	"	document.addEventListener(\"keydown\", function (e) {\n"
	"		if ((e.ctrlKey || e.metaKey) && (e.key === \"f\" || e.key === \"F\")) {\n"
	"			e.preventDefault();\n"
	"			askSearch();\n"
	"		} else if (e.key === \"Escape\") {\n"
	"			reset();\n"
	"			search(\"\");\n"
	"		}\n"
	"	});\n"
	"	reset();\n"
	"})();\n"
	"]]></script>\n";

static int height(const struct graph *g)
{
	return TOP + (int)(g->depth + 1) * FRAME_H + BOTTOM;
}

/* A line of text centred at y, of class what (nothing for an empty one). */
static struct td_error *put_line(FILE *f, const char *what, int y, const char *text)
{
	if (!text || !*text)
		return NULL;
	fprintf(f, "<text class=\"%s\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">", what, WIDTH / 2, y);
	struct td_error *err = put_meta(f, text);
	fputs("</text>\n", f);
	return err;
}

static struct td_error *put_header(FILE *f, const struct graph *g, const struct td_profile_meta *meta)
{
	int h = height(g);
	const char *title = meta && meta->title ? meta->title
			  : g->diff ? "Differential flame graph" : "Flame graph";
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
		"<svg version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\">\n<desc>", WIDTH, h, WIDTH, h);
	struct td_error *err = put_meta(f, meta && meta->exporter ? meta->exporter : "taskdbg " TD_VERSION);
	fprintf(f, "</desc>\n%s<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#eeeeee\"/>\n",
		style, WIDTH, h);
	if (!err)
		err = put_line(f, "title", 24, title);
	if (!err)
		err = put_line(f, "subtitle", 44, meta ? meta->subtitle : NULL);
	if (!err && g->diff) {
		fprintf(f, "<text class=\"legend\" x=\"%d\" y=\"62\" text-anchor=\"middle\">widths: after",
			WIDTH / 2);
		if (g->scaled_to)
			fprintf(f, ", scaled to before's %lld samples", rounded(g->scaled_to));
		fputs("; red: grew, blue: shrank</text>\n", f);
	}
	fprintf(f, "<text class=\"button reset\" x=\"%d\" y=\"24\">Reset Zoom</text>\n"
		"<text class=\"button search\" x=\"%d\" y=\"24\" text-anchor=\"end\">Search</text>\n"
		"<text class=\"details\" x=\"%d\" y=\"%d\"></text>\n"
		"<text class=\"matched\" x=\"%d\" y=\"%d\" text-anchor=\"end\"></text>\n",
		PAD, WIDTH - PAD, PAD, h - 10, WIDTH - PAD, h - 10);
	return err;
}

struct td_error *td_profile_write_flamegraph(FILE *f, const struct td_profile *p,
					     const struct td_profile *before,
					     const struct td_profile_meta *meta)
{
	struct graph g = { 0 };
	struct td_error *err = build(&g, p, before);
	if (!err)
		err = put_header(f, &g, meta);
	for (size_t i = 0; i < g.n && !err; i++) {
		if (drawn(&g, &g.frames[i]))
			put_frame(f, &g, &g.frames[i]);
	}
	if (!err)
		fprintf(f, "%s</svg>\n", script);
	free(g.frames);
	free(g.open);
	return err;
}
