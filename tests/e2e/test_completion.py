"""Bash completion (completion/taskdbg.bash), sourced in a real bash and
called as bash calls it: commands and options read from the taskdbg being
completed, process ids of programs with a tokio runtime, core files, and the
files each option takes."""
import pathlib
import subprocess

from conftest import ROOT, TASKDBG, Target, assert_untouched, help_commands, help_options

COMPLETION = ROOT / "completion" / "taskdbg.bash"
SCRIPT = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _taskdbg; printf "%s\\n" "${COMPREPLY[@]}"'


def complete(*words, cwd):
    """COMPREPLY for the command line `taskdbg WORDS...`, the last word being completed."""
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", SCRIPT, "bash", str(COMPLETION), str(TASKDBG),
                        *map(str, words)], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    return [w for w in r.stdout.split("\n") if w]


def test_commands(tmp_path):
    assert complete("", cwd=tmp_path) == help_commands()
    assert {"bt", "tasks", "diagnose", "record", "top", "dump"} <= set(help_commands())
    assert complete("d", cwd=tmp_path) == ["diagnose", "dump"]
    assert complete("--", cwd=tmp_path) == ["--help", "--version"]


def test_options(tmp_path):
    bt = complete("bt", "--", cwd=tmp_path)
    assert bt == [name for names in help_options("bt").values() for name in names]
    assert {"--json", "--exe", "--plugins", "--help"} <= set(bt)
    assert complete("diagnose", "--w", cwd=tmp_path) == ["--window"]
    assert complete("record", "--m", cwd=tmp_path) == ["--mode"]
    # record's usage says --mode auto|perf|ptrace.
    assert complete("record", "--mode", "", cwd=tmp_path) == ["auto", "perf", "ptrace"]
    assert complete("record", "--mode", "p", cwd=tmp_path) == ["perf", "ptrace"]
    # Arguments that are not files: nothing offered.
    assert complete("diagnose", "--window", "", cwd=tmp_path) == []


def test_files_by_argument(tmp_path):
    for name in ("a.folded", "b.svg", "c.json", "d.txt", "check.lua"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    # record -o FILE: the formats its option names (.folded, .svg or .json).
    assert sorted(complete("record", "-o", "", cwd=tmp_path)) == ["a.folded", "b.svg", "c.json", "sub"]
    assert sorted(complete("record", "--output", "", cwd=tmp_path)) == ["a.folded", "b.svg", "c.json", "sub"]
    # record --diff BEFORE.folded AFTER.folded
    assert sorted(complete("record", "--diff", "", cwd=tmp_path)) == ["a.folded", "sub"]
    assert sorted(complete("record", "--diff", "a.folded", "", cwd=tmp_path)) == ["a.folded", "sub"]
    # run SCRIPT.lua TARGET [ARG...]; --plugins DIR; --exe PATH
    assert sorted(complete("run", "", cwd=tmp_path)) == ["check.lua", "sub"]
    assert complete("bt", "--plugins", "", cwd=tmp_path) == ["sub"]
    assert sorted(complete("bt", "--exe", "", cwd=tmp_path)) == ["a.folded", "b.svg", "c.json", "check.lua",
                                                                  "d.txt", "sub"]


def test_pids_of_tokio_processes(rust_tasks, c_threads, tmp_path):
    """A PID argument offers processes with a tokio runtime (tasks.rs's threads
    are tokio's workers), not others (the C fixture)."""
    for command in ("tasks", "top", "attach", "diagnose"):
        pids = complete(command, "", cwd=tmp_path)
        assert str(rust_tasks.pid) in pids, command
        assert str(c_threads.pid) not in pids, command
    prefix = str(rust_tasks.pid)[:-1]
    pids = complete("bt", prefix, cwd=tmp_path)
    assert str(rust_tasks.pid) in pids and all(p.startswith(prefix) for p in pids)
    assert_untouched(rust_tasks.pid)
    assert_untouched(c_threads.pid)


def test_pid_of_current_thread_runtime(rust_bin, rust_tasks, tmp_path):
    """A current_thread runtime has no thread named by tokio: found by its
    executable, which has tokio's runtime in it. (rust_tasks runs too: with
    a tokio worker thread on the machine, no fallback offers every PID.)"""
    target = Target([rust_bin / "mainattr", "current", "small"])
    try:
        names = [(t / "comm").read_text().strip() for t in pathlib.Path(f"/proc/{target.pid}/task").iterdir()]
        assert not any(n.startswith("tokio-runtime-w") for n in names), names
        assert str(target.pid) in complete("tasks", "", cwd=tmp_path)
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_core_files(rust_tasks, tmp_path):
    """TARGET offers tokio PIDs and core files (a core gcore wrote, and names
    as the kernel and systemd-coredump give them), not other files."""
    r = subprocess.run(["gcore", "-o", str(tmp_path / "core"), str(rust_tasks.pid)], capture_output=True,
                       text=True, timeout=120)
    core = f"core.{rust_tasks.pid}"
    assert r.returncode == 0 and (tmp_path / core).is_file(), r.stderr
    assert_untouched(rust_tasks.pid)
    systemd = f"core.tasks.0.1b2e4c.{rust_tasks.pid}.1765000000000000.zst"
    for name in (systemd, "app.core", "core.c", "notes.txt", "core.xz.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "cores").mkdir()
    cores = sorted([core, systemd, "app.core", "cores"])
    target = complete("tasks", "", cwd=tmp_path)
    assert str(rust_tasks.pid) in target
    assert sorted(w for w in target if not w.isdigit()) == cores
    assert sorted(complete("core", "", cwd=tmp_path)) == cores
    assert sorted(complete("diagnose", "--json", "core.", cwd=tmp_path)) == sorted([core, systemd])
    # core CORE [EXE]: the executable is any file. (A file named E is not a
    # match of the usage's [EXE] read as a pattern.)
    (tmp_path / "E").write_text("x")
    assert {"notes.txt", "E"} <= set(complete("core", core, "", cwd=tmp_path))
    # Inside a folder.
    (tmp_path / "cores" / "core").write_text("x")
    assert complete("bt", "cores/", cwd=tmp_path) == ["cores/core"]
