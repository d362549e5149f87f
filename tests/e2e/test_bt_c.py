"""`taskdbg bt` on the C fixture: live, on a gcore core and on a kernel core.

The fixture's threads sit in known places (see tests/fixtures/c/threads.c);
the expected lines come from its `// @name` markers.
"""
import json
import re

import pytest

from conftest import (C_FIXTURES, C_SOURCE, Target, assert_frames, assert_untouched, bt_json,
                      gcore, kernel_core, run, thread_by, thread_with_function)

L = None
SRC = "tests/fixtures/c/threads.c"


@pytest.fixture(scope="module", autouse=True)
def lines():
    global L
    from conftest import marker_lines
    L = marker_lines(C_SOURCE)


def check_c_stacks(doc, live):
    """What any snapshot of the fixture must show, live or core."""
    reader = thread_with_function(doc, "reader_main")
    assert reader["syscall"] == "read"
    assert reader["frames"][0]["function"].endswith("read")
    assert_frames(reader, [
        ("wait_for_input", SRC, L["read_call"], True),
        ("reader_main", SRC, L["wait_for_input_call"], False)])

    sleeper = thread_with_function(doc, "sleeper_main")
    assert sleeper["syscall"] == "clock_nanosleep"
    assert_frames(sleeper, [("sleeper_main", SRC, L["nanosleep_call"], False)])

    chain = thread_with_function(doc, "chain_main")
    assert chain["syscall"] == "pause"
    assert_frames(chain, [
        ("level_three", SRC, L["pause_call"], False),
        ("level_two", SRC, L["level_three_call"], False),
        ("level_one", SRC, L["level_two_call"], False),
        ("chain_main", SRC, L["level_one_call"], False)])

    for t in (reader, sleeper, chain):
        assert t["role"] == "other"
        assert t["task"] is None
        # Every stack ends at the thread's start, not in the middle.
        assert t["frames"][-1]["function"] in ("clone3", "__clone3", "clone", "__clone")
        assert "unwind_error" not in t
    if live:
        assert thread_by(doc, tid=reader["tid"])["name"] == "reader"
        assert sleeper["name"] == "sleeper" and chain["name"] == "chain"
        for t in doc["threads"]:
            assert t["state"] == "S", t
    else:
        for t in (reader, sleeper, chain):
            assert t["name"] is None and t["state"] is None


def test_live_json(c_threads):
    doc = bt_json(c_threads.pid)
    assert doc["target"]["kind"] == "process"
    assert doc["target"]["pid"] == c_threads.pid
    assert doc["target"]["exe"] == str(C_FIXTURES / "fixture-threads")
    assert len(doc["threads"]) == 4
    check_c_stacks(doc, live=True)
    main = thread_by(doc, tid=c_threads.pid)
    assert main["role"] == "main" and main["name"] == "fixture-threads"
    assert main["syscall"] == "rt_sigsuspend"
    assert_frames(main, [("main", SRC, L["main_wait"], False)])
    assert_untouched(c_threads.pid)


def test_live_text(c_threads):
    r = run("bt", c_threads.pid)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith(f"process {c_threads.pid} (fixture-threads), 4 threads, stopped for ")
    assert re.search(rf'^thread \d+ "reader" \(other, sleeping, in read\(\)\)$', out, re.M)
    assert re.search(rf"^  #\d+ +0x[0-9a-f]{{16}} in wait_for_input \[inlined\] at \S*{SRC}:{L['read_call']}$",
                     out, re.M)
    assert re.search(rf"^  #\d+ +0x[0-9a-f]{{16}} in reader_main at \S*{SRC}:{L['wait_for_input_call']}$",
                     out, re.M)
    assert_untouched(c_threads.pid)


def test_json_follows_cli_contract(c_threads):
    doc = bt_json(c_threads.pid)
    assert set(doc) == {"target", "threads"}
    for t in doc["threads"]:
        assert {"tid", "name", "state", "role", "syscall", "task", "frames"} <= set(t)
        assert isinstance(t["tid"], int)
        assert t["role"] in ("worker", "blocking", "main", "other")
        assert t["syscall"] is None or isinstance(t["syscall"], str)
        for f in t["frames"]:
            assert {"pc", "function", "file", "line", "inlined"} <= set(f)
            assert re.fullmatch(r"0x[0-9a-f]+", f["pc"])
            assert isinstance(f["inlined"], bool)
            assert f["line"] is None or isinstance(f["line"], int)


def test_gcore(c_threads, module_tmp):
    core = gcore(c_threads.pid, module_tmp)
    assert_untouched(c_threads.pid)
    doc = bt_json(core)
    assert doc["target"]["kind"] == "core"
    assert doc["target"]["pid"] == c_threads.pid
    assert doc["target"]["exe"] == str(C_FIXTURES / "fixture-threads")
    assert len(doc["threads"]) == 4
    check_c_stacks(doc, live=False)
    main = thread_by(doc, tid=c_threads.pid)
    assert main["role"] == "main" and main["name"] == "fixture-threads"


def test_kernel_core(tmp_path):
    core, _ = kernel_core([C_FIXTURES / "fixture-threads", "abort"], tmp_path)
    doc = bt_json(core)
    assert doc["target"]["kind"] == "core"
    check_c_stacks(doc, live=False)
    main = [t for t in doc["threads"] if t["role"] == "main"]
    assert len(main) == 1
    names = [f["function"] for f in main[0]["frames"]]
    assert "abort" in " ".join(names)
    assert_frames(main[0], [("main", SRC, L["abort_call"], False)])


def test_text_on_core(c_threads, module_tmp):
    core = sorted(module_tmp.glob("gcore.*"))[0]
    r = run("bt", core)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"core {core} of process {c_threads.pid} (fixture-threads), 4 threads\n")
    assert re.search(rf"in level_two at \S*{SRC}:{L['level_three_call']}$", r.stdout, re.M)


def refused_aranges_copy(directory):
    """A copy of the fixture whose .debug_aranges libdw 0.188 refuses as a
    whole, as it does those rustc 1.63 writes for any program that links
    tracing-subscriber: an entry (0, 0), left by code the linker dropped,
    before the end of a set (libdw takes it for the set's end and reads the
    rest as the next set's header: "invalid DWARF")."""
    import shutil
    import struct
    import subprocess
    exe = C_FIXTURES / "fixture-threads"
    copy = directory / "fixture-threads"
    shutil.copy(exe, copy)
    section = directory / "aranges"
    subprocess.run(["objcopy", "--dump-section", f".debug_aranges={section}", str(exe), str(directory / "scratch")],
                   check=True)
    data = section.read_bytes()
    (length,) = struct.unpack_from("<I", data, 0)
    assert length + 4 == len(data), "one CU, one set"
    # Header: unit_length 4, version 2, debug_info_offset 4, address_size 1, segment_size 1, then
    # padding to 16: the first (address, length) pair is at 16.
    patched = struct.pack("<I", length + 16) + data[4:16] + struct.pack("<QQ", 0, 0) + data[16:]
    section.write_bytes(patched)
    subprocess.run(["objcopy", "--update-section", f".debug_aranges={section}", str(copy)], check=True)
    # The copy must be refused as the fixture is not: eu-addr2line (libdw) finds no line in it.
    main = subprocess.run(["nm", str(exe)], capture_output=True, text=True, check=True).stdout
    (addr,) = [line.split()[0] for line in main.splitlines() if line.endswith(" T main")]
    lookup = lambda path: subprocess.run(["eu-addr2line", "-e", str(path), "0x" + addr],
                                         capture_output=True, text=True).stdout.strip()
    assert lookup(exe) != "??:0"
    assert lookup(copy) == "??:0", lookup(copy)
    return copy


def test_aranges_libdw_refuses(tmp_path):
    """A binary whose .debug_aranges libdw refuses still has its DWARF frames,
    inline frames and lines: taskdbg finds the CU by the CUs' own ranges. Live
    and on a core."""
    copy = refused_aranges_copy(tmp_path)
    target = Target([copy])
    try:
        for where in (target.pid, gcore(target.pid, tmp_path)):
            doc = bt_json(where)
            check_c_stacks(doc, live=where == target.pid)
            main = thread_by(doc, tid=target.pid)
            assert_frames(main, [("main", SRC, L["main_wait"], False)])
        assert_untouched(target.pid)
    finally:
        target.stop()
