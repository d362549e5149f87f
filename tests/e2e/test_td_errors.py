"""The td.* error rule (docs/plugins.md, "Errors"): tests/lua/td_errors.lua run
with `taskdbg run` against the C fixture lists.c, live and on a core."""
import json

import pytest

from conftest import C_FIXTURES, ROOT, Target, assert_untouched, gcore, run

SUITE = ROOT / "tests" / "lua" / "td_errors.lua"
FATAL = ROOT / "tests" / "lua" / "td_errors_fatal.lua"
CHECKS = {"live": 268, "core": 274}   # the core also checks target_clock_ms's error (6 checks, not 0)


@pytest.fixture(scope="module")
def lists():
    target = Target([C_FIXTURES / "fixture-lists"])
    try:
        yield target
    finally:
        target.stop()


def addresses(target):
    """broken, cycle, lonely from the fixture's ready line."""
    words = dict(w.split("=") for w in target.ready_line.split()[1:])
    return [words["broken"], words["cycle"], words["lonely"]]


def test_td_errors_suite(lists, module_tmp):
    for mode, target in (("live", lists.pid), ("core", gcore(lists.pid, module_tmp))):
        r = run("run", SUITE, target, *addresses(lists), mode)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["failures"] == [], f"{mode}: {doc['failures']}"
        assert doc["passed"] == CHECKS[mode], mode
    assert_untouched(lists.pid)


@pytest.mark.parametrize("what,message", [
    ("budget", "time budget exhausted: over 2000 ms with the target stopped"),
    ("try-budget", "time budget exhausted: over 2000 ms with the target stopped"),
    ("oom", "not enough memory"),
])
def test_budget_and_oom_end_the_call(lists, what, message):
    """A pcall that catches a budget or oom error sees its kind, and the call fails all the same."""
    r = run("run", FATAL, lists.pid, what, timeout=120)
    kind = "oom" if what == "oom" else "budget"
    assert r.stdout.strip() == f"caught kind={kind} is_error=true", r.stdout
    assert r.returncode == 2
    assert f"script {FATAL} failed: {message}" in r.stderr, r.stderr
    assert_untouched(lists.pid)
