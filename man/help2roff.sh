#!/bin/sh
# taskdbg(1), written from the help texts of the taskdbg just built, so the
# page and `--help` cannot drift apart: `taskdbg --help` gives the NAME,
# SYNOPSIS, DESCRIPTION, the list of commands and EXIT STATUS; each
# `taskdbg COMMAND --help` its section under COMMANDS (usage, text, options).
# ENVIRONMENT, FILES and SEE ALSO, which no --help holds, are written here.
#   help2roff.sh TASKDBG OUTPUT VERSION PLUGIN_DIR DETECTOR_DIR
# The help texts follow src/cli's layout: a "usage:" paragraph (further
# forms on lines of their own, longer ones continued on indented lines),
# paragraphs of text, and options as "  --opt ARG   text" (text continued on
# lines indented further). Anything else fails the build, rather than
# writing a page that says less than --help.
set -eu
exe=$1 out=$2 version=$3 plugin_dir=$4 detector_dir=$5
trap 'rm -f "$out.tmp"' EXIT

commands=$("$exe" --help | awk '/^commands:$/ { on = 1; next } on && !NF { exit } on { print $1 }')
if [ -z "$commands" ]; then
  echo "help2roff: no commands listed in \`$exe --help\`" >&2
  exit 1
fi
# A reproducible date: the one the build is pinned to, if any.
date=""
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
fi

{
  echo "@main"
  "$exe" --help || echo "@failed taskdbg --help"
  for c in $commands; do
    echo "@command $c"
    "$exe" "$c" --help || echo "@failed taskdbg $c --help"
  done
} | awk -v version="$version" -v date="$date" '
function fail(why) {
  printf "help2roff: %s\n", why > "/dev/stderr"
  failed = 1
  exit 1
}
# Backslashes escaped; hyphens that start a word (options) are minus signs.
function esc(s,    out, i, c, prev) {
  gsub(/\\/, "\\e", s)
  out = ""
  prev = " "
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (c == "-" && prev !~ /[A-Za-z0-9]/)
      out = out "\\-"
    else
      out = out c
    prev = c
  }
  return out
}
# Running text: `quoted` words in bold; a line that would read as a request is guarded.
function prose(s,    out, n) {
  s = esc(s)
  out = ""
  n = 0
  while (match(s, /`/)) {
    out = out substr(s, 1, RSTART - 1) (n % 2 ? "\\fR" : "\\fB")
    s = substr(s, RSTART + 1)
    n++
  }
  if (n % 2)
    fail("an unmatched ` in: " s)
  out = out s
  if (out ~ /^[.\047]/)
    out = "\\&" out
  return out
}
# Usage and option heads: options and literal words bold, metavariables
# (PATH, SCRIPT.lua) italic; no line break inside [...].
function syn(s,    out, w, c, depth, d, k) {
  out = ""
  depth = 0
  while (s != "") {
    if (match(s, /^[][ |,]+/)) {
      d = substr(s, 1, RLENGTH)
      for (k = 1; k <= length(d); k++) {
        c = substr(d, k, 1)
        if (c == "[")
          depth++
        else if (c == "]")
          depth--
        out = out ((c == " " && depth > 0) ? "\\ " : c)
      }
    } else {
      match(s, /^[^][ |,]+/)
      w = substr(s, 1, RLENGTH)
      c = substr(w, 1, 1)
      out = out ((c ~ /[A-Z]/) ? "\\fI" : "\\fB") esc(w) "\\fR"
    }
    s = substr(s, RLENGTH + 1)
  }
  return out
}
# The "usage:" paragraph of lines[1..n], as .SY blocks into the output string.
function synopsis(    i, l, forms, nf, f, out, sp) {
  if (lines[1] !~ /^usage: taskdbg/)
    fail("a help text does not start with \"usage: taskdbg\": " lines[1])
  nf = 0
  for (i = 1; i <= n && lines[i] != ""; i++) {
    l = lines[i]
    sub(/^usage:/, "", l)
    sub(/^ +/, "", l)
    if (l ~ /^taskdbg( |$)/)
      forms[++nf] = l
    else
      forms[nf] = forms[nf] " " l
  }
  out = ""
  for (f = 1; f <= nf; f++) {
    l = forms[f]
    sub(/^taskdbg */, "", l)
    out = out ".SY taskdbg\n" syn(l) "\n"
  }
  used = i
  return out ".YS\n"
}
# One option: its head ("-o, --output FILE") and its text.
function option(head, text) {
  return ".TP\n" syn(head) "\n" prose(text) "\n"
}
# The paragraphs after the usage: text, and options lists.
function body(    i, l, out, head, text, inopt, para) {
  out = ""
  inopt = 0
  para = 0
  for (i = used; i <= n; i++) {
    l = lines[i]
    if (l == "") {
      if (inopt)
        out = out option(head, text)
      inopt = 0
      para = 0
      continue
    }
    if (l ~ /^  -/) {
      if (inopt)
        out = out option(head, text)
      sub(/^ +/, "", l)
      if (match(l, /  +/)) {
        head = substr(l, 1, RSTART - 1)
        text = substr(l, RSTART + RLENGTH)
      } else {
        head = l
        text = ""
      }
      inopt = 1
    } else if (inopt) {
      if (l !~ /^    /)
        fail("a line after an option is neither indented text nor an option: " l)
      sub(/^ +/, "", l)
      text = (text == "" ? l : text " " l)
    } else {
      if (!para)
        out = out ".PP\n"
      para = 1
      out = out prose(l) "\n"
    }
  }
  if (inopt)
    out = out option(head, text)
  return out
}
function main_page(    i, l, p, desc, name, cmds, codes, k, parts, rest) {
  syn_main = synopsis()
  # The paragraph after the usage: its first sentence names taskdbg.
  name = lines[used + 1]
  sub(/\.$/, "", name)
  desc = ""
  cmds = ""
  exits = ""
  for (i = used + 2; i <= n; i++) {
    l = lines[i]
    if (l == "commands:") {
      # Tags as wide as the longest command: each summary on the line of its command.
      k = 0
      for (p = i + 1; p <= n && lines[p] != ""; p++) {
        l = lines[p]
        sub(/^ +/, "", l)
        if (index(l, " ") - 1 > k)
          k = index(l, " ") - 1
      }
      cmds = ".PP\nThe commands (each has its section under\n.BR COMMANDS ):\n"
      for (i++; i <= n && lines[i] != ""; i++) {
        l = lines[i]
        sub(/^ +/, "", l)
        match(l, /  +/)
        cmds = cmds ".TP " (k + 2) "n\n.B " substr(l, 1, RSTART - 1) "\n" prose(substr(l, RSTART + RLENGTH)) "\n"
      }
      desc = desc cmds ".PP\n"
      continue
    }
    if (l ~ /^Exit codes: /) {
      sub(/^Exit codes: /, "", l)
      sub(/\.$/, "", l)
      k = split(l, parts, /, /)
      for (p = 1; p <= k; p++) {
        if (parts[p] !~ /^[0-9]+ /)
          fail("an exit code is not \"N meaning\": " parts[p])
        rest = parts[p]
        sub(/^[0-9]+ /, "", rest)
        exits = exits ".TP\n.B " substr(parts[p], 1, index(parts[p], " ") - 1) "\n" prose(rest) "\n"
      }
      continue
    }
    if (l == "") {
      desc = desc ".PP\n"
      continue
    }
    desc = desc prose(l) "\n"
  }
  if (exits == "")
    fail("no \"Exit codes:\" line in taskdbg --help")
  if (cmds == "")
    fail("no \"commands:\" list in taskdbg --help")
  # A blank line before "commands:", then the .PP of the list: one paragraph break.
  while (sub(/\.PP\n\.PP\n/, ".PP\n", desc))
    ;
  printf ".TH TASKDBG 1 \"%s\" \"taskdbg %s\" \"User Commands\"\n", date, version
  # No hyphens inside names (DEBUGINFOD_URLS, --greedy-threshold), no stretched
  # spaces; HY is what .YS restores.
  printf ".nr HY 0\n.nh\n.ad l\n"
  printf ".SH NAME\ntaskdbg \\- %s\n", prose(tolower(substr(name, 1, 1)) substr(name, 2))
  printf ".SH SYNOPSIS\n%s", syn_main
  printf ".SH DESCRIPTION\n%s", prose(name ".") "\n" desc
  printf ".SH COMMANDS\n"
}
function command_page() {
  printf ".SS %s\n", section
  printf "%s", synopsis()
  printf "%s", body()
}
function flush() {
  if (section == "main")
    main_page()
  else if (section != "")
    command_page()
  n = 0
}
/^@main$/ { flush(); section = "main"; next }
/^@command / { flush(); section = substr($0, 10); next }
/^@failed / { fail(substr($0, 9) " failed") }
/^@/ { fail("a help line starts with @: " $0) }
{ lines[++n] = $0 }
END {
  if (failed)
    exit 1
  flush()
  printf ".SH EXIT STATUS\n%s", exits
}
' > "$out.tmp"

cat >> "$out.tmp" <<EOF
.SH ENVIRONMENT
.TP
.B TASKDBG_PLUGIN_PATH
Directories (\fB:\fR\-separated) searched for runtime plugins after
\fB\-\-plugins\fR and before taskdbg's own.
.TP
.B TASKDBG_DETECTORS
The directory of the detectors of \fBdiagnose\fR (and of the sessions' and
\fBtop\fR's diagnoses), instead of taskdbg's own.
.TP
.B \\%DEBUGINFOD_URLS
Servers (space\-separated) that taskdbg asks, through elfutils'
debuginfod client, for debug info and executables missing on this machine
(see
.BR debuginfod (8)),
before a live target is stopped; fetched files are kept in elfutils' cache
\\%(\fBDEBUGINFOD_CACHE_PATH\fR, else \fI~/.cache/debuginfod_client\fR).
.TP
.B \\%DEBUGINFOD_TIMEOUT
Seconds a connection to a debuginfod server may go without an answer
(taskdbg's default: 10).
.TP
.B \\%TASKDBG_DEBUGINFOD_MAXTIME
Seconds all debuginfod fetches of one run may take together (default 60).
.TP
.B TASKDBG_CORE_MAX
The largest size a compressed core (zstd, xz, lz4) is decompressed to:
bytes, or with a \fBK\fR, \fBM\fR, \fBG\fR or \fBT\fR suffix (default \fB32G\fR).
.TP
.B TMPDIR
Where a compressed core is decompressed, into a file that has no name
(default \fI/var/tmp\fR).
.TP
.B TASKDBG_JOURNAL_DIR
A directory of journal files to find a core's systemd\-coredump entry in
(its unit and command line), as \fBjournalctl \-D\fR; by default the local
journal, asked only for a core with systemd's attributes or under
\fI/var/lib/systemd/coredump/\fR.
.TP
.B TASKDBG_DEBUG
When set, a failing plugin, detector or script reports its Lua stack too.
.TP
.B TASKDBG_TIMING
When set, each phase's time (stop, unwind, walk) is printed on standard error.
.TP
.BR PAGER ", " NO_COLOR
The pager of long answers in a session (\fBless \-FRX\fR when unset); no
colour when \fBNO_COLOR\fR is set.
.TP
.B XDG_STATE_HOME
Sessions keep their command history in \fI\$XDG_STATE_HOME/taskdbg/history\fR
(\fI~/.local/state/taskdbg/history\fR when unset).
.SH FILES
.TP
.I $plugin_dir
Runtime plugins (\fItokio.lua\fR, its modules in \fItokio/\fR).
.TP
.I $detector_dir
The detectors of \fBdiagnose\fR, one Lua file each.
.PP
An installed taskdbg looks for both relative to its own binary first
(\fIBINDIR/../share/taskdbg\fR), so an installed tree can be moved.
A taskdbg run from the build directory it was built in uses the source
tree's \fIplugins/\fR and \fIdetectors/\fR instead.
.SH SEE ALSO
.BR eu\-stack (1),
.BR gdb (1),
.BR coredumpctl (1),
.BR debuginfod (8)
.PP
The guide, the Lua API and the command-line contract:
\fIdocs/usage.md\fR, \fIdocs/lua\-api.md\fR, \fIdocs/cli\-contract.md\fR in
taskdbg's source.
EOF
mv "$out.tmp" "$out"
