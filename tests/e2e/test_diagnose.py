"""`taskdbg diagnose` on one fixture per pathology (tests/fixtures/rust/src/bin/diag_*.rs),
live and on a core of each, and on a healthy busy service where it must find nothing.
Each finding is checked for its kind, the exact tasks (ids and names), threads,
resources, and the source lines (from `// @marker` comments) in its text."""
import json
import re

import pytest

from conftest import RUST_SOURCE_DIR, Target, assert_untouched, gcore, marker_lines, run

WINDOW = "600ms"


def lines_of(fixture):
    return marker_lines(RUST_SOURCE_DIR / f"{fixture}.rs")


def at(fixture, marker):
    return f"src/bin/{fixture}.rs:{lines_of(fixture)[marker]}"


def diagnose(target, *extra):
    r = run("diagnose", "--json", "--window", WINDOW, *extra, target)
    assert r.returncode in (0, 1), r.stderr
    doc = json.loads(r.stdout)
    assert r.returncode == (1 if doc["findings"] else 0)
    for key in ("target", "window_ms", "snapshots", "findings"):
        assert key in doc
    for f in doc["findings"]:
        assert set(f) >= {"kind", "summary", "tasks", "threads", "resources", "evidence"}, f
        assert f["kind"] in {"deadlock", "greedy_task", "blocking_in_async", "self_shutdown",
                             "starvation", "lost_waker"}
    return doc


def text(finding):
    return "\n".join([finding["summary"]] + finding["evidence"])


def tasks_of(finding):
    return [(t["id"], t["name"]) for t in finding["tasks"]]


def by_kind(doc, kind):
    return [f for f in doc["findings"] if f["kind"] == kind]


# Each check gets the findings document and whether the target was live.

def check_greedy(doc, live):
    if not live:
        # One snapshot cannot tell a long poll from many short ones.
        assert doc["findings"] == []
        return
    (f,) = doc["findings"]
    assert f["kind"] == "greedy_task"
    assert tasks_of(f) == [(4, "diag_greedy::crunch")]
    # The thread is caught somewhere in the loop: its body's line or its test's.
    assert (at("diag_greedy", "greedy_loop") in text(f)) != (at("diag_greedy", "greedy_check") in text(f))
    assert len(f["threads"]) == 1


def check_blocking(doc, live):
    assert [f["kind"] for f in doc["findings"]] == ["blocking_in_async"] * 2
    found = {tasks_of(f)[0]: f for f in doc["findings"]}
    read = found[(3, "diag_blocking::load_config")]
    assert "std::fs::read_to_string" in read["summary"] and "(read)" in read["summary"]
    assert at("diag_blocking", "blocking_read") in read["summary"]
    nap = found[(4, "diag_blocking::nap")]
    assert "sleep" in nap["summary"] and "(clock_nanosleep)" in nap["summary"]
    assert at("diag_blocking", "blocking_sleep") in nap["summary"]
    assert "tokio::time::sleep" in nap["fix"]


def check_lock_order(doc, live):
    (f,) = doc["findings"]
    assert f["kind"] == "deadlock"
    assert tasks_of(f) == [(3, "diag_lock_order::transfer_ab"), (4, "diag_lock_order::transfer_ba")]
    assert [r["kind"] for r in f["resources"]] == ["tokio::sync::Mutex"] * 2
    assert len({r["address"] for r in f["resources"]}) == 2
    assert at("diag_lock_order", "ab_second_lock") in text(f)
    assert at("diag_lock_order", "ba_second_lock") in text(f)
    assert f["threads"] == []


def check_join_cycle(doc, live):
    (f,) = doc["findings"]
    assert f["kind"] == "deadlock"
    assert tasks_of(f) == [(3, "diag_join_cycle::await_peer_a"), (4, "diag_join_cycle::await_peer_b")]
    assert [r["kind"] for r in f["resources"]] == ["tokio::task::JoinHandle"] * 2
    assert at("diag_join_cycle", "join_a") in text(f)
    assert at("diag_join_cycle", "join_b") in text(f)


def check_channels(doc, live):
    # Three independent cycles in one runtime: one finding each.
    assert [f["kind"] for f in doc["findings"]] == ["deadlock"] * 3
    locks, owned, chans = sorted(doc["findings"], key=lambda f: f["tasks"][0]["id"])
    # refresh_index holds the RwLock's write guard and awaits the only permit;
    # serve_query holds that permit and awaits a read lock.
    assert tasks_of(locks) == [(3, "diag_channels::refresh_index"), (4, "diag_channels::serve_query")]
    assert [r["kind"] for r in locks["resources"]] == ["tokio::sync::Semaphore", "tokio::sync::RwLock"]
    assert at("diag_channels", "refresh_acquire") in text(locks)
    assert at("diag_channels", "query_read") in text(locks)
    assert "(tokio::sync::RwLock, tokio::sync::Semaphore)" in locks["summary"]
    assert locks["threads"] == []
    # submit_jobs awaits the oneshot whose Sender batch_jobs holds; batch_jobs
    # awaits the mpsc whose only Sender submit_jobs holds.
    assert tasks_of(chans) == [(7, "diag_channels::submit_jobs"), (8, "diag_channels::batch_jobs")]
    assert [r["kind"] for r in chans["resources"]] == ["tokio::sync::oneshot", "tokio::sync::mpsc"]
    assert at("diag_channels", "submit_answer") in text(chans)
    assert at("diag_channels", "batch_recv") in text(chans)
    oneshot, mpsc = (r["address"] for r in chans["resources"])
    assert f"holds the Sender of tokio::sync::mpsc {mpsc} and waits for tokio::sync::oneshot {oneshot}" in text(chans)
    assert f"the Sender of tokio::sync::oneshot {oneshot} and waits for tokio::sync::mpsc {mpsc}" in text(chans)
    assert chans["threads"] == []
    # ingest holds an OwnedSemaphorePermit and awaits an unbounded mpsc whose
    # only Sender emit holds, waiting for a permit.
    assert tasks_of(owned) == [(5, "diag_channels::ingest"), (6, "diag_channels::emit")]
    assert sorted(r["kind"] for r in owned["resources"]) == ["tokio::sync::Semaphore", "tokio::sync::mpsc"]
    sem = [r["address"] for r in owned["resources"] if r["kind"] == "tokio::sync::Semaphore"][0]
    queue = [r["address"] for r in owned["resources"] if r["kind"] == "tokio::sync::mpsc"][0]
    assert (f"task 5 `diag_channels::ingest` holds the Receiver of tokio::sync::mpsc {queue}, "
            f"tokio::sync::Semaphore {sem} and waits for "
            f"tokio::sync::mpsc {queue} at {at('diag_channels', 'ingest_recv')}") in text(owned)
    assert (f"task 6 `diag_channels::emit` holds the Sender of tokio::sync::mpsc {queue} and waits for "
            f"tokio::sync::Semaphore {sem} at {at('diag_channels', 'emit_acquire')}") in text(owned)
    # The cycles share nothing.
    addresses = [{r["address"] for r in f["resources"]} for f in (locks, owned, chans)]
    assert not (addresses[0] & addresses[1] or addresses[1] & addresses[2] or addresses[0] & addresses[2])


def check_std_mutex(doc, live):
    assert [f["kind"] for f in doc["findings"]] == ["deadlock", "blocking_in_async"]
    dead, blocking = doc["findings"]
    # A mixed cycle: the worker thread waits for the guard in refresh's state,
    # and refresh waits for the runtime's only worker.
    assert tasks_of(dead) == [(2, "diag_std_mutex::refresh"), (3, "diag_std_mutex::lookup")]
    assert len(dead["threads"]) == 1
    assert [r["kind"] for r in dead["resources"]] == ["std::sync::Mutex"]
    assert at("diag_std_mutex", "refresh_await") in text(dead)
    assert at("diag_std_mutex", "lookup_lock") in text(dead)
    assert tasks_of(blocking) == [(3, "diag_std_mutex::lookup")]
    assert ("is held by task 2 `diag_std_mutex::refresh`, suspended at "
            + at("diag_std_mutex", "refresh_await")) in text(blocking)
    assert blocking["threads"] == dead["threads"]


def check_lost_waker(doc, live):
    # The bare bug, the same future spawned inside .instrument(span) (no async
    # fn anywhere in the task), and two raced in select!. The FlagSet inside
    # tokio::time::timeout (task 6) is not lost: the timer holds a waker.
    plain, wrapped, raced = doc["findings"]
    assert [f["kind"] for f in doc["findings"]] == ["lost_waker"] * 3
    assert tasks_of(plain) == [(3, "diag_lost_waker::wait_for_flag")]
    assert at("diag_lost_waker", "lost_await") in text(plain)
    assert "awaiting diag_lost_waker::FlagSet" in text(plain)
    assert tasks_of(wrapped) == [(4, "tracing::instrument::Instrumented")]
    assert wrapped["summary"] == (
        "task 4 `tracing::instrument::Instrumented` [span poll_flag{id=7}] waits in "
        "tracing::instrument::Instrumented<diag_lost_waker::FlagSet> and nothing can ever wake it (no waker of it exists)")
    assert tasks_of(raced) == [(5, "diag_lost_waker::either_flag")]
    assert (at("diag_lost_waker", "select_await")
            + " awaiting any of 2 branches: 2 x diag_lost_waker::FlagSet") in text(raced)


def check_starved(doc, live):
    assert [f["kind"] for f in doc["findings"]] == ["starvation", "blocking_in_async"]
    starve, blocking = doc["findings"]
    # Three plain jobs, one inside timeout(), one inside .instrument(span).
    assert tasks_of(starve) == [(i, "diag_starved::worker_job") for i in (1, 2, 3)] + [
        (4, "tokio::time::timeout::Timeout"), (5, "tracing::instrument::Instrumented")]
    assert [t.get("root") for t in starve["tasks"]] == [None] * 3 + ["diag_starved::worker_job"] * 2
    assert ("task 4 `diag_starved::worker_job` (in `tokio::time::timeout::Timeout`) is ready, never polled yet"
            in starve["evidence"])
    assert ("task 5 `diag_starved::worker_job` (in `tracing::instrument::Instrumented`) [span job{id=4}]"
            " is ready, never polled yet") in starve["evidence"]
    assert "current_thread" in starve["summary"]
    assert at("diag_starved", "starve_recv") in text(starve)
    # The thread is blocked inside block_on's own future, not in a task.
    assert blocking["tasks"] == [] and "block_on" in blocking["summary"]
    assert "std::sync::mpsc::Receiver" in blocking["summary"]
    assert at("diag_starved", "starve_recv") in blocking["summary"]
    assert starve["threads"] == blocking["threads"]


def check_timeout_stall(doc, live):
    # A handler awaits its reply inside timeout(20 ms) on a current-thread
    # runtime whose only thread is blocked in block_on: the timeout never
    # fires. Live, its deadline is long past and nothing runs the driver; a
    # core records no "now": only the blocked block_on is told.
    kinds = [f["kind"] for f in doc["findings"]]
    assert kinds == ["starvation"] * live + ["blocking_in_async"], kinds
    blocking = doc["findings"][-1]
    assert blocking["tasks"] == [] and at("diag_timeout_stall", "main_block") in blocking["summary"]
    if live:
        stall = doc["findings"][0]
        assert tasks_of(stall) == [(1, "diag_timeout_stall::fetch_with_deadline")]
        assert re.fullmatch(r"1 task of runtime 1 \(current_thread\) waits on timers that expired up to "
                            r"[0-9.]+ (s|ms) ago: nothing runs the runtime's timer and I/O driver", stall["summary"])
        assert re.search(r"^task 1 `diag_timeout_stall::fetch_with_deadline` awaits tokio::sync::oneshot::Receiver at "
                         + re.escape(at("diag_timeout_stall", "reply_await"))
                         + r" inside a tokio::time::timeout whose deadline passed [0-9.]+ (s|ms) ago$",
                         stall["evidence"][0]), stall["evidence"]
        assert stall["threads"] == blocking["threads"]


def check_wrapped(doc, live):
    # Lock-order inversion whose edges lie inside wrapper futures: one task
    # awaits its locks through tokio::time::timeout, the other is spawned as a
    # Traced wrapper (tracing's Instrumented shape) around its async fn.
    # Before the chains went through wrappers: "No problem found".
    (f,) = doc["findings"]
    assert f["kind"] == "deadlock"
    assert tasks_of(f) == [(3, "diag_wrapped::settle_with_deadline"), (4, "diag_wrapped::Traced")]
    assert [r["kind"] for r in f["resources"]] == ["tokio::sync::Mutex"] * 2
    assert len({r["address"] for r in f["resources"]}) == 2
    assert at("diag_wrapped", "settle_second_lock") in text(f)
    assert at("diag_wrapped", "refund_second_lock") in text(f)
    assert f["threads"] == []


def check_select(doc, live):
    # Lock-order inversion whose edges lie in select! and join! branches:
    # `pump` holds lock a and selects on lock b or a stop message whose only
    # Sender `flush` holds; `flush` holds lock b and joins lock a with a
    # finished sleep. `ticker` (select on a channel or an interval) is healthy.
    # Before the await trees: "No problem found".
    (f,) = doc["findings"]
    assert f["kind"] == "deadlock" and f["threads"] == []
    assert tasks_of(f) == [(3, "diag_select::pump"), (4, "diag_select::flush")]
    assert sorted(r["kind"] for r in f["resources"]) == ["tokio::sync::Mutex"] * 2 + ["tokio::sync::mpsc"]
    assert len({r["address"] for r in f["resources"]}) == 3
    mutex = r"tokio::sync::Mutex 0x[0-9a-f]+"
    chan = r"tokio::sync::mpsc 0x[0-9a-f]+"
    pump, flush = f["evidence"]
    assert re.fullmatch(rf"task 3 `diag_select::pump` holds the Receiver of {chan}, {mutex} and waits at "
                        + re.escape(at("diag_select", "pump_select"))
                        + rf" for any of its 2 branches, and none can proceed: {mutex} \(branch 1\), "
                        rf"a message on {chan} \(branch 2\)", pump), pump
    assert re.fullmatch(rf"task 4 `diag_select::flush` holds the Sender of {chan}, {mutex} and waits at "
                        + re.escape(at("diag_select", "flush_join"))
                        + rf" for all of its 2 branches \(1 still pending\), and cannot finish: {mutex} \(branch 1\)",
                        flush), flush
    assert "one global order" in f["fix"]


def check_collections(doc, live):
    # A deadlock through a JoinSet: `audit` holds a tokio mutex and awaits
    # join_next over two `audit_step` tasks that each wait for it. The same
    # fixture's FuturesUnordered of 2,000 futures on a semaphore nobody holds,
    # and a JoinSet of sleeping workers, are no finding.
    (f,) = doc["findings"]
    assert f["kind"] == "deadlock" and f["threads"] == []
    (audit,), steps = [t for t in f["tasks"] if t["name"] == "collections::audit"], \
        [t for t in f["tasks"] if t["name"] == "collections::audit_step"]
    assert len(f["tasks"]) == 3 and len(steps) == 2
    assert sorted(r["kind"] for r in f["resources"]) == ["tokio::sync::Mutex", "tokio::task::JoinSet"]
    ids = ", ".join(str(t["id"]) for t in sorted(steps, key=lambda t: t["id"]))
    assert any(e.startswith(f"task {audit['id']} `collections::audit` holds tokio::sync::Mutex ")
               and e.endswith(f" (any of tasks {ids}) at " + at("collections", "audit_join_next"))
               for e in f["evidence"]), f["evidence"]
    for t in steps:
        assert any(e.startswith(f"task {t['id']} `collections::audit_step` waits for tokio::sync::Mutex ")
                   and e.endswith(at("collections", "audit_step_lock")) for e in f["evidence"]), f["evidence"]


def check_sleep_loop(doc, live):
    # One task of a current-thread runtime loops on std::thread::sleep(2 ms)
    # and never yields; the two tasks spawned after it are never polled. Live,
    # samples land now and then between two sleeps (or on a sleep's restart
    # after the previous stop): both findings all the same, every time.
    if not live:
        # A core is one instant: it may catch the thread between two sleeps,
        # where nothing tells a never-ending poll from a short one. Then
        # nothing is found; in the sleep, both findings are.
        (thread,) = json.loads(run("bt", "--json", doc["target"]["core"]).stdout)["threads"]
        if thread["syscall"] is None:
            assert doc["findings"] == []
            return
        assert thread["syscall"] == "clock_nanosleep"
    assert [f["kind"] for f in doc["findings"]] == ["starvation", "blocking_in_async"]
    starve, blocking = doc["findings"]
    assert tasks_of(starve) == [(2, "diag_sleep_loop::report"), (3, "diag_sleep_loop::report")]
    assert "current_thread" in starve["summary"]
    assert tasks_of(blocking) == [(1, "diag_sleep_loop::poll_upstream")]
    assert "(clock_nanosleep)" in blocking["summary"]
    assert at("diag_sleep_loop", "loop_sleep") in blocking["summary"]
    assert blocking["fix"] == "use tokio::time::sleep(..).await instead of std::thread::sleep"
    assert starve["threads"] == blocking["threads"] == [doc["target"]["pid"]]


def check_self_shutdown(doc, live):
    (f,) = doc["findings"]
    assert f["kind"] == "self_shutdown"
    assert at("diag_self_shutdown", "self_drop") in f["summary"]
    assert "diag_self_shutdown::stop_service" in text(f)
    assert len(f["threads"]) == 1


def check_thread_locks(doc, live):
    # Guards held in local variables of threads' frames (kept in registers):
    # found through DWARF locations, live and on a core.
    assert [f["kind"] for f in doc["findings"]] == ["deadlock", "deadlock", "blocking_in_async"]
    mixed, plain = sorted(doc["findings"][:2], key=lambda f: "`settings`" not in text(f))
    for f in (mixed, plain):
        assert f["tasks"] == [] and len(f["threads"]) == 2
        assert [r["kind"] for r in f["resources"]] == ["std::sync::Mutex"] * 2
        assert len({r["address"] for r in f["resources"]}) == 2
        assert "global order" in f["fix"]
    # The block_on future holds `settings` on the main thread's stack.
    assert "holds std::sync::Mutex" in text(mixed)
    assert "(`settings` in {async_block#3})" in text(mixed)
    assert "(`entries` in flush)" in text(mixed)
    assert at("diag_thread_locks", "main_journal") in text(mixed)
    assert at("diag_thread_locks", "flusher_lock") in text(mixed)
    # Two threads, each holding `source` in move_stock, blocked on the other's.
    assert text(plain).count("(`source` in move_stock)") == 2
    assert text(plain).count(at("diag_thread_locks", "second_lock")) == 2
    blocking = doc["findings"][2]
    assert blocking["tasks"] == [] and "block_on" in blocking["summary"]
    assert at("diag_thread_locks", "main_journal") in blocking["summary"]
    assert set(blocking["threads"]) < set(mixed["threads"])
    assert "is held by thread" in text(blocking) and "(`entries` in flush)" in text(blocking)


def check_shutdown_wait(doc, live):
    (f,) = doc["findings"]
    assert f["kind"] == "self_shutdown"
    assert f["tasks"] == []
    # main, in the runtime's drop, and the blocking thread it waits for.
    assert len(f["threads"]) == 2 and len(set(f["threads"])) == 2
    main, writer = f["threads"]
    assert main == doc["target"]["pid"]
    assert re.search(rf"thread {main}\b.* waits for thread {writer}\b", f["summary"])
    assert at("diag_shutdown_wait", "shutdown_drop") in f["summary"]
    assert at("diag_shutdown_wait", "audit_recv") in f["summary"]
    assert "std::sync::mpsc::Receiver::recv" in f["summary"]
    assert "diag_shutdown_wait::main " in text(f)
    assert "diag_shutdown_wait::write_audit_log " in text(f)
    assert f"diag_shutdown_wait::main::{{closure#1}} at {at('diag_shutdown_wait', 'writer_spawn')}" in text(f)
    # (With a second runtime, `two`: its blocking thread, also in recv(), is
    # in another pool: the shutdown does not wait for it, and it is not named.)
    assert "ship_metrics" not in text(f)
    assert "shutdown_background" in f["fix"]


def check_demo(doc, live):
    # The bundled demo (demo/run): block_on's own future keeps a std MutexGuard
    # (`cache`) across an .await on a oneshot whose Sender (`feed_tx`) it also
    # holds, so it waits on itself; the workers block on that mutex. Usually
    # both; in about 1 run in 25 one checkout happens to run on a worker while
    # the other parks without tokio's driver, which then is never run again:
    # one worker blocked, the other idle, `serve`'s 20 ms sleep never fires.
    # Live, that stalled timer is a starvation finding in both cases.
    pid = doc["target"]["pid"]
    kinds = [f["kind"] for f in doc["findings"]]
    nblocked = kinds.count("blocking_in_async")
    assert nblocked in (1, 2) and kinds == ["deadlock"] + ["starvation"] * live + ["blocking_in_async"] * nblocked, \
        json.dumps(doc["findings"], indent=1)
    dead = doc["findings"][0]
    assert dead["tasks"] == [] and dead["threads"] == [pid]
    assert [r["kind"] for r in dead["resources"]] == ["tokio::sync::oneshot"]
    assert f"thread {pid} (demo) waits on itself" in dead["summary"]
    assert (f"runs block_on's future demo::main::{{async_block_env#1}}, which holds the Sender of "
            f"tokio::sync::oneshot {dead['resources'][0]['address']} (`feed_tx` in "
            f"demo::main::{{async_block_env#1}}), std::sync::Mutex ") in text(dead)
    assert "(`cache` in demo::warm_cache) and awaits the Receiver of tokio::sync::oneshot" in text(dead)
    assert f"at {at('demo', 'fetch_await')} (demo::fetch_prices)" in text(dead)
    assert "drop or use that end" in dead["fix"]
    blocked = sorted(doc["findings"][1 + live:], key=lambda f: f["tasks"][0]["id"])
    ids = [tasks_of(f) for f in blocked]
    assert ids in ([[(4, "demo::handle_checkout")], [(5, "demo::handle_checkout")]],
                   [[(4, "demo::handle_checkout")]], [[(5, "demo::handle_checkout")]]), ids
    for f in blocked:
        assert at("demo", "checkout_lock") in f["summary"] and "Mutex::lock (futex)" in f["summary"]
        assert re.search(rf"the lock \(std::sync::Mutex 0x[0-9a-f]+\) is held by thread {pid} \(demo\) "
                         rf"\(`cache` in demo::warm_cache, in its block_on future suspended at "
                         rf"{re.escape(at('demo', 'warm_await'))}\)", text(f)), text(f)
    assert len({f["threads"][0] for f in blocked}) == nblocked
    if live:
        starved = doc["findings"][1]
        assert tasks_of(starved) == [(3, "demo::serve")]
        assert re.fullmatch(r"1 task of runtime 1 \(multi_thread\) waits on timers that expired up to "
                            r"[0-9.]+ (s|ms) ago: nothing runs the runtime's timer and I/O driver",
                            starved["summary"]), starved["summary"]
        assert re.fullmatch(r"task 3 `demo::serve` waits on a tokio::time::Sleep at "
                            + re.escape(at("demo", "serve_sleep")) + r" whose deadline passed [0-9.]+ (s|ms) ago",
                            starved["evidence"][0]), starved["evidence"]
        workers = starved["evidence"][1:-1]
        assert len(workers) == 2 and len(starved["threads"]) == 2
        busy = [w for w in workers if re.search(r"is blocked in \S*Mutex::lock \(futex\) at "
                                                + re.escape(at("demo", "checkout_lock")) + " polling task", w)]
        idle = [w for w in workers if w.endswith("is parked without the driver, waiting to be notified")]
        assert len(busy) == nblocked and len(idle) == 2 - nblocked, workers
        assert starved["evidence"][-1].startswith("no thread is parked in the runtime's driver")


def check_healthy(doc, live):
    assert doc["findings"] == [], [text(f) for f in doc["findings"]]


CASES = {
    "diag_greedy": check_greedy,
    "diag_blocking": check_blocking,
    "diag_lock_order": check_lock_order,
    "diag_join_cycle": check_join_cycle,
    "diag_std_mutex": check_std_mutex,
    "diag_channels": check_channels,
    "diag_lost_waker": check_lost_waker,
    "diag_starved": check_starved,
    "diag_timeout_stall": check_timeout_stall,
    "diag_sleep_loop": check_sleep_loop,
    "diag_wrapped": check_wrapped,
    "diag_select": check_select,
    "collections": check_collections,
    "diag_self_shutdown": check_self_shutdown,
    "diag_thread_locks": check_thread_locks,
    "diag_shutdown_wait": check_shutdown_wait,
    "diag_shutdown_wait two": check_shutdown_wait,
    "diag_healthy": check_healthy,
    "demo": check_demo,
}


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_diagnose_live_and_core(fixture, tmp_path, rust_bin):
    name, *args = fixture.split()
    target = Target([rust_bin / name, *args])
    try:
        doc = diagnose(target.pid)
        assert doc["target"]["kind"] == "process"
        assert doc["window_ms"] == 600 and doc["snapshots"] > 10
        CASES[fixture](doc, True)
        assert_untouched(target.pid)
        core = gcore(target.pid, tmp_path)
        assert_untouched(target.pid)
        doc = diagnose(core)
        assert doc["target"]["kind"] == "core" and doc["snapshots"] == 1
        CASES[fixture](doc, False)
    finally:
        target.stop()


def test_text_report(tmp_path, rust_bin):
    """The human report: most severe first, with tasks, lines and a fix."""
    target = Target([rust_bin / "diag_std_mutex"])
    try:
        r = run("diagnose", "--window", "300ms", target.pid)
        assert r.returncode == 1, r.stderr
        out = r.stdout
        assert "2 problems found" in out
        assert out.index("1. deadlock:") < out.index("2. blocking_in_async:")
        assert "2 diag_std_mutex::refresh, 3 diag_std_mutex::lookup" in out
        assert "fix: do not hold a std::sync::MutexGuard across .await" in out
    finally:
        target.stop()
    healthy = Target([rust_bin / "diag_healthy"])
    try:
        r = run("diagnose", "--window", "300ms", healthy.pid)
        assert r.returncode == 0, r.stderr
        # Six async tasks, plus the 1 ms spawn_blocking closure when the last
        # stop catches it in flight (reached through the JoinHandle awaiting it).
        assert re.search(r"^No problem found in (6|7) tasks of 1 runtime and \d+ threads\.$",
                         r.stdout, re.M), r.stdout
    finally:
        healthy.stop()


def test_greedy_threshold_option(rust_bin):
    """A threshold longer than the window: the same CPU loop is not reported."""
    target = Target([rust_bin / "diag_greedy"])
    try:
        doc = diagnose(target.pid, "--greedy-threshold", "2s")
        assert doc["findings"] == []
        assert_untouched(target.pid)
    finally:
        target.stop()


@pytest.mark.parametrize("args, code, message", [
    (["--window", "soon", "1"], 64, "bad duration 'soon'"),
    (["--interval", "0ms", "1"], 64, "--interval must be at least 1ms"),
    ([], 64, "TARGET is missing"),
    (["999999999"], 2, "no process with id"),
])
def test_usage_and_errors(args, code, message):
    r = run("diagnose", *args)
    assert r.returncode == code, r.stderr
    assert message in r.stderr


def test_pthread_lock_order_between_threads(tmp_path):
    """C threads in an ABBA deadlock on two pthread mutexes: the two threads
    and both mutexes, not the thread stuck behind them nor the one waiting on
    a slow (sleeping) holder. Live and on a core."""
    import pathlib
    from conftest import C_FIXTURES, ROOT
    source = ROOT / "tests" / "fixtures" / "c" / "deadlock.c"
    second = f"deadlock.c:{marker_lines(source)['second_lock']}"
    target = Target([C_FIXTURES / "fixture-deadlock"])
    try:
        names = {int(p.name): (p / "comm").read_text().strip()
                 for p in pathlib.Path(f"/proc/{target.pid}/task").iterdir()}
        tids = {name: tid for tid, name in names.items()}
        for where in ("live", "core"):
            doc = diagnose(target.pid if where == "live" else gcore(target.pid, tmp_path))
            (f,) = doc["findings"]
            assert f["kind"] == "deadlock" and f["tasks"] == []
            assert f["threads"] == sorted([tids["transfer-ab"], tids["transfer-ba"]])
            assert [r["kind"] for r in f["resources"]] == ["pthread_mutex_t"] * 2
            assert len({r["address"] for r in f["resources"]}) == 2
            ab, ba = sorted(f["evidence"])
            assert ab.startswith(f"thread {tids['transfer-ab']}") and second in ab
            assert ab.endswith(f"held by thread {tids['transfer-ba']}" + (" (transfer-ba)" if where == "live" else ""))
            assert ba.startswith(f"thread {tids['transfer-ba']}") and second in ba
            assert "(transfer)" in ab and "pthread_mutex_lock" in ab
            assert_untouched(target.pid)
    finally:
        target.stop()


def test_no_tokio_is_healthy():
    """A C program: no runtime, no task; nothing found, exit 0."""
    from conftest import C_FIXTURES
    target = Target([C_FIXTURES / "fixture-threads"])
    try:
        doc = diagnose(target.pid)
        assert doc["findings"] == []
        assert_untouched(target.pid)
    finally:
        target.stop()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_mid_window_leaves_target_running(sig, rust_bin):
    """diagnose stopped by a signal during its window: the target runs on, untraced."""
    import signal
    import subprocess
    import time
    from conftest import TASKDBG
    target = Target([rust_bin / "diag_healthy"])
    try:
        p = subprocess.Popen([str(TASKDBG), "diagnose", "--window", "10s", str(target.pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.7)
        p.send_signal(getattr(signal, sig))
        p.wait(timeout=10)
        assert p.returncode != 0
        assert_untouched(target.pid)
        assert target.proc.poll() is None
    finally:
        target.stop()
