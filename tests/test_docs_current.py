"""man/ and completions/ are generated from the Click tree by scripts/gen_docs.py and must match it.

Why: a page or a completion that lags the CLI misleads users, and nobody notices by reading. The
committed files must be what the generator makes today (run `make docs` after changing the CLI);
every command has a page naming each of its options; every page renders without a roff warning;
each shell parses its script, and bash and fish complete for real. A made-up tree (nested and
chained groups, hidden things, choices, awkward text) checks what the real CLI does not have yet.
The shells and roff tools are Debian packages that `make test` installs: missing, a test fails.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType

import click
import pytest

from ndmptools.cli import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gen_docs.py")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_docs"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


gen_docs = _load_generator()


def click_tree(
    command: click.Command, words: tuple[str, ...] = ("ndmptools",), parent: click.Context | None = None
) -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    """The visible commands, walked here independently of the generator so that it is checked."""
    ctx = click.Context(command, info_name=words[-1], parent=parent, **command.context_settings)
    yield words, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from click_tree(sub, (*words, name), ctx)


def visible_spellings(command: click.Command, ctx: click.Context) -> set[str]:
    return {
        spelling
        for p in command.get_params(ctx)
        if isinstance(p, click.Option) and not p.hidden
        for spelling in (*p.opts, *p.secondary_opts)
    }


def sections(page: str) -> dict[str, list[str]]:
    """A roff page's lines by .SH section."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in page.splitlines():
        if line.startswith(".SH "):
            current = line[4:].strip('"')
            found[current] = []
        elif current:
            found[current].append(line)
    return found


def documented_spellings(page: str) -> set[str]:
    """The option spellings in bold in the tags of the OPTIONS section."""
    lines = sections(page).get("OPTIONS", [])
    tags = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line == ".TP"]
    return {bolded.replace("\\-", "-") for tag in tags for bolded in re.findall(r"\\fB(.*?)\\fR", tag)}


def need(tool: str) -> str:
    """The tool's path; a failure (not a skip) when it is missing, saying how to get it."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run `make test`, which installs the Debian packages it needs")
    return path


def roff_warnings(page: str) -> str:
    """What groff and man-db (those installed; one at least) say about a page: "" when all is well."""
    commands = []
    if shutil.which("groff"):
        commands.append(["groff", "-man", "-ww", "-z", page])
    if shutil.which("man"):
        commands.append(["man", "-l", "--warnings=w", "-E", "UTF-8", "-Tutf8", page])
    if not commands:
        need("groff")
    said = []
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if done.returncode != 0 or done.stderr:
            said.append(f"{' '.join(command[:-1])}: exit {done.returncode}\n{done.stderr}")
    return "\n".join(said)


def bash_complete(script: str, words: list[str], cwd: str | None = None) -> list[str]:
    """COMPREPLY after completing the last of words, as bash would on Tab."""
    program = (
        'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ndmptools; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        [need("bash"), "-c", program, "bash", script, *words],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=30,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def fish_complete(script: str, line: str) -> list[str]:
    done = subprocess.run(
        [need("fish"), "--no-config", "-c", 'source $argv[1]; complete -C"$argv[2]"', script, line],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return [row.split("\t")[0] for row in done.stdout.splitlines()]


def parse(shell: str, script: str) -> subprocess.CompletedProcess:
    flag = "--no-execute" if shell == "fish" else "-n"
    return subprocess.run([need(shell), flag, script], capture_output=True, text=True, timeout=30)


REAL = list(click_tree(cli))
COMPLETIONS = os.path.join(ROOT, "completions")
SHELLS = [("bash", "ndmptools.bash"), ("zsh", "_ndmptools"), ("fish", "ndmptools.fish")]


# -- the committed files are current --------------------------------------------------------------


def test_committed_files_are_current():
    # A narrow terminal and another time zone must change nothing: the output depends on the CLI only.
    env = {**os.environ, "COLUMNS": "37", "TZ": "Pacific/Kiritimati", "LC_ALL": "C"}
    done = subprocess.run(
        [sys.executable, SCRIPT, "--check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (
        f"{done.stdout}{done.stderr}\nrun `make docs` and commit man/ and completions/"
    )


def test_check_names_a_changed_a_missing_and_an_extra_file(tmp_path, capsys):
    files = gen_docs.render()
    gen_docs.write(str(tmp_path), files)
    assert gen_docs.main(["--check", "--out", str(tmp_path)], render_files=lambda: files) == 0
    page = tmp_path / "man" / "ndmptools-dump.1"
    page.write_bytes(page.read_bytes().replace(b"\\-\\-level", b"\\-\\-levels", 1))
    (tmp_path / "completions" / "_ndmptools").unlink()
    (tmp_path / "man" / "ndmptools-gone.1").write_text(".TH GONE 1\n")
    capsys.readouterr()
    assert gen_docs.main(["--check", "--out", str(tmp_path)], render_files=lambda: files) == 1
    said = capsys.readouterr().out
    assert "differs: man/ndmptools-dump.1" in said and "levels" in said
    assert "missing: completions/_ndmptools" in said
    assert "extra:   man/ndmptools-gone.1" in said
    assert "ndmptools-restore.1" not in said


# -- man pages ------------------------------------------------------------------------------------


def test_there_is_one_page_per_command_and_no_other():
    pages = {name for name in os.listdir(os.path.join(ROOT, "man")) if name.endswith(".1")}
    assert pages == {"-".join(words) + ".1" for words, _command, _ctx in REAL}


@pytest.mark.parametrize(("words", "command", "ctx"), REAL, ids=["-".join(words) for words, _, _ in REAL])
def test_each_page_documents_every_option_spelling(words, command, ctx):
    name = "-".join(words)
    with open(os.path.join(ROOT, "man", f"{name}.1"), encoding="utf-8") as f:
        page = f.read()
    assert {"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SEE ALSO"} <= set(sections(page)), name
    assert sections(page)["NAME"][0].startswith(name.replace("-", "\\-") + " \\- ")
    assert documented_spellings(page) == visible_spellings(command, ctx)
    tags = [line for line in sections(page)["OPTIONS"] if line.startswith("\\fB")]
    assert not [tag for tag in tags if re.search(r"(?<!\\)-", tag)], "a hyphen not written \\-"
    if isinstance(command, click.Group):
        listed = "\n".join(sections(page)["COMMANDS"])
        for sub in command.list_commands(ctx):
            if not command.get_command(ctx, sub).hidden:
                assert f"\\fB{sub}\\fR" in listed, f"{sub} missing from COMMANDS of {name}.1"


def test_root_page_lists_the_exit_codes_of_the_epilog():
    codes = re.findall(r"^\s*(\d+)\s+\S", cli.epilog or "", re.MULTILINE)
    assert len(codes) >= 3, "the root group's epilog lists no exit codes any more"
    with open(os.path.join(ROOT, "man", "ndmptools.1"), encoding="utf-8") as f:
        status = sections(f.read()).get("EXIT STATUS", [])
    assert [line[3:-3] for line in status if line.startswith("\\fB")] == codes


@pytest.mark.parametrize("page", sorted(os.listdir(os.path.join(ROOT, "man"))))
def test_each_page_renders_without_warnings(page):
    assert roff_warnings(os.path.join(ROOT, "man", page)) == ""


def test_the_warning_check_sees_a_warning(tmp_path):
    broken = tmp_path / "broken.1"
    broken.write_text('.TH BROKEN 1\n.SH NAME\nbroken \\- a test\n.XY "no such macro"\n')
    assert "XY" in roff_warnings(str(broken))


# -- completions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("shell", "script"), SHELLS, ids=[shell for shell, _ in SHELLS])
def test_each_shell_parses_its_script(shell, script):
    done = parse(shell, os.path.join(COMPLETIONS, script))
    assert done.returncode == 0 and not done.stderr, done.stderr


@pytest.mark.parametrize(
    ("words", "offered", "not_offered"),
    [
        (["ndmptools", "du"], "dump", "restore"),
        (["ndmptools", "dump", "--bl"], "--blocking-factor", "--level"),
        (["ndmptools", "dump", "-lev"], "-level", "--label"),
        (["ndmptools", "-v", ""], "restore", "--json"),
        # "dump" is the value of -f here, not the dump command: restore's options follow
        (["ndmptools", "restore", "-f", "dump", "--t"], "--target", "--blocking-factor"),
        (["ndmptools", "dump", "--level", "=", "3", "-"], "--label", "--target"),
    ],
)
def test_bash_completes(words, offered, not_offered):
    got = bash_complete(os.path.join(COMPLETIONS, "ndmptools.bash"), words)
    assert offered in got and not_offered not in got, got


def test_bash_completes_paths_for_the_options_that_take_them(tmp_path):
    (tmp_path / "archive.dump").write_text("")
    (tmp_path / "archdir").mkdir()
    script = os.path.join(COMPLETIONS, "ndmptools.bash")
    got = bash_complete(script, ["ndmptools", "dump", "-f", "arch"], str(tmp_path))
    assert sorted(got) == ["archdir", "archive.dump"]
    assert bash_complete(script, ["ndmptools", "restore", "-D", "arch"], str(tmp_path)) == ["archdir"]
    assert bash_complete(script, ["ndmptools", "dump", "-level", "arch"], str(tmp_path)) == []


def test_fish_completes():
    script = os.path.join(COMPLETIONS, "ndmptools.fish")
    assert "dump" in fish_complete(script, "ndmptools du")
    assert "--blocking-factor" in fish_complete(script, "ndmptools dump --bl")
    assert "--blocking-factor" not in fish_complete(script, "ndmptools restore --bl")


# -- a made-up tree: what the real one does not have yet -----------------------------------------


def made_up_tree() -> click.Group:
    @click.group(epilog="\b\nExit codes:\n  0  fine\n  9  broken\n\nSee also the web site.")
    def root() -> None:
        """A made-up tool."""

    @root.group()
    def contexts() -> None:
        """Saved contexts."""

    @contexts.command("list")
    @click.option(
        "--format", "style", type=click.Choice(["table", "json"]), default="table", show_default=True
    )
    def list_() -> None:
        """List them."""

    @contexts.command()
    @click.option("--force/--no-force", help="Delete even when in use.")
    @click.argument("name")
    def delete(force: bool, name: str) -> None:
        """Delete one."""

    @contexts.command(hidden=True)
    def secret() -> None:
        """Not shown."""

    @root.command()
    @click.option("--secret-knob", hidden=True)
    @click.option("-o", "--output", type=click.Path(dir_okay=False), help="Where to write.")
    @click.option("--pair", nargs=2, help="Two values.")
    @click.option("-x", "--xtra", count=True, expose_value=False)
    @click.argument("sources", nargs=-1, type=click.Path(exists=False))
    def copy(output: str, pair: tuple[str, str], sources: tuple[str, ...], secret_knob: str) -> None:
        """.starts with a dot, a \\backslash, 'quotes', "double", `ticks` and a café.

        \b
        .a kept line that starts with a dot
          'indented', and --options
        """

    @root.group(chain=True)
    def chain() -> None:
        """Steps in a row."""

    @chain.command()
    @click.option("--mode", type=click.Choice(["fast", "slow"]))
    def first(mode: str) -> None:
        """Step one."""

    @chain.command()
    def second() -> None:
        """Step two."""

    return root


@pytest.fixture(scope="module")
def made_up(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("made-up")
    gen_docs.write(str(out), gen_docs.render(made_up_tree()))
    return str(out)


def test_made_up_tree_pages(made_up):
    tree = list(click_tree(made_up_tree()))
    assert sorted(os.listdir(os.path.join(made_up, "man"))) == sorted("-".join(w) + ".1" for w, _, _ in tree)
    assert "ndmptools-contexts-secret.1" not in os.listdir(os.path.join(made_up, "man"))
    for words, command, ctx in tree:
        path = os.path.join(made_up, "man", "-".join(words) + ".1")
        with open(path, encoding="utf-8") as f:
            assert documented_spellings(f.read()) == visible_spellings(command, ctx), path
        assert roff_warnings(path) == ""
    everything = "".join(
        path.read_text(encoding="utf-8")
        for directory in ("man", "completions")
        for path in sorted(pathlib.Path(made_up, directory).iterdir())
    )
    assert "secret" not in everything.lower()


def test_made_up_tree_text_comes_out_as_written(made_up):
    page = os.path.join(made_up, "man", "ndmptools-copy.1")
    done = subprocess.run(
        [need("groff"), "-man", "-Tutf8", "-P-cbou", page], capture_output=True, text=True, timeout=30
    )
    text = done.stdout.replace("\u2212", "-").replace("\u2010", "-")
    assert ".starts with a dot, a \\backslash, 'quotes', \"double\", `ticks` and a café." in " ".join(
        text.split()
    )
    assert "\n       .a kept line that starts with a dot\n         'indented', and --options\n" in text
    with open(os.path.join(made_up, "man", "ndmptools.1"), encoding="utf-8") as f:
        root = sections(f.read())
    assert "\\fB9\\fR" in root["EXIT STATUS"] and "See also the web site." in root["NOTES"]


@pytest.mark.parametrize(("shell", "script"), SHELLS, ids=[shell for shell, _ in SHELLS])
def test_made_up_tree_scripts_parse(made_up, shell, script):
    done = parse(shell, os.path.join(made_up, "completions", script))
    assert done.returncode == 0 and not done.stderr, done.stderr


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["ndmptools", "contexts", ""], ["delete", "list"]),
        (["ndmptools", "contexts", "list", "--format", "j"], ["json"]),
        (["ndmptools", "contexts", "delete", "--no"], ["--no-force"]),
        (["ndmptools", "copy", "--pair", "a", "b", "--p"], ["--pair"]),
        (["ndmptools", "chain", "first", "--mode", "fast", "s"], ["second"]),
        (["ndmptools", "chain", "first", "second", "--"], ["--help"]),
    ],
)
def test_made_up_tree_bash(made_up, words, expected):
    assert bash_complete(os.path.join(made_up, "completions", "ndmptools.bash"), words) == expected


def test_made_up_tree_fish(made_up):
    script = os.path.join(made_up, "completions", "ndmptools.fish")
    assert fish_complete(script, "ndmptools contexts list --format ") == ["json", "table"]
    assert fish_complete(script, "ndmptools contexts ") == ["delete", "list"]
