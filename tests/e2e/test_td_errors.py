"""The td.* error rule (docs/plugins.md, "Errors"): tests/lua/td_errors.lua run
with `taskdbg run` against the C fixture lists.c, live and on a core."""
import json
import signal
import subprocess
import time

import pytest

from conftest import C_FIXTURES, ROOT, TASKDBG, Target, assert_untouched, gcore, run

SUITE = ROOT / "tests" / "lua" / "td_errors.lua"
FATAL = ROOT / "tests" / "lua" / "td_errors_fatal.lua"
CHECKS = {"live": 269, "core": 275}   # the core also checks target_clock_ms's error (6 checks, not 0)


@pytest.fixture(scope="module")
def lists():
    target = Target([C_FIXTURES / "fixture-lists"])
    try:
        yield target
    finally:
        target.stop()


def addresses(target):
    """broken, cycle, lonely, motto from the fixture's ready line."""
    words = dict(w.split("=") for w in target.ready_line.split()[1:])
    return [words["broken"], words["cycle"], words["lonely"], words["motto"]]


def test_td_errors_suite(lists, module_tmp):
    for mode, target in (("live", lists.pid), ("core", gcore(lists.pid, module_tmp))):
        r = run("run", SUITE, target, *addresses(lists), mode)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["failures"] == [], f"{mode}: {doc['failures']}"
        assert doc["passed"] == CHECKS[mode], mode
    assert_untouched(lists.pid)


@pytest.mark.parametrize("what,message", [
    # a script has no time budget (docs/lua-api.md): Ctrl-C ends its loop, as a budget would
    ("budget", "interrupted"),
    ("try-budget", "interrupted"),
    ("oom", "not enough memory"),
])
def test_budget_and_oom_end_the_call(lists, what, message):
    """A pcall that catches a budget or oom error sees its kind, and the call fails all the same."""
    if what == "oom":
        r = run("run", FATAL, lists.pid, what, timeout=120)
        out, err, code = r.stdout, r.stderr, r.returncode
    else:
        proc = subprocess.Popen([str(TASKDBG), "run", str(FATAL), str(lists.pid), what],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline() == "looping\n"
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        code = proc.returncode
    kind = "oom" if what == "oom" else "budget"
    assert out.replace("looping\n", "").strip() == f"caught kind={kind} is_error=true", out
    assert code == 2
    assert f"script {FATAL} failed: {message}" in err, err
    assert_untouched(lists.pid)
