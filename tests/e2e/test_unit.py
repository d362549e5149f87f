"""The C unit tests (one module each, built by meson) run as part of the suite.
test-future and test-chain test value/future and value/chain on a core of a
Rust fixture, once per tokio release; test-detectors runs the detectors on
synthetic models (tests/lua/detectors.lua)."""
import subprocess

import pytest

from conftest import BUILD, Target, gcore

from conftest import ROOT

ON_A_CORE = ["test-chain", "test-future"]
UNIT_TESTS = sorted(p for p in (BUILD / "tests").glob("test-*")
                    if p.is_file() and p.name not in ON_A_CORE + ["test-detectors"])


def test_unit_tests_were_built():
    assert [p.name for p in UNIT_TESTS] == ["test-decompress", "test-demangle", "test-json_text", "test-map", "test-profile", "test-source",
                                            "test-syscalls"]
    assert all((BUILD / "tests" / name).is_file() for name in ON_A_CORE + ["test-detectors"])


def test_detectors_on_synthetic_models():
    """Every detector on made-up models of a made-up runtime: a cycle of
    three, a lost waker, a blocking call and the starvation it causes, a
    healthy busy runtime, no runtime, a producer/consumer pair caught with the
    producer woken. No target, no tokio."""
    r = subprocess.run([str(BUILD / "tests" / "test-detectors"), str(ROOT / "detectors"),
                        str(ROOT / "tests" / "lua" / "detectors.lua")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "7 detector cases passed"


def test_future_module(rust_bin, tmp_path):
    """The descent into futures (src/value/future.c) and the await chains
    built on it (src/value/chain.c) on futures of known shapes, boxed in a
    static of future_values.rs, read from its core."""
    target = Target([rust_bin / "future_values"])
    try:
        core = gcore(target.pid, tmp_path)
    finally:
        target.stop()
    for name in ON_A_CORE:
        r = subprocess.run([str(BUILD / "tests" / name), str(core), str(rust_bin / "future_values")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{name}: {r.stderr}"


@pytest.mark.parametrize("exe", UNIT_TESTS, ids=lambda p: p.name)
def test_unit(exe):
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
