"""man/ and completions/ are generated from the Click tree and must match it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import gen_docs  # noqa: E402

COMMANDS = gen_docs.walk()


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run `make test`, which installs it")
    return path


def test_committed_files_are_current():
    problems = gen_docs.check(ROOT)
    assert not problems, "\n".join(problems) + "\nrun `make docs`"


def test_check_notices_an_edited_file(tmp_path):
    gen_docs.write(str(tmp_path))
    assert gen_docs.check(str(tmp_path)) == []
    with open(tmp_path / "man" / "ndmptools-dump.1", "a") as f:
        f.write('.\\" edited by hand\n')
    (tmp_path / "completions" / "stale.bash").write_text("")
    problems = gen_docs.check(str(tmp_path))
    assert any(p.startswith("man/ndmptools-dump.1: out of date") for p in problems)
    assert "completions/stale.bash: not generated from the CLI any more" in problems


@pytest.mark.parametrize("node", COMMANDS, ids=lambda n: n.name)
def test_every_command_has_a_page_listing_every_option(node):
    with open(os.path.join(ROOT, "man", f"{node.name}.1")) as f:
        page = f.read().replace("\\-", "-")
    for option in node.options:
        for spelling in gen_docs._spellings(option):
            assert spelling in page, f"{spelling} missing from man/{node.name}.1"
    for sub in node.subcommands:
        assert f".B {sub.name}" in page


@pytest.mark.parametrize("page", sorted(os.listdir(os.path.join(ROOT, "man"))))
def test_man_pages_render_without_warnings(page):
    done = subprocess.run(
        [_need("groff"), "-man", "-ww", "-z", os.path.join(ROOT, "man", page)], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.parametrize(
    ("shell", "args", "script"),
    [
        ("bash", ["-n"], "ndmptools.bash"),
        ("zsh", ["-n"], "_ndmptools"),
        ("fish", ["--no-execute"], "ndmptools.fish"),
    ],
)
def test_completion_scripts_parse(shell, args, script):
    done = subprocess.run(
        [_need(shell), *args, os.path.join(ROOT, "completions", script)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("words", "expected", "absent"),
    [
        (["ndmptools", "du"], "dump", "restore"),
        (["ndmptools", "dump", "--bl"], "--blocking-factor", "--level"),
        (["ndmptools", "dump", "-lev"], "-level", "--json"),
        (["ndmptools", "restore", "-"], "--target", "--blocking-factor"),
        (["ndmptools", "dump", "-f", "x", "-"], "--label", "--target"),
    ],
)
def test_bash_completion_completes(words, expected, absent):
    script = os.path.join(ROOT, "completions", "ndmptools.bash")
    program = (
        f'source "{script}"; COMP_WORDS=({" ".join(repr(w) for w in words)}); '
        f"COMP_CWORD={len(words) - 1}; _ndmptools; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    done = subprocess.run([_need("bash"), "-c", program], capture_output=True, text=True, check=True)
    offered = done.stdout.split()
    assert expected in offered and absent not in offered, offered


def test_fish_completion_completes():
    script = os.path.join(ROOT, "completions", "ndmptools.fish")
    done = subprocess.run(
        [_need("fish"), "-c", f"source {script}; complete -C 'ndmptools dump --bl'"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--blocking-factor" in done.stdout


def test_zsh_completion_defines_its_functions():
    script = os.path.join(ROOT, "completions", "_ndmptools")
    done = subprocess.run(
        [
            _need("zsh"),
            "-c",
            f"autoload -U compinit; compinit -u; source {script} 2>/dev/null; "
            "whence -w _ndmptools_dump _ndmptools_restore",
        ],
        capture_output=True,
        text=True,
    )
    assert "_ndmptools_dump: function" in done.stdout and "_ndmptools_restore: function" in done.stdout
