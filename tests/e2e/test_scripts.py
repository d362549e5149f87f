"""The example scripts of scripts/ (docs/lua-api.md), run as they are against
fixtures, live and on a core: their output lines and exit status."""
import json
import pathlib
import re
import subprocess

import pytest

from conftest import ROOT, TASKDBG, assert_untouched, run, started

SCRIPTS = ROOT / "scripts"
ADDR = re.compile(r"0x[0-9a-f]+")

# The deadlock of diag_lock_order: tasks 3 and 4 each hold one tokio Mutex and await the other's.
AB = "src/bin/diag_lock_order.rs:22"
BA = "src/bin/diag_lock_order.rs:30"
DEADLOCK = [
    "findings: 1",
    "  [deadlock] tasks 3 `diag_lock_order::transfer_ab`, 4 `diag_lock_order::transfer_ba` wait for each "
    "other (tokio::sync::Mutex): none can ever proceed",
    f"    task 3 `diag_lock_order::transfer_ab` holds tokio::sync::Mutex ADDR and waits for tokio::sync::Mutex ADDR at {AB}",
    f"    task 4 `diag_lock_order::transfer_ba` holds tokio::sync::Mutex ADDR and waits for tokio::sync::Mutex ADDR at {BA}",
    "    fix: take the locks in one global order everywhere, or never hold one while awaiting another",
]


def dump_works():
    return subprocess.run([str(TASKDBG), "dump", "--help"], capture_output=True).returncode == 0


def lines(text):
    """Output lines with addresses made ADDR (they move with ASLR)."""
    return [ADDR.sub("ADDR", line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def healthy(rust_bin):
    yield from started([rust_bin / "diag_healthy"])


# ---- ci-hang-report.lua ----

def check_hang_json(doc, kind):
    assert doc["target"]["kind"] == kind and doc["target"]["name"] == "diag_lock_order"
    assert sorted(t["id"] for t in doc["tasks"]) == [3, 4]
    (f,) = doc["findings"]
    assert f["kind"] == "deadlock" and [t["id"] for t in f["tasks"]] == [3, 4]


def test_ci_hang_report_live(lock_order, tmp_path):
    out = tmp_path / "hang.json"
    r = run("run", SCRIPTS / "ci-hang-report.lua", lock_order.pid, "--window", "500ms", "--json", out)
    assert r.returncode == 1, r.stderr
    got = lines(r.stdout)
    assert re.fullmatch(rf"hang report: pid {lock_order.pid} \(diag_lock_order\), watched 0\.5 s, \d+ samples", got[0]), got[0]
    assert got[1:] == [
        "tasks: 2",
        f"  3 idle diag_lock_order::transfer_ab at {AB}  waits on tokio::sync::Mutex ADDR",
        f"  4 idle diag_lock_order::transfer_ba at {BA}  waits on tokio::sync::Mutex ADDR",
        *DEADLOCK,
        f"json: {out}",
    ]
    check_hang_json(json.loads(out.read_text()), "live")
    assert_untouched(lock_order.pid)


def test_ci_hang_report_core_json_to_stdout(lock_order_core):
    r = run("run", SCRIPTS / "ci-hang-report.lua", lock_order_core, "--json", "-")
    assert r.returncode == 1, r.stderr
    check_hang_json(json.loads(r.stdout), "core")
    got = lines(r.stderr)
    assert re.fullmatch(rf"hang report: core {re.escape(str(lock_order_core))} \(diag_lock_order, pid \d+\)", got[0]), got[0]
    assert got[1:] == [
        "tasks: 2",
        f"  3 idle diag_lock_order::transfer_ab at {AB}  waits on tokio::sync::Mutex ADDR",
        f"  4 idle diag_lock_order::transfer_ba at {BA}  waits on tokio::sync::Mutex ADDR",
        *DEADLOCK,
    ]


def test_ci_hang_report_healthy(healthy, tmp_path):
    out = tmp_path / "ok.json"
    r = run("run", SCRIPTS / "ci-hang-report.lua", healthy.pid, "--json", out)
    assert r.returncode == 0, r.stdout + r.stderr
    got = r.stdout.splitlines()
    assert re.fullmatch(rf"hang report: pid {healthy.pid} \(diag_healthy\), watched 1\.0 s, \d+ samples", got[0])
    assert "findings: 0" in got and got[-1] == f"json: {out}"
    doc = json.loads(out.read_text())
    assert doc["findings"] == [] and doc["window_ms"] == 1000
    assert {t["name"] for t in doc["tasks"]} >= {"diag_healthy::produce", "diag_healthy::consume"}


def test_ci_hang_report_usage(lock_order_core):
    r = run("run", SCRIPTS / "ci-hang-report.lua", lock_order_core, "--window", "soon")
    assert r.returncode == 2
    assert "a duration is 1s, 500ms or 1.5 (got soon)" in r.stderr, r.stderr


# ---- who-holds.lua ----

def who_holds(target, *pattern):
    r = run("run", SCRIPTS / "who-holds.lua", target, *pattern)
    return r, r.stdout.splitlines()


def check_who_holds(got):
    """Two mutexes: each held by one of tasks 3, 4 and awaited by the other."""
    assert len(got) == 6, got
    first, second = got[0:3], got[3:6]
    assert {ADDR.sub("ADDR", first[0]), ADDR.sub("ADDR", second[0])} == {"tokio::sync::Mutex ADDR"}
    assert first[0] != second[0]
    blocks = sorted([first[1:], second[1:]])
    assert blocks == [
        ["  held by: task 3 diag_lock_order::transfer_ab (from: tokio::sync::mutex::MutexGuard<u64>)",
         f"  awaited by: task 4 diag_lock_order::transfer_ba at {BA}"],
        ["  held by: task 4 diag_lock_order::transfer_ba (from: tokio::sync::mutex::MutexGuard<u64>)",
         f"  awaited by: task 3 diag_lock_order::transfer_ab at {AB}"],
    ]
    return first[0].split()[1]


def test_who_holds(lock_order, lock_order_core):
    for target in (lock_order.pid, lock_order_core):
        r, got = who_holds(target)
        assert r.returncode == 0, r.stderr
        address = check_who_holds(got)
        r, got = who_holds(target, "Mutex")
        assert r.returncode == 0, r.stderr
        check_who_holds(got)
        # by address: that mutex only
        r, got = who_holds(target, address)
        assert r.returncode == 0 and len(got) == 3 and got[0] == f"tokio::sync::Mutex {address}", got
        r, got = who_holds(target, "RwLock")
        assert r.returncode == 1 and got == ["no resource matches RwLock"]
    assert_untouched(lock_order.pid)


# ---- watchdog.lua ----

def test_watchdog_finds_the_stuck_tasks(lock_order, tmp_path):
    r = run("run", SCRIPTS / "watchdog.lua", lock_order.pid, "--every", "300ms", "--polls", "10", "--out", tmp_path)
    assert r.returncode == 1, r.stderr
    got = r.stdout.splitlines()
    assert got[:5] == [
        f"watchdog: pid {lock_order.pid} (diag_lock_order), a poll every 0.3 s, stuck after 3 polls",
        "poll 1: 2 tasks, 0 stuck",
        "poll 2: 2 tasks, 0 stuck",
        "poll 3: 2 tasks, 2 stuck: 3, 4",
        f"report: {tmp_path}/report-{lock_order.pid}-" + got[4].split("-")[-1],
    ]
    assert re.fullmatch(rf"report: {tmp_path}/report-{lock_order.pid}-\d{{8}}T\d{{6}}Z\.txt \(1 findings\)", got[4])
    report = pathlib.Path(got[4].split()[1])
    text = lines(report.read_text())
    assert re.fullmatch(rf"watchdog report: pid {lock_order.pid} \(diag_lock_order\) at .*Z", text[0])
    assert re.fullmatch(r"stuck tasks \(unchanged across 3 polls, 0\.\d s\):", text[1]), text[1]
    assert text[2:8] == [
        f"  task 3 idle diag_lock_order::transfer_ab at {AB}",
        "    waits on tokio::sync::Mutex ADDR",
        "    held by task 4 diag_lock_order::transfer_ba",
        f"  task 4 idle diag_lock_order::transfer_ba at {BA}",
        "    waits on tokio::sync::Mutex ADDR",
        "    held by task 3 diag_lock_order::transfer_ab",
    ]
    assert text[8:13] == DEADLOCK
    core = tmp_path / ("core-" + report.name[len("report-"):-len(".txt")])
    if dump_works():
        assert got[5] == f"core: {core}" and core.exists()
        assert re.fullmatch(rf"core: {core} \(\d+ bytes\)", text[13]), text[13]
    else:
        assert got[5].startswith("core: not written: dump needs ") and not core.exists()
        assert text[13].startswith("core: not written: dump needs ")
    assert len(got) == 6 and len(text) == 14
    assert_untouched(lock_order.pid)


@pytest.mark.skipif(not dump_works(), reason="`taskdbg dump` is not in this build yet (taskdbg.dump raises)")
def test_watchdog_core_reads_back(lock_order, tmp_path):
    r = run("run", SCRIPTS / "watchdog.lua", lock_order.pid, "--every", "200ms", "--out", tmp_path)
    assert r.returncode == 1, r.stderr
    (core,) = tmp_path.glob("core-*")
    who, got = who_holds(core)
    assert who.returncode == 0, who.stderr
    check_who_holds(got)


def test_watchdog_healthy(healthy, tmp_path):
    r = run("run", SCRIPTS / "watchdog.lua", healthy.pid, "--every", "300ms", "--polls", "5", "--out", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    # the tasks: six, and a spawn_blocking of heartbeat's now and then
    assert [re.sub(r": [67] tasks,", ": N tasks,", line) for line in r.stdout.splitlines()] == [
        f"watchdog: pid {healthy.pid} (diag_healthy), a poll every 0.3 s, stuck after 3 polls",
        *(f"poll {n}: N tasks, 0 stuck" for n in range(1, 6)),
        "nothing stuck in 5 polls",
    ]
    assert list(tmp_path.iterdir()) == []
    assert_untouched(healthy.pid)


def test_watchdog_needs_a_live_process(lock_order_core):
    r = run("run", SCRIPTS / "watchdog.lua", lock_order_core)
    assert r.returncode == 2
    assert f"watchdog.lua polls a running process: {lock_order_core} is a core (use ci-hang-report.lua)" in r.stderr
