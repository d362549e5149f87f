"""`taskdbg dump PID FILE`: a core written without gdb must read as the live
process does (tasks, findings, stacks) and as gdb's own cores do, open in gdb,
and leave the target running; errors come before anything is stopped."""
import json
import pathlib
import re
import shutil
import subprocess

import pytest

import test_bt_c
from conftest import (C_FIXTURES, C_SOURCE, Target, assert_frames, assert_untouched, gcore, marker_lines, run,
                      thread_states)
from test_diagnose import check_lock_order, diagnose
from test_tasks import check_model, tasks_json

# test_bt_c's stack checks read their line markers from this global.
test_bt_c.L = marker_lines(C_SOURCE)


def dump(pid, path):
    """Dumps pid to path; returns the thread count taskdbg reports."""
    r = run("dump", pid, path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    m = re.fullmatch(rf"wrote {re.escape(str(path))} \((\d+) MiB, (\d+) threads?\) in \d+\.\d\d s, "
                     r"target stopped \d+\.\d{3} s\n", r.stdout)
    assert m, r.stdout
    size = pathlib.Path(path).stat().st_size
    assert int(m.group(1)) == round(size / (1 << 20))
    return int(m.group(2))


def task_summary(doc):
    """Every task as the CLI shows it: id, name, state, and each await's place."""
    return [[(t["id"], t["name"], t["state"],
              [(aw["name"], aw["state"], aw.get("file"), aw.get("line"), aw.get("awaiting"))
               for aw in t["backtrace"]])
             for t in rt["tasks"]]
            for rt in doc["runtimes"]]


def stacks(doc):
    return {t["tid"]: [f["function"] for f in t["frames"]] for t in doc["threads"]}


def bt(target):
    r = run("bt", "--json", target)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_tasks_same_as_live(rust_tasks, module_tmp):
    live = tasks_json(rust_tasks.pid)
    core = module_tmp / f"dump.{rust_tasks.pid}"
    threads = dump(rust_tasks.pid, core)
    assert_untouched(rust_tasks.pid)
    assert threads == len(thread_states(rust_tasks.pid)) == 4
    doc = tasks_json(core)
    assert doc["target"]["kind"] == "core" and doc["target"]["pid"] == rust_tasks.pid
    assert task_summary(doc) == task_summary(live)
    check_model(doc, live=False)
    # The same Sleep deadline, read from the heap the dump copied.
    def deadline(d):
        return [t for t in d["runtimes"][0]["tasks"] if t["id"] == 4][0]["waiting_on"]["deadline_ms"]
    assert deadline(doc) == deadline(live)


def test_bt_same_as_live(rust_tasks, module_tmp):
    live = bt(rust_tasks.pid)
    core = module_tmp / f"dump-bt.{rust_tasks.pid}"
    dump(rust_tasks.pid, core)
    doc = bt(core)
    # The main thread first, as in the kernel's cores.
    assert doc["threads"][0]["tid"] == rust_tasks.pid
    assert stacks(doc) == stacks(live)
    assert "tasks::main" in stacks(doc)[rust_tasks.pid]
    assert [t["syscall"] for t in doc["threads"]] == [t["syscall"] for t in live["threads"]]
    assert all("unwind_error" not in t for t in doc["threads"])


def test_gdb_reads_it(rust_tasks, rust_bin, module_tmp):
    core = module_tmp / f"dump-gdb.{rust_tasks.pid}"
    dump(rust_tasks.pid, core)
    r = subprocess.run(["gdb", "-batch", "-nx", "-ex", "info threads", "-ex", "bt",
                        str(rust_bin / "tasks"), str(core)], capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    listed = re.findall(r"^\*?\s+\d+\s+Thread 0x[0-9a-f]+ \(LWP (\d+)\)", r.stdout, re.M)
    assert sorted(int(t) for t in listed) == sorted(thread_states(rust_tasks.pid))
    assert re.search(r"^#\d+ +(0x[0-9a-f]+ in )?tasks::main \(\) at src/bin/tasks\.rs:\d+$", r.stdout, re.M), r.stdout
    # Every note is one gdb knows the size of (the AVX state among them).
    assert "Unexpected size" not in out and "warning: Couldn't find general-purpose" not in out


def test_diagnose_same_as_gcore(rust_bin, tmp_path):
    target = Target([rust_bin / "diag_lock_order"])
    try:
        core = tmp_path / "dump.core"
        dump(target.pid, core)
        assert_untouched(target.pid)
        ours = diagnose(core)
        assert ours["target"]["kind"] == "core" and ours["snapshots"] == 1
        check_lock_order(ours, False)
        theirs = diagnose(gcore(target.pid, tmp_path))
        def findings(doc):
            return [(f["kind"], [(t["id"], t["name"]) for t in f["tasks"]], f["evidence"])
                    for f in doc["findings"]]
        assert findings(ours) == findings(theirs)
    finally:
        target.stop()


def test_c_fixture(c_threads, tmp_path):
    core = tmp_path / "threads.core"
    assert dump(c_threads.pid, core) == 4
    assert_untouched(c_threads.pid)
    doc = bt(core)
    assert doc["target"]["exe"] == str(C_FIXTURES / "fixture-threads")
    test_bt_c.check_c_stacks(doc, live=False)
    assert doc["threads"][0]["tid"] == c_threads.pid
    assert_frames(doc["threads"][0], [("main", test_bt_c.SRC, test_bt_c.L["main_wait"], False)])
    # It runs on and answers: SIGUSR1 makes it report.
    c_threads.proc.send_signal(10)
    assert c_threads.readline() == "rt_signals 0"


def test_what_is_written(c_threads, tmp_path):
    """Text pages of files are left out (as the kernel does), their ELF header
    pages kept; [vvar] is not there; every note a reader needs is."""
    core = tmp_path / "layout.core"
    dump(c_threads.pid, core)
    maps = pathlib.Path(f"/proc/{c_threads.pid}/maps").read_text().splitlines()
    r = subprocess.run(["eu-readelf", "-l", "-n", str(core)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    loads = {int(m.group(1), 16): (int(m.group(2), 16), int(m.group(3), 16), m.group(4).strip())
             for m in re.finditer(r"^  LOAD +0x[0-9a-f]+ 0x([0-9a-f]+) 0x[0-9a-f]+ 0x([0-9a-f]+) "
                                  r"0x([0-9a-f]+) (.{3})", r.stdout, re.M)}
    seen = 0
    for line in maps:
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        perms, offset, path = fields[1], int(fields[2], 16), fields[5] if len(fields) > 5 else ""
        if path.startswith("[vvar") or path == "[vsyscall]":
            assert lo not in loads
            continue
        filesz, memsz, flags = loads[lo]
        seen += 1
        assert memsz == hi - lo
        if path == str(C_FIXTURES / "fixture-threads") and perms == "r-xp":
            assert filesz == 0   # text, read back from the file
        if path == str(C_FIXTURES / "fixture-threads") and offset == 0:
            assert filesz == 4096   # its ELF header, for the build-id
        if perms.startswith("rw") or path in ("[stack]", "[heap]", "[vdso]"):
            assert filesz == hi - lo, line
        if perms.startswith("---"):
            assert filesz == 0 and flags == ""
    assert seen == len(loads)
    notes = re.findall(r"^  (CORE|LINUX) +\d+  (\w+)", r.stdout, re.M)
    kinds = [k for _, k in notes]
    assert kinds.count("PRSTATUS") == kinds.count("FPREGSET") == kinds.count("X86_XSTATE") == 4
    assert [kinds.count(k) for k in ("PRPSINFO", "AUXV", "FILE")] == [1, 1, 1]
    assert kinds[:5] == ["PRSTATUS", "PRPSINFO", "AUXV", "FILE", "FPREGSET"]
    assert f"pid: {c_threads.pid}" in r.stdout and "fname: fixture-threads" in r.stdout
    assert f"psargs: {C_FIXTURES / 'fixture-threads'}" in r.stdout
    assert oct(core.stat().st_mode & 0o777) == "0o600"


def no_ptrace(args):
    """Runs taskdbg args under strace: the result, and whether it called ptrace at all."""
    if not shutil.which("strace"):
        pytest.skip("strace is needed to watch for ptrace calls")
    import os
    from conftest import TASKDBG
    # LeakSanitizer cannot run under a tracer (a sanitizer build of taskdbg).
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=ptrace", "-o", "/dev/stderr",
                        str(TASKDBG)] + [str(a) for a in args], capture_output=True, text=True, timeout=60,
                       env=env)
    return r, "ptrace(" not in r.stderr


@pytest.mark.parametrize("where", ["/nonexistent/dir/core", "DIRECTORY", "/proc/x"])
def test_unwritable_file_stops_nothing(c_threads, tmp_path, where):
    path = tmp_path if where == "DIRECTORY" else where
    r, untraced = no_ptrace(["dump", c_threads.pid, path])
    assert r.returncode == 2
    assert untraced, r.stderr
    if where == "DIRECTORY":
        assert f"taskdbg: cannot create {path}: Is a directory\n" in r.stderr
    elif where.startswith("/nonexistent"):
        assert f"taskdbg: cannot create {path}: No such file or directory\n" in r.stderr
    else:
        assert f"taskdbg: cannot create {path}: No such file or directory\n" in r.stderr
    assert "Give a" in r.stderr
    assert_untouched(c_threads.pid)


def test_no_such_process(tmp_path):
    pid = 4_000_000
    while pathlib.Path(f"/proc/{pid}").exists():
        pid -= 1
    core = tmp_path / "none.core"
    r = run("dump", pid, core)
    assert r.returncode == 2
    assert r.stderr == (f"taskdbg: no process with id {pid}\n"
                        "Check the id with `ps -e` or `pgrep NAME`; the process may have exited.\n")
    assert not core.exists()


def test_zombie(tmp_path):
    parent = Target([C_FIXTURES / "fixture-zombie"], ready="zombie")
    try:
        zombie = int(parent.ready_line.split()[1])
        r = run("dump", zombie, tmp_path / "z.core")
        assert r.returncode == 2
        assert r.stderr.startswith(f"taskdbg: process {zombie} (fixture-zombie) is a zombie")
        assert not (tmp_path / "z.core").exists()
    finally:
        parent.stop()


def test_permission_denied(c_threads, tmp_path):
    """Another user's process: the same message as every command's."""
    import os
    from conftest import TASKDBG
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to become another user")
    exe = tmp_path / "taskdbg"
    shutil.copy(TASKDBG, exe)
    tmp_path.chmod(0o777)
    exe.chmod(0o755)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        str(exe), "dump", str(c_threads.pid), str(tmp_path / "p.core")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr == (f"taskdbg: permission denied to inspect process {c_threads.pid} "
                        f"(fixture-threads, owned by uid 0)\n"
                        "Run taskdbg as the same user as the process, or as root.\n")
    assert not (tmp_path / "p.core").exists()
    assert_untouched(c_threads.pid)


@pytest.mark.parametrize("args, message", [
    ([], "PID and FILE are needed"),
    (["1"], "PID and FILE are needed"),
    (["1", "a", "b"], "too many arguments"),
    (["abc", "core"], "PID must be a process id (digits), not 'abc'"),
    (["-5", "core"], "unknown option -5"),
    (["--bogus", "1", "core"], "unknown option --bogus"),
])
def test_usage(args, message):
    r = run("dump", *args)
    assert r.returncode == 64, r.stderr
    assert r.stderr == f"taskdbg dump: {message}\nRun `taskdbg dump --help` for usage.\n"


def test_help():
    r = run("dump", "--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: taskdbg dump PID FILE\n")
    assert "dump      write an ELF core of a live process" in run("--help").stdout
