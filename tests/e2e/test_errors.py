"""Bad input gets a clear message that says what to do, exit code 2 (64 for
usage), and the target is left untouched."""
import os
import pathlib
import shutil
import stat
import subprocess

import pytest

from conftest import (C_FIXTURES, TASKDBG, Target, assert_untouched, bt_json, gcore, run,
                      thread_states, tracer_of)


def assert_fails(result, *phrases, code=2):
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    for phrase in phrases:
        assert phrase in result.stderr, f"{phrase!r} not in {result.stderr!r}"
    assert result.stderr.startswith("taskdbg")


def unused_pid():
    pid = 4_000_000
    while pathlib.Path(f"/proc/{pid}").exists():
        pid -= 1
    return pid


def test_no_such_process():
    pid = unused_pid()
    assert_fails(run("bt", pid), f"no process with id {pid}", "ps -e")


def test_thread_id_is_not_a_process(c_threads):
    tids = [t for t in thread_states(c_threads.pid) if t != c_threads.pid]
    assert_fails(run("bt", tids[0]), f"{tids[0]} is a thread of process {c_threads.pid}",
                 f"taskdbg bt {c_threads.pid}")
    assert_untouched(c_threads.pid)


def test_permission_denied(c_threads, tmp_path):
    """Another user's process: as nobody, against a root-owned fixture."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to become another user")
    # A copy of taskdbg that nobody can reach and run.
    exe = tmp_path / "taskdbg"
    shutil.copy(TASKDBG, exe)
    tmp_path.chmod(0o755)
    exe.chmod(0o755)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        str(exe), "bt", str(c_threads.pid)], capture_output=True, text=True,
                       timeout=30)
    assert_fails(r, f"permission denied to inspect process {c_threads.pid}",
                 "Run taskdbg as the same user as the process, or as root")
    assert_untouched(c_threads.pid)


def test_already_traced():
    target = Target([C_FIXTURES / "fixture-threads"])
    tracer = Target([C_FIXTURES / "fixture-tracer", target.pid], ready="tracing")
    try:
        assert tracer_of(target.pid) == tracer.pid
        assert_fails(run("bt", target.pid),
                     f"already traced by process {tracer.pid} (fixture-tracer)",
                     "detach fixture-tracer first")
        # The other debugger still has it, untouched by us.
        assert tracer_of(target.pid) == tracer.pid
    finally:
        tracer.stop()
    assert_untouched(target.pid)
    target.stop()


def test_zombie():
    parent = Target([C_FIXTURES / "fixture-zombie"], ready="zombie")
    try:
        zombie = int(parent.ready_line.split()[1])
        assert_fails(run("bt", zombie), f"process {zombie} (fixture-zombie) is a zombie",
                     "nothing left to inspect")
    finally:
        parent.stop()


@pytest.fixture(scope="module")
def c_core(c_threads, module_tmp):
    return gcore(c_threads.pid, module_tmp)


def test_truncated_core(c_core, tmp_path):
    cut = tmp_path / "truncated.core"
    data = c_core.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert_fails(run("bt", cut), f"core file {cut} is truncated", "ulimit -c unlimited")


def test_core_cut_inside_headers(c_core, tmp_path):
    cut = tmp_path / "headers.core"
    cut.write_bytes(c_core.read_bytes()[:100])
    r = run("bt", cut)
    assert r.returncode == 2 and "core" in r.stderr, r.stderr


def test_executable_is_not_a_core():
    assert_fails(run("bt", C_FIXTURES / "fixture-threads"),
                 "is not a core file: it is a shared object or position-independent executable",
                 "pass its process id")


def test_text_file_is_not_a_core(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("this is not a core file, but it is long enough to hold an ELF header...\n")
    assert_fails(run("bt", f), f"{f} is not an ELF core file", "gcore PID")


def test_empty_file(tmp_path):
    f = tmp_path / "empty"
    f.write_bytes(b"")
    assert_fails(run("bt", f), "is not an ELF core file (it is 0 bytes long)")


def test_missing_file(tmp_path):
    assert_fails(run("bt", tmp_path / "nope"), "No such file or directory",
                 "TARGET is a process id (digits) or the path of a core file")


def test_directory(tmp_path):
    assert_fails(run("bt", tmp_path), "is not a regular file")


def test_foreign_core(c_core, tmp_path):
    foreign = tmp_path / "aarch64.core"
    data = bytearray(c_core.read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # e_machine = EM_AARCH64
    foreign.write_bytes(data)
    assert_fails(run("bt", foreign), "core file of another architecture (ELF machine 183)")


def test_core_whose_executable_is_gone(tmp_path):
    exe = tmp_path / "gone-fixture"
    shutil.copy(C_FIXTURES / "fixture-threads", exe)
    target = Target([exe])
    try:
        core = gcore(target.pid, tmp_path)
    finally:
        target.stop()
    exe.unlink()
    assert_fails(run("bt", core), f"the executable of core file {core}, {exe}, is not there",
                 "--exe PATH")
    # The same binary elsewhere, named with --exe, works.
    doc = bt_json(core, "--exe", C_FIXTURES / "fixture-threads")
    assert "reader_main" in [f["function"] for t in doc["threads"] for f in t["frames"]]


def test_core_with_the_wrong_executable(c_core):
    wrong = C_FIXTURES / "fixture-zombie"
    assert_fails(run("bt", "--exe", wrong, c_core), f"{wrong} does not match core file",
                 "build-id", "Pass the binary that ran with --exe PATH")


@pytest.mark.parametrize("args,phrase", [
    ([], "usage: taskdbg"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["bt"], "TARGET is missing"),
    (["bt", "--frob", "1"], "unknown option --frob"),
    (["bt", "1", "2"], "too many arguments"),
    (["bt", "--exe", "/bin/true", "1"], "--exe is for core files"),
])
def test_usage_errors(args, phrase):
    r = run(*args)
    assert r.returncode == 64, r
    assert phrase in r.stderr


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "usage: taskdbg COMMAND" in r.stdout
    r = run("bt", "--help")
    assert r.returncode == 0 and "usage: taskdbg bt" in r.stdout
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("taskdbg ")
    # The help lists the commands that work, each with its own --help.
    commands = [line.split()[0] for line in run("--help").stdout.split("commands:\n")[1].split("\n\n")[0].splitlines()]
    assert commands == ["attach", "core", "bt", "tasks", "diagnose", "run", "dump", "record", "top"]
    for cmd in commands:
        r = run(cmd, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"usage: taskdbg {cmd}"), (cmd, r.stdout)


def test_core_with_impossible_segment(c_core, tmp_path):
    """Offsets and sizes that overflow 64 bits are refused, not followed."""
    import struct
    data = bytearray(c_core.read_bytes())
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        at = phoff + i * phentsize
        p_type, = struct.unpack_from("<I", data, at)
        if p_type == 1:  # PT_LOAD
            struct.pack_into("<QQ", data, at + 8 + 0, 1 << 63, 0)  # p_offset (p_vaddr untouched below)
            struct.pack_into("<Q", data, at + 8, 1 << 63)
            struct.pack_into("<Q", data, at + 32, (1 << 63) + 0x1000)  # p_filesz
            break
    bad = tmp_path / "overflow.core"
    bad.write_bytes(data)
    assert_fails(run("bt", bad), "is corrupt: a segment's offset or size is impossible")
