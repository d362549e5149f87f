"""`taskdbg record`: task-rooted flame graphs of live processes.

prof_split runs two tasks whose CPU is 3:1 by construction (heavy_crunch does
three times light_crunch's iterations each tick, in step): the profile must
root the samples in `task prof_split::heavy` and `task prof_split::light` in
that ratio, with each task's own functions under it, in both sampling modes.
prof_fanout drives 2000 items from one task through a FuturesUnordered, or
spawns them as 2000 tasks: the diff of the two shows the growth under
FuturesUnordered. The three formats are checked for shape (folded stacks,
speedscope's schema, well-formed SVG), and the target is left running and
untraced after every recording, Ctrl-C included.
"""
import json
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import TASKDBG, Target, assert_untouched, gcore, run, started

FOLDED_LINE = re.compile(r"^(.+) (\d+)$")
SUMMARY = re.compile(r"^record: (perf events|ptrace stops), (\d+) Hz asked, (\d+\.\d) Hz achieved(?: per CPU-second)?, "
                     r"(\d+) samples(?: \((\d+) idle left out\))?, (\d+) lost(?:, \d+ stacks cut short)?(?:, \d+ threads not sampled)?"
                     r"(?:, stops: median (\d+\.\d\d) ms, longest (\d+\.\d\d) ms)?, (\d+\.\d\d) s$", re.M)
SVG = "{http://www.w3.org/2000/svg}"


def folded(path):
    """A folded-stacks file as [(frames, count)]: every line `f;f;f COUNT`."""
    stacks = []
    for line in path.read_text().splitlines():
        m = FOLDED_LINE.match(line)
        assert m, f"not a folded stack: {line!r}"
        frames = m.group(1).split(";")
        assert all(frames), line
        stacks.append((frames, int(m.group(2))))
    return stacks


def by_root(stacks):
    roots = {}
    for frames, n in stacks:
        roots[frames[0]] = roots.get(frames[0], 0) + n
    return roots


def record(pid, out, *extra, env=None):
    """Records pid into out; returns the summary line's fields."""
    r = run("record", *extra, "-o", out, pid, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    m = SUMMARY.search(r.stderr)
    assert m, r.stderr
    assert r.stderr.rstrip().endswith(f"samples)"), r.stderr
    assert f"wrote {out} (" in r.stderr
    return m, r


@pytest.fixture(scope="module")
def split(rust_bin):
    yield from started([rust_bin / "prof_split"])


def check_split(stacks, rel=0.15, own_share=0.9):
    """3:1 between the two tasks, each with its own functions under it, nothing of the other's."""
    roots = by_root(stacks)
    heavy, light = roots.get("task prof_split::heavy", 0), roots.get("task prof_split::light", 0)
    assert light > 100, roots
    assert 3 * (1 - rel) <= heavy / light <= 3 * (1 + rel), roots
    own = {"task prof_split::heavy": ("prof_split::heavy_crunch", "prof_split::light_crunch"),
           "task prof_split::light": ("prof_split::light_crunch", "prof_split::heavy_crunch")}
    for root, (mine, theirs) in own.items():
        under = [(f, n) for f, n in stacks if f[0] == root]
        assert all(theirs not in f for f, _ in under), root
        # Nearly all of a task's time is in its crunch loop, under its async fn.
        in_mine = sum(n for f, n in under if mine in f)
        assert in_mine >= own_share * sum(n for _, n in under), under
        for f, _ in under:
            if mine in f:
                fn = root[len("task "):]
                assert f[1] == f"{fn}::{{async_fn#0}}", f
    return heavy / light


def test_split_perf_events(split, tmp_path):
    out = tmp_path / "split.folded"
    m, _ = record(split.pid, out, "--mode", "perf", "--rate", "499", "--duration", "4s")
    assert m.group(1) == "perf events"
    assert int(m.group(6)) == 0   # nothing lost at this rate
    check_split(folded(out))
    assert_untouched(split.pid)


def test_split_ptrace_stops(split, tmp_path):
    out = tmp_path / "split.folded"
    m, _ = record(split.pid, out, "--mode", "ptrace", "--rate", "249", "--duration", "10s")
    assert m.group(1) == "ptrace stops"
    assert m.group(7) and m.group(8)
    assert int(m.group(5)) > 0   # parked workers' samples were left out
    # Stops sample wall time in a poll, not CPU: a task waiting for a core or at its barrier
    # counts, and the stops stretch the polls they land in (docs/design.md, Sampling). The
    # split is CPU's within 15% in perf mode (above); here it was 2.3-4.6 on 2 cores, so
    # this checks that each task gets its own samples, in the right order of size.
    check_split(folded(out), rel=0.6, own_share=0.5)
    assert_untouched(split.pid)


def test_fallback_to_ptrace(split, tmp_path):
    """Where the kernel refuses perf events, auto says so and samples with ptrace stops."""
    out = tmp_path / "split.folded"
    m, r = record(split.pid, out, "--duration", "1s", env={"TASKDBG_TEST_NO_PERF": "1"})
    assert m.group(1) == "ptrace stops"
    assert "record: perf events not used: perf events are not permitted (TASKDBG_TEST_NO_PERF is set)\n" in r.stderr
    r = run("record", "--mode", "perf", "--duration", "1s", "-o", out, split.pid, env={"TASKDBG_TEST_NO_PERF": "1"})
    assert r.returncode == 2 and "perf events are not permitted" in r.stderr, r.stderr


def test_idle_samples(split, tmp_path):
    """--idle keeps parked threads' samples, each ending in the call it waits in."""
    out = tmp_path / "idle.folded"
    m, r = record(split.pid, out, "--idle", "--duration", "1s")
    assert m.group(1) == "ptrace stops" and m.group(5) is None
    assert "--idle needs every thread sampled" in r.stderr
    stacks = folded(out)
    roots = by_root(stacks)
    # The main thread waits in block_on for the whole second.
    main = [f for f, _ in stacks if f[0] == "[thread prof_split]"]
    assert main and all(f[-1] == "[syscall futex]" for f in main), main
    # Every stop samples every thread: the two workers' samples are twice the main thread's.
    workers = sum(n for root, n in roots.items() if root != "[thread prof_split]")
    assert roots["[thread prof_split]"] > 20 and workers == 2 * roots["[thread prof_split]"], roots
    assert any(f[0] == "[scheduler]" and f[-1].startswith("[syscall ") for f, _ in stacks), roots


def test_formats(split, tmp_path):
    """.json is speedscope's format; .svg a well-formed, self-contained SVG."""
    out = tmp_path / "split.json"
    record(split.pid, out, "--duration", "2s", "--rate", "199")
    doc = json.loads(out.read_text())
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = doc["shared"]["frames"]
    assert all(set(f) >= {"name"} and isinstance(f["name"], str) for f in frames)
    (profile,) = doc["profiles"]
    assert profile["type"] == "sampled" and profile["unit"] == "none"
    assert len(profile["samples"]) == len(profile["weights"]) > 0
    assert all(0 <= i < len(frames) for s in profile["samples"] for i in s)
    assert profile["startValue"] == 0 and profile["endValue"] == sum(profile["weights"])
    names = {frames[s[0]]["name"] for s in profile["samples"]}
    assert {"task prof_split::heavy", "task prof_split::light"} <= names

    svg = tmp_path / "split.svg"
    record(split.pid, svg, "--duration", "2s", "--rate", "199")
    subprocess.run(["xmllint", "--noout", str(svg)], check=True)   # tests/setup-deps installs it
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG}svg"
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert any(t.startswith("task prof_split::heavy (") for t in titles), titles[:20]
    assert any(t.startswith("prof_split::heavy_crunch (") for t in titles)
    text = svg.read_text()
    assert "http://" not in text.replace("http://www.w3.org/", "")  # nothing fetched from a network
    assert "<script" in text


def test_ctrl_c_writes_the_file(split, tmp_path):
    out = tmp_path / "cut.folded"
    p = subprocess.Popen([str(TASKDBG), "record", "--duration", "0", "-o", str(out), str(split.pid)],
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert SUMMARY.search(err), err
    assert "task prof_split::heavy" in by_root(folded(out))
    assert_untouched(split.pid)


def test_errors(split, tmp_path, rust_bin):
    r = run("record", "-o", tmp_path / "x.png", split.pid)
    assert r.returncode == 64 and "FILE.folded" in r.stderr and "FILE.svg" in r.stderr, r.stderr
    r = run("record", split.pid)
    assert r.returncode == 64 and "give -o FILE" in r.stderr
    for rate in ("0", "1001", "99.9"):
        r = run("record", "--rate", rate, "-o", tmp_path / "x.folded", split.pid)
        assert r.returncode == 64 and "a whole number of Hz from 1 to 1000" in r.stderr, r.stderr
    r = run("record", "--mode", "perf", "--idle", "-o", tmp_path / "x.folded", split.pid)
    assert r.returncode == 64 and "--idle needs ptrace stops" in r.stderr, r.stderr
    # An output that cannot be written is said at once, not after the recording.
    start = time.monotonic()
    r = run("record", "-o", tmp_path / "no" / "x.folded", split.pid)
    assert r.returncode == 2 and "no folder" in r.stderr and time.monotonic() - start < 5, r.stderr
    r = run("record", "-o", tmp_path / "x.folded", "999999999")
    assert r.returncode == 2 and "999999999" in r.stderr
    assert not (tmp_path / "x.folded").exists()
    core = gcore(split.pid, tmp_path)
    r = run("record", "-o", tmp_path / "x.folded", core)
    assert r.returncode == 2 and "is a core file: record samples a live process" in r.stderr, r.stderr
    bad = tmp_path / "bad.folded"
    bad.write_text("a;b 3\nnot folded\n")
    r = run("record", "--diff", bad, bad, "-o", tmp_path / "d.svg")
    assert r.returncode == 2 and f"{bad}:2" in r.stderr, r.stderr
    assert_untouched(split.pid)


@pytest.fixture(scope="module")
def fanout(rust_bin, module_tmp):
    """A profile of the same 2000 items spawned as tasks, and under one FuturesUnordered."""
    out = {}
    for mode in ("spawn", "unordered"):
        t = Target([rust_bin / "prof_fanout", mode])
        try:
            out[mode] = module_tmp / f"{mode}.folded"
            record(t.pid, out[mode], "--mode", "perf", "--rate", "499", "--duration", "3s")
            assert_untouched(t.pid)
        finally:
            t.stop()
    return out


def test_fanout_roots(fanout):
    spawn, unordered = by_root(folded(fanout["spawn"])), by_root(folded(fanout["unordered"]))
    assert "task prof_fanout::item" in spawn and "task prof_fanout::gather" not in spawn
    assert "task prof_fanout::gather" in unordered and "task prof_fanout::item" not in unordered
    # Under FuturesUnordered the items run inside gather's poll.
    stacks = folded(fanout["unordered"])
    assert any("prof_fanout::item_work" in f and any("FuturesUnordered" in x for x in f) for f, _ in stacks)


def diff_colours(svg):
    """{frame title's name: fill} of a diff flame graph."""
    root = ET.parse(svg).getroot()
    fills = {}
    for g in root.iter(f"{SVG}g"):
        title, rect = g.find(f"{SVG}title"), g.find(f"{SVG}rect")
        if title is not None and rect is not None:
            fills.setdefault(title.text.split(" (")[0], []).append(rect.get("fill"))
    return fills


def rgb(fill):
    m = re.fullmatch(r"rgb\((\d+),\s*(\d+),\s*(\d+)\)", fill)
    assert m, fill
    return tuple(int(x) for x in m.groups())


def test_diff(fanout, tmp_path):
    out = tmp_path / "diff.svg"
    r = run("record", "--diff", fanout["spawn"], fanout["unordered"], "-o", out)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(rf"wrote {re.escape(str(out))} \(\d+ samples before, \d+ after\)\n", r.stderr)
    fills = diff_colours(out)
    grew = [name for name in fills if "FuturesUnordered" in name]
    assert grew, sorted(fills)[:40]
    # Nothing of FuturesUnordered shrank (a frame with one sample may be too pale
    # to tell); its poll_next, where the items now run, is red: it grew.
    for name in grew:
        for fill in fills[name]:
            red, green, blue = rgb(fill)
            assert red >= blue, (name, fill)
    poll_next = [f for name in grew if name.endswith("::poll_next") for f in fills[name]]
    assert poll_next and all(rgb(f)[0] > rgb(f)[2] for f in poll_next), {n: fills[n] for n in grew}
    # The other way round, the items' own tasks are new: they grew, red.
    r = run("record", "--diff", fanout["unordered"], fanout["spawn"], "-o", out)
    assert r.returncode == 0, r.stderr
    for fill in diff_colours(out)["task prof_fanout::item"]:
        red, green, blue = rgb(fill)
        assert red > blue, fill


@pytest.mark.parametrize("mode", ["perf", "ptrace"])
def test_target_exits_while_recorded(rust_bin, tmp_path, mode):
    """What was sampled before the target went is written; the exit says so and is 0."""
    t = Target([rust_bin / "prof_split"])
    out = tmp_path / "gone.folded"
    p = subprocess.Popen([str(TASKDBG), "record", "--mode", mode, "--duration", "20s", "-o", str(out), str(t.pid)],
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    t.stop()
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert f"taskdbg: process {t.pid} exited while being recorded; writing what was recorded\n" in err, err
    assert "task prof_split::heavy" in by_root(folded(out))


def test_blocking_closure(rust_bin, tmp_path):
    """A spawn_blocking closure's samples go to it, marked with the call it sleeps in;
    load's one closure sleeps for an hour, so every stop finds it there."""
    for t in started([rust_bin / "load", "2"]):
        out = tmp_path / "load.folded"
        m, _ = record(t.pid, out, "--mode", "ptrace", "--duration", "1s")
        stacks = folded(out)
        blocking = [(f, n) for f, n in stacks if f[0].startswith("[blocking] ")]
        assert blocking, by_root(stacks)
        assert {f[0] for f, _ in blocking} == {"[blocking] load::main::{{closure}}::{closure#0}"}, blocking
        assert all(f[-1] in ("[syscall clock_nanosleep]", "[syscall nanosleep]") for f, _ in blocking), blocking
        # Every stop found it: its samples are the stops made (achieved rate x seconds).
        stops = float(m.group(3)) * float(m.group(9))
        assert abs(sum(n for _, n in blocking) - stops) <= 1.5 and stops > 50, (blocking, m.group(0))
        relays = [f for f, _ in stacks if f[0] == "task load::relay"]
        assert all("load::relay::{async_fn#0}" in f for f in relays), relays


def test_progress_on_a_terminal(split, tmp_path):
    """On a terminal, a progress line while recording; the summary after it."""
    from test_session import Pty, term_env
    out = tmp_path / "tty.folded"
    t = Pty(["record", "--duration", "2s", "-o", out, split.pid], term_env(tmp_path))
    try:
        t.expect(re.compile(rf"\rrecording {split.pid}: \d\.\d s of 2\.0 s, \d+ samples \(perf events\)".encode()),
                 timeout=15)
        shown = t.expect(b"samples)\r\n", timeout=15).decode()
        assert "record: perf events, 99 Hz asked" in shown, shown
        assert t.wait(timeout=10) == 0
    finally:
        t.close()
    assert "task prof_split::heavy" in by_root(folded(out))
