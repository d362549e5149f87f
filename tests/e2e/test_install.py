"""taskdbg built in any directory, run through `meson devenv`, and installed
with `meson install --destdir` into a tree that still works once moved: each
finds its own runtime plugins and detectors with no environment variable set,
and a binary outside both never reads the source tree."""
import json
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import ROOT, assert_untouched, help_commands

# An install prefix that does not exist here: a test that passes cannot have
# read plugins or detectors from the install dir compiled in.
PREFIX = "/taskdbg-install-test"
# The tasks fixture's runtime 1 (tests/fixtures/rust/src/bin/tasks.rs): ids and names.
RT1_TASKS = {3: "tasks::wait_for_order", 4: "tasks::level1", 6: "tasks::supervise",
             7: "tasks::quick", 8: "tasks::keep", 12: "tasks::bridge"}


def clean_env():
    """The environment without taskdbg's search paths."""
    return {k: v for k, v in os.environ.items() if k not in ("TASKDBG_PLUGIN_PATH", "TASKDBG_DETECTORS")}


def run_exe(exe, *args, cwd, env=None):
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=env or clean_env())


def check_tasks(r, pid):
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["target"]["pid"] == pid
    rt1 = doc["runtimes"][0]
    assert {t["id"]: t["name"] for t in rt1["tasks"] if t["id"] in RT1_TASKS} == RT1_TASKS


def check_deadlock(r):
    """diagnose on diag_lock_order: the detectors were found and ran."""
    assert r.returncode == 1, r.stderr
    kinds = [f["kind"] for f in json.loads(r.stdout)["findings"]]
    assert "deadlock" in kinds, kinds


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    """taskdbg and its man page built out of the source tree, in a temporary directory."""
    assert not pathlib.Path(PREFIX).exists(), f"{PREFIX} exists: these tests need it absent"
    build = tmp_path_factory.mktemp("out-of-tree") / "build"
    r = subprocess.run(["meson", "setup", f"--prefix={PREFIX}", str(build), str(ROOT)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["ninja", "-C", str(build), "taskdbg", "man/man1/taskdbg.1"],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    return build


@pytest.fixture(scope="module")
def moved_tree(build_dir, tmp_path_factory):
    """`meson install --destdir`, then the prefix's tree moved elsewhere."""
    base = tmp_path_factory.mktemp("install")
    r = subprocess.run(["meson", "install", "-C", str(build_dir), "--no-rebuild", "--destdir", str(base / "dest")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    moved = base / "moved"
    shutil.move(base / "dest" / PREFIX.lstrip("/"), moved)
    return moved


def test_out_of_tree_build(build_dir, rust_tasks, lock_order, tmp_path):
    exe = build_dir / "taskdbg"
    check_tasks(run_exe(exe, "tasks", "--json", rust_tasks.pid, cwd=tmp_path), rust_tasks.pid)
    check_deadlock(run_exe(exe, "diagnose", "--json", lock_order.pid, cwd=tmp_path))
    assert_untouched(rust_tasks.pid)
    assert_untouched(lock_order.pid)


def test_binary_outside_its_build_dir(build_dir, rust_tasks, tmp_path):
    """A copy of the build's binary is not "uninstalled": it does not read the
    source tree (which may be newer than it), only the data dir beside it and
    the install dir, and says so."""
    (tmp_path / "bin").mkdir()
    exe = tmp_path / "bin" / "taskdbg"
    shutil.copy(build_dir / "taskdbg", exe)
    r = run_exe(exe, "tasks", rust_tasks.pid, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == (
        f"taskdbg: no runtime plugins found (looked in --plugins, $TASKDBG_PLUGIN_PATH, "
        f"{tmp_path}/share/taskdbg/plugins and {PREFIX}/share/taskdbg/plugins)\n"
        "Install taskdbg (`meson install -C build`) or pass --plugins DIR.\n")
    r = run_exe(exe, "diagnose", "--plugins", ROOT / "plugins", rust_tasks.pid, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == (
        f"taskdbg: no detectors found (looked in $TASKDBG_DETECTORS, "
        f"{tmp_path}/share/taskdbg/detectors and {PREFIX}/share/taskdbg/detectors)\n"
        "Install taskdbg (`meson install -C build`) or set $TASKDBG_DETECTORS to a directory of detectors.\n")
    assert_untouched(rust_tasks.pid)


def test_devenv(build_dir, rust_tasks, tmp_path):
    """`meson devenv -C BUILD`: the build's taskdbg on PATH, the source tree's
    plugins and detectors, the build's man page (and the system's) on MANPATH."""
    env = clean_env()
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if pathlib.Path(p).resolve() != build_dir)
    def devenv(*args):
        return subprocess.run(["meson", "devenv", "-C", str(build_dir), *map(str, args)],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    r = devenv("taskdbg", "--version")
    assert r.returncode == 0 and r.stdout.startswith("taskdbg 0.1.0\ndebuginfod: "), r.stderr
    r = devenv("sh", "-c", 'command -v taskdbg; echo "$TASKDBG_PLUGIN_PATH"; echo "$TASKDBG_DETECTORS"; '
               'man -w taskdbg; manpath')
    lines = r.stdout.splitlines()
    assert [os.path.normpath(line) for line in lines[:4]] == [
        str(build_dir / "taskdbg"), str(ROOT / "plugins"), str(ROOT / "detectors"),
        str(build_dir / "man" / "man1" / "taskdbg.1")], r.stderr
    # The system's pages stay on the search path.
    assert "/usr/share/man" in lines[4].split(":"), lines[4]
    check_tasks(devenv("taskdbg", "tasks", "--json", rust_tasks.pid), rust_tasks.pid)
    assert_untouched(rust_tasks.pid)


def test_installed_tree_moved(moved_tree, rust_tasks, lock_order, tmp_path):
    """The installed tree, moved away from its prefix, finds its own plugins and detectors."""
    assert sorted(str(p.relative_to(moved_tree)) for p in moved_tree.rglob("*") if p.is_file()
                  and p.parent.name not in ("tokio", "detectors")) == [
        "bin/taskdbg",
        "share/bash-completion/completions/taskdbg",
        "share/man/man1/taskdbg.1",
        "share/taskdbg/plugins/tokio.lua",
    ]
    assert (moved_tree / "share/taskdbg/detectors/_lib.lua").is_file()
    assert (moved_tree / "share/taskdbg/plugins/tokio/tasks.lua").is_file()
    exe = moved_tree / "bin" / "taskdbg"
    check_tasks(run_exe(exe, "tasks", "--json", rust_tasks.pid, cwd=tmp_path), rust_tasks.pid)
    check_deadlock(run_exe(exe, "diagnose", "--json", lock_order.pid, cwd=tmp_path))
    assert_untouched(rust_tasks.pid)
    assert_untouched(lock_order.pid)


def test_installed_man_page_and_completion(moved_tree, tmp_path):
    page = moved_tree / "share/man/man1/taskdbg.1"
    r = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = r.stdout.replace("\u2010", "-").replace("\u2212", "-")
    assert "taskdbg - a debugger for async runtimes that needs nothing from its target" in " ".join(text.split())
    assert f"       {PREFIX}/share/taskdbg/plugins\n" in text
    # The installed completion, with the installed binary: the commands of its --help.
    script = ('source "$1"; COMP_WORDS=("$2" ""); COMP_CWORD=1; _taskdbg; printf "%s\\n" "${COMPREPLY[@]}"')
    exe = moved_tree / "bin" / "taskdbg"
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash",
                        str(moved_tree / "share/bash-completion/completions/taskdbg"), str(exe)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.stdout.split() == help_commands(exe), r.stderr
    assert {"bt", "tasks", "diagnose", "record"} <= set(r.stdout.split())
    # bash-completion's loader finds it there by the command's name, as a new shell would.
    loader = ("source /usr/share/bash-completion/bash_completion; complete -p taskdbg 2>/dev/null && exit 1; "
              "__load_completion taskdbg && complete -p taskdbg")
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", loader], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "XDG_DATA_DIRS": str(moved_tree / "share")})
    assert (r.returncode, r.stdout) == (0, "complete -F _taskdbg taskdbg\n"), r.stderr
