"""Never harm the target: it keeps running, loses and gains no signal, and is
detached on every way taskdbg can end, even mid-stop."""
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import (C_FIXTURES, TASKDBG, Target, assert_untouched, bt_json, run, thread_states,
                      tracer_of)


def rt_signal_count(target):
    os.kill(target.pid, signal.SIGUSR1)
    line = target.readline()
    assert line.startswith("rt_signals "), line
    return int(line.split()[1])


def test_no_signal_lost_or_added():
    """Real-time signals queue, so every one sent must arrive exactly once, even
    those that land while taskdbg holds the process stopped."""
    target = Target([C_FIXTURES / "fixture-threads"])
    try:
        sent = 0
        done = threading.Event()

        def sender():
            nonlocal sent
            while not done.is_set() and sent < 2000:
                os.kill(target.pid, signal.SIGRTMIN)
                sent += 1
                time.sleep(0.0005)

        th = threading.Thread(target=sender)
        th.start()
        for _ in range(25):
            r = run("bt", target.pid)
            assert r.returncode == 0, r.stderr
        done.set()
        th.join()
        assert sent > 100
        # Let queued signals drain, then ask for the count.
        time.sleep(0.2)
        assert rt_signal_count(target) == sent
        assert_untouched(target.pid)
    finally:
        target.stop()


def wait_until_stopped(pid, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        states = thread_states(pid)
        if states and all(s == "t" for s in states.values()):
            return
        time.sleep(0.005)
    raise AssertionError(f"taskdbg never stopped {pid}: {thread_states(pid)}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                                 signal.SIGSEGV, signal.SIGABRT, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)
def test_detach_when_taskdbg_dies_mid_stop(sig):
    """taskdbg is killed while the target is stopped: the target must run on."""
    target = Target([C_FIXTURES / "fixture-threads"])
    try:
        env = dict(os.environ, TASKDBG_TEST_PAUSE_MS="5000")
        proc = subprocess.Popen([str(TASKDBG), "bt", str(target.pid)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_stopped(target.pid)
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == -sig
        assert_untouched(target.pid)
        # Nothing was delivered to the target in passing.
        assert rt_signal_count(target) == 0
        assert target.proc.poll() is None
    finally:
        target.stop()


def test_threads_born_during_attach_are_caught():
    """A process that creates threads all the time: every snapshot is whole, and
    no thread is left stopped or traced."""
    target = Target([C_FIXTURES / "fixture-threads", "churn"])
    try:
        for _ in range(30):
            doc = bt_json(target.pid)
            assert doc["threads"], doc
            names = {t["name"] for t in doc["threads"]}
            assert {"reader", "sleeper", "chain"} <= names
            # Every thread the snapshot holds was unwound, the new ones too.
            for t in doc["threads"]:
                assert t["frames"], t
        assert target.proc.poll() is None, f"the target died: {target.proc.returncode}"
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_job_control_stopped_process_stays_stopped():
    """A process stopped with SIGSTOP before taskdbg came is left stopped."""
    target = Target([C_FIXTURES / "fixture-threads"])
    try:
        os.kill(target.pid, signal.SIGSTOP)
        time.sleep(0.1)
        doc = bt_json(target.pid)
        assert len(doc["threads"]) == 4
        time.sleep(0.1)
        assert set(thread_states(target.pid).values()) == {"T"}
        assert tracer_of(target.pid) == 0
        os.kill(target.pid, signal.SIGCONT)
        assert_untouched(target.pid)
        assert rt_signal_count(target) == 0
    finally:
        target.stop()


def test_thread_that_cannot_stop_does_not_hold_the_others():
    """A thread in uninterruptible sleep (a vfork parent) never stops: taskdbg
    leaves it out, says so, and the other threads are resumed at once."""
    target = Target([C_FIXTURES / "fixture-vfork", "8"])
    try:
        time.sleep(0.2)
        doc = bt_json(target.pid)
        main = [t for t in doc["threads"] if t["tid"] == target.pid][0]
        assert main["frames"] == []
        assert "did not stop within 250 ms (uninterruptible sleep" in main["unwind_error"]
        waiter = [t for t in doc["threads"] if t["tid"] != target.pid][0]
        assert any(f["function"] == "waiter" for f in waiter["frames"])
        # Its pending stop is cancelled: once the child exits, it runs again.
        deadline = time.time() + 30
        while time.time() < deadline and thread_states(target.pid)[target.pid] == "D":
            time.sleep(0.1)
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_target_killed_while_stopped():
    """The target dies (SIGKILL) while taskdbg holds it: taskdbg ends, reaps
    nothing of the target's, and says what happened."""
    target = Target([C_FIXTURES / "fixture-threads"])
    env = dict(os.environ, TASKDBG_TEST_PAUSE_MS="1000")
    proc = subprocess.Popen([str(TASKDBG), "bt", str(target.pid)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until_stopped(target.pid)
    os.kill(target.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 2), (proc.returncode, err)
    # The real parent (this test) still gets to reap it.
    assert target.proc.wait(timeout=10) == -signal.SIGKILL


def test_main_thread_exited():
    """A process whose main thread called pthread_exit is alive, not a zombie."""
    target = Target([C_FIXTURES / "fixture-threads", "exit-main"])
    try:
        time.sleep(0.1)
        doc = bt_json(target.pid)
        names = {t["name"] for t in doc["threads"]}
        assert {"reader", "sleeper", "chain"} <= names
        # Whole stacks: memory is read through a living thread.
        functions = {f["function"] for t in doc["threads"] for f in t["frames"]}
        assert {"reader_main", "sleeper_main", "level_one", "chain_main"} <= functions
        states = [s for tid, s in thread_states(target.pid).items() if tid != target.pid]
        assert "t" not in states and "T" not in states
    finally:
        target.stop()
