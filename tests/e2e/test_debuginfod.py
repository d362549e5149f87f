"""debuginfod: with DEBUGINFOD_URLS set, debug info that is not on this machine
(and a core's executable that is gone) comes from a real local `debuginfod`
server, into elfutils' cache; a server that is down or silent costs a bounded
wait and a clear warning, and a live target is never stopped while waiting.

The fixtures are split as distributions ship them: an executable without
DWARF (`objcopy --strip-debug`) and its debug file (`--only-keep-debug`),
which only the server has.
"""
import http.server
import json
import os
import pathlib
import pty
import re
import select
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import (C_FIXTURES, C_SOURCE, RUST_FIXTURES, TASKDBG, Target, assert_untouched, gcore,
                      marker_lines, run, thread_states, tracer_of)
from test_tasks import check_model

SRC = "tests/fixtures/c/threads.c"
L = marker_lines(C_SOURCE)


def build_id(path):
    out = subprocess.run(["eu-readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return re.search(r"Build ID: ([0-9a-f]+)", out).group(1)


def split(binary, exe_dir, server_dir, serve_executable=True):
    """exe_dir/NAME without DWARF; server_dir gets NAME.debug and (if
    serve_executable) a copy of the stripped NAME, the server's executable for
    the build-id. A stripped Rust executable keeps .debug_gdb_scripts, for
    which debuginfod would also serve it as the debug info."""
    name = pathlib.Path(binary).name
    exe = pathlib.Path(exe_dir) / name
    subprocess.run(["objcopy", "--only-keep-debug", str(binary), str(pathlib.Path(server_dir) / f"{name}.debug")],
                   check=True)
    subprocess.run(["objcopy", "--strip-debug", str(binary), str(exe)], check=True)
    if serve_executable:
        shutil.copy(exe, pathlib.Path(server_dir) / name)
    return exe


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real debuginfod on a loopback port, serving the ELF and debug files
    of one directory, with its own database; stopped by its pid."""

    def __init__(self, directory, workdir, nfiles, wanted_build_id):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(pathlib.Path(workdir) / "debuginfod.log", "w")
        # -t0: one scan at start, no rescans; -g0: no grooming.
        self.proc = subprocess.Popen(
            ["debuginfod", "-p", str(self.port), "-F", str(directory),
             "-d", str(pathlib.Path(workdir) / "debuginfod.sqlite"), "-t0", "-g0"],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self.wait_ready(nfiles, wanted_build_id)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, nfiles, wanted_build_id):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"debuginfod exited: {self.proc.returncode}"
            try:
                metrics = urllib.request.urlopen(f"{self.url}/metrics", timeout=2).read().decode()
                m = re.search(r'^scanned_files_total\{source="file"\} (\d+)', metrics, re.M)
                if m and int(m.group(1)) >= nfiles:
                    # Scanned is not yet indexed: ask for the file itself.
                    with urllib.request.urlopen(f"{self.url}/buildid/{wanted_build_id}/debuginfo",
                                                timeout=5) as r:
                        if r.status == 200:
                            return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"debuginfod on port {self.port} did not index {nfiles} files in 60 s")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class SilentServer:
    """Accepts connections and never answers: a server that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns = []
        self.done = False
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self):
        while not self.done:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def stop(self):
        self.done = True
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        for c in self.conns:
            c.close()


def fetch_env(cache, url, **extra):
    env = {"DEBUGINFOD_URLS": url, "DEBUGINFOD_CACHE_PATH": str(cache)}
    env.update({k: str(v) for k, v in extra.items()})
    return env


NO_SERVER = {"DEBUGINFOD_URLS": ""}


@pytest.fixture(scope="module")
def c_split(tmp_path_factory):
    base = tmp_path_factory.mktemp("debuginfod-c")
    (base / "exe").mkdir()
    (base / "srv").mkdir()
    exe = split(C_FIXTURES / "fixture-threads", base / "exe", base / "srv")
    server = Server(base / "srv", base, 2, build_id(exe))
    yield exe, server
    server.stop()


@pytest.fixture(scope="module")
def c_target(c_split):
    exe, _ = c_split
    t = Target([exe])
    yield t
    assert_untouched(t.pid)
    t.stop()


def frames_of(doc, function):
    found = [t for t in doc["threads"] if any(f["function"] == function for f in t["frames"])]
    assert len(found) == 1, f"want one thread running {function}: {doc}"
    return [(f["function"], f["file"] and f["file"].endswith(SRC), f["line"]) for f in found[0]["frames"]]


def check_c(doc):
    """Names and lines that only the fetched DWARF gives."""
    chain = frames_of(doc, "chain_main")
    i = [f[0] for f in chain].index("level_three")
    assert chain[i:i + 4] == [("level_three", True, L["pause_call"]), ("level_two", True, L["level_three_call"]),
                              ("level_one", True, L["level_two_call"]), ("chain_main", True, L["level_one_call"])]
    reader = frames_of(doc, "reader_main")
    assert ("wait_for_input", True, L["read_call"]) in reader
    assert ("reader_main", True, L["wait_for_input_call"]) in reader


@pytest.fixture(scope="module")
def tokio_split(tmp_path_factory):
    """The tasks fixture (Debian's tokio) split, its server, and it running:
    for the failures, which `tasks` cannot get past (it needs the
    executable's DWARF for the runtime, whatever bt does without)."""
    base = tmp_path_factory.mktemp("debuginfod-tokio")
    (base / "exe").mkdir()
    (base / "srv").mkdir()
    exe = split(RUST_FIXTURES / "tasks", base / "exe", base / "srv", serve_executable=False)
    server = Server(base / "srv", base, 1, build_id(exe))
    t = Target([exe])
    yield exe, server, t
    assert_untouched(t.pid)
    t.stop()
    server.stop()


def test_split_executable_alone_has_no_dwarf(tokio_split):
    """The split worked: without a server, the executable's DWARF is missing,
    and the message says DEBUGINFOD_URLS would help."""
    exe, _, t = tokio_split
    r = run("tasks", t.pid, env=NO_SERVER)
    assert r.returncode == 2, r.stderr
    assert f"{exe} has no debug info (DWARF)" in r.stderr
    assert "Or set DEBUGINFOD_URLS to a debuginfod server that has it" in r.stderr
    assert "fetching" not in r.stderr


def test_bt_live_with_fetched_debug_info(c_split, c_target, tmp_path):
    exe, server = c_split
    cache = tmp_path / "cache"
    r = run("bt", "--json", c_target.pid, env=fetch_env(cache, server.url))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["target"]["exe"] == str(exe)
    check_c(doc)
    # Into elfutils' cache, by build-id; no progress line without a terminal.
    fetched = cache / build_id(exe) / "debuginfo"
    assert fetched.is_file() and build_id(fetched) == build_id(exe)
    assert "fetching" not in r.stderr
    assert_untouched(c_target.pid)

    # Warm: from the cache, even with the server gone (a port nobody listens on).
    r = run("bt", c_target.pid, env=fetch_env(cache, f"http://127.0.0.1:{free_port()}"))
    assert r.returncode == 0, r.stderr
    assert re.search(rf"in level_two at \S*{SRC}:{L['level_three_call']}$", r.stdout, re.M)
    assert "warning" not in r.stderr


def test_bt_core_with_fetched_debug_info(c_split, c_target, tmp_path):
    _, server = c_split
    core = gcore(c_target.pid, tmp_path)
    # Without the server: no lines of threads.c (an error, or frames without them).
    r = run("bt", "--json", core, env=NO_SERVER)
    assert r.returncode in (0, 2) and "threads.c" not in r.stdout, r.stdout
    r = run("bt", "--json", core, env=fetch_env(tmp_path / "cache", server.url))
    assert r.returncode == 0, r.stderr
    check_c(json.loads(r.stdout))


def test_core_whose_executable_is_gone_gets_it_from_the_server(c_split, tmp_path):
    exe, server = c_split
    moved = tmp_path / "fixture-threads"
    shutil.copy(exe, moved)
    t = Target([moved])
    try:
        core = gcore(t.pid, tmp_path)
    finally:
        t.stop()
    moved.unlink()
    r = run("bt", core, env=NO_SERVER)
    assert r.returncode == 2 and f"{moved}, is not there" in r.stderr, r.stderr
    assert "Or set DEBUGINFOD_URLS to a debuginfod server that has it" in r.stderr
    cache = tmp_path / "cache"
    r = run("bt", "--json", core, env=fetch_env(cache, server.url))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["target"]["exe"] == str(cache / build_id(exe) / "executable")
    check_c(doc)


def on_a_terminal(args, env):
    """Runs taskdbg with its stderr on a pseudo-terminal: (exit code, what it wrote there)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([str(TASKDBG)] + [str(a) for a in args], stdout=subprocess.PIPE,
                              stderr=slave, env=dict(os.environ, **env), timeout=60)
        os.close(slave)
        slave = None
        err = b""
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            err += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    return proc.returncode, err.decode()


def test_progress_line_on_a_terminal(c_split, c_target, tmp_path):
    exe, server = c_split
    code, text = on_a_terminal(["bt", c_target.pid], fetch_env(tmp_path / "cache", server.url))
    assert code == 0, text
    line = f"taskdbg: fetching debug info for {exe} (build-id {build_id(exe)[:12]}...) from {server.url}"
    assert line in text, text
    # Rewritten in place and cleared once done: the terminal is left clean.
    assert text.startswith("\r\x1b[K") and text.endswith("\r\x1b[K"), repr(text)
    assert_untouched(c_target.pid)


class DribblingServer:
    """Serves one file as debuginfod would, 2 KiB every `delay` s: a download
    the progress line can follow, or one too slow to wait for."""

    def __init__(self, build_id, path, delay=0.1):
        data = pathlib.Path(path).read_bytes()
        want = f"/buildid/{build_id}/debuginfo"

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != want:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for i in range(0, len(data), 2048):
                        self.wfile.write(data[i:i + 2048])
                        self.wfile.flush()
                        time.sleep(delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: what a test of a slow download wants

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def test_progress_line_counts_the_download(c_split, c_target, tmp_path):
    exe, _ = c_split
    debug = exe.parent.parent / "srv" / "fixture-threads.debug"
    server = DribblingServer(build_id(exe), debug)
    try:
        code, text = on_a_terminal(["bt", c_target.pid], fetch_env(tmp_path / "cache", server.url))
    finally:
        server.stop()
    assert code == 0, text
    total = f"{debug.stat().st_size / 1024:.1f} KiB"
    url = f"{server.url}/buildid/{build_id(exe)}/debuginfo"
    counts = re.findall(rf"taskdbg: fetching debug info for {re.escape(str(exe))} "
                        rf"\(build-id {build_id(exe)[:12]}\.\.\.\) from {re.escape(url)}: "
                        rf"(\d+\.\d) KiB/{re.escape(total)}\r", text)
    # Several lines, each rewriting the last, counting up.
    assert len(counts) >= 3, repr(text)
    assert [float(c) for c in counts] == sorted(float(c) for c in counts), counts
    assert text.endswith("\r\x1b[K")
    assert_untouched(c_target.pid)


def test_too_slow_a_download(c_split, c_target, tmp_path):
    """4 KiB/s: under the library's 100 KiB/s for DEBUGINFOD_TIMEOUT seconds."""
    exe, _ = c_split
    server = DribblingServer(build_id(exe), exe.parent.parent / "srv" / "fixture-threads.debug", delay=0.5)
    try:
        t0 = time.monotonic()
        r = run("bt", c_target.pid, env=fetch_env(tmp_path / "cache", server.url, DEBUGINFOD_TIMEOUT=1))
        took = time.monotonic() - t0
    finally:
        server.stop()
    assert took < 4, took
    # The URL of the download that began.
    assert (f"taskdbg: warning: cannot fetch debug info for {exe} (build-id {build_id(exe)}) from "
            f"{server.url}/buildid/{build_id(exe)}/debuginfo: under 100 KiB/s for 1 s (DEBUGINFOD_TIMEOUT); "
            "going on without it") in r.stderr, r.stderr
    assert_untouched(c_target.pid)


def test_down_server(tokio_split, tmp_path):
    exe, _, t = tokio_split
    port = free_port()
    t0 = time.monotonic()
    r = run("tasks", t.pid, env=fetch_env(tmp_path / "cache", f"http://127.0.0.1:{port}"))
    took = time.monotonic() - t0
    assert r.returncode == 2, r.stderr
    assert took < 10, took
    assert (f"taskdbg: warning: cannot fetch debug info for {exe} (build-id {build_id(exe)}) from "
            f"http://127.0.0.1:{port}: connection refused (is the server running?); going on without it, "
            "and without debuginfod for the rest of this run\n") in r.stderr
    # The modules after the failure are not asked, and said so once.
    assert re.search(r"^taskdbg: also left without debug info from debuginfod: \S", r.stderr, re.M), r.stderr
    assert f"debuginfod (http://127.0.0.1:{port}) did not give it: connection refused" in r.stderr
    assert_untouched(t.pid)


def test_not_on_the_server(c_split, tokio_split, tmp_path):
    """A build-id the server does not know: one line, and the error says why."""
    _, c_server = c_split
    exe, _, t = tokio_split
    r = run("tasks", t.pid, env=fetch_env(tmp_path / "cache", c_server.url))
    assert r.returncode == 2, r.stderr
    assert re.search(rf"^taskdbg: debuginfod \({re.escape(c_server.url)}\) has no debug info for "
                     r"(\S+, )*tasks(, \S+)*; going on without it$", r.stderr, re.M), r.stderr
    assert f"{exe} has no debug info (DWARF)" in r.stderr
    assert f"debuginfod ({c_server.url}) did not give it: the server does not have it." in r.stderr
    assert "warning" not in r.stderr
    assert_untouched(t.pid)


def watch_while(proc, pid):
    """Samples the target while taskdbg runs: (times seen stopped or traced, samples)."""
    bad = samples = 0
    while proc.poll() is None:
        states = thread_states(pid)
        if any(s in "tT" for s in states.values()) or tracer_of(pid) != 0:
            bad += 1
        samples += 1
        time.sleep(0.05)
    return bad, samples


@pytest.mark.parametrize("limit,why", [
    ({"DEBUGINFOD_TIMEOUT": 1}, "no answer in 1 s (DEBUGINFOD_TIMEOUT)"),
    ({"TASKDBG_DEBUGINFOD_MAXTIME": 2},
     "still not done when the 2 s that taskdbg gives debuginfod per run were spent (TASKDBG_DEBUGINFOD_MAXTIME)"),
])
def test_silent_server_times_out(tokio_split, tmp_path, limit, why):
    exe, server, t = tokio_split
    silent = SilentServer()
    cache = tmp_path / "cache"
    try:
        env = dict(os.environ, **fetch_env(cache, silent.url, **limit))
        t0 = time.monotonic()
        proc = subprocess.Popen([str(TASKDBG), "tasks", str(t.pid)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        # While taskdbg waits for the server, the target runs: never stopped, never traced.
        bad, samples = watch_while(proc, t.pid)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        silent.stop()
    assert samples > 10 and bad == 0, (bad, samples)
    assert proc.returncode == 2, err
    # One connection (no retries unless DEBUGINFOD_RETRY_LIMIT): about the limit, not three times it.
    assert 1 <= took < 4.5, took
    assert len(silent.conns) == 1
    assert (f"taskdbg: warning: cannot fetch debug info for {exe} (build-id {build_id(exe)}) from "
            f"{silent.url}: {why}; going on without it") in err, err
    assert "has no debug info (DWARF)" in err
    # A query that timed out is not remembered as "not found": the real server works at once.
    r = run("tasks", t.pid, env=fetch_env(cache, server.url))
    assert r.returncode == 0, r.stderr
    assert "runtime 1 (multi_thread), 7 tasks" in r.stdout
    assert_untouched(t.pid)


LIB_SOURCE = """\
#include <unistd.h>

void lib_wait(void)
{
\tfor (;;)
\t\tpause();  // @lib_pause
}
"""

MAIN_SOURCE = """\
#include <stdio.h>

void lib_wait(void);

int main(void)
{
\tputs("ready");
\tfflush(stdout);
\tlib_wait();  // @lib_call
\treturn 0;
}
"""


def test_shared_library_debug_info(tmp_path):
    """A shared library's debug info, only on the server: the library's frames
    get names and lines (symbolized on the helper thread's own Dwfl)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "dwait.c").write_text(LIB_SOURCE)
    (src / "main.c").write_text(MAIN_SOURCE)
    built, exe_dir, srv = tmp_path / "built", tmp_path / "exe", tmp_path / "srv"
    for d in (built, exe_dir, srv):
        d.mkdir()
    subprocess.run(["gcc", "-g", "-O0", "-fPIC", "-shared", "-Wl,--build-id", "-o", str(built / "libdwait.so"),
                    str(src / "dwait.c")], check=True)
    subprocess.run(["gcc", "-g", "-O0", "-Wl,--build-id", "-o", str(exe_dir / "uses-dwait"), str(src / "main.c"),
                    f"-L{built}", "-ldwait", "-Wl,-rpath,$ORIGIN"], check=True)
    lib = split(built / "libdwait.so", exe_dir, srv)
    lines = marker_lines(src / "dwait.c")
    main_lines = marker_lines(src / "main.c")
    server = Server(srv, tmp_path, 2, build_id(lib))
    t = Target([exe_dir / "uses-dwait"])
    try:
        r = run("bt", "--json", t.pid, env=NO_SERVER)
        assert r.returncode == 0, r.stderr
        # Without its DWARF: no source line for the library's frame.
        (thread,) = json.loads(r.stdout)["threads"]
        assert not any(f["file"] and f["file"].endswith("dwait.c") for f in thread["frames"]), thread
        r = run("bt", "--json", t.pid, env=fetch_env(tmp_path / "cache", server.url))
        assert r.returncode == 0, r.stderr
        (thread,) = json.loads(r.stdout)["threads"]
        got = [(f["function"], f["file"] and pathlib.Path(f["file"]).name, f["line"]) for f in thread["frames"]]
        i = [g[0] for g in got].index("lib_wait")
        assert got[i:i + 2] == [("lib_wait", "dwait.c", lines["lib_pause"]),
                                ("main", "main.c", main_lines["lib_call"])], got
        assert_untouched(t.pid)
    finally:
        t.stop()
        server.stop()


def test_debuglink_next_to_the_executable_needs_no_server(tmp_path):
    """.gnu_debuglink to a debug file beside the executable: found locally, as before."""
    exe = tmp_path / "fixture-threads"
    debug = tmp_path / "fixture-threads.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(C_FIXTURES / "fixture-threads"), str(debug)], check=True)
    subprocess.run(["objcopy", "--strip-debug", f"--add-gnu-debuglink={debug}",
                    str(C_FIXTURES / "fixture-threads"), str(exe)], check=True)
    t = Target([exe])
    try:
        r = run("bt", "--json", t.pid, env=NO_SERVER)
        assert r.returncode == 0, r.stderr
        check_c(json.loads(r.stdout))
        assert_untouched(t.pid)
    finally:
        t.stop()


@pytest.fixture(scope="module")
def rust_split(rust_bin, tmp_path_factory):
    base = tmp_path_factory.mktemp("debuginfod-rust")
    (base / "exe").mkdir()
    (base / "srv").mkdir()
    exe = split(rust_bin / "tasks", base / "exe", base / "srv", serve_executable=False)
    server = Server(base / "srv", base, 1, build_id(exe))
    yield exe, server, base
    server.stop()


def test_tasks_with_fetched_debug_info(rust_split, tmp_path):
    """tokio's tasks need the executable's DWARF: fetched, they read as with the original."""
    exe, server, _ = rust_split
    t = Target([exe])
    try:
        r = run("tasks", t.pid, env=NO_SERVER)
        assert r.returncode == 2 and "has no debug info (DWARF)" in r.stderr, r.stderr
        env = fetch_env(tmp_path / "cache", server.url)
        r = run("tasks", "--json", t.pid, env=env)
        assert r.returncode == 0, r.stderr
        check_model(json.loads(r.stdout), live=True)
        assert_untouched(t.pid)
        core = gcore(t.pid, tmp_path)
    finally:
        t.stop()
    r = run("tasks", "--json", core, env=env)
    assert r.returncode == 0, r.stderr
    check_model(json.loads(r.stdout), live=False)
    # A core, too, with a server that is down: exit 2, said in the warning and the error.
    r = run("tasks", core, env=fetch_env(tmp_path / "cache-2", f"http://127.0.0.1:{free_port()}"))
    assert r.returncode == 2, r.stderr
    assert f"taskdbg: warning: cannot fetch debug info for {exe} (build-id {build_id(exe)}) from" in r.stderr
    assert "did not give it: connection refused (is the server running?)." in r.stderr


def test_version_says_debuginfod_is_built_in():
    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.splitlines()[1] == "debuginfod: built in (libdebuginfod)"
    # (and the reading of systemd-coredump's journal entries: tests/e2e/test_cores.py)
    assert r.stdout.splitlines()[2] == "coredump journal: built in (libsystemd)"
