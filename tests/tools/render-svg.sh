#!/bin/sh
# Renders taskdbg's flame graphs with headless Chromium, for a look by eye,
# and runs their script in it: what no unit test can check.
#
#   tests/tools/render-svg.sh BUILD_DIR OUT_DIR
#
# From tests/tools/sample-profile*.folded (td-fold, in BUILD_DIR/tests) it
# writes to OUT_DIR:
#   flame.svg, flame.png                a flame graph as it opens
#   flame-zoom-search.png               after a click on "task prof_split::heavy"
#                                       and a search (Ctrl-F) for heavy_crunch|serde_json
#   diff.svg, diff.png                  the differential flame graph, sample -> after
# and checks, through the DOM Chromium dumps, that the click zoomed (the task
# fills the width, its ancestor "all" dimmed, another task hidden), that the
# search turned frames magenta and said "Matched: 58.8%", that Escape undid
# both, and that the same works with the SVG inline in an HTML page.
# Exits 1 when a check fails. Needs xmllint and chromium
# (apt-get install -y chromium libxml2-utils).
set -eu
build=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

chrome() {
	# dbus and GPU complaints on stderr are expected in a container.
	timeout 120 chromium --headless --no-sandbox --disable-gpu --window-size=1300,700 "$@" 2>/dev/null
}

"$build/tests/td-fold" -t "taskdbg record: 4242 (prof_split)" \
	-s "99 Hz, 6.8 s, 673 samples, perf events" \
	"$here/sample-profile.folded" "$out/flame.svg"
"$build/tests/td-fold" -t "prof_split: before -> after" -s "673 -> 668 samples" \
	-b "$here/sample-profile.folded" "$here/sample-profile-after.folded" "$out/diff.svg"
xmllint --noout "$out/flame.svg" "$out/diff.svg"
chrome --screenshot="$out/flame.png" "file://$out/flame.svg" >/dev/null
chrome --screenshot="$out/diff.png" "file://$out/diff.svg" >/dev/null

# The user's actions, then what they did, in the root svg's data-check.
# ESCAPE: whether to press Escape at the end.
actions() {
	cat <<EOF
(function () {
	var svg = document.querySelector("svg"), said = [], fills = {};
	var frames = Array.prototype.slice.call(svg.querySelectorAll("g.frame"));
	frames.forEach(function (g) { fills[g.querySelector("title").textContent] = g.querySelector("rect").getAttribute("fill"); });
	function frame(title) {
		return frames.filter(function (g) {
			return g.querySelector("title").textContent.indexOf(title + " (") === 0;
		})[0];
	}
	/* Shown or not, its opacity, width, and colour: its own, magenta or another. */
	function look(name, title) {
		var g = frame(title), rect = g.querySelector("rect"), fill = rect.getAttribute("fill");
		said.push(name + "=" + (g.style.display || "shown") + "/" + (g.style.opacity || "1") +
			"/" + rect.getAttribute("width") + "/" +
			(fill === fills[g.querySelector("title").textContent] ? "own"
			 : fill === "rgb(230,0,230)" ? "magenta" : fill));
	}
	frame("task prof_split::heavy").dispatchEvent(new MouseEvent("click", { bubbles: true }));
	window.prompt = function () { return "heavy_crunch|serde_json"; };
	document.dispatchEvent(new KeyboardEvent("keydown", { key: "f", ctrlKey: true, bubbles: true }));
	if ($1)
		document.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
	look("all", "all");
	look("heavy", "task prof_split::heavy");
	look("crunch", "prof_split::heavy_crunch");
	look("light", "task prof_split::light");
	said.push("matched=" + svg.querySelector(".matched").textContent);
	svg.setAttribute("data-check", said.join(" "));
})();
EOF
}

# flame.svg with the actions run by a script of its own, after taskdbg's.
with_actions() {
	sed '$d' "$out/flame.svg"   # </svg>
	printf '<script type="text/ecmascript"><![CDATA[\n'
	actions "$1"
	printf ']]></script>\n</svg>\n'
}

# The data-check that Chromium's DOM ends with, given a page.
check_of() {
	chrome --dump-dom "file://$1" | sed -n 's/.*data-check="\([^"]*\)".*/\1/p'
}

failed=0
expect() {
	if [ "$2" = "$3" ]; then
		echo "ok: $1"
	else
		printf 'FAILED: %s\n  got:  %s\n  want: %s\n' "$1" "$2" "$3"
		failed=1
	fi
}

with_actions false > "$out/flame-zoom-search.svg"
chrome --screenshot="$out/flame-zoom-search.png" "file://$out/flame-zoom-search.svg" >/dev/null
# Of 673 samples, 1180 px: heavy has 358 (627.697 px), heavy_crunch 349 of
# them (1150.335 px zoomed), light 44 (77.147 px); the matches are 349 + 47
# (serde_json).
zoomed="all=shown/0.5/1180.000/own heavy=shown/1/1180.000/own crunch=shown/1/1150.335/magenta light=none/1/77.147/own matched=Matched: 58.8%"
expect "a click zooms, a search matches" "$(check_of "$out/flame-zoom-search.svg")" "$zoomed"

with_actions true > "$out/flame-escape.svg"
expect "Escape undoes both" "$(check_of "$out/flame-escape.svg")" \
	"all=shown/1/1180.000/own heavy=shown/1/627.697/own crunch=shown/1/611.917/own light=shown/1/77.147/own matched="

{
	echo '<!DOCTYPE html><html><body><p>A flame graph inline:</p>'
	sed 1d "$out/flame.svg"   # the XML declaration
	echo '<script>'
	actions false
	echo '</script></body></html>'
} > "$out/inline.html"
expect "inline in HTML" "$(check_of "$out/inline.html")" "$zoomed"

echo "screenshots: $out/flame.png $out/flame-zoom-search.png $out/diff.png"
exit $failed
