"""A session's history of snapshots: `tasks -stuck`, `history`, `task ID`'s
history, and `diagnose` from the history, on a fixture where two tasks are
deadlocked among tasks that keep moving (session_stuck.rs)."""
import os
import re
import subprocess
import time

import pytest

from conftest import RUST_SOURCE_DIR, TASKDBG, Target, assert_untouched, gcore, marker_lines, started

SOURCE = RUST_SOURCE_DIR / "session_stuck.rs"
LINES = marker_lines(SOURCE)


@pytest.fixture(scope="module")
def stuck(rust_bin):
    yield from started([rust_bin / "session_stuck"])


class Session:
    """taskdbg attach with commands written to its standard input (no terminal)."""

    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen([str(TASKDBG), *map(str, args)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, **(env or {})))

    def send(self, *lines):
        self.proc.stdin.write("".join(line + "\n" for line in lines))
        self.proc.stdin.flush()

    def finish(self):
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return out, err


def stuck_lines(out):
    return [line for line in out.splitlines() if re.match(r"^\s+\d+  ", line)]


def test_stuck_names_exactly_the_deadlocked_tasks(stuck):
    s = Session("attach", "--interval", "100ms", stuck.pid)
    time.sleep(2.5)   # opening takes ~0.6 s; then a snapshot every 100 ms at the prompt
    s.send("tasks -stuck", "history", "history 5", "task 3", "quit")
    out, err = s.finish()
    assert err == ""
    rows = stuck_lines(out.split("SNAP")[0])
    assert [r.split()[:3] for r in rows] == [
        ["3", "idle", "session_stuck::debit_then_credit"],
        ["4", "idle", "session_stuck::credit_then_debit"],
    ], out
    assert f"src/bin/session_stuck.rs:{LINES['stuck_ab']}  waiting on tokio::sync::Mutex" in rows[0]
    assert f"src/bin/session_stuck.rs:{LINES['stuck_ba']}  waiting on tokio::sync::Mutex" in rows[1]
    m = re.search(r"^2 of 6 tasks stuck over the last (\d+\.\d) s \((\d+) snapshots\)$", out, re.M)
    assert m and float(m.group(1)) >= 1.0 and int(m.group(2)) >= 8, out
    # history: one row per snapshot, the four movers moving in every one after the first
    snaps = re.findall(r"^#(\d+)\s+[+-]\d+\.\ds\s+(\d+)\s+(\d+)\s", out, re.M)
    assert len(snaps) >= 8 and all(tasks == "6" for _, tasks, _ in snaps), out
    assert all(moved == "4" for _, _, moved in snaps[1:]), snaps
    # the ticker's changes: one per snapshot, always at its sleep
    ticker = re.search(r"^task 5 across \d+ snapshots .*?^unchanged for the last", out, re.M | re.S)
    assert ticker, out
    changes = re.findall(r"^  #\d+  [+-]\d+\.\d s  idle\s+(\S+)$", ticker.group(0), re.M)
    assert len(changes) >= 8 and set(changes) == {f"src/bin/session_stuck.rs:{LINES['ticker_sleep']}"}
    # task 3: its await tree with the source text, who holds its lock, and no change in its history
    task3 = out[out.index("task 3  session_stuck::debit_then_credit  idle"):]
    assert f"session_stuck::debit_then_credit  Suspend2  src/bin/session_stuck.rs:{LINES['stuck_ab']}" in task3
    assert f"{LINES['stuck_ab']:5d} | let mut to = b.lock().await; // @stuck_ab" in task3
    assert "    held by: task 4 session_stuck::credit_then_debit (as `from`)" in task3
    m = re.search(r"history: (\d+) snapshots over (\d+\.\d) s; unchanged for the last (\d+\.\d) s", task3)
    assert m and m.group(2) == m.group(3), task3
    assert len(re.findall(r"^    #\d+ ", task3, re.M)) == 1   # one entry: its first snapshot
    assert_untouched(stuck.pid)


def test_diagnose_uses_the_history(stuck):
    s = Session("attach", "--interval", "50ms", stuck.pid)
    time.sleep(2.5)
    s.send("diagnose", "quit")
    out, _ = s.finish()
    m = re.search(r"^\(window 1\.0 s: history \((\d+) snapshots\), (\d+) samples\)$", out, re.M)
    assert m and int(m.group(1)) >= 5 and m.group(1) == m.group(2), out
    assert ("[1] deadlock: tasks 3 `session_stuck::debit_then_credit`, 4 "
            "`session_stuck::credit_then_debit` wait for each other (tokio::sync::Mutex)") in out
    assert "[2]" not in out   # the movers are healthy
    assert_untouched(stuck.pid)


def test_stuck_needs_a_history(stuck, module_tmp):
    """A core is one snapshot: -stuck says what it needs instead of listing every task."""
    core = gcore(stuck.pid, module_tmp)
    s = Session("core", core)
    s.send("tasks -stuck", "tasks -group fn", "quit")
    out, err = s.finish()
    assert "taskdbg: -stuck needs two snapshots or more in the history" in err
    assert re.findall(r"^fn (\S+): 1 task$", out, re.M) == [
        "session_stuck::consumer", "session_stuck::credit_then_debit", "session_stuck::debit_then_credit",
        "session_stuck::producer", "session_stuck::ticker", "session_stuck::yielder"]
    assert "6 of 6 tasks" in out


def test_a_hyper_connection_is_shown_by_its_handler(rust_bin):
    """A session names a hyper connection task by the program's own handler in
    it (its root), the connection's future after it, in tasks, task ID and
    resources; the handlers' lock-order deadlock is found."""
    lines = marker_lines(RUST_SOURCE_DIR / "hyper_locks.rs")
    conn = "hyper::server::server::new_svc::NewSvcTask"
    target = Target([rust_bin / "hyper_locks"])
    try:
        s = Session("attach", "--interval", "0", target.pid)
        s.send("tasks -with name hyper_locks::handle", "resources", "diagnose", "quit")
        out, err = s.finish()
        assert err == ""
        rows = [r.split("  waiting on ")[0] for r in stuck_lines(out)]
        assert sorted(re.sub(r"^\s+\d+", "ID", r) for r in rows) == sorted([
            f"ID  idle      hyper_locks::handle  (in {conn})  src/bin/hyper_locks.rs:{lines['transfer_second_lock']}",
            f"ID  idle      hyper_locks::handle  (in {conn})  src/bin/hyper_locks.rs:{lines['refund_second_lock']}",
        ]), out
        assert "2 of 2 tasks" in out
        holders = re.findall(r"^  held by: task \d+ (\S+) \(as `from`\)$", out, re.M)
        waiters = re.findall(r"^  waited on by: task \d+ (\S+)$", out, re.M)
        assert holders == ["hyper_locks::handle"] * 2 and waiters == ["hyper_locks::handle"] * 2, out
        assert re.search(r"^\[1\] deadlock: tasks \d+ `hyper_locks::handle`, \d+ `hyper_locks::handle` wait for each "
                         r"other \(tokio::sync::Mutex\): none can ever proceed$", out, re.M), out
        assert "[2]" not in out
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_background_spares_a_target_that_stops_slowly(stuck):
    """Snapshots that stop the target long come farther apart than --interval
    asks: it is never stopped more than 5% of the time. Each stop here is held
    40 ms (the tests' TASKDBG_TEST_PAUSE_MS), so 100 ms becomes 800 ms or more."""
    s = Session("attach", "--interval", "100ms", stuck.pid, env={"TASKDBG_TEST_PAUSE_MS": "40"})
    time.sleep(3.0)
    s.send("history", "lua taskdbg.target().gap_ms >= 800", "quit")
    out, err = s.finish()
    assert err == ""
    assert re.search(r"^\(a snapshot every (\d+ ms|\d+\.\d s) rather than 100 ms: the last stopped the target \d+\.\d ms and took "
                     r"taskdbg \d+\.\d\d s; the background keeps the target stopped under 5% of the time and taskdbg "
                     r"under half a core\)$", out, re.M), out
    snaps = re.findall(r"^#(\d+)\s", out, re.M)
    # 3 s at 100 ms would be ~25 snapshots; at >= 800 ms, 5 at most (with the first one at opening)
    assert 2 <= len(snaps) <= 5, out
    assert out.rstrip().endswith("true"), out
    assert_untouched(stuck.pid)


def test_dump_in_a_session_opens_as_a_core_session(stuck, tmp_path):
    """`dump FILE` in a session writes a core that `taskdbg core` opens with the
    same tasks and the same finding as the live session."""
    core = tmp_path / "hang.core"
    s = Session("attach", "--interval", "0", stuck.pid)
    s.send("tasks -group fn", f"dump {core}", "diagnose --window 200ms", "quit")
    live, _ = s.finish()
    m = re.search(rf"^wrote {re.escape(str(core))} \((\d+\.\d) MiB, (\d+) threads\): target stopped (\d+\.\d) ms$", live, re.M)
    assert m and int(m.group(2)) == len(os.listdir(f"/proc/{stuck.pid}/task")), live
    assert_untouched(stuck.pid)
    c = Session("core", core)
    c.send("tasks -group fn", "diagnose", "quit")
    post, _ = c.finish()

    def groups(out):
        return re.findall(r"^(fn \S+: \d+ tasks?)$", out, re.M)

    def findings(out):
        return re.findall(r"^\[\d+\] .*$", out, re.M)

    assert len(groups(live)) == 6 and groups(post) == groups(live), (live, post)
    assert findings(post) == findings(live) == [
        "[1] deadlock: tasks 3 `session_stuck::debit_then_credit`, 4 `session_stuck::credit_then_debit` "
        "wait for each other (tokio::sync::Mutex): none can ever proceed"], (live, post)
