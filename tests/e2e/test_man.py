"""taskdbg(1) (man/help2roff.sh, run by meson on the taskdbg just built):
renders without a warning, and says what --help says: every command that
`taskdbg --help` lists, and every option of each command's --help."""
import os
import re
import subprocess

import pytest

from conftest import BUILD, ROOT, TASKDBG, help_commands, help_options

PAGE = BUILD / "man" / "man1" / "taskdbg.1"
GENERATOR = ROOT / "man" / "help2roff.sh"


def man(page=PAGE):
    r = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"})
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    # Hyphens and minus signs as typed.
    return r.stdout.replace("\u2010", "-").replace("\u2212", "-")


def sections(text):
    """{SECTION: its text}, in order."""
    parts = re.split(r"^([A-Z][A-Z ]+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_renders_without_warnings():
    text = man()
    r = subprocess.run(["groff", "-ww", "-man", "-Tutf8", "-z", str(PAGE)], capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stderr) == (0, "")
    page = sections(text)
    assert list(page) == ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES",
                          "SEE ALSO"]
    assert page["NAME"].split() == "taskdbg - a debugger for async runtimes that needs nothing from its target".split()
    assert page["SYNOPSIS"].splitlines()[:3] == [
        "       taskdbg COMMAND [OPTIONS] TARGET",
        "       taskdbg COMMAND --help",
        "       taskdbg --help | --version"]
    assert re.findall(r"^       (\d+) +(.*)$", page["EXIT STATUS"], re.M) == [
        ("0", "success"), ("1", "diagnose found something"), ("2", "could not do the job"), ("64", "usage")]
    for variable in ("TASKDBG_PLUGIN_PATH", "TASKDBG_DETECTORS", "DEBUGINFOD_URLS"):
        assert re.search(rf"^       {variable}$", page["ENVIRONMENT"], re.M), variable


def test_every_command_and_option():
    page = sections(man())
    parts = re.split(r"^   (\S+)\n", page["COMMANDS"], flags=re.M)
    commands = dict(zip(parts[1::2], parts[2::2]))
    assert list(commands) == help_commands()
    for command, text in commands.items():
        help_text = subprocess.run([str(TASKDBG), command, "--help"], capture_output=True, text=True).stdout
        assert re.search(rf"^       taskdbg {command}( |$)", text, re.M), command
        # The first words of the command's description, after its usage.
        first = help_text.split("\n\n")[1].split()[:4]
        assert " ".join(first) in " ".join(text.split()), (command, first)
        # Every option, as an item of its own: "-o, --output FILE", "--json".
        options = help_options(command)
        assert options, command
        for head in options:
            assert re.search(rf"^       {re.escape(head)}( |$)", text, re.M), (command, head)
        assert {"--help"} <= {name for names in options.values() for name in names}
    # Options whose text runs over lines: read as one.
    rate = " ".join(commands["record"].split("\n       --rate HZ\n", 1)[1].split()[:17])
    assert rate == "samples per second, 1 to 1000 (default 99; per CPU-second of a thread with perf events) --duration"


FAKE_HELP = r'''#!/bin/sh
case "$1" in
--help) printf '%s\n' "usage: taskdbg COMMAND [OPTIONS] TARGET" "" "A debugger for tests." "" "commands:" \
  "  frob      frobnicate a target" "" "Exit codes: 0 success, 64 usage." ;;
frob) printf '%s\n' "usage: taskdbg frob [--level N] TARGET" "" "Frobnicate TARGET, .carefully." "" \
  "  --level N               how hard (default 3;" "                          never above 9)" \
  "  --help                  this text" ;;
esac
'''


def test_page_follows_the_help(tmp_path):
    """A command or option that --help gains is in the page, with no change to
    the generator; a help text it cannot read fails the build."""
    fake = tmp_path / "taskdbg"
    fake.write_text(FAKE_HELP)
    fake.chmod(0o755)
    page = tmp_path / "taskdbg.1"
    r = subprocess.run(["sh", str(GENERATOR), str(fake), str(page), "9.9", "/p", "/d"], capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stderr) == (0, "")
    text = sections(man(page))
    assert text["NAME"].split() == ["taskdbg", "-", "a", "debugger", "for", "tests"]
    assert text["COMMANDS"].splitlines() == [
        "   frob",
        "       taskdbg frob [--level N] TARGET",
        "",
        "       Frobnicate TARGET, .carefully.",
        "",
        "       --level N",
        "              how hard (default 3; never above 9)",
        "",
        "       --help this text",
        ""]
    fake.write_text(FAKE_HELP.replace('"                          never above 9)"', '"never above 9)"'))
    r = subprocess.run(["sh", str(GENERATOR), str(fake), str(tmp_path / "bad.1"), "9.9", "/p", "/d"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr == "help2roff: a line after an option is neither indented text nor an option: never above 9)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taskdbg", "taskdbg.1"]
