"""`taskdbg tasks` on tests/fixtures/rust/src/bin/tasks.rs: every task's id, state,
name, await chain (with the line of each .await) and awaited type, live and on
cores. Runtimes and tasks are created in a fixed order, so ids are exact."""
import json
import re

import pytest

from conftest import (C_FIXTURES, RUST_FIXTURES, RUSTC_1_63, RUST_SOURCE_DIR, Target, assert_untouched, gcore,
                      kernel_core, marker_lines, run)

SRC = "src/bin/tasks.rs"
L = marker_lines(RUST_SOURCE_DIR / "tasks.rs")


def chain(*levels):
    return [{"name": f"tasks::{n}", "state": "Suspend0", "file": SRC, "line": L[m],
             "awaiting": aw} for n, m, aw in levels]


EXPECTED_RT1 = {
    3: ("idle", "tasks::wait_for_order", chain(
        ("wait_for_order", "order_await", "tokio::sync::oneshot::Receiver<u32>"))),
    4: ("idle", "tasks::level1", chain(
        ("level1", "level1_await", "tasks::level2::{async_fn_env#0}"),
        ("level2", "level2_await", "tasks::level3::{async_fn_env#0}"),
        ("level3", "level3_await", "tasks::level4::{async_fn_env#0}"),
        ("level4", "level4_await", "tasks::level5::{async_fn_env#0}"),
        ("level5", "level5_await", "tokio::time::sleep::Sleep"))),
    5: ("idle", "tasks::main::{async_block#1}::{async_block_env#0}", [
        {"name": "tasks::main::{async_block#1}::{async_block_env#0}", "state": "Suspend0",
         "file": SRC, "line": L["pending_await"], "awaiting": "core::future::pending::Pending<u32>"}]),
    6: ("idle", "tasks::supervise", chain(
        ("supervise", "join_await", "tokio::runtime::task::join::JoinHandle<u32>"))),
    # complete, never joined: gone from tokio's list, found through keep's JoinHandle
    7: ("complete", "tasks::quick", []),
    8: ("idle", "tasks::keep", chain(
        ("keep", "keep_await", "core::future::pending::Pending<()>"))),
    12: ("idle", "tasks::bridge", chain(
        ("bridge", "bridge_await", "tokio::runtime::task::join::JoinHandle<u32>"))),
}


def tasks_json(target):
    r = run("tasks", "--json", target)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def check_model(doc, live, aborted=False):
    rts = doc["runtimes"]
    assert [(rt["id"], rt["flavor"]) for rt in rts] == [
        (1, "multi_thread"), (2, "current_thread"), (3, "current_thread")]
    rt1, rt2, rt3 = rts
    # Runtime 3 has no thread in it: found through its task, which bridge awaits.
    assert rt3["workers"] == []
    (dormant,) = rt3["tasks"]
    assert (dormant["id"], dormant["state"], dormant["name"]) == (11, "notified", "tasks::dormant")
    assert [aw["state"] for aw in dormant["backtrace"]] == ["Unresumed"]
    assert len(rt1["workers"]) == 2 and len(rt2["workers"]) == 1
    got = {t["id"]: t for t in rt1["tasks"]}
    assert sorted(got) == sorted(EXPECTED_RT1)
    for tid, (state, name, backtrace) in EXPECTED_RT1.items():
        t = got[tid]
        assert (t["state"], t["name"]) == (state, name), t
        assert t["running_on"] is None
        assert t["future"].startswith(name.replace("tasks::main::", "tasks::main::")), t["future"]
        assert [{k: aw.get(k) for k in ("name", "state", "file", "line", "awaiting")}
                for aw in t["backtrace"]] == backtrace, t["backtrace"]

    # Following the awaited JoinHandle leads to the task it joins.
    assert got[6]["backtrace"][0]["awaiting_task"] == 5
    assert got[12]["backtrace"][0]["awaiting_task"] == 11
    assert all("awaiting_task" not in aw for t in (got[3], got[4], got[5]) for aw in t["backtrace"])
    # What suspended futures hold (their own locals, not stale argument copies).
    assert [(h["type"], h["task"]) for h in got[8]["holds"]] == [
        ("tokio::runtime::task::join::JoinHandle<u32>", 7)]
    assert all("holds" not in got[i] for i in (3, 4, 5, 6, 7))
    # level5's Sleep, followed to its deadline: an hour from when it started
    # (live: the time left; a core has no "now").
    sleep = got[4]["waiting_on"]
    assert sleep["kind"] == "tokio::time::Sleep" and sleep["deadline_ms"] > 3600 * 1000
    if live:
        assert 3500 * 1000 < sleep["remaining_ms"] <= 3600 * 1000
    else:
        assert "remaining_ms" not in sleep

    # block_on's own futures (no task; found pinned in the block_on frame of
    # the thread that runs them, whose DWARF gives the pinned copy no location).
    (main_future,) = rt1["block_on"]
    assert main_future["thread"] == doc["target"]["pid"]
    # The "abort" run aborts inside the future's poll, past its last .await.
    state, where = ("running", ("Suspend2", "abort_sleep")) if aborted else ("idle", ("Suspend3", "main_sleep"))
    assert (main_future["state"], main_future["name"]) == (state, "tasks::main::{async_block_env#1}")
    assert [{k: aw.get(k) for k in ("name", "state", "file", "line", "awaiting")}
            for aw in main_future["backtrace"]] == [
        {"name": "tasks::main::{async_block_env#1}", "state": where[0], "file": SRC,
         "line": L[where[1]], "awaiting": "tokio::time::sleep::Sleep"}]
    # Its own locals: the oneshot Sender wait_for_order's Receiver waits on,
    # and the JoinHandle of task 3.
    held = {h["name"]: h for h in main_future["holds"]}
    assert sorted(held) == ["_idle", "order_tx"]
    assert held["_idle"]["task"] == 3
    assert held["order_tx"]["resource"]["key"] == got[3]["waiting_on"]["key"]
    assert held["order_tx"]["resource"]["mode"] == "tx" and got[3]["waiting_on"]["mode"] == "rx"
    assert ("waiting_on" in main_future) == (not aborted)   # a running future waits on nothing
    if not aborted:
        assert main_future["waiting_on"]["kind"] == "tokio::time::Sleep"
    # The current-thread runtime's block_on future is idle while its thread polls a task.
    (rt2_future,) = rt2["block_on"]
    assert rt2_future["thread"] == rt2["workers"][0]
    assert (rt2_future["state"], rt2_future["name"]) == (
        "idle", "tasks::main::{closure#0}::{async_block_env#0}")
    assert [(aw["state"], aw["line"]) for aw in rt2_future["backtrace"]] == [("Suspend1", L["rt2_sleep"])]
    assert "block_on" not in rt3

    got2 = {t["id"]: t for t in rt2["tasks"]}
    assert sorted(got2) == [9, 10]
    woken, hog = got2[9], got2[10]
    assert (woken["state"], woken["name"]) == ("notified", "tasks::woken")
    assert woken["backtrace"][0]["line"] == L["notified_await"]
    assert woken["backtrace"][0]["awaiting"] == "tokio::sync::notify::Notified"
    assert (hog["state"], hog["name"]) == ("running", "tasks::hog")
    # First poll still under way: nothing suspended yet.
    assert hog["backtrace"][0]["state"] == "Unresumed"
    current_rt = [t for t in doc["threads"] if t["tid"] == rt2["workers"][0]][0]
    assert hog["running_on"] == current_rt["tid"]
    assert current_rt["task"] == 10
    if live:
        assert current_rt["name"] == "current-rt"
    # The thread polling hog is inside it, at the blocking sleep.
    assert any(f["function"] == "tasks::hog::{async_fn#0}" and f["line"] == L["hog_sleep"]
               for f in current_rt["frames"])
    for t in doc["threads"]:
        if t["tid"] != current_rt["tid"]:
            assert t["task"] is None


@pytest.fixture(scope="module")
def debian_tasks():
    """The tasks fixture on Debian's tokio alone: for tests of the plugin host,
    which do not depend on the tokio release."""
    t = Target([RUST_FIXTURES / "tasks"])
    yield t
    assert_untouched(t.pid)
    t.stop()


def test_live(rust_tasks):
    doc = tasks_json(rust_tasks.pid)
    assert doc["target"]["kind"] == "process"
    check_model(doc, live=True)
    assert_untouched(rust_tasks.pid)


def test_live_text(rust_tasks):
    r = run("tasks", rust_tasks.pid)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "runtime 1 (multi_thread), 7 tasks, workers:" in out
    assert "runtime 3 (current_thread), 1 task, workers:\n" in out
    assert re.search(r"^ +11  notified +tasks::dormant, not started yet$", out, re.M)
    assert re.search(r"^ +7  complete +tasks::quick$", out, re.M)
    assert "runtime 2 (current_thread), 2 tasks, workers:" in out
    assert re.search(rf"^ +4  idle +tasks::level1 at {SRC}:{L['level5_await']} awaiting "
                     r"tokio::time::sleep::Sleep \(fires in (59|60)m\d\ds\)$", out, re.M)
    assert re.search(r"^ +10  running +tasks::hog \(on thread \d+\), in its first poll: "
                     r"`taskdbg bt` shows where$", out, re.M)
    assert re.search(rf"^ +6  idle +tasks::supervise at {SRC}:{L['join_await']} awaiting "
                     r"tokio::runtime::task::join::JoinHandle<u32> \(task 5\)$", out, re.M)
    assert re.search(rf"^  block_on  idle +tasks::main::\{{async_block_env#1\}} \(on thread {rust_tasks.pid}\) "
                     rf"at {SRC}:{L['main_sleep']} awaiting tokio::time::sleep::Sleep \(fires in (59|60)m\d\ds\)$",
                     out, re.M)
    r = run("tasks", "--chains", rust_tasks.pid)
    assert re.search(rf"^ +3 tasks::level4 Suspend0 at {SRC}:{L['level4_await']} awaiting "
                     r"tasks::level5::\{async_fn_env#0\}$", r.stdout, re.M)


def test_gcore(rust_tasks, module_tmp):
    live = tasks_json(rust_tasks.pid)
    core = gcore(rust_tasks.pid, module_tmp)
    doc = tasks_json(core)
    assert doc["target"]["kind"] == "core"
    check_model(doc, live=False)
    # The same Sleep read from the process and from its core: the same deadline.
    def deadline(d):
        return [t for t in d["runtimes"][0]["tasks"] if t["id"] == 4][0]["waiting_on"]["deadline_ms"]
    assert deadline(doc) == deadline(live)
    r = run("tasks", core)
    assert re.search(rf"^ +4  idle +tasks::level1 at {SRC}:{L['level5_await']} awaiting "
                     r"tokio::time::sleep::Sleep \(deadline \d+\.\d{3} s on the monotonic clock\)$",
                     r.stdout, re.M)


def test_kernel_core(tmp_path, rust_bin):
    core, _ = kernel_core([rust_bin / "tasks", "abort"], tmp_path)
    doc = tasks_json(core)
    check_model(doc, live=False, aborted=True)


SHARDED = RUST_FIXTURES.parent / "sharded" / "release"


def strip_crate_dir(doc):
    """The sharded build's crate sits in sharded/: DWARF names its sources ../src/..."""
    if isinstance(doc, dict):
        return {k: (v[3:] if k == "file" and isinstance(v, str) and v.startswith("../") else strip_crate_dir(v))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [strip_crate_dir(v) for v in doc]
    return doc


def test_sharded_owned_list(tmp_path):
    """tokio >= 1.35 keeps its owned tasks in a sharded list (ShardedList:
    Box<[Mutex<LinkedList>]>); the same fixture on Debian's tokio 1.24.2 patched
    to that shape (tests/fixtures/rust/sharded) gives the same model, live and
    on a core, for the multi-thread and current-thread runtimes alike."""
    target = Target([SHARDED / "tasks"])
    try:
        doc = tasks_json(target.pid)
        check_model(strip_crate_dir(doc), live=True)
        core = gcore(target.pid, tmp_path)
        check_model(strip_crate_dir(tasks_json(core)), live=False)
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_sharded_many_tasks():
    """5,000 tasks spread over the shards: every one found, listed in id order."""
    target = Target([SHARDED / "many", "5000"])
    try:
        (rt,) = tasks_json(target.pid)["runtimes"]
        assert [t["id"] for t in rt["tasks"]] == list(range(3, 5003))
        assert {t["name"] for t in rt["tasks"]} == {"many::session"}
    finally:
        target.stop()


def test_boxed_futures(tmp_path, rust_bin):
    """Await chains go through boxes: a task spawned as Pin<Box<F>> (as tokio
    >= 1.41 spawns futures over 16 KiB) is named and followed as F; a
    Pin<Box<dyn Future>> (async-trait, BoxFuture) is followed to the future
    its vtable names; async recursion through Box::pin, level by level."""
    target = Target([rust_bin / "boxed"])
    lines = marker_lines(RUST_SOURCE_DIR / "boxed.rs")
    src = "src/bin/boxed.rs"
    dyn = ("core::pin::Pin<alloc::boxed::Box<(dyn core::future::future::Future<Output=u32> + "
           "core::marker::Send), alloc::alloc::Global>>")
    rx = "tokio::sync::oneshot::Receiver<u32>"
    block = "boxed::recurse::{async_block_env#0}"
    try:
        live = tasks_json(target.pid)
        core = tasks_json(gcore(target.pid, tmp_path))
        for doc in (live, core):
            (rt,) = doc["runtimes"]
            got = {t["id"]: t for t in rt["tasks"]}
            assert sorted(got) == [3, 4, 5]
            assert [(t["name"], t["future"]) for t in (got[3], got[5])] == [
                ("boxed::big_job", "core::pin::Pin<alloc::boxed::Box<boxed::big_job::{async_fn_env#0}, "
                 "alloc::alloc::Global>>"),
                (block, dyn)]
            assert got[4]["name"] == "boxed::via_trait"
            def bt(t):
                return [(aw["name"], aw["state"], aw["file"], aw["line"], aw["awaiting"]) for aw in t["backtrace"]]
            assert bt(got[3]) == [("boxed::big_job", "Suspend0", src, lines["big_await"], rx)]
            assert bt(got[4]) == [
                ("boxed::via_trait", "Suspend0", src, lines["trait_await"], dyn),
                ("boxed::remote_fetch", "Suspend0", src, lines["fetch_await"], "tokio::time::sleep::Sleep")]
            assert bt(got[5]) == [
                (block, "Suspend1", src, lines["recurse_await"], dyn),
                (block, "Suspend1", src, lines["recurse_await"], dyn),
                (block, "Suspend0", src, lines["recurse_leaf"], rx)]
            # The boxed leaves are followed to what they wait on.
            assert got[3]["waiting_on"]["kind"] == got[5]["waiting_on"]["kind"] == "tokio::sync::oneshot"
            assert got[3]["waiting_on"]["key"] != got[5]["waiting_on"]["key"]
            assert got[4]["waiting_on"]["kind"] == "tokio::time::Sleep"
            assert got[4]["waiting_on"]["deadline_ms"] > 3600 * 1000
            # block_on's future, boxed: found through any copy of its box.
            (main,) = rt["block_on"]
            assert (main["thread"], main["state"], main["name"]) == (
                doc["target"]["pid"], "idle", "boxed::main::{async_block_env#0}")
            assert bt(main) == [("boxed::main::{async_block_env#0}", "Suspend1", src, lines["main_sleep"],
                                 "tokio::time::sleep::Sleep")]
            held = {h["name"]: h["resource"]["key"] for h in main["holds"]}
            assert held == {"tx1": got[3]["waiting_on"]["key"], "tx2": got[5]["waiting_on"]["key"]}
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_no_tokio_in_process(c_threads):
    """A process without tokio has no runtime: exit 0, an empty list, said plainly."""
    doc = tasks_json(c_threads.pid)
    assert doc["runtimes"] == []
    r = run("tasks", c_threads.pid)
    assert r.returncode == 0, r.stderr
    assert ("no async runtime found: no plugin recognises an async runtime in this program "
            "(plugins asked: tokio.lua)") in r.stdout
    assert_untouched(c_threads.pid)


def test_broken_plugin_is_named(debian_tasks, tmp_path):
    (tmp_path / "tokio.lua").write_text("local M = {}\nfunction M.detect() return true end\n"
                                        "function M.snapshot()\n  error('boom')\nend\nreturn M\n")
    r = run("tasks", "--plugins", tmp_path, debian_tasks.pid)
    assert r.returncode == 2
    assert f"plugin {tmp_path}/tokio.lua failed in snapshot: tokio.lua:4: boom" in r.stderr
    assert_untouched(debian_tasks.pid)


@pytest.mark.parametrize("entry,body,phrase", [
    # While the target is stopped, a runaway plugin gets 2 s, then the target runs on.
    ("snapshot", "while true do end", "time budget exhausted: over 2000 ms with the target stopped"),
    ("prepare", "while true do end", "instruction budget exhausted"),
    ("prepare", "local t = {} for i = 1, 1e5 do t[i] = string.rep('x', 1e6) .. i end",
     "not enough memory"),
    ("snapshot", "return io.open('/etc/passwd')", "attempt to index a nil value (global 'io')"),
    ("snapshot", "return os.execute('true')", "attempt to index a nil value (global 'os')"),
    # require loads modules from the plugin's own directory only.
    ("snapshot", "return require('x')", "require('x'): no module {tmp}/x.lua"),
    ("snapshot", "return require('../x')", "require('../x'): a module name is words joined by dots"),
    ("snapshot", "return require('/etc/passwd')", "require('/etc/passwd'): a module name is words joined by dots"),
    ("snapshot", "return load('return 1')", "attempt to call a nil value (global 'load')"),
])
def test_plugin_sandbox(debian_tasks, tmp_path, entry, body, phrase):
    text = f"local M = {{}}\nfunction M.detect() return true end\nfunction M.{entry}()\n{body}\nend\n"
    if entry != "snapshot":
        text += "function M.snapshot() end\n"
    (tmp_path / "tokio.lua").write_text(text + "return M\n")
    r = run("tasks", "--plugins", tmp_path, debian_tasks.pid, timeout=300)
    assert r.returncode == 2
    assert phrase.replace("{tmp}", str(tmp_path)) in r.stderr, r.stderr
    assert_untouched(debian_tasks.pid)


def test_many_tasks(rust_bin):
    """5,000 idle tasks: every one listed with its await, and grouped in text."""
    target = Target([rust_bin / "many", "5000"])
    try:
        doc = tasks_json(target.pid)
        (rt,) = doc["runtimes"]
        tasks = rt["tasks"]
        assert [t["id"] for t in tasks] == list(range(3, 5003))
        lines = marker_lines(RUST_SOURCE_DIR / "many.rs")
        for t in tasks:
            assert (t["state"], t["name"]) == ("idle", "many::session")
            assert [(aw["name"], aw["state"], aw["line"], aw["awaiting"]) for aw in t["backtrace"]] == [
                ("many::session", "Suspend0", lines["session_await"],
                 "tokio::sync::oneshot::Receiver<u64>")]
        r = run("tasks", target.pid)
        assert r.returncode == 0, r.stderr
        assert re.search(rf"^ +5000× idle +many::session at src/bin/many.rs:{lines['session_await']} "
                         r"awaiting tokio::sync::oneshot::Receiver<u64>  \(e\.g\. task 3\)$", r.stdout, re.M)
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_local_set(module_tmp, rust_bin):
    """LocalSet tasks live in the LocalSet's own list: found through the
    thread polling it (here blocked inside one of them)."""
    target = Target([rust_bin / "localset"])
    lines = marker_lines(RUST_SOURCE_DIR / "localset.rs")
    try:
        for where in (target.pid, gcore(target.pid, module_tmp)):
            doc = tasks_json(where)
            flavors = [(rt["flavor"], rt["workers"]) for rt in doc["runtimes"]]
            assert flavors == [("current_thread", [target.pid]), ("local_set", [target.pid])]
            tasks = {t["id"]: t for t in doc["runtimes"][1]["tasks"]}
            assert sorted(tasks) == [1, 2]
            idle, stuck = tasks[1], tasks[2]
            assert (idle["state"], idle["name"]) == ("idle", "localset::idle_local")
            assert [(aw["state"], aw["line"], aw["awaiting"]) for aw in idle["backtrace"]] == [
                ("Suspend0", lines["idle_await"], "tokio::sync::oneshot::Receiver<u8>")]
            assert (stuck["state"], stuck["name"], stuck["running_on"]) == (
                "running", "localset::stuck_local", target.pid)
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_idle_local_set(module_tmp, rust_bin):
    """A LocalSet no thread is polling (its thread parked in block_on) and no
    JoinHandle leads to: found through block_on's own future, whose chain goes
    on through run_until's RunUntil into the user's future."""
    target = Target([rust_bin / "localset", "idle"])
    lines = marker_lines(RUST_SOURCE_DIR / "localset.rs")
    try:
        for where in (target.pid, gcore(target.pid, module_tmp)):
            doc = tasks_json(where)
            flavors = [(rt["flavor"], rt["workers"]) for rt in doc["runtimes"]]
            assert flavors == [("current_thread", [target.pid]), ("local_set", [target.pid])]
            (idle,) = doc["runtimes"][1]["tasks"]
            assert (idle["id"], idle["state"], idle["name"]) == (1, "idle", "localset::idle_local")
            assert [(aw["state"], aw["line"]) for aw in idle["backtrace"]] == [("Suspend0", lines["idle_await"])]
            (b,) = doc["runtimes"][0]["block_on"]
            # rustc numbers tokio's impl blocks: {impl#2} in 1.24 and 1.29, {impl#4} later.
            run_until = re.fullmatch(r"tokio::task::local::\{impl#\d+\}::run_until", b["name"])
            assert run_until, b["name"]
            assert (b["thread"], b["state"]) == (target.pid, "idle")
            assert [(aw["name"], aw["state"], aw["awaiting"]) for aw in b["backtrace"]] == [
                (run_until.group(0), "Suspend0",
                 "tokio::task::local::RunUntil<localset::main::{async_block_env#1}>"),
                ("localset::main::{async_block_env#1}", "Suspend1", "tokio::time::sleep::Sleep")]
            assert b["backtrace"][1]["line"] == lines["local_main_sleep"]
            assert b["waiting_on"]["kind"] == "tokio::time::Sleep"
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_plugin_path_from_environment(debian_tasks, tmp_path):
    """$TASKDBG_PLUGIN_PATH (':'-separated) is searched before the built-in plugins."""
    (tmp_path / "tokio.lua").write_text(
        "local M = {}\nfunction M.detect() return true end\nfunction M.snapshot() end\n"
        "function M.finish() return { runtimes = setmetatable({}, { __array = true }), "
        "marker = 'from-env' } end\nreturn M\n")
    r = run("tasks", "--json", debian_tasks.pid, env={"TASKDBG_PLUGIN_PATH": f"/nonexistent:{tmp_path}"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["runtimes"] == []
    assert_untouched(debian_tasks.pid)


def test_no_debug_info():
    target = Target([C_FIXTURES / "fixture-threads-nodebug"])
    try:
        r = run("tasks", target.pid)
        assert r.returncode == 2
        assert "fixture-threads-nodebug has no debug info" in r.stderr
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_newer_tokio_releases_are_tested():
    """Every end-to-end test that takes `tokio_version` runs on each tokio in
    ../shared/tokio; a clone without it tests Debian's 1.24.2 alone, said once here."""
    from conftest import SHARED_TOKIO, TOKIO_VERSIONS, rust_fixtures_for
    if not (SHARED_TOKIO / "src").is_dir():
        pytest.skip(f"newer tokio releases not tested: {SHARED_TOKIO} not found "
                    "(only Debian's tokio 1.24.2 is)")
    for version in TOKIO_VERSIONS:
        assert (rust_fixtures_for(version) / "tasks").exists(), f"tokio {version}: fixtures not built"


UNKNOWN_LAYOUT = RUST_FIXTURES.parent / "unknown-layout" / "release"


@pytest.mark.parametrize("command", ["tasks", "diagnose"])
def test_unknown_tokio_layout_is_refused_plainly(command, tmp_path):
    """A tokio whose owned-task list taskdbg cannot find (tests/fixtures/rust/
    unknown-layout renames the field that holds it): exit 2 and a message that
    names the release, the structure, that this is taskdbg's limitation, and
    what still works. No Lua traceback (unless TASKDBG_DEBUG), no empty list."""
    target = Target([UNKNOWN_LAYOUT / "tasks"])
    try:
        for where in (target.pid, gcore(target.pid, tmp_path)):
            r = run(command, where)
            assert r.returncode == 2, r.stdout + r.stderr
            assert r.stdout == ""
            # (std's Arc has named its allocator since Rust 1.72 or so: not in rustc 1.63's DWARF)
            allocator = "" if RUSTC_1_63 else ", alloc::alloc::Global"
            assert r.stderr == (
                "taskdbg: cannot read the tokio runtime in this program (tokio 1.24.2-unknown): "
                "tokio::runtime::task::list::OwnedTasks<alloc::sync::Arc<tokio::runtime::scheduler::"
                f"multi_thread::handle::Handle{allocator}>> has neither `inner` (one list) "
                "nor `list.lists` (shards).\n"
                "This is a limitation of taskdbg, not a fault of the program: please report it, "
                "with the tokio version.\n"
                "`taskdbg bt` still shows every thread's stack.\n"), r.stderr
            assert "traceback" not in r.stderr
            assert_untouched(target.pid)
        r = run(command, target.pid, env={"TASKDBG_DEBUG": "1"})
        assert r.returncode == 2 and "stack traceback:" in r.stderr and "in upvalue 'owned_heads'" in r.stderr
        assert run("bt", target.pid).returncode == 0
        assert_untouched(target.pid)
    finally:
        target.stop()


@pytest.mark.parametrize("flavor", ["multi", "current"])
@pytest.mark.parametrize("size", ["small", "big", "dyn"])
def test_tokio_main_block_on_future(flavor, size, rust_bin, tmp_path):
    """`#[tokio::main]`'s body is block_on's future, on a multi-thread and a
    current-thread runtime, small and over 16 KiB (which tokio >= 1.39 boxes
    inside block_on), and pinned and passed as a `Pin<&mut dyn Future>` as
    `#[tokio::test]` does ("dyn"): found on the main thread with its whole
    chain, what it holds and what it waits on, live and on a core, on every
    tokio release."""
    target = Target([rust_bin / "mainattr", flavor, size])
    lines = marker_lines(RUST_SOURCE_DIR / "mainattr.rs")
    src = "src/bin/mainattr.rs"
    if size == "dyn":
        body, first = "mainattr::test_style::{async_block_env#0}", lines["dyn_await"]
    else:
        body, first = f"mainattr::{flavor}_{size}::{{async_block_env#0}}", lines[f"{flavor}_{size}_await"]
    chain = [(body, first,
              "mainattr::serve_big::{async_fn_env#0}" if size == "big" else "mainattr::serve::{async_fn_env#0}")]
    if size == "big":
        chain.append(("mainattr::serve_big", lines["big_await"], "mainattr::serve::{async_fn_env#0}"))
    chain.append(("mainattr::serve", lines["serve_sleep"], "tokio::time::sleep::Sleep"))
    try:
        for doc in (tasks_json(target.pid), tasks_json(gcore(target.pid, tmp_path))):
            (rt,) = doc["runtimes"]
            assert rt["flavor"] == f"{flavor}_thread"
            (task,) = rt["tasks"]
            assert (task["id"], task["state"], task["name"]) == (
                3 if flavor == "multi" else 1, "idle", "mainattr::serve::{async_fn#0}::{async_block_env#0}")
            assert [(aw["state"], aw["line"]) for aw in task["backtrace"]] == [("Suspend0", lines["waiter_await"])]
            (main,) = rt["block_on"]
            assert (main["thread"], main["state"], main["name"]) == (doc["target"]["pid"], "idle", body)
            assert [(aw["name"], aw["state"], aw["file"], aw["line"], aw["awaiting"])
                    for aw in main["backtrace"]] == [(n, "Suspend0", src, line, aw) for n, line, aw in chain]
            assert main["waiting_on"]["kind"] == "tokio::time::Sleep"
            held = {h["name"]: h for h in main["holds"]}
            assert sorted(held) == ["tx", "waiter"]
            assert held["waiter"]["task"] == task["id"]
            assert held["tx"]["resource"]["key"] == task["waiting_on"]["key"]
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_chain_through_wrapper_futures(rust_bin, tmp_path):
    """A future that is no async body (tokio's Timeout, a Traced wrapper of
    tracing's Instrumented shape spawned as the task itself) is looked into:
    the chain goes on in the async body it polls, down to the lock it waits
    on, and what that body holds is seen. Live and on a core."""
    target = Target([rust_bin / "diag_wrapped"])
    lines = marker_lines(RUST_SOURCE_DIR / "diag_wrapped.rs")
    src = "src/bin/diag_wrapped.rs"
    try:
        for doc in (tasks_json(target.pid), tasks_json(gcore(target.pid, tmp_path))):
            (rt,) = doc["runtimes"]
            got = {t["id"]: t for t in rt["tasks"]}
            assert sorted(got) == [3, 4]
            deadline, traced = got[3], got[4]
            # The chain goes on inside timeout(1 h): the timeout's own deadline is the task's
            # (live: the time left; a core has no "now"); the other task is in none.
            limit = deadline["timeout"]
            assert limit["kind"] == "tokio::time::Sleep" and limit["deadline_ms"] > 0
            if doc["target"]["kind"] == "process":
                assert 3_500_000 < limit["remaining_ms"] <= 3_600_000, limit
            assert "timeout" not in traced
            assert (deadline["name"], traced["name"]) == ("diag_wrapped::settle_with_deadline", "diag_wrapped::Traced")
            top = [(aw["name"], aw["state"], aw["file"], aw["line"]) for aw in deadline["backtrace"][:2]]
            assert top == [("diag_wrapped::settle_with_deadline", "Suspend0", src, lines["timeout_await"]),
                           ("diag_wrapped::settle", "Suspend2", src, lines["settle_second_lock"])]
            assert deadline["backtrace"][0]["awaiting"].startswith("tokio::time::timeout::Timeout<diag_wrapped::settle::")
            # The Traced task's own future is the wrapper: its chain starts in the body it polls.
            assert [(aw["name"], aw["state"], aw["line"]) for aw in traced["backtrace"][:1]] == [
                ("diag_wrapped::refund", "Suspend2", lines["refund_second_lock"])]
            for t in (deadline, traced):
                assert t["backtrace"][-1]["awaiting"] == "tokio::sync::batch_semaphore::Acquire"
                assert t["waiting_on"]["kind"] == "tokio::sync::Mutex"
                assert [h["name"] for h in t["holds"]] == ["from"]
            # Each waits on the lock the other holds.
            assert deadline["waiting_on"]["key"] == traced["holds"][0]["resource"]["key"]
            assert traced["waiting_on"]["key"] == deadline["holds"][0]["resource"]["key"]
            # The user's own async fn in each: the wrapper task's is the body it polls.
            assert (deadline["root"], traced["root"]) == ("diag_wrapped::settle_with_deadline", "diag_wrapped::refund")
            # The Traced task runs refund().instrument(info_span!("refund", account = 2)) under
            # tracing-subscriber's fmt subscriber: its span's name (from the span's static metadata)
            # and fields (formatted, in the registry); the other task is in no span.
            assert (deadline.get("span"), traced["span"], traced["span_fields"]) == (None, "refund", "account=2")
            # Only the program's own awaits are marked own (tokio's are not, wherever its sources are).
            bt = deadline["backtrace"]
            assert [aw.get("own", False) for aw in bt] == [True, True] + [False] * (len(bt) - 2)
        # The text leads with the user's code: its async fn and its own line.
        text = run("tasks", target.pid).stdout
        assert re.search(rf"\n +3  idle +diag_wrapped::settle_with_deadline at {src}:{lines['settle_second_lock']} "
                         r"awaiting tokio::sync::batch_semaphore::Acquire \(tokio::sync::Mutex 0x[0-9a-f]+\) "
                         r"\[timeout in 59m5\ds\]\n", text), text
        assert re.search(rf"\n +4  idle +diag_wrapped::refund \(in diag_wrapped::Traced\) \[span refund\{{account=2\}}\] at {src}:{lines['refund_second_lock']} "
                         r"awaiting tokio::sync::batch_semaphore::Acquire \(tokio::sync::Mutex 0x[0-9a-f]+\)\n", text), text
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_span_names_through_timeout(rust_bin, tmp_path):
    """Tasks awaiting `timeout(.., session(rx).instrument(info_span!("session")))`
    under a subscriber (many.rs, wrapped): the level awaiting through the
    Timeout and the Instrumented carries the span's name, the chain goes on in
    the instrumented body down to its oneshot. Live and on a core."""
    target = Target([rust_bin / "many", "3", "wrapped"])
    lines = marker_lines(RUST_SOURCE_DIR / "many.rs")
    src = "src/bin/many.rs"
    try:
        for where in (target.pid, gcore(target.pid, tmp_path)):
            (rt,) = tasks_json(where)["runtimes"]
            assert len(rt["tasks"]) == 3
            for t in rt["tasks"]:
                bt = t["backtrace"]
                assert [(aw["name"], aw["line"], aw.get("span")) for aw in bt] == [
                    ("many::wrapped_session", lines["wrapped_await"], "session"),
                    ("many::session", lines["session_await"], None)]
                assert bt[0]["awaiting"].startswith("tokio::time::timeout::Timeout<tracing::instrument::Instrumented<")
                assert t["waiting_on"]["kind"] == "tokio::sync::oneshot"
            text = run("tasks", where).stdout
            assert len(re.findall(rf"\n +\d+  idle +many::wrapped_session \[span session\] at {src}:"
                                  rf"{lines['session_await']} awaiting ", text)) == 3, text
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_collections(rust_bin, tmp_path):
    """A task fans out 2,000 futures into a FuturesUnordered and awaits the
    next: its level has them as branches (the first 16 with their chains,
    each at its own line waiting on the semaphore, and how many more). Two
    tasks await join_all of 3 and of 40 (kept in a slice, and in a
    FuturesOrdered): they need all. A task awaiting JoinSet::join_next waits
    on the set's four tasks, by id. Live and on a core."""
    target = Target([rust_bin / "collections"])
    lines = marker_lines(RUST_SOURCE_DIR / "collections.rs")
    src = "src/bin/collections.rs"
    try:
        for where in (target.pid, gcore(target.pid, tmp_path)):
            (rt,) = tasks_json(where)["runtimes"]
            by_name = {}
            for t in rt["tasks"]:
                by_name.setdefault(t["name"], []).append(t)
            (fan,), (sup,), workers = by_name["collections::fan_out"], by_name["collections::supervise"], \
                by_name["collections::worker"]
            (aw,) = fan["backtrace"]
            assert (aw["line"], aw["branches"], aw["more"], aw["wait"], len(aw["children"])) == (
                lines["fan_out_next"], 2000, 1984, "any", 16)
            keys = set()
            for chain in aw["children"]:
                assert (chain[0]["name"], chain[0]["file"], chain[0]["line"]) == ("collections::fetch", src,
                                                                               lines["fetch_acquire"])
                assert chain[-1]["waiting_on"]["kind"] == "tokio::sync::Semaphore"
                keys.add(chain[-1]["waiting_on"]["key"])
            assert len(keys) == 1
            # join_all: all of them needed; up to 30 kept in a slice, more in a FuturesOrdered.
            for name, marker, n in (("gather", "gather_await", 3), ("gather_many", "gather_many_await", 40)):
                (g,) = by_name["collections::" + name]
                (aw,) = g["backtrace"]
                assert (aw["line"], aw["wait"], aw["branches"], len(aw["children"]), aw.get("more")) == (
                    lines[marker], "all", n, min(n, 16), n - 16 if n > 16 else None), (name, aw)
                for chain in aw["children"]:
                    assert (chain[0]["name"], chain[0]["line"]) == ("collections::fetch", lines["fetch_acquire"])
                    assert chain[-1]["waiting_on"]["key"] in keys
            assert sup["backtrace"][0]["line"] == lines["join_next"]
            w = sup["waiting_on"]
            assert (w["kind"], w["size"], w["tasks"]) == ("tokio::task::JoinSet", 4, sorted(t["id"] for t in workers))
            text = run("tasks", where).stdout
            assert re.search(rf"collections::fan_out at {src}:{lines['fan_out_next']} awaiting .*, on any of 2000 "
                             r"branches: 16 x \(tokio::sync::Semaphore 0x[0-9a-f]+\); and 1984 more\n", text), text
            ids = ", ".join(str(i) for i in w["tasks"])
            assert f"(tokio::task::JoinSet of 4 tasks: {ids})\n" in text, text
            assert re.search(rf"collections::gather at {src}:{lines['gather_await']} awaiting .*, on all of 3 "
                             r"branches: 3 x \(tokio::sync::Semaphore 0x[0-9a-f]+\)\n", text), text
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_combinators(rust_bin, tmp_path):
    """futures-util's combinators, each around a fetch waiting on a semaphore
    (collections.rs): map(), then() and an Either are looked through to the
    fetch's line; select() and join() of a fetch and a sleep, and
    try_join() of the two boxed, hold both futures and are a tree of two
    branches (any of them, all of them). Live and on a core."""
    target = Target([rust_bin / "collections"])
    lines = marker_lines(RUST_SOURCE_DIR / "collections.rs")
    src = "src/bin/collections.rs"
    try:
        for where in (target.pid, gcore(target.pid, tmp_path)):
            (rt,) = tasks_json(where)["runtimes"]
            by_name = {t["name"]: t for t in rt["tasks"]}
            for name in ("mapped", "chained", "either"):
                bt = by_name["collections::" + name]["backtrace"]
                assert [(aw["name"], aw["line"]) for aw in bt[:2]] == [
                    ("collections::" + name, lines[name + "_await"]), ("collections::fetch", lines["fetch_acquire"])], bt
                assert by_name["collections::" + name]["waiting_on"]["kind"] == "tokio::sync::Semaphore"
            for name, wait in (("selected", "any"), ("joined", "all"), ("try_joined", "all")):
                (aw,) = by_name["collections::" + name]["backtrace"]
                # rustc 1.63 puts this .await, on a line of its own, at its expression's first line.
                line = lines["try_joined_call"] if name == "try_joined" and RUSTC_1_63 else lines[name + "_await"]
                assert (aw["line"], aw["wait"], aw["branches"]) == (line, wait, 2), (name, aw)
                fetch, nap = aw["children"]
                assert (fetch[0]["name"], fetch[0]["line"]) == ("collections::fetch", lines["fetch_acquire"])
                assert fetch[-1]["waiting_on"]["kind"] == "tokio::sync::Semaphore"
                assert (nap[0]["name"], nap[0]["line"]) == ("collections::nap", lines["nap_sleep"])
                assert nap[-1]["waiting_on"]["kind"] == "tokio::time::Sleep"
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_select_and_join_trees(rust_bin, tmp_path):
    """A select! or join! makes the chain a tree: each pending branch gets its
    own chain down to what it waits on (a finished join! branch is left out),
    the level says whether it needs any or all of them, and its line is the
    user's line calling the macro, not the macro's own source. Live and on a
    core, in JSON and in text."""
    target = Target([rust_bin / "diag_select"])
    lines = marker_lines(RUST_SOURCE_DIR / "diag_select.rs")
    src = "src/bin/diag_select.rs"

    def innermost(chain):
        return chain[-1]

    try:
        core = gcore(target.pid, tmp_path)
        for doc in (tasks_json(target.pid), tasks_json(core)):
            (rt,) = doc["runtimes"]
            got = {t["id"]: t for t in rt["tasks"]}
            assert [(i, got[i]["name"]) for i in sorted(got)] == [
                (3, "diag_select::pump"), (4, "diag_select::flush"), (5, "diag_select::ticker"),
                (6, "diag_select::gated")]
            pump, flush, ticker = got[3], got[4], got[5]
            assert [t["root"] for t in (pump, flush, ticker)] == [t["name"] for t in (pump, flush, ticker)]
            held = {t["id"]: {h["name"]: h["resource"]["key"] for h in t["holds"]} for t in (pump, flush)}
            (top,) = pump["backtrace"]
            assert (top["name"], top["state"], top["file"], top["line"], top["wait"], top["branches"]) == (
                "diag_select::pump", "Suspend2", src, lines["pump_select"], "any", 2)
            lock, stop = top["children"]
            assert innermost(lock)["waiting_on"]["kind"] == "tokio::sync::Mutex"
            assert innermost(lock)["waiting_on"]["key"] == held[4]["held"]
            assert lock[0]["name"].startswith("tokio::sync::mutex::") and lock[0]["name"].endswith("::lock")
            assert (innermost(stop)["waiting_on"]["kind"], innermost(stop)["waiting_on"]["mode"]) == ("tokio::sync::mpsc", "rx")
            assert innermost(stop)["waiting_on"]["key"] == held[4]["stop"] == held[3]["stop"]
            (top,) = flush["backtrace"]
            assert (top["name"], top["state"], top["file"], top["line"], top["wait"], top["branches"]) == (
                "diag_select::flush", "Suspend2", src, lines["flush_join"], "all", 2)
            (lock,) = top["children"]   # the sleep has finished
            assert innermost(lock)["waiting_on"]["key"] == held[3]["held"]
            (top,) = ticker["backtrace"]
            assert (top["file"], top["line"], top["wait"], top["branches"]) == (src, lines["ticker_select"], "any", 2)
            recv, tick = top["children"]
            assert innermost(recv)["waiting_on"]["mode"] == "rx"
            assert tick[0]["name"] == "tokio::time::interval::{impl#2}::tick"
            # A branch its precondition switched off (select!'s disabled mask) is not waited on.
            (top,) = got[6]["backtrace"]
            assert (top["line"], top["wait"], top["branches"]) == (lines["gated_select"], "any", 2)
            (recv,) = top["children"]
            assert innermost(recv)["waiting_on"]["mode"] == "rx"
        for where in (target.pid, core):
            text = run("tasks", where).stdout
            assert re.search(rf"\n +3  idle +diag_select::pump at {src}:{lines['pump_select']} awaiting \S+, on any of 2 "
                             r"branches: \(tokio::sync::Mutex 0x[0-9a-f]+\); \(tokio::sync::mpsc 0x[0-9a-f]+ rx\)\n", text), text
            text = run("tasks", "--chains", where).stdout
            assert f"diag_select::flush Suspend2 at {src}:{lines['flush_join']} awaiting " in text
            assert ", waiting for all of 2 branches (1 pending):\n            branch 1\n              0 tokio::sync::mutex::" in text, text
        assert_untouched(target.pid)
    finally:
        target.stop()
