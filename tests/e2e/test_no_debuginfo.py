"""`taskdbg bt` on programs without debug info, checked against eu-stack on the
same process (issue #15, item 1), and bt's folded text (item 5).

Without DWARF, frames are named from the symbol tables (.symtab, .dynsym) as
name+0xOFFSET, or `?? (module+0xOFFSET)` where there is no symbol; one note on
stderr says which modules lack debug info. What reads the runtime (tasks,
diagnose) still needs the executable's DWARF and says so (exit 2).

Targets: the C fixture threads.c built without -g (symbol table kept) and
stripped; the Rust fixture `stacks` copied and stripped the two ways cargo
does: `objcopy --strip-debug` (strip = "debuginfo": .symtab kept) and
`strip --strip-all` (strip = true: only .dynsym).
"""
import re
import shutil
import subprocess

import pytest

from conftest import (C_FIXTURES, RUSTC_1_63, TASKDBG, Target, assert_untouched, bt_json, gcore, run, started,
                      thread_by, thread_with_function)

ADVICE = ("their frames are named from symbol tables (function+offset), without source lines; "
          "install their -dbgsym/-dbg packages, set DEBUGINFOD_URLS, or rebuild with debug info "
          "(Rust: debug = true, no strip; C: -g)")


def eu_stack(*args):
    """eu-stack's stacks: {tid: [(pc, name or None), ...]}, innermost first."""
    r = subprocess.run(["eu-stack", *map(str, args)], capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stderr
    threads, tid = {}, None
    for line in r.stdout.splitlines():
        m = re.match(r"TID (\d+):$", line)
        if m:
            tid = int(m.group(1))
            threads[tid] = []
            continue
        m = re.match(r"#\d+\s+0x([0-9a-f]+)(?:\s+(\S.*))?$", line)
        if m and tid is not None:
            threads[tid].append((int(m.group(1), 16), m.group(2)))
    assert threads, r.stdout
    return threads


LEGACY_ESCAPES = {"SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(", "RP": ")", "C": ","}


def rust_name(name):
    """eu-stack's name as taskdbg shows it: demangled (some come mangled, some
    with rustc's legacy $..$ escapes left in), no hashes."""
    if name.startswith(("_ZN", "_R")):
        name = subprocess.run(["c++filt", "-s", "rust", name.split(".llvm.")[0]], capture_output=True,
                              text=True, check=True).stdout.strip()
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    name = re.sub(r"(^|::)_\$", r"\1$", name)
    name = re.sub(r"\$u([0-9a-f]+)\$", lambda m: chr(int(m.group(1), 16)), name)
    name = re.sub(r"\$([A-Z]+)\$", lambda m: LEGACY_ESCAPES.get(m.group(1), m.group(0)), name)
    name = name.replace("..", "::")
    return re.sub(r"\[[0-9a-f]+\]", "", name)


def physical(thread):
    """The physical frames (inline frames left out) of a `bt --json` thread."""
    return [f for f in thread["frames"] if not f["inlined"]]


def check_against_eu_stack(thread, eu_frames, module):
    """Same physical frames (pcs) as eu-stack, in order, and the same names for module's frames."""
    mine = physical(thread)
    assert [int(f["pc"], 16) for f in mine] == [pc for pc, _ in eu_frames], \
        (thread["tid"], [f["pc"] for f in mine], [hex(pc) for pc, _ in eu_frames])
    for f, (pc, name) in zip(mine, eu_frames):
        if f["module"] == module:
            assert f["function"] == (rust_name(name) if name else None), (f, name)


def names_in(thread, module):
    return [f["function"] for f in physical(thread) if f["module"] == module]


def load_base(pid, path):
    """Where the first segment of path is mapped in pid (a PIE's load bias)."""
    for line in open(f"/proc/{pid}/maps"):
        fields = line.split()
        if len(fields) >= 6 and fields[5] == str(path) and int(fields[2], 16) == 0:
            return int(fields[0].split("-")[0], 16)
    raise AssertionError(f"{path} not mapped in {pid}")


def symbol_address(path, name):
    out = subprocess.run(["nm", "--defined-only", str(path)], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        addr, _, sym = line.split(maxsplit=2)
        if sym == name:
            return int(addr, 16)
    raise AssertionError(f"no symbol {name} in {path}")


def check_note(stderr, exe):
    """One line on stderr names the modules without debug info (the executable among them)."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    m = re.fullmatch(r"note: no debug info for (.+): " + re.escape(ADVICE), lines[0])
    assert m, lines[0]
    assert str(exe) in m.group(1).split(", ")


# ---- C: threads.c without -g, and stripped ----

def test_c_symbol_table_live():
    exe = C_FIXTURES / "fixture-threads-nodwarf"
    target = Target([exe])
    try:
        doc = bt_json(target.pid)
        eu = eu_stack("-p", target.pid)
        main = thread_by(doc, tid=target.pid)
        chain = thread_by(doc, name="chain")
        for t in doc["threads"]:
            check_against_eu_stack(t, eu[t["tid"]], exe.name)
        assert names_in(main, exe.name) == ["main", "_start"]
        assert names_in(chain, exe.name) == ["level_three", "level_two", "level_one", "chain_main"]
        assert names_in(thread_by(doc, name="reader"), exe.name) == ["reader_main"]
        # The offset: from the symbol's address, where the program is loaded.
        f = physical(main)[1]
        assert f["function"] == "main" and f["file"] is None and f["line"] is None
        offset = int(f["offset"], 16)
        assert int(f["pc"], 16) - offset == load_base(target.pid, exe) + symbol_address(exe, "main")
        assert 0 < offset < 0x1000
        # DWARF-named frames carry no offset.
        assert all(g["offset"] is None for t in doc["threads"] for g in t["frames"] if g["file"])

        r = run("bt", target.pid)
        assert r.returncode == 0, r.stderr
        assert re.search(rf"^  #1 +{f['pc'][:2]}0*{f['pc'][2:]} in main\+0x{offset:x} from fixture-threads-nodwarf$",
                         r.stdout, re.M), r.stdout
        for name in ("level_three", "level_two", "level_one", "chain_main"):
            assert re.search(rf"^  #\d+ +0x[0-9a-f]{{16}} in {name}\+0x[0-9a-f]+ from fixture-threads-nodwarf$",
                             r.stdout, re.M), r.stdout
        check_note(r.stderr, exe)
        assert_untouched(target.pid)
    finally:
        target.stop()


def minidebuginfo_copy(exe, directory):
    """exe stripped of everything, its function symbols kept in an xz-compressed
    .gnu_debugdata (MiniDebugInfo, as Fedora ships), made as Fedora's
    find-debuginfo does."""
    out = directory / exe.name
    shutil.copy(exe, out)

    def symbols(*args):
        r = subprocess.run(["nm", *args, "--format=posix", "--defined-only", out], capture_output=True, text=True,
                           check=True)
        return {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()}
    dynamic = symbols("-D")
    keep = sorted(name for name, kind in symbols().items() if kind in "Tt" and name not in dynamic)
    (directory / "keep").write_text("\n".join(keep) + "\n")
    mini = directory / "mini"
    subprocess.run(["objcopy", "--only-keep-debug", out, mini], check=True)
    subprocess.run(["objcopy", "-S", "--remove-section", ".comment", f"--keep-symbols={directory / 'keep'}", mini],
                   check=True)
    subprocess.run(["xz", "-f", mini], check=True)
    subprocess.run(["strip", "--strip-all", "-R", ".comment", out], check=True)
    subprocess.run(["objcopy", f"--add-section=.gnu_debugdata={mini}.xz", out], check=True)
    return out


def test_c_minidebuginfo(tmp_path):
    """No .symtab: the names come from .gnu_debugdata (libdwfl reads it with liblzma)."""
    exe = minidebuginfo_copy(C_FIXTURES / "fixture-threads-nodwarf", tmp_path)
    sections = subprocess.run(["readelf", "-S", exe], capture_output=True, text=True, check=True).stdout
    assert ".gnu_debugdata" in sections and ".symtab" not in sections
    target = Target([exe])
    try:
        doc = bt_json(target.pid)
        eu = eu_stack("-p", target.pid)
        for t in doc["threads"]:
            check_against_eu_stack(t, eu[t["tid"]], exe.name)
        assert names_in(thread_by(doc, tid=target.pid), exe.name) == ["main", "_start"]
        assert names_in(thread_by(doc, name="chain"), exe.name) == ["level_three", "level_two", "level_one",
                                                                    "chain_main"]
        r = run("bt", target.pid)
        assert r.returncode == 0, r.stderr
        assert re.search(r"^  #1 +0x[0-9a-f]{16} in main\+0x[0-9a-f]+ from fixture-threads-nodwarf$", r.stdout, re.M)
        check_note(r.stderr, exe)
        assert_untouched(target.pid)
    finally:
        target.stop()


def check_stripped_c(doc, eu, exe, base):
    for t in doc["threads"]:
        check_against_eu_stack(t, eu[t["tid"]], exe.name)
        mine = [f for f in physical(t) if f["module"] == exe.name]
        assert mine, t
        for f in mine:
            # No name: the offset is into the module, from where it is loaded.
            assert f["function"] is None
            assert int(f["pc"], 16) - int(f["offset"], 16) == base


def test_c_stripped_live_and_core(tmp_path):
    exe = C_FIXTURES / "fixture-threads-nodebug"
    target = Target([exe])
    try:
        doc = bt_json(target.pid)
        base = load_base(target.pid, exe)
        check_stripped_c(doc, eu_stack("-p", target.pid), exe, base)
        r = run("bt", target.pid)
        assert r.returncode == 0, r.stderr
        f = physical(thread_by(doc, tid=target.pid))[1]
        assert re.search(rf"^  #1 +0x0*{f['pc'][2:]} in \?\? \(fixture-threads-nodebug\+{f['offset']}\)$",
                         r.stdout, re.M), r.stdout
        check_note(r.stderr, exe)
        core = gcore(target.pid, tmp_path)
        assert_untouched(target.pid)
    finally:
        target.stop()
    doc_core = bt_json(core)
    check_stripped_c(doc_core, eu_stack("--core", core, "-e", exe), exe, base)
    assert [[(f["pc"], f["function"]) for f in t["frames"]] for t in doc_core["threads"]] == \
        [[(f["pc"], f["function"]) for f in t["frames"]] for t in doc["threads"]]


# ---- Rust: the `stacks` fixture stripped as cargo strips ----

def stripped_copy(rust_bin, directory, how):
    directory.mkdir()
    exe = directory / "stacks"
    if how == "debuginfo":
        subprocess.run(["objcopy", "--strip-debug", rust_bin / "stacks", exe], check=True)
    else:
        subprocess.run(["strip", "--strip-all", "-o", exe, rust_bin / "stacks"], check=True)
    shutil.copymode(rust_bin / "stacks", exe)
    return exe


@pytest.fixture(scope="module")
def stripped_dir(tmp_path_factory, rust_bin):
    d = tmp_path_factory.mktemp("stripped")
    return {"debuginfo": stripped_copy(rust_bin, d / "debuginfo", "debuginfo"),
            "all": stripped_copy(rust_bin, d / "all", "all")}


@pytest.fixture(scope="module")
def strip_debug(stripped_dir):
    yield from started([stripped_dir["debuginfo"]])


@pytest.fixture(scope="module")
def strip_all(stripped_dir):
    yield from started([stripped_dir["all"]])


def check_strip_debug(doc):
    """Names from .symtab: the fixture's own functions and tokio's, demangled."""
    main = thread_by(doc, tid=doc["target"]["pid"])
    names = names_in(main, "stacks")
    assert "stacks::main" in names
    assert "tokio::runtime::runtime::Runtime::block_on" in names
    # Without DWARF no inline frames: the async fns inlined into transfer's poll are one frame
    # (rustc 1.63: into the poll of the GenFuture that wraps it, which .symtab names).
    worker = thread_with_function(doc, "<core::future::from_generator::GenFuture<T> as core::future::future::Future>::poll"
                                  if RUSTC_1_63 else "stacks::transfer::{{closure}}")
    assert "tokio::runtime::scheduler::multi_thread::worker::run" in names_in(worker, "stacks")
    assert all(f["file"] is None for t in doc["threads"] for f in t["frames"] if f["module"] == "stacks")


def test_rust_strip_debuginfo_live(strip_debug, stripped_dir):
    exe = stripped_dir["debuginfo"]
    doc = bt_json(strip_debug.pid)
    assert doc["target"]["exe"] == str(exe)
    eu = eu_stack("-p", strip_debug.pid)
    for t in doc["threads"]:
        check_against_eu_stack(t, eu[t["tid"]], "stacks")
    check_strip_debug(doc)
    r = run("bt", strip_debug.pid)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^  #\d+ +0x[0-9a-f]{16} in stacks::main\+0x[0-9a-f]+ from stacks$", r.stdout, re.M)
    check_note(r.stderr, exe)
    assert_untouched(strip_debug.pid)


def test_rust_strip_all_live(strip_all, stripped_dir):
    exe = stripped_dir["all"]
    doc = bt_json(strip_all.pid)
    eu = eu_stack("-p", strip_all.pid)
    base = load_base(strip_all.pid, exe)
    for t in doc["threads"]:
        check_against_eu_stack(t, eu[t["tid"]], "stacks")
        for f in physical(t):
            if f["module"] == "stacks":
                assert f["function"] is None and int(f["pc"], 16) - int(f["offset"], 16) == base
    # libc's frames keep their names (from its DWARF or its .dynsym).
    worker = [t for t in doc["threads"] if t["syscall"] == "clock_nanosleep"]
    assert worker and all("nanosleep" in (physical(t)[0]["function"] or "") for t in worker)
    r = run("bt", strip_all.pid)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^  #\d+ +0x[0-9a-f]{16} in \?\? \(stacks\+0x[0-9a-f]+\)$", r.stdout, re.M)
    check_note(r.stderr, exe)
    assert_untouched(strip_all.pid)


@pytest.mark.parametrize("command", [["tasks"], ["diagnose"], ["top", "--json", "--once"], ["run", "SCRIPT"]],
                         ids=lambda c: c[0])
def test_runtime_commands_need_dwarf(strip_debug, stripped_dir, command, tmp_path):
    script = tmp_path / "s.lua"
    script.write_text("return 0\n")
    r = run(*[script if a == "SCRIPT" else a for a in command], strip_debug.pid)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr == (
        f"taskdbg: {stripped_dir['debuginfo']} has no debug info (DWARF), which taskdbg needs to find the "
        "runtime's tasks and read their values (`taskdbg bt` works without it: it names functions from "
        "the symbol table)\n"
        "Rebuild it with debug info (Rust: `[profile.release] debug = true`, and no `strip`; C: -g), "
        "or install its separate debug file (under /usr/lib/debug, found by build-id). "
        "Or set DEBUGINFOD_URLS to a debuginfod server that has it: taskdbg fetches it from there.\n")
    # Refused before the target was stopped.
    assert_untouched(strip_debug.pid)


def test_rust_stripped_core(strip_debug, stripped_dir, tmp_path):
    exe = stripped_dir["debuginfo"]
    core = gcore(strip_debug.pid, tmp_path)
    live = bt_json(strip_debug.pid)
    doc = bt_json(core)
    assert doc["target"]["kind"] == "core" and doc["target"]["exe"] == str(exe)
    check_strip_debug(doc)
    eu = eu_stack("--core", core, "-e", exe)
    for t in doc["threads"]:
        check_against_eu_stack(t, eu[t["tid"]], "stacks")
    # The threads sleep in place: the same stacks as the live process.
    assert [[f["function"] for f in t["frames"]] for t in doc["threads"]] == \
        [[f["function"] for f in t["frames"]] for t in live["threads"]]
    r = run("tasks", core)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"taskdbg: {exe} has no debug info (DWARF), which taskdbg needs")


# ---- folded stacks (item 5), on the fixture with its debug info ----

FOLD = re.compile(r"^  \.\.\. (\d+) frames in (.+)$")
FRAME = re.compile(r"^  #(\d+) +0x[0-9a-f]{16} in ")
FRAME_NUMBER = re.compile(r"^  #(\d+) ")   # the CLI's frame lines and the REPL's


def text_threads(out):
    """{tid: [lines of its stack]} of bt's text."""
    threads = {}
    for block in out.split("\nthread ")[1:]:
        lines = block.splitlines()
        threads[int(lines[0].split()[0])] = lines[1:]
    return threads


def crate_of(frame):
    """The crate a frame's absolute source path names (None: the path does not say)."""
    # Debian's rustc sources: /usr/src/rustc-1.63.0/library/core/...
    m = re.search(r"/rustc-\d+\.\d+\.\d+[^/]*/library/(\w+)/", frame["file"] or "")
    if m:
        return m.group(1)
    m = re.search(r"/([A-Za-z0-9_-]+?)-\d+\.\d+\.\d+[^/]*/", frame["file"] or "")
    if m:
        return m.group(1)
    m = re.search(r"^/rustc/[0-9a-f]+/library/(\w+)/", frame["file"] or "")
    return m.group(1) if m else None


def test_folded_text(rust_stacks):
    doc = bt_json(rust_stacks.pid)
    r = run("bt", rust_stacks.pid)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    texts = text_threads(r.stdout)
    assert sorted(texts) == sorted(t["tid"] for t in doc["threads"])
    folded_tokio = False
    for t in doc["threads"]:
        frames, lines, i = t["frames"], texts[t["tid"]], 0
        for line in lines:
            fold, frame = FOLD.match(line), FRAME.match(line)
            if frame:
                # Frame numbers are the real indices: nothing skipped silently.
                assert int(frame.group(1)) == i, (t["tid"], line)
                i += 1
            elif fold:
                n, crates = int(fold.group(1)), fold.group(2).split(", ")
                hidden = frames[i:i + n]
                # Runs of two or more dependency frames, never #0, never the program's own.
                assert n >= 2 and i > 0 and len(hidden) == n
                assert not any(f["own"] for f in hidden)
                # Not the frame the program's own code called either.
                assert i + n >= len(frames) or not frames[i + n]["own"]
                assert {crate_of(f) for f in hidden} - {None} <= set(crates), (line, hidden)
                folded_tokio |= "tokio" in crates
                i += n
            else:
                assert line.startswith("  ("), line   # "(stack ends early: ...)"
        assert i == len(frames), (t["tid"], i, len(frames))
        for j, f in enumerate(frames):
            if f["own"]:
                assert any(FRAME.match(l) and int(FRAME.match(l).group(1)) == j for l in lines)
    assert folded_tokio
    worker = thread_with_function(doc, "stacks::ledger::settle::{async_fn#0}")
    text = "\n".join(texts[worker["tid"]])
    for name in ("stacks::ledger::settle::{async_fn#0}", "stacks::audit::{async_fn#0}", "stacks::transfer::{async_fn#0}"):
        assert f"in {name} [inlined] at " in text or f"in {name} at " in text, text
    assert re.search(r"^  \.\.\. \d+ frames in tokio", text, re.M), text

    full = run("bt", "--full", rust_stacks.pid)
    assert full.returncode == 0, full.stderr
    full_threads = text_threads(full.stdout)
    for t in doc["threads"]:
        numbers = [int(FRAME.match(l).group(1)) for l in full_threads[t["tid"]] if FRAME.match(l)]
        assert numbers == list(range(len(t["frames"])))
        assert not any(FOLD.match(l) for l in full_threads[t["tid"]])
    assert len(r.stdout.splitlines()) * 2 < len(full.stdout.splitlines())
    assert_untouched(rust_stacks.pid)


def test_separate_debug_file_by_debuglink(tmp_path):
    """A stripped executable whose DWARF sits beside it (.gnu_debuglink): DWARF
    names and lines, no note, and tasks can read it."""
    exe = tmp_path / "threads"
    debug = tmp_path / "threads.debug"
    subprocess.run(["objcopy", "--only-keep-debug", C_FIXTURES / "fixture-threads", debug], check=True)
    subprocess.run(["objcopy", "--strip-debug", f"--add-gnu-debuglink={debug}", C_FIXTURES / "fixture-threads", exe],
                   check=True)
    shutil.copymode(C_FIXTURES / "fixture-threads", exe)
    target = Target([exe])
    try:
        r = run("bt", target.pid)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert re.search(r"^  #\d+ +0x[0-9a-f]{16} in level_two at \S*threads\.c:\d+$", r.stdout, re.M), r.stdout
        doc = bt_json(target.pid)
        ours = [f for t in doc["threads"] for f in t["frames"] if f["function"] in
                ("main", "reader_main", "sleeper_main", "level_three", "level_two", "level_one", "chain_main")]
        assert len(ours) == 7 and all(f["offset"] is None and f["file"] for f in ours), ours
        r = run("tasks", target.pid)
        assert r.returncode == 0, r.stderr
        assert_untouched(target.pid)
    finally:
        target.stop()


def session(core, line):
    """One command of `taskdbg core CORE` read from a pipe: its output."""
    r = subprocess.run([str(TASKDBG), "core", str(core)], input=line + "\n", capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_folded_in_session(rust_stacks, tmp_path):
    """The REPL's bt folds the same runs as `taskdbg bt` (report/bt.c decides); `bt full` shows all."""
    core = gcore(rust_stacks.pid, tmp_path)
    doc = bt_json(core)
    cli = text_threads(run("bt", core).stdout)
    repl = text_threads("\n" + session(core, "bt"))
    assert sorted(repl) == sorted(cli)
    for tid, lines in cli.items():
        def shape(ls):
            return [FOLD.match(l).group(0) if FOLD.match(l) else int(FRAME_NUMBER.match(l).group(1))
                    for l in ls if FOLD.match(l) or FRAME_NUMBER.match(l)]
        assert shape(repl[tid]) == shape(lines), (tid, repl[tid], lines)
        assert any(FOLD.match(l) for l in lines)
    full = text_threads("\n" + session(core, "bt full"))
    for t in doc["threads"]:
        numbers = [int(FRAME_NUMBER.match(l).group(1)) for l in full[t["tid"]] if FRAME_NUMBER.match(l)]
        assert numbers == list(range(len(t["frames"])))
