"""`taskdbg run`: Lua scripts against live processes and cores, in the sandbox."""
import json

import pytest

from conftest import ROOT, Target, assert_untouched, gcore, run


def test_fields_script(rust_stacks, tokio_version):
    r = run("run", ROOT / "scripts" / "fields.lua", rust_stacks.pid,
            "tokio::runtime::context::CONTEXT")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    if tokio_version == "1.24.2":   # std's lazy Storage; tokio >= 1.29 makes CONTEXT const (eager)
        assert doc["type"] == "Storage<tokio::runtime::context::Context, ()>"
        assert [f["name"] for f in doc["fields"]] == ["value", "state"]
    else:
        assert doc["type"] == "Storage<tokio::runtime::context::Context>"
        assert [f["name"] for f in doc["fields"]] == ["val", "state"]
    assert_untouched(rust_stacks.pid)


def test_runtime_threads_script(rust_stacks, module_tmp):
    for target in (rust_stacks.pid, gcore(rust_stacks.pid, module_tmp)):
        r = run("run", ROOT / "scripts" / "runtime-threads.lua", target)
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)
        assert len(rows) == 5
        inside = [row for row in rows if row["in_runtime"]]
        # main (block_on), both workers and the blocking thread have entered the runtime
        assert len(inside) == 4
        # Raw CONTEXT ids: the worker polling stacks::transfer says 3; the idle
        # worker says the id of the blocking-pool task running its loop (1 or
        # 2); the spawn_blocking thread says 4. The main thread polls none.
        tasks = sorted(row["task"] for row in rows if row["task"] is not None)
        assert tasks[1:] == [3, 4] and tasks[0] in (1, 2), tasks


@pytest.mark.parametrize("line,message", [
    ("error('nope')", "nope"),
    # a td.error reads as where the call was made and its message (docs/plugins.md, "Errors")
    ("td.read(0x1000)", "cannot read 8 bytes at 0x1000: not mapped in the process"),
])
def test_script_error_names_file_and_line(rust_stacks, tmp_path, line, message):
    script = tmp_path / "bad.lua"
    script.write_text(f"local x = 1\n{line}\n")
    r = run("run", script, rust_stacks.pid)
    assert r.returncode == 2
    assert f"script {script} failed: bad.lua:2: {message}" in r.stderr, r.stderr
    assert_untouched(rust_stacks.pid)


def test_walk_list_fields_must_be_named(rust_stacks, tmp_path):
    """A spec mistake gets a message that says what to write, not Lua's internals."""
    script = tmp_path / "walk.lua"
    script.write_text("return td.walk_list{first = 0, next = {at = 0}, fields = {{at = 0}}}\n")
    r = run("run", script, rust_stacks.pid)
    assert r.returncode == 2
    assert "td.walk_list: fields are named: fields = {name = {at = N}, ...}" in r.stderr, r.stderr
    assert "invalid key to 'next'" not in r.stderr
    assert_untouched(rust_stacks.pid)


def test_run_usage():
    r = run("run", "only-a-script.lua")
    assert r.returncode == 64 and "SCRIPT.lua and TARGET are needed" in r.stderr


def test_script_cannot_hold_a_live_target(rust_stacks, tmp_path):
    """A live target waits while a script runs: 2 s at most, then it runs on."""
    script = tmp_path / "spin.lua"
    script.write_text("while true do end\n")
    r = run("run", script, rust_stacks.pid)
    assert r.returncode == 2
    assert "time budget exhausted: over 2000 ms with the target stopped" in r.stderr
    assert_untouched(rust_stacks.pid)
