"""`taskdbg bt` on a real tokio program: live, gcore core, kernel core.

tests/fixtures/rust/src/bin/stacks.rs puts a worker in std::thread::sleep under
three nested async fns; their frames and `.await` lines must all show.
"""
import pytest

from conftest import (RUST_SOURCE_DIR, STD_SLEEP, assert_frames, assert_untouched, bt_json,
                      gcore, kernel_core, marker_lines, run, thread_by, thread_with_function)

SRC = "src/bin/stacks.rs"
L = marker_lines(RUST_SOURCE_DIR / "stacks.rs")


def check_rust_stacks(doc, live):
    worker = thread_with_function(doc, "stacks::ledger::settle::{async_fn#0}")
    assert worker["role"] == "worker"
    assert worker["syscall"] == "clock_nanosleep"
    names = [f["function"] for f in worker["frames"]]
    assert names.index(STD_SLEEP) < names.index("stacks::ledger::settle::{async_fn#0}")
    assert_frames(worker, [
        ("stacks::ledger::settle::{async_fn#0}", SRC, L["settle_sleep"], None),
        ("stacks::audit::{async_fn#0}", SRC, L["audit_await"], None),
        ("stacks::transfer::{async_fn#0}", SRC, L["transfer_await"], None)])
    # Down to the worker loop and the thread's start.
    assert "tokio::runtime::scheduler::multi_thread::worker::Context::run_task" in names
    assert "tokio::runtime::scheduler::multi_thread::worker::run" in names

    # The worker is polling stacks::transfer, task 3; no other thread polls a
    # task (the blocking thread runs a spawn_blocking closure, not a task).
    assert worker["task"] == 3
    assert [t["task"] for t in doc["threads"] if t is not worker] == [None] * 4

    roles = sorted(t["role"] for t in doc["threads"])
    assert roles == ["blocking", "main", "other", "worker", "worker"]

    blocking = thread_by(doc, role="blocking")
    assert blocking["syscall"] == "clock_nanosleep"
    lines = [(f["file"] or "").endswith(SRC) and f["line"] for f in blocking["frames"]]
    assert L["blocking_sleep"] in lines

    other = thread_by(doc, role="other")
    assert other["syscall"] == "futex"
    assert "std::sync::mpsc::Receiver<T>::recv" in [f["function"] for f in other["frames"]]
    assert any(f["line"] == L["recv"] and (f["file"] or "").endswith(SRC) for f in other["frames"])

    main = thread_by(doc, role="main")
    assert "tokio::runtime::runtime::Runtime::block_on" in [f["function"] for f in main["frames"]]
    assert "stacks::main" in [f["function"] for f in main["frames"]]
    if live:
        assert other["name"] == "batch-writer"
        # tokio's default worker name, cut to 15 bytes by the kernel:
        # "tokio-runtime-worker", "tokio-rt-worker" since 1.50.
        assert worker["name"] in ("tokio-runtime-w", "tokio-rt-worker")
        assert main["name"] == "stacks"
        assert main["syscall"] == "futex"


def test_live(rust_stacks, rust_bin):
    doc = bt_json(rust_stacks.pid)
    assert doc["target"]["exe"] == str(rust_bin / "stacks")
    assert len(doc["threads"]) == 5
    check_rust_stacks(doc, live=True)
    assert_untouched(rust_stacks.pid)


def test_live_repeatedly(rust_stacks):
    """Stopping and resuming many times leaves the service exactly as it was."""
    for _ in range(10):
        r = run("bt", rust_stacks.pid)
        assert r.returncode == 0, r.stderr
        assert_untouched(rust_stacks.pid)
    check_rust_stacks(bt_json(rust_stacks.pid), live=True)


def test_gcore(rust_stacks, module_tmp):
    core = gcore(rust_stacks.pid, module_tmp)
    assert_untouched(rust_stacks.pid)
    doc = bt_json(core)
    assert doc["target"]["kind"] == "core" and doc["target"]["pid"] == rust_stacks.pid
    check_rust_stacks(doc, live=False)


def test_kernel_core(tmp_path, rust_bin):
    core, _ = kernel_core([rust_bin / "stacks", "abort"], tmp_path)
    doc = bt_json(core)
    check_rust_stacks(doc, live=False)
    main = thread_by(doc, role="main")
    assert any(f["line"] == L["abort"] and (f["file"] or "").endswith(SRC) for f in main["frames"])
