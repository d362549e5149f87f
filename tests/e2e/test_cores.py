"""Every core users have (issue #15): compressed as systemd-coredump stores them
(zstd, xz, lz4), with systemd's metadata in xattrs, made by the kernel, gcore or
`taskdbg dump`, and cores whose executable has moved (--exe DIR).

Decompression does not depend on the runtime: one tokio release (Debian's)."""
import errno
import json
import os
import pathlib
import pty
import resource
import signal
import re
import shutil
import subprocess

import pytest

from conftest import (C_FIXTURES, RUST_FIXTURES, TASKDBG, Target, assert_untouched, gcore, kernel_core, run)

TOOLS = {
    "zstd": lambda src, dst: ["zstd", "-q", "-f", src, "-o", dst],
    "xz": lambda src, dst: ["xz", "-T1", "-1", "-k", "-c", src],
    "lz4": lambda src, dst: ["lz4", "-q", "-f", src, dst],
}


def compress(core, kind, name=None):
    """core compressed with the kind's own CLI, beside it (core.zst, ...)."""
    dst = core.parent / (name or f"core.{kind}")
    argv = [str(a) for a in TOOLS[kind](core, dst)]
    if kind == "xz":
        with open(dst, "wb") as out:
            subprocess.run(argv, stdout=out, check=True, timeout=120)
    else:
        subprocess.run(argv, check=True, timeout=120)
    return dst


def tasks_json(target, env=None):
    r = run("tasks", "--json", target, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def assert_fails(r, *phrases):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout == ""
    for p in phrases:
        assert p in r.stderr, f"{p!r} not in {r.stderr!r}"
    assert "Traceback" not in r.stderr and "Sanitizer" not in r.stderr


@pytest.fixture(scope="module")
def tasks_core(module_tmp):
    """A gcore of the tasks fixture (Debian's tokio) and its `tasks --json`."""
    target = Target([RUST_FIXTURES / "tasks"])
    try:
        core = gcore(target.pid, module_tmp)
        assert_untouched(target.pid)
    finally:
        target.stop()
    return core, tasks_json(core)


@pytest.mark.parametrize("kind", ["zstd", "xz", "lz4"])
def test_compressed_core_same_tasks(tasks_core, kind, tmp_path):
    core, plain = tasks_core
    packed = compress(core, kind, name=f"core-{kind}.{kind}")
    try:
        assert packed.stat().st_size < core.stat().st_size // 10
        doc = tasks_json(packed)
        assert doc["threads"] == plain["threads"]
        assert doc["runtimes"] == plain["runtimes"]
        assert [t["id"] for t in doc["runtimes"][0]["tasks"]]  # tasks were found at all
        want = dict(plain["target"], core=str(packed), compression=kind)
        assert doc["target"] == want
        assert "compression" not in plain["target"] and "coredump" not in plain["target"]
        # The text: the same header, no systemd line without systemd's metadata.
        r = run("tasks", packed)
        assert r.returncode == 0, r.stderr
        first, second = r.stdout.splitlines()[:2]
        assert first == f"core {packed} of process {plain['target']['pid']} (tasks)"
        assert not second.startswith("systemd-coredump")
    finally:
        packed.unlink()


def test_zstd_of_taskdbg_dump_and_kernel_core(tmp_path):
    """Cores from `taskdbg dump` and from the kernel read the same compressed."""
    target = Target([RUST_FIXTURES / "tasks"])
    try:
        dumped = tmp_path / "dump.core"
        r = run("dump", target.pid, dumped)
        assert r.returncode == 0, r.stderr
        assert_untouched(target.pid)
    finally:
        target.stop()
    packed = compress(dumped, "zstd", "core-dump.zst")
    assert tasks_json(packed)["runtimes"] == tasks_json(dumped)["runtimes"]

    kdir = tmp_path / "kernel"
    kdir.mkdir()
    kcore, _ = kernel_core([C_FIXTURES / "fixture-threads", "abort"], kdir)
    kpacked = compress(kcore, "zstd", "core-kernel.zst")
    plain, packed_doc = run("bt", "--json", kcore), run("bt", "--json", kpacked)
    assert plain.returncode == 0 and packed_doc.returncode == 0, packed_doc.stderr
    plain, packed_doc = json.loads(plain.stdout), json.loads(packed_doc.stdout)
    assert packed_doc["threads"] == plain["threads"]
    # abort's name: libc's DWARF says __GI_abort (libc6-dbg), its symbols abort.
    assert any(f and "abort" in f for f in functions(plain)), functions(plain)
    kcore.unlink()


def test_truncated_zstd(tasks_core, tmp_path):
    core, _ = tasks_core
    packed = compress(core, "zstd", "core-full.zst")
    cut = tmp_path / "core-cut.zst"
    data = packed.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    packed.unlink()
    assert_fails(run("bt", cut),
                 f"taskdbg: core file {cut} is cut short: its zstd data ends in the middle (after ",
                 "Copy it again (systemd: `coredumpctl dump PID -o core`), or decompress what is "
                 f"there by hand (`zstd -d {cut} -o core`) and pass the result.")


@pytest.mark.parametrize("kind", ["xz", "lz4"])
def test_truncated_xz_lz4(tasks_core, kind, tmp_path):
    core, _ = tasks_core
    packed = compress(core, kind, f"core-full.{kind}")
    cut = tmp_path / f"core-cut.{kind}"
    cut.write_bytes(packed.read_bytes()[:20000])
    packed.unlink()
    assert_fails(run("tasks", cut), f"core file {cut} is cut short: its {kind} data ends in the middle")


def test_corrupt_zstd(tasks_core, tmp_path):
    core, _ = tasks_core
    packed = compress(core, "zstd", "core-bad.zst")
    data = bytearray(packed.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0x5a
    packed.write_bytes(bytes(data))
    r = run("bt", packed)
    assert_fails(r, f"core file {packed} is damaged: its zstd data is not valid (")
    assert re.search(r"\(.+, after [0-9.]+ (bytes|KiB|MiB) decompressed\)\n", r.stderr), r.stderr


def test_cap(tasks_core, tmp_path):
    core, _ = tasks_core
    packed = compress(core, "zstd", "core-cap.zst")
    r = run("bt", packed, env={"TASKDBG_CORE_MAX": "64M", "TMPDIR": str(tmp_path)})
    assert_fails(r, f"taskdbg: core file {packed} decompresses to more than 64 MiB, "
                 "taskdbg's cap on a compressed core\n"
                 "Raise the cap with the environment variable TASKDBG_CORE_MAX (e.g. "
                 f"TASKDBG_CORE_MAX=128M; it needs that much room in {tmp_path}), or decompress "
                 f"it by hand (`zstd -d {packed} -o core`) and pass the result.")
    # Nothing is left behind in TMPDIR (the file was unlinked from the start).
    assert list(tmp_path.iterdir()) == []
    # Raised over the core's size, the same core reads.
    size = core.stat().st_size
    r = run("bt", packed, env={"TASKDBG_CORE_MAX": str(size), "TMPDIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    r = run("bt", packed, env={"TASKDBG_CORE_MAX": str(size - 1)})
    assert_fails(r, "taskdbg's cap on a compressed core")
    r = run("bt", packed, env={"TASKDBG_CORE_MAX": "lots"})
    assert_fails(r, "TASKDBG_CORE_MAX=lots is not a size\n", "TASKDBG_CORE_MAX=64G")
    # No O_TMPFILE directory (TMPDIR missing): decompressed into memory.
    r = run("bt", packed, env={"TMPDIR": str(tmp_path / "missing")})
    assert r.returncode == 0, r.stderr


def test_not_a_core(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a core file, but it is long enough to hold an ELF header...\n")
    # gzip is no format systemd-coredump writes: today's message, as for any other file.
    gz = tmp_path / "core.gz"
    with open(gz, "wb") as out:
        subprocess.run(["gzip", "-c", text], stdout=out, check=True)
    assert_fails(run("bt", gz), f"taskdbg: {gz} is not an ELF core file\n"
                 "Give the path of a core dump (made by the kernel or by `gcore PID`).")
    # A compressed file that holds no core says what it held.
    small = compress(text, "zstd", "core-text.zst")
    assert_fails(run("bt", small), f"taskdbg: {small} is not an ELF core file (what its zstd data holds)\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    tiny = compress(empty, "xz", "core-empty.xz")
    assert_fails(run("bt", tiny), f"{tiny} is not an ELF core file (decompressed, it is 0 bytes long)")


SYSTEMD_XATTRS = {
    "pid": "4242", "uid": "1000", "gid": "1000", "signal": "6",
    "timestamp": "1796605323123456", "rlimit": "18446744073709551615",
    "hostname": "buildbox", "comm": "tasks", "exe": "/usr/bin/tasks",
}


def set_xattrs(path, attrs):
    try:
        for key, value in attrs.items():
            os.setxattr(path, f"user.coredump.{key}", value.encode())
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            pytest.skip(f"{path.parent} takes no user xattrs: {e}")
        raise


def assert_coredump_line(core, env, line):
    """bt, tasks and diagnose of core each show systemd's line under the header."""
    for command in ("bt", "tasks", "diagnose"):
        r = run(command, core, env=env)
        assert r.returncode in (0, 1), r.stderr
        assert r.stdout.splitlines()[1] == line, (command, r.stdout[:400])


def test_systemd_metadata(tasks_core, tmp_path):
    core, plain = tasks_core
    packed = compress(core, "zstd", "core.tasks.1000.b0071d.4242.1796605323123456.zst")
    set_xattrs(packed, SYSTEMD_XATTRS)
    env = {"TZ": "UTC"}
    line = ("systemd-coredump: signal 6 (SIGABRT) at 2026-12-07 01:02:03 UTC, pid 4242 (tasks), "
            "uid 1000, gid 1000, exe /usr/bin/tasks, host buildbox")
    assert_coredump_line(packed, env, line)
    doc = tasks_json(packed, env=env)
    assert doc["target"]["coredump"] == {
        "pid": 4242, "uid": 1000, "gid": 1000, "signal": 6, "signal_name": "SIGABRT",
        "timestamp_us": 1796605323123456, "time": "2026-12-07T01:02:03Z",
        "rlimit": 18446744073709551615, "comm": "tasks", "exe": "/usr/bin/tasks",
        "hostname": "buildbox", "journal": False}
    assert doc["runtimes"] == plain["runtimes"]
    r = run("bt", "--json", packed)
    assert json.loads(r.stdout)["target"]["coredump"]["signal_name"] == "SIGABRT"


def test_systemd_metadata_partial_and_odd(c_core_copy):
    """Some attributes only, one malformed, control characters: shown as far as
    they go, never breaking the command."""
    set_xattrs(c_core_copy, {"signal": "11", "comm": "a\x1b[31mb", "pid": "-3", "uid": "x"})
    r = run("bt", c_core_copy)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == "systemd-coredump: signal 11 (SIGSEGV), command a?[31mb"
    doc = json.loads(run("bt", "--json", c_core_copy).stdout)
    assert doc["target"]["coredump"] == {"signal": 11, "signal_name": "SIGSEGV", "comm": "a?[31mb",
                                         "journal": False}


JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
COREDUMP_MESSAGE_ID = "fc2e22bc6ee647b6b90729ab34a250b1"


def write_journal(directory, entries):
    """A journal file in directory holding entries (dicts of fields), written by
    systemd-journal-remote from journal export format, as journald would."""
    directory.mkdir()
    export = b""
    for i, fields in enumerate(entries):
        export += f"__REALTIME_TIMESTAMP={1796605323123456 + i}\n__MONOTONIC_TIMESTAMP={1000 + i}\n".encode()
        export += b"_BOOT_ID=0123456789abcdef0123456789abcdef\n"
        for k, v in fields.items():
            export += f"{k}={v}\n".encode()
        export += b"\n"
    r = subprocess.run([JOURNAL_REMOTE, "-o", str(directory / "remote.journal"), "-"], input=export,
                       capture_output=True)
    assert r.returncode == 0, r.stderr


def coredump_entry(filename, **fields):
    entry = {"MESSAGE": "Process 4242 (tasks) of user 1000 dumped core.", "MESSAGE_ID": COREDUMP_MESSAGE_ID,
             "COREDUMP_FILENAME": filename}
    entry.update({"COREDUMP_" + k.upper(): v for k, v in fields.items()})
    return entry


def test_systemd_journal_entry(tasks_core, tmp_path):
    """systemd-coredump's journal entry of the core (coredumpctl info's fields):
    the command line and unit the xattrs lack, and what the xattrs left out;
    the entry of another file, or another message, is not taken. Read from
    TASKDBG_JOURNAL_DIR (journalctl -D) here; the system journal by default."""
    core, plain = tasks_core
    packed = compress(core, "zstd", "core.tasks.1000.b0071d.4242.1796605323123456.zst")
    set_xattrs(packed, {"pid": "4242", "signal": "6"})
    journal = tmp_path / "journal"
    other = tmp_path / "core.other.zst"
    write_journal(journal, [
        coredump_entry(str(packed), pid="4242", uid="1000", gid="1000", signal="6", comm="tasks",
                       exe="/usr/bin/tasks", cmdline="tasks --listen 127.0.0.1:8080, verbose",
                       unit="tasks.service", hostname="buildbox", timestamp="1796605323123456"),
        coredump_entry(str(other), pid="1", cmdline="other", unit="other.service"),
        {"MESSAGE": "not a coredump", "COREDUMP_FILENAME": str(packed), "COREDUMP_UNIT": "wrong.service"},
    ])
    env = {"TZ": "UTC", "TASKDBG_JOURNAL_DIR": str(journal)}
    line = ("systemd-coredump: signal 6 (SIGABRT) at 2026-12-07 01:02:03 UTC, pid 4242 (tasks), "
            "uid 1000, gid 1000, exe /usr/bin/tasks, host buildbox, unit tasks.service, "
            "command line: tasks --listen 127.0.0.1:8080, verbose")
    assert_coredump_line(packed, env, line)
    doc = tasks_json(packed, env=env)
    assert doc["target"]["coredump"] == {
        "pid": 4242, "uid": 1000, "gid": 1000, "signal": 6, "signal_name": "SIGABRT",
        "timestamp_us": 1796605323123456, "time": "2026-12-07T01:02:03Z", "comm": "tasks",
        "exe": "/usr/bin/tasks", "hostname": "buildbox", "unit": "tasks.service",
        "cmdline": "tasks --listen 127.0.0.1:8080, verbose", "journal": True}
    assert doc["runtimes"] == plain["runtimes"]
    # No xattrs at all (copied without them), the journal alone: the same fields.
    bare = tmp_path / "bare.zst"
    shutil.copyfile(packed, bare)
    write_journal(tmp_path / "journal2", [coredump_entry(str(bare), signal="11", unit="bare.service")])
    r = run("bt", bare, env={"TASKDBG_JOURNAL_DIR": str(tmp_path / "journal2")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == "systemd-coredump: signal 11 (SIGSEGV), unit bare.service"
    # A journal with no entry for this core: the xattrs alone, and nothing breaks.
    r = run("bt", "--json", packed, env={"TASKDBG_JOURNAL_DIR": str(tmp_path / "journal2")})
    assert json.loads(r.stdout)["target"]["coredump"] == {"pid": 4242, "signal": 6, "signal_name": "SIGABRT",
                                                        "journal": False}
    # A directory that is no journal: the same.
    r = run("bt", "--json", packed, env={"TASKDBG_JOURNAL_DIR": str(tmp_path / "nowhere")})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["target"]["coredump"]["journal"] is False


@pytest.fixture
def c_core_copy(tmp_path):
    target = Target([C_FIXTURES / "fixture-threads"])
    try:
        return gcore(target.pid, tmp_path)
    finally:
        target.stop()


# --exe DIR: the executable looked up by name, then by build-id.

@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """A core of a copy of fixture-threads whose file was then moved away."""
    top = tmp_path_factory.mktemp("moved")
    ran = top / "ran"
    ran.mkdir()
    exe = ran / "fx"
    shutil.copy(C_FIXTURES / "fixture-threads", exe)
    target = Target([exe])
    try:
        core = gcore(target.pid, top)
    finally:
        target.stop()
    shutil.rmtree(ran)
    yield top, exe, core, build_id_of(C_FIXTURES / "fixture-threads")
    core.unlink()


def build_id_of(path):
    notes = subprocess.run(["readelf", "-n", path], capture_output=True, text=True).stdout
    return re.search(r"Build ID: ([0-9a-f]+)", notes).group(1)


def functions(doc):
    return {f["function"] for t in doc["threads"] for f in t["frames"]}


def assert_bt_finds_exe(exe_dir, core, exe):
    """bt of the moved program's core with --exe DIR took exe, and named the program's functions."""
    r = run("bt", "--json", "--exe", exe_dir, core)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["target"]["exe"] == str(exe)
    assert "reader_main" in functions(doc)


def test_exe_dir_by_name(moved, tmp_path):
    top, exe, core, _ = moved
    assert_fails(run("bt", core), f"taskdbg: the executable of core file {core}, {exe}, is not there "
                 "(No such file or directory)\nCopy it back, or pass the binary that ran with --exe PATH "
                 "(or --exe DIR, a directory where it is, found by name or build-id).")
    shutil.copy(C_FIXTURES / "fixture-threads", tmp_path / "fx")
    assert_bt_finds_exe(tmp_path, core, tmp_path / "fx")


def test_exe_dir_by_build_id(moved, tmp_path):
    top, exe, core, _ = moved
    # Another file under the name, and the right one under another name.
    shutil.copy(C_FIXTURES / "fixture-zombie", tmp_path / "notes")
    shutil.copy(C_FIXTURES / "fixture-threads", tmp_path / "fx-1.2.3")
    (tmp_path / "README").write_text("not ELF")
    assert_bt_finds_exe(tmp_path, core, tmp_path / "fx-1.2.3")


def test_exe_dir_wrong_binary(moved, tmp_path):
    top, exe, core, build_id = moved
    shutil.copy(C_FIXTURES / "fixture-zombie", tmp_path / "fx")
    zombie_id = build_id_of(tmp_path / "fx")
    assert_fails(run("bt", "--exe", tmp_path, core),
                 f"taskdbg: {tmp_path}/fx does not match core file {core}: the program that ran had "
                 f"build-id {build_id}, but this file has build-id {zombie_id}\n"
                 "It was probably rebuilt since. Pass the binary that ran with --exe PATH.")


def test_exe_dir_without_it(moved, tmp_path):
    top, exe, core, build_id = moved
    shutil.copy(C_FIXTURES / "fixture-zombie", tmp_path / "other")
    assert_fails(run("tasks", "--exe", tmp_path, core),
                 f"taskdbg: the executable of core file {core}, {exe}, is not there, and {tmp_path} "
                 f"holds no file of that name or with its build-id ({build_id})\n"
                 f"Copy the binary that ran into {tmp_path}, or pass it with --exe PATH.")


def test_exe_dir_compressed(moved, tmp_path):
    """The two together: a moved program's compressed core."""
    top, exe, core, _ = moved
    packed = compress(core, "zstd", "core-moved.zst")
    try:
        shutil.copy(C_FIXTURES / "fixture-threads", tmp_path / "fx")
        r = run("bt", "--json", "--exe", tmp_path, packed)
        assert r.returncode == 0, r.stderr
        assert "reader_main" in functions(json.loads(r.stdout))
    finally:
        packed.unlink()


def test_core_session_compressed_with_exe_dir(moved, tmp_path):
    """`taskdbg core CORE EXE`: a compressed core and EXE a directory."""
    top, exe, core, _ = moved
    packed = compress(core, "zstd", "core-session.zst")
    try:
        shutil.copy(C_FIXTURES / "fixture-threads", tmp_path / "fx")
        r = subprocess.run([str(TASKDBG), "core", str(packed), str(tmp_path)], input="bt\nlua taskdbg.target().compression\nquit\n",
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert re.search(r"^  #1   main at .*tests/fixtures/c/threads\.c:\d+$", r.stdout, re.M), r.stdout
        assert "reader_main" in r.stdout
        assert r.stdout.endswith("\nzstd\n"), r.stdout[-200:]
    finally:
        packed.unlink()


def test_exe_dir_finds_moved_library(tmp_path):
    """A shared library that moved is found in --exe DIR too (by name and build-id)."""
    ran, kept = tmp_path / "ran", tmp_path / "kept"
    ran.mkdir()
    kept.mkdir()
    libc = pathlib.Path("/lib/x86_64-linux-gnu/libc.so.6")
    shutil.copy(libc, ran / "libc.so.6")
    target = Target([C_FIXTURES / "fixture-threads"],
                    env=dict(os.environ, LD_LIBRARY_PATH=str(ran)))
    try:
        assert f"{ran}/libc.so.6" in pathlib.Path(f"/proc/{target.pid}/maps").read_text()
        core = gcore(target.pid, tmp_path)
    finally:
        target.stop()
    shutil.move(ran / "libc.so.6", kept / "libc.so.6")
    main_thread = re.compile(r'^thread \d+ "fixture-threads" \(main, in rt_sigsuspend\(\)\)\n'
                             r"  #0   0x[0-9a-f]+ in (.+)\n  #1   0x[0-9a-f]+ in (.+)\n", re.M)
    r = run("bt", core)
    assert r.returncode == 0, r.stderr
    # Without the file, no symbol: the offset into libc's image, within the file's size.
    for frame in main_thread.search(r.stdout).groups():
        m = re.fullmatch(r"\?\? \(libc\.so\.6\+0x([0-9a-f]+)\)", frame)
        assert m and 0 < int(m[1], 16) < (kept / "libc.so.6").stat().st_size, frame
    r = run("bt", "--exe", kept, core)
    assert r.returncode == 0, r.stderr
    frames = main_thread.search(r.stdout).groups()
    # libc's DWARF (libc6-dbg) says __GI___sigsuspend, its symbols sigsuspend; the unwind
    # through libc (its CFI is in the file) reaches main.
    assert re.match(r"\S*sigsuspend", frames[0]) and frames[1].startswith("main at "), frames


def test_no_room_for_the_decompressed_core(tasks_core, tmp_path):
    """A write that fails (here: RLIMIT_FSIZE, as a full disk would) is said, with what to do."""
    core, _ = tasks_core
    packed = compress(core, "zstd", "core-room.zst")

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, 8 << 20))

    env = dict(os.environ, TMPDIR=str(tmp_path))
    r = subprocess.run([str(TASKDBG), "bt", str(packed)], capture_output=True, text=True, env=env,
                       preexec_fn=small_files, timeout=60)
    packed.unlink()
    assert_fails(r, f"taskdbg: cannot decompress core file {packed} into {tmp_path}: File too large "
                 "(after 8 MiB)\nSet TMPDIR to a directory with room for the whole core, or decompress "
                 f"it by hand (`zstd -d {packed} -o core`) where there is room and pass the result.")


def test_compressed_core_cut_before_compression(tasks_core, tmp_path):
    """A whole zstd stream of a core cut short (as systemd does past its size limits)."""
    core, _ = tasks_core
    half = tmp_path / "core-half"
    half.write_bytes(core.read_bytes()[: core.stat().st_size // 2])
    packed = compress(half, "zstd", "core-half.zst")
    assert_fails(run("bt", packed),
                 f"taskdbg: core file {packed} is truncated: it has {half.stat().st_size} of its ",
                 " bytes once decompressed\nThe dump was cut short (a `ulimit -c` limit, a full disk, or a "
                 "copy that did not finish; systemd-coredump cuts cores over ProcessSizeMax= and "
                 "ExternalSizeMax= of /etc/systemd/coredump.conf). Make a new core")


def test_exe_dir_tokio_tasks(tmp_path):
    """A tokio program's core after its binary moved and was renamed: `tasks
    --exe DIR` finds it by build-id and reads the same tasks."""
    ran, kept = tmp_path / "ran", tmp_path / "kept"
    ran.mkdir()
    kept.mkdir()
    shutil.copy(RUST_FIXTURES / "tasks", ran / "tasks")
    target = Target([ran / "tasks"])
    try:
        core = gcore(target.pid, tmp_path)
    finally:
        target.stop()
    before = tasks_json(core)
    shutil.move(ran / "tasks", kept / "tasks-v2")
    r = run("tasks", "--json", core)
    assert_fails(r, f"the executable of core file {core}, {ran}/tasks, is not there")
    r = run("tasks", "--json", "--exe", kept, core)
    assert r.returncode == 0, r.stderr
    after = json.loads(r.stdout)
    assert after["target"] == dict(before["target"], exe=str(kept / "tasks-v2"))
    assert after["runtimes"] == before["runtimes"] and after["threads"] == before["threads"]
    assert len(after["runtimes"][0]["tasks"]) >= 4


def test_progress_on_a_terminal(tasks_core, tmp_path):
    """On a terminal, a line says how far the decompression is, then is erased;
    elsewhere (every other test) nothing is said."""
    core, _ = tasks_core
    packed = compress(core, "zstd", "core-progress.zst")
    r = run("bt", packed)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    master, slave = pty.openpty()
    try:
        r = subprocess.run([str(TASKDBG), "bt", str(packed)], stdout=subprocess.PIPE, stderr=slave,
                           timeout=60)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other end is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
        packed.unlink()
    assert r.returncode == 0
    line = f"\r\x1b[Kdecompressing {packed}: ".encode()
    assert seen.startswith(line + b"64 MiB so far" + line + b"128 MiB so far"), seen
    assert seen.endswith(b" so far\r\x1b[K"), seen
