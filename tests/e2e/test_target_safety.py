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
