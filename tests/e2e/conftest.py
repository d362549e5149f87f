"""Shared helpers for end-to-end tests: real processes, real cores, real taskdbg.

Every live target is checked after use: still running, no thread left stopped,
no tracer left attached.
"""
import json
import os
import pathlib
import re
import resource
import select
import shutil
import signal
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("TASKDBG_BUILD", ROOT / "build")).resolve()
TASKDBG = BUILD / "taskdbg"
C_FIXTURES = BUILD / "tests"
RUST_TARGET = pathlib.Path(os.environ.get("TASKDBG_RUST_TARGET", BUILD / "rust-fixtures")).resolve()
# Debian's tokio: the fixtures every clone builds.
RUST_FIXTURES = RUST_TARGET / "release"
C_SOURCE = ROOT / "tests" / "fixtures" / "c" / "threads.c"
RUST_SOURCE_DIR = ROOT / "tests" / "fixtures" / "rust" / "src" / "bin"


# Newer tokio releases (tests/build builds the fixtures against each of them
# when ../shared/tokio is there: developers' machines and CI; not a user's clone).
SHARED_TOKIO = pathlib.Path(os.environ.get("TASKDBG_SHARED_TOKIO", ROOT.parent / "shared" / "tokio")).resolve()
DEBIAN_TOKIO = "1.24.2"


def _tokio_versions():
    found = [DEBIAN_TOKIO]
    if (SHARED_TOKIO / "src").is_dir():
        found += sorted((p.name[len("tokio-"):-len(".tar.gz")] for p in (SHARED_TOKIO / "src").glob("tokio-1.*.tar.gz")),
                        key=lambda v: tuple(int(x) for x in v.split(".")))
    wanted = os.environ.get("TASKDBG_TOKIO_VERSIONS")
    if wanted:
        found = [v for v in found if v in wanted.split()]
    return found


TOKIO_VERSIONS = _tokio_versions()


def rust_fixtures_for(version):
    """The folder of the Rust fixtures built against tokio `version`."""
    if version == DEBIAN_TOKIO:
        return RUST_FIXTURES
    return RUST_TARGET / f"tokio-{version}" / "release"


def _fixtures_rustc():
    """The rustc that built the Rust fixtures, (major, minor), from a compile
    unit's DW_AT_producer ("clang LLVM (rustc version 1.63.0)"); None if
    they are not built."""
    exe = RUST_FIXTURES / "tasks"
    if not exe.exists():
        return None
    p = subprocess.Popen(["readelf", "--debug-dump=info", str(exe)], stdout=subprocess.PIPE, text=True,
                         stderr=subprocess.DEVNULL)
    try:
        for line in p.stdout:
            m = re.search(r"rustc version (\d+)\.(\d+)", line)
            if m:
                return int(m.group(1)), int(m.group(2))
    finally:
        p.kill()
        p.wait()
    return None


# The rustc that built the fixtures. Debian 12's own is 1.63 (a fresh
# machine's, tests/tools/fresh-debian12.sh); a developer's is rustup's. The
# two place a few lines differently in DWARF, and tests say where.
FIXTURES_RUSTC = _fixtures_rustc()
RUSTC_1_63 = FIXTURES_RUSTC is not None and FIXTURES_RUSTC < (1, 64)
# std's thread::sleep, as DWARF names it (std moved it into a module of its own).
STD_SLEEP = "std::thread::sleep" if RUSTC_1_63 else "std::thread::functions::sleep"


def pytest_addoption(parser):
    parser.addoption("--repeat", type=int, default=1, metavar="N",
                     help="run each selected test N times (stability: tests/run --repeat 20 -k diagnose)")


def pytest_generate_tests(metafunc):
    """Every test that takes `tokio_version` (or `rust_bin`) runs once per tokio
    release the fixtures were built against, one module at a time per version;
    with --repeat N, each test N times."""
    if "tokio_version" in metafunc.fixturenames:
        metafunc.parametrize("tokio_version", TOKIO_VERSIONS, scope="module", ids=lambda v: f"tokio-{v}")
    repeat = metafunc.config.getoption("repeat")
    if repeat > 1:
        metafunc.fixturenames.append("repeat_round")
        metafunc.parametrize("repeat_round", range(1, repeat + 1), ids=lambda i: f"run{i}")


def pytest_report_header(config):
    line = f"tokio versions: {' '.join(TOKIO_VERSIONS)}"
    if FIXTURES_RUSTC:
        line += f"; fixtures built by rustc {FIXTURES_RUSTC[0]}.{FIXTURES_RUSTC[1]}"
    if not (SHARED_TOKIO / "src").is_dir():
        line += f" (newer releases skipped: {SHARED_TOKIO} not found)"
    return line


@pytest.fixture(scope="module")
def rust_bin(tokio_version):
    """The folder of the Rust fixtures for this test's tokio version."""
    path = rust_fixtures_for(tokio_version)
    assert (path / "tasks").exists(), f"fixtures for tokio {tokio_version} not built: run tests/build"
    return path


def marker_lines(path):
    """Line numbers of `// @name` markers in a source file: {name: line}."""
    lines = {}
    for number, text in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        m = re.search(r"//\s*@(\w+)", text)
        if m:
            lines[m.group(1)] = number
    return lines


def thread_states(pid):
    states = {}
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            # A thread that exited between the listing and the read.
            continue
        states[int(task.name)] = stat[stat.rindex(")") + 2]
    return states


def tracer_of(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return None


def assert_untouched(pid):
    """The target runs on: alive, no thread stopped, no tracer attached."""
    # A thread caught between two states gets a moment to settle.
    for _ in range(50):
        states = thread_states(pid)
        if states and not any(s in "tT" for s in states.values()) and tracer_of(pid) == 0:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} left stopped or traced: states {states}, "
                         f"tracer {tracer_of(pid)}")


class Target:
    """A fixture process started for a test, waited for until it prints 'ready'."""

    def __init__(self, argv, cwd=None, ready="ready", env=None):
        self.proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=cwd, text=True, env=env)
        self.pid = self.proc.pid
        ready_now, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready_now else ""
        if not line.startswith(ready):
            self.stop()
            raise RuntimeError(f"fixture {argv[0]} did not start: {line!r}")
        self.ready_line = line.strip()

    def readline(self, timeout=10.0):
        """The fixture's next line; fails (never hangs) if none comes in time."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"fixture {self.pid} printed nothing in {timeout} s"
        return self.proc.stdout.readline().strip()

    def stop(self):
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass  # already gone: the test says whether that was expected
        self.proc.wait()


def run(*args, env=None, timeout=60, user=None):
    """Runs taskdbg with args; returns the CompletedProcess (text)."""
    cmd = [str(TASKDBG)] + [str(a) for a in args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
    full_env = dict(os.environ)
    full_env.pop("TASKDBG_TEST_PAUSE_MS", None)
    # No debuginfod server of the machine's (Debian's profile.d may set one): tests ask their own.
    full_env.pop("DEBUGINFOD_URLS", None)
    if env:
        full_env.update(env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


def help_commands(exe=None):
    """The commands `taskdbg --help` lists, in its order."""
    text = subprocess.run([str(exe or TASKDBG), "--help"], capture_output=True, text=True, timeout=60).stdout
    listing = text.split("\ncommands:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in listing.splitlines()]


def help_options(command, exe=None):
    """`taskdbg COMMAND --help`'s options: {head: [names]}, e.g. {"-o, --output FILE": ["-o", "--output"]}."""
    text = subprocess.run([str(exe or TASKDBG), command, "--help"], capture_output=True, text=True,
                          timeout=60).stdout
    options = {}
    for line in text.splitlines():
        m = re.match(r"  (-\S.*?)(?:  |$)", line)
        if m:
            options[m.group(1)] = re.findall(r"(?:^|, )(--?[\w-]+)", m.group(1))
    return options


def bt_json(target, *extra):
    r = run("bt", "--json", *extra, target)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def thread_by(doc, **want):
    found = [t for t in doc["threads"] if all(t.get(k) == v for k, v in want.items())]
    assert len(found) == 1, f"want one thread with {want}, found {len(found)}"
    return found[0]


def thread_with_function(doc, function):
    found = [t for t in doc["threads"] if any(f["function"] == function for f in t["frames"])]
    assert len(found) == 1, f"want one thread running {function}, found {len(found)}"
    return found[0]


def assert_frames(thread, expected):
    """expected: list of (function, file_suffix, line, inlined-or-None), which must
    appear as consecutive frames of thread, in this order."""
    frames = thread["frames"]
    names = [f["function"] for f in frames]
    first = expected[0][0]
    assert first in names, f"{first} not in stack of {thread['tid']}: {names}"
    start = names.index(first)
    for offset, (function, file_suffix, line, inlined) in enumerate(expected):
        assert start + offset < len(frames), f"stack ends before {function}"
        f = frames[start + offset]
        assert f["function"] == function, f"frame {start + offset}: {f['function']} != {function}"
        assert f["file"] is not None and f["file"].endswith(file_suffix), f
        assert f["line"] == line, f"{function}: line {f['line']} != {line}"
        if inlined is not None:
            assert f["inlined"] is inlined, f"{function}: inlined {f['inlined']} != {inlined}"


def gcore(pid, directory):
    """A core of a running process made by gdb's gcore (which detaches after)."""
    prefix = pathlib.Path(directory) / "gcore"
    r = subprocess.run(["gcore", "-o", str(prefix), str(pid)], capture_output=True, text=True,
                       timeout=120)
    path = pathlib.Path(f"{prefix}.{pid}")
    assert r.returncode == 0 and path.exists(), r.stderr
    return path


def kernel_core(argv, directory):
    """Runs argv (which aborts once in place) and returns the core the kernel wrote."""
    pattern = pathlib.Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if pattern.startswith("|") or "/" in pattern:
        pytest.skip(f"core_pattern {pattern!r} does not write cores into the working directory")

    def allow_cores():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    proc = subprocess.run([str(a) for a in argv], cwd=directory, preexec_fn=allow_cores,
                          capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGABRT, proc
    cores = [p for p in pathlib.Path(directory).iterdir() if p.name.startswith("core")]
    assert len(cores) == 1, f"no kernel core in {directory} (core_pattern {pattern!r})"
    return cores[0], proc


class TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def time_limit():
    """No test may hang the suite: each gets 120 s."""
    def expire(signum, frame):
        raise TestTimeout("test took over 120 s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def started(argv):
    """A module's fixture process: started, then left untouched by the tests and stopped."""
    t = Target(argv)
    yield t
    assert_untouched(t.pid)
    t.stop()


@pytest.fixture(scope="module")
def c_threads():
    yield from started([C_FIXTURES / "fixture-threads"])


@pytest.fixture(scope="module")
def rust_stacks(rust_bin):
    yield from started([rust_bin / "stacks"])


@pytest.fixture(scope="module")
def rust_tasks(rust_bin):
    yield from started([rust_bin / "tasks"])


@pytest.fixture(scope="module")
def lock_order(rust_bin):
    """diag_lock_order: tasks 3 and 4 deadlocked on two tokio mutexes."""
    yield from started([rust_bin / "diag_lock_order"])


@pytest.fixture(scope="module")
def lock_order_core(lock_order, module_tmp):
    return gcore(lock_order.pid, module_tmp)


def remove_cores(directory):
    """Core files are 25 to 400 MB each: a full run makes tens of GB of them,
    and pytest keeps its last three runs' temporary directories."""
    for path in pathlib.Path(directory).glob("*"):
        if path.is_file() and (path.name.startswith(("gcore.", "core")) or path.suffix == ".core"):
            path.unlink()


@pytest.fixture(autouse=True)
def no_cores_left(request):
    """Removes the cores a test made in its tmp_path once it is done."""
    # Asked for before the test runs, so tmp_path is torn down after this.
    directory = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if directory is not None:
        remove_cores(directory)


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cores")
    yield directory
    remove_cores(directory)
