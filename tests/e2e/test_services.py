"""Services as they are written (issue #11): hyper 0.14 servers built with
Debian's hyper against every tokio release of the matrix. A request handler
is found inside hyper's connection task (its `root`), the `Server` future
inside block_on, a lock-order deadlock between two handlers, and a healthy
server under load from wrk shows its in-flight handlers and no finding."""
import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import RUST_SOURCE_DIR, STD_SLEEP, Target, assert_untouched, gcore, marker_lines, run

CONN = "hyper::server::server::new_svc::NewSvcTask"


def json_of(*args):
    r = run(*args)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def test_hyper_handler_deadlock(rust_bin, tmp_path):
    """Two handlers take two tokio mutexes in opposite orders: both
    connections hang. Before the chains went through wrapper futures,
    `diagnose` said "No problem found" and `tasks` showed two idle
    NewSvcTasks with no chain."""
    src = "src/bin/hyper_locks.rs"
    lines = marker_lines(RUST_SOURCE_DIR / "hyper_locks.rs")
    target = Target([rust_bin / "hyper_locks"])
    try:
        core = gcore(target.pid, tmp_path)
        for where in (target.pid, core):
            doc = json_of("tasks", "--json", where)
            (rt,) = doc["runtimes"]
            conns = rt["tasks"]
            assert [(t["name"], t["root"], t["state"]) for t in conns] == [(CONN, "hyper_locks::handle", "idle")] * 2
            seen = set()
            for t in conns:
                top = [(aw["name"], aw["file"], aw["line"]) for aw in t["backtrace"][:2]]
                if top[1][0] == "hyper_locks::transfer":
                    assert top == [("hyper_locks::handle", src, lines["handle_transfer"]),
                                   ("hyper_locks::transfer", src, lines["transfer_second_lock"])]
                else:
                    assert top == [("hyper_locks::handle", src, lines["handle_refund"]),
                                   ("hyper_locks::refund", src, lines["refund_second_lock"])]
                seen.add(top[1][0])
                assert t["waiting_on"]["kind"] == "tokio::sync::Mutex"
                assert [h["name"] for h in t["holds"]] == ["from"]
            assert seen == {"hyper_locks::transfer", "hyper_locks::refund"}
            text = run("tasks", where).stdout
            assert len(re.findall(rf"\n +\d+  idle +hyper_locks::handle \(in {re.escape(CONN)}\) at {src}:"
                                  rf"({lines['transfer_second_lock']}|{lines['refund_second_lock']}) awaiting ", text)) == 2, text

            d = json_of("diagnose", "--json", "--window", "300ms", where)
            (f,) = d["findings"]
            assert f["kind"] == "deadlock"
            assert sorted(t["id"] for t in f["tasks"]) == sorted(t["id"] for t in conns)
            assert [t["name"] for t in f["tasks"]] == [CONN, CONN]
            assert [r["kind"] for r in f["resources"]] == ["tokio::sync::Mutex"] * 2
            ids = sorted(t["id"] for t in conns)
            assert f["summary"] == (f"tasks {ids[0]} `hyper_locks::handle`, {ids[1]} `hyper_locks::handle` wait for "
                                    "each other (tokio::sync::Mutex): none can ever proceed")
            for marker in ("transfer_second_lock", "refund_second_lock"):
                assert any(e.endswith(f" at {src}:{lines[marker]}") and f"`hyper_locks::handle` (in `{CONN}`) holds "
                           "tokio::sync::Mutex" in e for e in f["evidence"]), f["evidence"]
        assert_untouched(target.pid)
    finally:
        target.stop()


def test_hyper_server_in_block_on(rust_bin, tmp_path):
    """The Server future awaited in block_on is found: rustc keeps no
    variable for the pinned copy, so the block_on frame is scanned, and stack
    bytes that decode as the same suspend point are told apart: those that
    overlap a live variable of the frame (its waker, its Context) are not it,
    then a pointer to the real one, or its references all leading to
    readable memory. (Before the overlap rule: missed about 1 run in 100 on
    tokio 1.53, where stale bytes over the waker decoded alike.)"""
    src = "src/bin/hyper_locks.rs"
    lines = marker_lines(RUST_SOURCE_DIR / "hyper_locks.rs")
    target = Target([rust_bin / "hyper_locks"])
    port = int(target.ready_line.split()[2])
    try:
        core = gcore(target.pid, tmp_path)
        for where in (target.pid, core):
            (rt,) = json_of("tasks", "--json", where)["runtimes"]
            (b,) = rt["block_on"]
            assert b["thread"] == target.pid and b["root"] == "hyper_locks::main::{async_block_env#0}"
            (aw,) = b["backtrace"]
            assert (aw["file"], aw["line"]) == (src, lines["serve_await"])
            assert aw["awaiting"].startswith("hyper::server::server::Server<hyper::server::tcp::AddrIncoming, ")
            # The accept loop waits on its listening socket.
            w = b["waiting_on"]
            assert (w["kind"], w["direction"], w["local"]) == ("socket", "read", f"127.0.0.1:{port}"), w
            if where == target.pid:
                assert_socket_fd(target.pid, w["fd"])
    finally:
        target.stop()


def assert_socket_fd(pid, fd):
    assert os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:["), (pid, fd)


def test_hyper_idle_keepalive_connections(rust_bin, tmp_path):
    """Three keep-alive connections, each after one answered request, with
    no request in flight: each connection task says it waits to read its
    socket, with the fd and the client's address as its peer, live and on a
    core."""
    target = Target([rust_bin / "hyper_echo"])
    port = int(target.ready_line.split()[2])
    clients = []
    try:
        for _ in range(3):
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            assert b"200 OK" in c.recv(1000)
            clients.append(c)
        peers = sorted("127.0.0.1:%d" % c.getsockname()[1] for c in clients)
        core = gcore(target.pid, tmp_path)
        for where in (target.pid, core):
            (rt,) = json_of("tasks", "--json", where)["runtimes"]
            conns = rt["tasks"]
            assert [(t["name"], t["state"], t["backtrace"]) for t in conns] == [(CONN, "idle", [])] * 3
            ws = [t["waiting_on"] for t in conns]
            assert sorted(w["peer"] for w in ws) == peers, ws
            assert {(w["kind"], w["direction"], w["local"]) for w in ws} == {("socket", "read", f"127.0.0.1:{port}")}
            assert len({w["fd"] for w in ws}) == 3
            if where == target.pid:
                for w in ws:
                    assert_socket_fd(target.pid, w["fd"])
            text = run("tasks", where).stdout
            for w in ws:
                assert re.search(rf"\n +\d+  idle +{re.escape(CONN)} \(socket fd {w['fd']}, read, "
                                 rf"peer {re.escape(w['peer'])}\)\n", text), text
            d = json_of("diagnose", "--json", "--window", "300ms", where)
            assert d["findings"] == [], [f["summary"] for f in d["findings"]]
        assert_untouched(target.pid)
    finally:
        for c in clients:
            c.close()
        target.stop()


def test_hyper_handler_blocking(rust_bin, tmp_path):
    """A request to /block makes hyper_echo's handler call std::thread::sleep:
    blocking_in_async names the handler inside hyper's connection task, the
    worker it blocks and the handler's line, live and on a core."""
    src = "src/bin/hyper_echo.rs"
    lines = marker_lines(RUST_SOURCE_DIR / "hyper_echo.rs")
    target = Target([rust_bin / "hyper_echo"])
    port = int(target.ready_line.split()[2])
    client = socket.create_connection(("127.0.0.1", port))
    try:
        client.sendall(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
        core = gcore(target.pid, tmp_path)
        for where, window in ((target.pid, "1s"), (core, "1s")):
            d = json_of("diagnose", "--json", "--window", window, where)
            (f,) = d["findings"]
            (t,) = f["tasks"]
            (tid,) = f["threads"]
            assert (f["kind"], t["name"]) == ("blocking_in_async", CONN)
            # A live thread is named (tokio-runtime-w, tokio-rt-worker since tokio 1.4x); a core keeps no names.
            thread = rf"thread {tid} \((tokio-runtime-w|tokio-rt-worker)\)" if where == target.pid else f"thread {tid}"
            assert re.fullmatch(rf"task {t['id']} `hyper_echo::handle` \(in `{re.escape(CONN)}`\) blocks {thread} in "
                                rf"{STD_SLEEP} \(clock_nanosleep\) at {src}:{lines['handle_block']}",
                                f["summary"]), f["summary"]
        assert_untouched(target.pid)
    finally:
        client.close()
        target.stop()


def test_leaf_resources(rust_bin, tmp_path):
    """One task per kind of tokio leaf future (leaves.rs), each at its line
    with what it waits on: a listening socket in accept(), a socket to read,
    a socket to write, a Notify, a broadcast and a watch receiver, a child
    process, a signal, an interval's timer. Live and on a core."""
    src = "src/bin/leaves.rs"
    lines = marker_lines(RUST_SOURCE_DIR / "leaves.rs")
    target = Target([rust_bin / "leaves"])
    child = None
    try:
        core = gcore(target.pid, tmp_path)
        for where in (target.pid, core):
            (rt,) = json_of("tasks", "--json", where)["runtimes"]
            by_name = {t["name"]: t for t in rt["tasks"]}
            want = {"accept_loop": "accept", "read_socket": "read", "write_socket": "write",
                    "notify_wait": "notified", "broadcast_recv": "broadcast", "watch_changed": "watch",
                    "child_wait": "child", "signal_wait": "signal", "tick": "tick"}
            assert sorted(by_name) == sorted("leaves::" + n for n in want)
            w = {}
            for name, marker in want.items():
                t = by_name["leaves::" + name]
                top = t["backtrace"][0]
                assert (t["state"], top["file"], top["line"]) == ("idle", src, lines[marker]), (name, top)
                w[name] = t["waiting_on"]
            for name, direction in (("accept_loop", "read"), ("read_socket", "read"), ("write_socket", "write")):
                assert (w[name]["kind"], w[name]["direction"]) == ("socket", direction), (name, w[name])
                if where == target.pid:
                    assert_socket_fd(target.pid, w[name]["fd"])
            assert len({w[n]["fd"] for n in ("accept_loop", "read_socket", "write_socket")}) == 3
            assert w["notify_wait"]["kind"] == "tokio::sync::Notify"
            assert (w["broadcast_recv"]["kind"], w["broadcast_recv"]["mode"]) == ("tokio::sync::broadcast", "rx")
            assert (w["watch_changed"]["kind"], w["watch_changed"]["mode"]) == ("tokio::sync::watch", "rx")
            assert w["child_wait"]["kind"] == "tokio::process::Child"
            child = w["child_wait"]["pid"]
            if where == target.pid:
                with open(f"/proc/{child}/stat") as f:
                    assert int(f.read().rsplit(")", 1)[1].split()[1]) == target.pid   # its parent
            assert w["signal_wait"]["kind"] == "tokio::signal::unix::Signal"
            assert w["tick"]["kind"] == "tokio::time::Sleep"
            if where == target.pid:
                assert 3500_000 < w["tick"]["remaining_ms"] <= 3600_000, w["tick"]
            text = run("tasks", where).stdout
            assert re.search(rf"leaves::child_wait at {src}:{lines['child']} awaiting .*"
                             rf"\(tokio::process::Child pid {child}\)\n", text), text
            assert re.search(rf"leaves::write_socket at {src}:{lines['write']} awaiting .*"
                             rf"\(socket fd {w['write_socket']['fd']}, write\)\n", text), text
        assert_untouched(target.pid)
    finally:
        target.stop()
        if child:
            try:
                os.kill(child, 9)
            except ProcessLookupError:
                pass


def test_healthy_hyper_under_load(rust_bin):
    """wrk keeps 16 connections busy; each request waits 2 ms in its handler.
    `tasks` shows in-flight handlers at their await line (the first of up to
    ten readings that catches one: a reading is an instant), and `diagnose`
    finds nothing."""
    src = "src/bin/hyper_echo.rs"
    lines = marker_lines(RUST_SOURCE_DIR / "hyper_echo.rs")
    target = Target([rust_bin / "hyper_echo"])
    port = target.ready_line.split()[2]
    load = subprocess.Popen(["wrk", "-t1", "-c16", "-d20s", f"http://127.0.0.1:{port}/"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1)
        in_flight = []
        for _ in range(10):
            doc = json_of("tasks", "--json", target.pid)
            (rt,) = doc["runtimes"]
            assert rt["tasks"] and all(t["name"] == CONN for t in rt["tasks"]), [t["name"] for t in rt["tasks"]]
            in_flight = [t for t in rt["tasks"] if t["root"] == "hyper_echo::handle" and t["state"] == "idle"]
            if in_flight:
                break
        assert in_flight, "no handler in flight in ten readings under load"
        for t in in_flight:
            (aw,) = [aw for aw in t["backtrace"] if aw.get("own")]
            assert (aw["name"], aw["file"], aw["line"]) == ("hyper_echo::handle", src, lines["handle_sleep"])
            assert t["waiting_on"]["kind"] == "tokio::time::Sleep"
        d = json_of("diagnose", "--json", "--window", "1s", target.pid)
        assert d["findings"] == [], [f["summary"] for f in d["findings"]]
        assert load.poll() is None, "wrk stopped early: " + (load.stdout.read() if load.stdout else "")
        assert_untouched(target.pid)
    finally:
        load.kill()
        load.wait()
        target.stop()
