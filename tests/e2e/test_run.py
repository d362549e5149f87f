"""`taskdbg run`: Lua scripts against live processes and cores (docs/lua-api.md)."""
import json
import signal
import subprocess
import time

import pytest

from conftest import ROOT, RUSTC_1_63, TASKDBG, assert_untouched, gcore, run, thread_states, tracer_of


def test_fields_script(rust_stacks, tokio_version):
    r = run("run", ROOT / "scripts" / "fields.lua", rust_stacks.pid,
            "tokio::runtime::context::CONTEXT")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    if RUSTC_1_63:   # std's fast::Key of Rust 1.63 (tokio 1.24's CONTEXT is not const)
        assert doc["type"] == "Key<tokio::runtime::context::Context>"
        assert [f["name"] for f in doc["fields"]] == ["inner", "dtor_state"]
    elif tokio_version == "1.24.2":   # std's lazy Storage; tokio >= 1.29 makes CONTEXT const (eager)
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


def script(tmp_path, text, name="s.lua"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_looping_script_does_not_hold_the_target(rust_stacks, tmp_path):
    """A live target runs while the script does: a script that spins leaves it
    running, untraced; SIGINT (Ctrl-C) ends the script, exit 2, target untouched."""
    spin = script(tmp_path, 'io.stdout:write("spinning\\n"); io.stdout:flush()\nwhile true do end\n')
    proc = subprocess.Popen([str(TASKDBG), "run", str(spin), str(rust_stacks.pid)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "spinning\n"
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:   # a second of spinning, looked at throughout
            states = thread_states(rust_stacks.pid)
            assert not any(s in "tT" for s in states.values()), states
            assert tracer_of(rust_stacks.pid) == 0
            time.sleep(0.05)
        assert proc.poll() is None, "the script ended by itself"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, err
    assert f"script {spin} failed: interrupted" in err, err
    assert_untouched(rust_stacks.pid)


@pytest.mark.parametrize("ret,status", [
    ("return 3", 3), ("return false", 1), ("return true", 0), ("return 0", 0), ("", 0),
    ("return 255", 255), ("return 4.0", 4),
])
def test_exit_status_from_the_script(rust_stacks, tmp_path, ret, status):
    r = run("run", script(tmp_path, f"local x = 1\n{ret}\n"), rust_stacks.pid)
    assert r.returncode == status, r.stderr
    assert r.stdout == "" and r.stderr == ""


@pytest.mark.parametrize("ret,message", [
    ("return 256", "returned 256: an exit status is an integer from 0 to 255"),
    ("return 1.5", "returned 1.5: an exit status is an integer from 0 to 255"),
    ("return 'x'", "returned a string: return an exit status (0-255), true, false, nil or a table"),
])
def test_a_wrong_return_is_an_error(rust_stacks, tmp_path, ret, message):
    path = script(tmp_path, ret + "\n")
    r = run("run", path, rust_stacks.pid)
    assert r.returncode == 2
    assert f"taskdbg: script {path} {message}" in r.stderr, r.stderr


def test_error_is_exit_2_with_file_and_line(rust_stacks, tmp_path):
    path = script(tmp_path, "local t = taskdbg.tasks()\n\nerror('giving up: ' .. #t .. ' tasks')\n", "why.lua")
    r = run("run", path, rust_stacks.pid)
    assert r.returncode == 2
    assert r.stderr.startswith(f"taskdbg: script {path} failed: why.lua:3: giving up: "), r.stderr


def test_io_os_arg_and_require(rust_stacks, tmp_path):
    # a module of the script's directory has what the script has (io, os, taskdbg)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helper.lua").write_text(
        "assert(io.open and os.getenv and taskdbg.tasks and td.null)\n"
        "return { twice = function(n) return 2 * n end }\n")
    out = tmp_path / "out.txt"
    path = script(tmp_path, """
local helper = require("lib.helper")
assert(require("lib.helper") == helper)
local f = assert(io.open(arg[1], "w"))
f:write(string.format("%s %d %s\\n", os.getenv("TD_TEST_WORD"), helper.twice(#arg), arg[2]))
f:close()
assert(type(os.time()) == "number" and type(os.clock()) == "number")
print("args", #arg, args[2], arg[0] == args[0])
io.write("io.write\\n")
io.stderr:write("to stderr\\n")
""")
    r = run("run", path, rust_stacks.pid, out, "second", env={"TD_TEST_WORD": "hello"})
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "hello 4 second\n"
    assert r.stdout == "args\t2\tsecond\ttrue\nio.write\n"
    assert r.stderr == "to stderr\n"


def test_json(rust_stacks, tmp_path):
    out = tmp_path / "v.json"
    path = script(tmp_path, f"""
print(taskdbg.json({{list = {{1, "two", td.null, true}}}}))
print(taskdbg.json({{}}), taskdbg.json(td.ptr(4096)), taskdbg.json(1.5))
print(taskdbg.json({{a = {{b = 1}}}}, true))
local v = taskdbg.parse_json('{{"x": [1, 2, {{"y": "z"}}], "n": null}}')
print(v.x[3].y, v.n)
print(taskdbg.parse_json("{{"))
assert(taskdbg.write_json("{out}", {{n = 42, list = {{"a"}}}}))
print(taskdbg.write_json("{tmp_path}/no/such/dir.json", {{}}))
""")
    r = run("run", path, rust_stacks.pid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        '{"list":[1,"two",null,true]}',
        '{}\t"0x1000"\t1.5',
        '{', '  "a": {', '    "b": 1', '  }', '}',
        'z\tnil',
        'nil\tunexpected end of data',
        f'nil\t{tmp_path}/no/such/dir.json: No such file or directory',
    ]
    assert json.loads(out.read_text()) == {"n": 42, "list": ["a"]}


def test_refresh_takes_a_newer_snapshot(rust_stacks, tmp_path, module_tmp):
    path = script(tmp_path, """
local a = taskdbg.snapshot()
taskdbg.sleep(0.1)
taskdbg.refresh()
local b = taskdbg.snapshot()
print(taskdbg.target().kind, a.seq, b.seq, b.t > a.t, taskdbg.target().snapshots, #taskdbg.history())
""")
    r = run("run", path, rust_stacks.pid)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "live\t1\t2\ttrue\t2\t2\n"
    # a core holds one snapshot: refresh takes no other
    r = run("run", path, gcore(rust_stacks.pid, tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "core\t1\t1\tfalse\t1\t1\n"


DIAGNOSE = """
local findings = taskdbg.diagnose{window = 0.3}
local out = {}
for _, f in ipairs(findings) do
  local ids = {}
  for _, t in ipairs(f.tasks) do ids[#ids + 1] = t.id end
  out[#out + 1] = {kind = f.kind, tasks = ids, resources = #f.resources, has = f.summary and f.fix and #f.evidence}
end
return out
"""


def test_diagnose_finds_the_deadlock(lock_order, lock_order_core, tmp_path):
    for target in (lock_order.pid, lock_order_core):
        r = run("run", script(tmp_path, DIAGNOSE), target)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == [{"kind": "deadlock", "tasks": [3, 4], "resources": 2, "has": 2}]


@pytest.mark.parametrize("call,message", [
    ("taskdbg.diagnose{windw = 1}", "s.lua:1: taskdbg.diagnose: unknown option 'windw' (window, interval_ms, greedy_threshold_ms)"),
    ("taskdbg.diagnose{window = -1}", "s.lua:1: taskdbg.diagnose: window is a non-negative number (got -1)"),
    ("taskdbg.diagnose(1)", "s.lua:1: taskdbg.diagnose: options are a table: taskdbg.diagnose{window = 1}"),
    ("taskdbg.stuck(1)", "s.lua:1: taskdbg.stuck: n is a number of snapshots, 2 or more (got 1)"),
    ("taskdbg.dump('x')", "dump needs a live process: this is a core"),
])
def test_api_errors_say_what_to_write(lock_order_core, tmp_path, call, message):
    r = run("run", script(tmp_path, call + "\n"), lock_order_core)
    assert r.returncode == 2
    assert r.stderr.strip().endswith(message), r.stderr


RESOURCES = """
local out = {}
for _, r in ipairs(taskdbg.resources()) do
  local h, w = {}, {}
  for _, x in ipairs(r.holders) do h[#h + 1] = x.task .. " " .. x.as end
  for _, x in ipairs(r.waiters) do w[#w + 1] = x.task .. " " .. x.at end
  out[#out + 1] = {kind = r.kind, address = r.address, holders = h, waiters = w}
end
local stuck = taskdbg.stuck()
return {resources = out, frames = #taskdbg.frames(taskdbg.threads()[1].tid) > 0, no_thread = select(2, taskdbg.frames(1))}
"""


def test_resources_show_holders_and_waiters(lock_order, lock_order_core, tmp_path):
    for target in (lock_order.pid, lock_order_core):
        r = run("run", script(tmp_path, RESOURCES), target)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["frames"] is True and doc["no_thread"] == "no thread 1"
        a, b = doc["resources"]
        assert a["kind"] == b["kind"] == "tokio::sync::Mutex" and a["address"] != b["address"]
        by_waiter = {int(x["waiters"][0].split()[0]): x for x in (a, b)}
        assert by_waiter[3]["waiters"] == ["3 src/bin/diag_lock_order.rs:22"]
        assert by_waiter[3]["holders"] == ["4 from"]
        assert by_waiter[4]["waiters"] == ["4 src/bin/diag_lock_order.rs:30"]
        assert by_waiter[4]["holders"] == ["3 from"]
