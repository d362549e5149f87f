"""The C unit tests (one module each, built by meson) run as part of the suite."""
import subprocess

import pytest

from conftest import BUILD

UNIT_TESTS = sorted(p for p in (BUILD / "tests").glob("test-*") if p.is_file())


def test_unit_tests_were_built():
    assert [p.name for p in UNIT_TESTS] == ["test-demangle", "test-json_text", "test-syscalls"]


@pytest.mark.parametrize("exe", UNIT_TESTS, ids=lambda p: p.name)
def test_unit(exe):
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
