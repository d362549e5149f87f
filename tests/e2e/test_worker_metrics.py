"""A runtime's workers and tokio's own counters (issue #14, `taskdbg top`):
RUNTIME's `worker_details` (per worker: index, thread, task, tick, local
queue, and from tokio 1.45 WorkerMetrics' busy_duration_total, park_count,
park_unpark_count) and `metrics` (alive tasks, global queue, tasks spawned),
live, on a core and through the Lua API. Where a tokio does not keep a
counter, its key is absent: never a zero."""
import json
import pathlib
import time

import pytest

from conftest import gcore, run, started

WORKERS = 3
RINGS, RING = 50, 5           # load.rs: 50 rings of 5 relays, one task each
# The threads tokio names (its default thread name: 1.53 renamed it).
TOKIO_THREAD_NAMES = ("tokio-runtime-w", "tokio-rt-worker")
COUNTERS = {"busy_ns", "park_count", "park_unpark_count"}


def version(v):
    return tuple(int(x) for x in v.split("."))


def has_worker_metrics(tokio_version):
    # WorkerMetrics has fields without tokio_unstable from 1.45 (an empty mock before).
    return version(tokio_version) >= (1, 45)


def expected_metrics_keys(tokio_version, flavor):
    """The runtime-wide counters each release keeps (docs/design.md, "Worker metrics")."""
    keys = {"num_workers"}
    v = version(tokio_version)
    if flavor == "multi_thread" or v >= (1, 29):
        keys.add("global_queue_depth")      # current_thread kept a VecDeque before 1.29
    if v >= (1, 29):
        keys.add("num_alive_tasks")         # CountedLinkedList (1.29), ShardedList.count (1.35)
    if v >= (1, 39):
        keys.add("spawned_tasks_count")     # ShardedList.added (tokio 1.39's spawned_tasks_count)
    return keys


def tasks_json(target):
    r = run("tasks", "--json", target)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def comm(pid, tid):
    return pathlib.Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()


@pytest.fixture(scope="module")
def load(rust_bin):
    """load.rs with WORKERS workers; `started_at`: a time before the process began."""
    started_at = time.time()
    for target in started([rust_bin / "load", WORKERS]):
        target.started_at = started_at
        yield target


def check_workers(doc, tokio_version, pid=None):
    """The load fixture's one runtime and its workers, in every way that does
    not depend on when it was read. Returns the runtime."""
    (rt,) = doc["runtimes"]
    assert rt["flavor"] == "multi_thread"
    workers = rt["worker_details"]
    assert [w["index"] for w in workers] == list(range(WORKERS))
    # One record per worker thread: the threads in the scheduler loop.
    assert len(rt["workers"]) == WORKERS
    assert sorted(w["tid"] for w in workers) == sorted(rt["workers"])
    roles = {t["tid"]: t["role"] for t in doc["threads"]}
    assert all(roles[w["tid"]] == "worker" for w in workers)
    if pid is not None:
        # ... which are all of tokio's threads but the blocking one (load's spawn_blocking).
        named = {t["tid"] for t in doc["threads"] if comm(pid, t["tid"]) in TOKIO_THREAD_NAMES}
        (other,) = named - set(rt["workers"])
        assert roles[other] == "blocking"
        assert len(named) == WORKERS + 1
    # The task each polls: the one whose running_on it is, else none.
    polled = {t["running_on"]: t["id"] for t in rt["tasks"] if t["running_on"] is not None}
    assert {w["tid"]: w["task"] for w in workers} == {tid: polled.get(tid) for tid in rt["workers"]}
    for w in workers:
        assert 0 <= w["local_queue_depth"] <= 256          # a worker's queue holds 256
        assert "tick" not in w or (isinstance(w["tick"], int) and 0 <= w["tick"] < 2 ** 32)
        if has_worker_metrics(tokio_version):
            assert COUNTERS <= set(w)
            p, pu = w["park_count"], w["park_unpark_count"]
            # Each park counts in both, each unpark in the second; a parked
            # worker has one unpark fewer. (-3: a stop between the two stores.)
            assert p > 0 and 2 * p - 3 <= pu <= 2 * p, w
            assert w["busy_ns"] > 0
        else:
            assert not COUNTERS & set(w), w
    metrics = rt["metrics"]
    assert set(metrics) == expected_metrics_keys(tokio_version, "multi_thread")
    assert metrics["num_workers"] == WORKERS
    assert metrics["global_queue_depth"] >= 0
    assert len(rt["tasks"]) == RINGS * RING
    if "num_alive_tasks" in metrics:
        assert metrics["num_alive_tasks"] == RINGS * RING
    if "spawned_tasks_count" in metrics:
        assert metrics["spawned_tasks_count"] == RINGS * RING
    return rt


def counters(rt):
    return [{k: w[k] for k in COUNTERS} for w in rt["worker_details"]]


def test_workers_live(load, tokio_version):
    first = tasks_json(load.pid)
    read_at = time.time()
    rt1 = check_workers(first, tokio_version, load.pid)
    time.sleep(0.5)
    second = tasks_json(load.pid)
    rt2 = check_workers(second, tokio_version, load.pid)
    # A worker keeps its index and its thread.
    assert [w["tid"] for w in rt1["worker_details"]] == [w["tid"] for w in rt2["worker_details"]]
    if not has_worker_metrics(tokio_version):
        return
    # Real figures: a worker is busy at most the time its runtime has existed;
    # and in 0.5 s of relaying, each worker worked and parked (they park about
    # a thousand times a second here).
    for w in rt1["worker_details"]:
        assert w["busy_ns"] <= (read_at - load.started_at) * 1e9
    for a, b in zip(counters(rt1), counters(rt2)):
        assert b["busy_ns"] > a["busy_ns"] and b["park_count"] > a["park_count"], (a, b)
        assert b["park_unpark_count"] > a["park_unpark_count"]


def test_workers_core(load, tokio_version, tmp_path):
    before = check_workers(tasks_json(load.pid), tokio_version)
    core = gcore(load.pid, tmp_path)
    after = check_workers(tasks_json(load.pid), tokio_version)
    doc = tasks_json(core)
    assert doc["target"]["kind"] == "core"
    rt = check_workers(doc, tokio_version)
    assert [w["tid"] for w in rt["worker_details"]] == [w["tid"] for w in before["worker_details"]]
    if has_worker_metrics(tokio_version):
        # Read from the core: between what the process said before and after it.
        for b, c, a in zip(counters(before), counters(rt), counters(after)):
            for key in COUNTERS:
                assert b[key] <= c[key] <= a[key], (key, b, c, a)


def test_workers_lua_api(load, tokio_version, tmp_path):
    script = tmp_path / "workers.lua"
    script.write_text("""
local out = {}
for _, w in ipairs(taskdbg.workers()) do
  out[#out + 1] = { runtime = w.runtime, index = w.index, tid = w.tid,
                    has_busy = w.busy_ns ~= nil, park_count = w.park_count }
end
local rt = taskdbg.runtimes()[1]
return { workers = out, n = #rt.worker_details, threads = rt.workers, metrics = rt.metrics }
""")
    r = run("run", script, load.pid)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["n"] == WORKERS
    assert [(w["runtime"], w["index"]) for w in got["workers"]] == [(1, i) for i in range(WORKERS)]
    assert sorted(w["tid"] for w in got["workers"]) == sorted(got["threads"])
    assert all(w["has_busy"] == has_worker_metrics(tokio_version) for w in got["workers"])
    assert all((w.get("park_count", 0) > 0) == has_worker_metrics(tokio_version) for w in got["workers"])
    assert set(got["metrics"]) == expected_metrics_keys(tokio_version, "multi_thread")


# WorkerMetrics.thread_id of each worker (tokio >= 1.45): the std ThreadId
# each worker's thread stores when it starts running that worker, read
# straight from the runtime's Handle (not through the scheduler Contexts
# the plugin reads).
THREAD_IDS = """
local function peel(w)
  for _ = 1, 32 do
    local set, n, only = {}, 0, nil
    for _, f in ipairs(td.fields(w)) do
      set[f.name] = true
      if f.size ~= 0 then n = n + 1; only = f.name end
    end
    local step
    if set.data and (set.raw or set.poison) then step = "data"
    elseif set.value and set.borrow then step = "value"
    elseif n == 1 and (only == "value" or only:find("^__%d+$")) then step = only end
    if not step then break end
    w = w[step]
  end
  return w
end
-- The main thread is in the runtime's block_on: its CONTEXT holds the Handle.
local ctx = peel(td.tls("tokio::runtime::context::CONTEXT", taskdbg.target().pid).val)
local arc = peel(td.variant(peel(td.variant(peel(ctx.current.handle)))))
local wm = td.deref(arc.ptr.pointer).data.shared.worker_metrics
local elem = td.pointee(td.type_of(wm.data_ptr))
local ids = {}
for i = 0, td.uint(wm.length) - 1 do
  local m = td.value(elem, td.pointer(wm.data_ptr) + i * td.size(elem))
  local id, variant = td.variant(peel(m.thread_id))
  assert(variant == "Some", variant)
  ids[i + 1] = td.read(td.addr(id), 8)
end
local tids = {}
for i, w in ipairs(taskdbg.workers()) do tids[i] = w.tid end
return { ids = ids, tids = tids }
"""


def test_worker_threads_match_tokio_thread_ids(load, tokio_version, tmp_path):
    """Which thread runs which worker: std numbers threads (ThreadId) in the
    order it creates them, as the kernel does its tids, so the worker tokio
    says thread N runs and the worker taskdbg gives thread N's tid agree in
    rank. (Workers need not run in index order: in the load fixture worker 2
    often runs on the first thread started.)"""
    if not has_worker_metrics(tokio_version):
        pytest.skip(f"tokio {tokio_version} keeps no worker thread ids without tokio_unstable")
    script = tmp_path / "thread_ids.lua"
    script.write_text(THREAD_IDS)
    r = run("run", script, load.pid)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    ids, tids = got["ids"], got["tids"]
    assert len(ids) == len(tids) == WORKERS and len(set(ids)) == WORKERS
    by_id = sorted(range(WORKERS), key=lambda i: ids[i])
    by_tid = sorted(range(WORKERS), key=lambda i: tids[i])
    assert by_id == by_tid, (ids, tids)


def test_current_thread_workers(rust_tasks, tokio_version):
    """tasks.rs: runtime 2 is a current_thread runtime whose thread polls hog
    (task 10) forever; runtime 3 one no thread has entered, its one task
    notified in its global queue."""
    doc = tasks_json(rust_tasks.pid)
    rt1, rt2, rt3 = doc["runtimes"]
    assert [w["index"] for w in rt1["worker_details"]] == [0, 1]
    assert sorted(w["tid"] for w in rt1["worker_details"]) == sorted(rt1["workers"])
    assert all(w["task"] is None for w in rt1["worker_details"])      # both parked
    (w2,) = rt2["worker_details"]
    assert (w2["index"], w2["tid"], w2["task"]) == (0, rt2["workers"][0], 10)
    (w3,) = rt3["worker_details"]
    assert (w3["index"], w3["tid"], w3["task"]) == (0, None, None)
    assert "tick" not in w3
    for rt in (rt2, rt3):
        assert set(rt["metrics"]) == expected_metrics_keys(tokio_version, "current_thread")
        assert rt["metrics"]["num_workers"] == 1
    if version(tokio_version) >= (1, 29):
        assert (rt2["metrics"]["num_alive_tasks"], rt3["metrics"]["num_alive_tasks"]) == (2, 1)
        assert rt3["metrics"]["global_queue_depth"] == 1       # dormant, notified, never run
    if "spawned_tasks_count" in rt1["metrics"]:
        assert [rt["metrics"]["spawned_tasks_count"] for rt in (rt1, rt2, rt3)] == [7, 2, 1]
    if has_worker_metrics(tokio_version):
        # Runtime 3 never ran; runtime 2's thread has not parked since hog began.
        assert {k: w3[k] for k in COUNTERS} == {"busy_ns": 0, "park_count": 0, "park_unpark_count": 0}
        assert w2["local_queue_depth"] == 1                    # woken, behind hog
        assert w2["busy_ns"] > 0
        for w in rt1["worker_details"]:
            assert w["park_count"] > 0 and 2 * w["park_count"] - 3 <= w["park_unpark_count"] <= 2 * w["park_count"]
    else:
        for w in rt1["worker_details"] + [w2, w3]:
            assert not COUNTERS & set(w), w
