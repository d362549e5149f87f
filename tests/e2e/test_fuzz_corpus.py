"""The fuzz targets' regression corpus (fuzz/corpus/TARGET/: seeds, and every
input that once crashed a target, kept after the fix) replayed through each
target's LLVMFuzzerTestOneInput by fuzz-replay-TARGET, a plain driver built
with taskdbg (no libFuzzer): under `tests/run --sanitize` the same inputs run
under ASan and UBSan. fuzz/README.md says how to fuzz for new inputs."""
import os
import subprocess

import pytest

from conftest import BUILD, ROOT

TARGETS = sorted(p.name[len("fuzz_"):-len(".c")] for p in (ROOT / "fuzz").glob("fuzz_*.c"))


def replay(target, *paths):
    env = dict(os.environ)
    # A sanitizer's finding is a failure, not a line in the log.
    env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
    return subprocess.run([str(BUILD / "fuzz" / f"fuzz-replay-{target}"), *map(str, paths)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_every_target_has_a_replay_and_a_corpus():
    assert TARGETS == ["core", "decompress", "elf", "json"]
    for t in TARGETS:
        assert (BUILD / "fuzz" / f"fuzz-replay-{t}").is_file()
        assert any((ROOT / "fuzz" / "corpus" / t).iterdir()), t


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays_cleanly(target):
    corpus = ROOT / "fuzz" / "corpus" / target
    count = sum(1 for p in corpus.iterdir() if p.is_file() and not p.name.startswith("."))
    r = replay(target, corpus)
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout == f"replay: {count} inputs ran\n"
    assert "runtime error" not in r.stderr and "ERROR" not in r.stderr, r.stderr[-4000:]


def test_replay_refuses_what_is_not_a_corpus(tmp_path):
    r = replay("core", tmp_path)
    assert r.returncode == 2
    assert r.stderr == "replay: no inputs found in the paths given\n"
    r = replay("core", tmp_path / "missing")
    assert r.returncode == 2
    assert r.stderr == f"replay: {tmp_path / 'missing'}: No such file or directory\n"


def test_regression_inputs_are_kept_and_any_bytes_run(tmp_path):
    """The inputs that found bugs stay in the corpus (named for what they
    caught); and every byte string is an input: 1 KiB of all byte values
    runs through each target without a crash."""
    assert {p.name for p in (ROOT / "fuzz" / "corpus" / "json").iterdir()} >= {
        "regress-shared-table-cut-by-depth", "regress-table-holds-itself", "regress-table-holds-itself-twice",
        "strings-hostile", "floats"}
    assert {p.name for p in (ROOT / "fuzz" / "corpus" / "elf").iterdir()} >= {
        "regress-unit-without-functions", "regress-pc-all-ones", "c-threads-g", "rust-no-std-g"}
    junk = tmp_path / "junk"
    junk.write_bytes(bytes(range(256)) * 4)
    for t in TARGETS:
        r = replay(t, junk)
        assert r.returncode == 0, r.stderr[-4000:]
        assert r.stdout == "replay: 1 inputs ran\n"
