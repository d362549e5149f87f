"""A second runtime is one new file in plugins/: a made-up runtime ("toy") over
the C fixture fixture-threads, found by its detect(), with no change to
src/ or detectors/. Its declarations give the threads their roles (bt) and
its resources their classes (diagnose finds the toy tasks' lock cycle)."""
import json
import os
import shutil
import subprocess

from conftest import TASKDBG, assert_untouched, run

TOY = """
-- A made-up runtime: every thread of the program is one of its workers, and
-- two of its tasks wait for each other's lock.
local M = { name = "toy" }
M.frames = { worker = { "sleeper_main" }, poll = { "toy::Task::poll" } }
M.resources = { ["toy::Lock"] = "mutex" }
M.advice = { mutex = "toy::Lock" }

-- In the program: a struct of its own (DWARF only, before the stop).
function M.detect() return td.find_type("timespec") ~= nil end

local model
function M.prepare() end
function M.snapshot()
  local workers = {}
  for _, t in ipairs(td.threads()) do workers[#workers + 1] = t.tid end
  local function lock(n) return { kind = "toy::Lock", key = "toy:" .. n, address = td.ptr(0x1000 * n) } end
  local function task(id, holds, waits)
    return { id = id, name = "toy::job", state = "idle", future = "toy::Job",
             backtrace = setmetatable({ { name = "toy::job", state = "Suspend0", file = "toy.rs", line = 10 + id,
                                          own = true, awaiting = "toy::Acquire" } }, { __array = true }),
             holds = setmetatable({ { name = "guard", resource = lock(holds) } }, { __array = true }),
             waiting_on = lock(waits), running_on = td.null }
  end
  model = { runtimes = setmetatable({ { id = 1, flavor = "toy", address = td.ptr(0xabc),
    workers = setmetatable(workers, { __array = true }),
    tasks = setmetatable({ task(1, 1, 2), task(2, 2, 1) }, { __array = true }) } }, { __array = true }) }
end
function M.finish() return model end
function M.current_tasks() return setmetatable({}, { __array = true }) end
return M
"""


def test_second_runtime_is_one_file(c_threads, tmp_path):
    (tmp_path / "toy.lua").write_text(TOY)
    # Its runtime, from its plugin: tasks with their awaits.
    doc = json.loads(run("tasks", "--json", "--plugins", tmp_path, c_threads.pid).stdout)
    (rt,) = doc["runtimes"]
    assert rt["flavor"] == "toy" and [t["id"] for t in rt["tasks"]] == [1, 2]
    # The detectors on its model: a deadlock over its own lock kind, its advice.
    r = run("diagnose", "--json", "--window", "100ms", "--plugins", tmp_path, c_threads.pid)
    assert r.returncode == 1, r.stderr
    (f,) = json.loads(r.stdout)["findings"]
    assert f["kind"] == "deadlock" and [t["id"] for t in f["tasks"]] == [1, 2]
    assert [x["kind"] for x in f["resources"]] == ["toy::Lock", "toy::Lock"]
    assert f["summary"] == "tasks 1 `toy::job`, 2 `toy::job` wait for each other (toy::Lock): none can ever proceed"
    # The thread roles its frames declare: bt reads the plugins' search path too.
    bt = json.loads(run("bt", "--json", c_threads.pid, env={"TASKDBG_PLUGIN_PATH": str(tmp_path)}).stdout)
    roles = {t["name"]: t["role"] for t in bt["threads"]}
    assert roles["sleeper"] == "worker" and roles["reader"] == "other"
    assert_untouched(c_threads.pid)


def test_two_runtimes_found_is_said(c_threads, tmp_path):
    """Two plugins that both find their runtime: taskdbg reads one runtime a
    process for now, and says so (exit 2) rather than pick one silently."""
    (tmp_path / "toy.lua").write_text(TOY)
    (tmp_path / "toy2.lua").write_text(TOY)
    r = run("tasks", "--plugins", tmp_path, c_threads.pid)
    assert r.returncode == 2
    assert (f"plugins {tmp_path}/toy.lua and {tmp_path}/toy2.lua both find their runtime in this program; "
            "taskdbg reads one runtime per process for now") in r.stderr
    assert_untouched(c_threads.pid)


def test_plugin_requires_its_modules(c_threads, tmp_path):
    """require loads a plugin's modules from its own directory (NAME/x.lua for
    "NAME.x"), once, each in a sandbox of its own."""
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "names.lua").write_text("return { flavor = 'toy-from-module' }\n")
    (tmp_path / "toy.lua").write_text(TOY.replace('flavor = "toy"', 'flavor = require("toy.names").flavor'))
    doc = json.loads(run("tasks", "--json", "--plugins", tmp_path, c_threads.pid).stdout)
    assert doc["runtimes"][0]["flavor"] == "toy-from-module"


def test_no_plugins_installed(c_threads, tmp_path):
    """A taskdbg that finds no plugin at all is a broken install: tasks says so
    (exit 2) rather than "no runtime"; bt needs none and goes on."""
    exe = tmp_path / "taskdbg"
    shutil.copy(TASKDBG, exe)
    r = run_exe(exe, "tasks", c_threads.pid)
    assert r.returncode == 2
    assert r.stderr.startswith("taskdbg: no runtime plugins found (looked in --plugins, $TASKDBG_PLUGIN_PATH, ")
    assert "pass --plugins DIR" in r.stderr
    assert run_exe(exe, "bt", c_threads.pid).returncode == 0
    assert_untouched(c_threads.pid)


def run_exe(exe, *args):
    """A copy of taskdbg, outside the source tree, with no plugin path."""
    env = {k: v for k, v in os.environ.items() if k != "TASKDBG_PLUGIN_PATH"}
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=60, env=env)
