#!/usr/bin/env python3
"""Generate man/ and completions/ from the Click command tree, or check they are current.

    python scripts/gen_docs.py            # write man/*.1 and completions/*
    python scripts/gen_docs.py --check    # exit 1 if what is committed differs

One man page per command (ndmptools.1, ndmptools-dump.1, ndmptools-contexts-list.1 ...) and
static bash, zsh and fish completion: completing never starts Python. The output depends only
on the CLI and the package version, so it is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
from dataclasses import dataclass

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ndmptools import __version__  # noqa: E402
from ndmptools.cli import cli  # noqa: E402
from ndmptools.errors import EXIT_CODES  # noqa: E402

PROG = "ndmptools"
FILE_METAVARS = {"FILE", "PATH", "DIR", "TARGET"}


@dataclass
class Command:
    """A command of the tree with the context Click needs to describe it."""

    words: tuple[str, ...]  # ("ndmptools", "dump")
    command: click.Command
    context: click.Context

    @property
    def name(self) -> str:
        return "-".join(self.words)

    @property
    def title(self) -> str:
        return " ".join(self.words)

    @property
    def options(self) -> list[click.Option]:
        return [
            p for p in self.command.get_params(self.context) if isinstance(p, click.Option) and not p.hidden
        ]

    @property
    def arguments(self) -> list[click.Argument]:
        return [p for p in self.command.params if isinstance(p, click.Argument)]

    @property
    def subcommands(self) -> list[click.Command]:
        if not isinstance(self.command, click.Group):
            return []
        found = (self.command.get_command(self.context, n) for n in self.command.list_commands(self.context))
        return sorted((c for c in found if c is not None and not c.hidden), key=lambda c: c.name)


def walk(command: click.Command = cli, words: tuple[str, ...] = (PROG,), parent=None) -> list[Command]:
    """Every visible command, parents before children, children by name."""
    context = command.context_class(command, info_name=words[-1], parent=parent, **command.context_settings)
    node = Command(words, command, context)
    found = [node]
    for sub in node.subcommands:
        found.extend(walk(sub, (*words, sub.name), context))
    return found


def takes_value(option: click.Option) -> bool:
    return not option.is_flag and not option.count


def wants_files(param: click.Parameter) -> bool:
    if isinstance(param.type, click.Path):
        return True
    metavar = (param.metavar or param.name or "").upper()
    return metavar in FILE_METAVARS or (isinstance(param, click.Argument) and metavar.startswith("PATH"))


def wants_directories(param: click.Parameter) -> bool:
    return isinstance(param.type, click.Path) and not param.type.file_okay


def choices(param: click.Parameter) -> list[str]:
    return list(param.type.choices) if isinstance(param.type, click.Choice) else []


def short_help(command: click.Command) -> str:
    return command.get_short_help_str(limit=300).rstrip(".")


# -- man pages ----------------------------------------------------------------------------------


def roff(text: str) -> str:
    """Text safe for roff: backslashes, hyphens, and lines that would read as requests."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def paragraphs(help_text: str) -> list[tuple[bool, str]]:
    """(verbatim, text) paragraphs of a Click help text; ``\\b`` marks one not to rewrap."""
    out = []
    for block in click.unstyle(help_text or "").strip().split("\n\n"):
        lines = block.split("\n")
        if lines[0].strip() == "\b":
            out.append((True, "\n".join(lines[1:])))
        else:
            out.append((False, " ".join(line.strip() for line in lines)))
    return out


def man_page(node: Command, everything: list[Command]) -> str:
    lines = [
        f'.TH "{node.name.upper()}" "1" "" "{PROG} {__version__}" "{PROG} manual"',
        ".SH NAME",
        f"{roff(node.name)} \\- {roff(short_help(node.command))}",
        ".SH SYNOPSIS",
        f".B {roff(node.title)}",
        roff(" ".join(node.command.collect_usage_pieces(node.context))),
        ".SH DESCRIPTION",
    ]
    for verbatim, text in paragraphs(node.command.help):
        lines += [".PP", ".nf", roff(text), ".fi"] if verbatim else [".PP", roff(text)]
    if node.subcommands:
        lines.append(".SH COMMANDS")
        for sub in node.subcommands:
            lines += [".TP", f".B {roff(sub.name)}", roff(short_help(sub))]
    if node.arguments:
        lines.append(".SH ARGUMENTS")
        for argument in node.arguments:
            lines += [
                ".TP",
                f".I {roff(argument.make_metavar(node.context))}",
                roff(
                    "one or more" if argument.nargs == -1 else "required" if argument.required else "optional"
                ),
            ]
    if node.options:
        lines.append(".SH OPTIONS")
        for option in node.options:
            record = option.get_help_record(node.context)
            if record is None:
                continue
            spelling, help_text = record
            lines += [".TP", f".B {roff(spelling)}", roff(click.unstyle(help_text) or "")]
    lines.append(".SH EXIT STATUS")
    for code, meaning in EXIT_CODES:
        lines += [".TP", f".B {code}", roff(meaning)]
    others = [f"{roff(other.name)}(1)" for other in everything if other is not node]
    lines += [".SH SEE ALSO", ",\n".join(others)]
    return "\n".join(lines) + "\n"


# -- completions --------------------------------------------------------------------------------


def _spellings(option: click.Option) -> list[str]:
    return [*option.opts, *option.secondary_opts]


def bash_script(commands: list[Command]) -> str:
    by_words = {node.words: node for node in commands}
    out = [
        f"# bash completion for {PROG} {__version__}; generated by scripts/gen_docs.py, do not edit",
        f"_{PROG}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        f'    local path="{PROG}" i word',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        word="${COMP_WORDS[i]}"',
        '        case "$path $word" in',
    ]
    for node in commands:
        for sub in node.subcommands:
            out.append(f'            "{node.title} {sub.name}") path="{node.title} {sub.name}" ;;')
    for node in commands:
        valued = [s for o in node.options if takes_value(o) for s in _spellings(o)]
        if valued:
            out.append(
                f'            "{node.title} "{{{",".join(valued)}}}) ((i++)) ;;'
                if len(valued) > 1
                else f'            "{node.title} {valued[0]}") ((i++)) ;;'
            )
    out += ["        esac", "    done", '    case "$path" in']
    for words, node in by_words.items():
        out.append(f'        "{" ".join(words)}")')
        for option in node.options:
            if not takes_value(option):
                continue
            spelled = "|".join(_spellings(option))
            if choices(option):
                action = f'COMPREPLY=($(compgen -W "{" ".join(choices(option))}" -- "$cur")); return'
            elif wants_directories(option):
                action = 'COMPREPLY=($(compgen -d -- "$cur")); return'
            elif wants_files(option):
                action = 'COMPREPLY=($(compgen -f -- "$cur")); return'
            else:
                action = "COMPREPLY=(); return"
            out.append(f'            case "$prev" in {spelled}) {action} ;; esac')
        options = " ".join(s for o in node.options for s in _spellings(o))
        subs = " ".join(sub.name for sub in node.subcommands)
        files = any(wants_files(a) for a in node.arguments)
        out += [
            '            if [[ "$cur" == -* ]]; then',
            f'                COMPREPLY=($(compgen -W "{options}" -- "$cur"))',
            "            else",
            f'                COMPREPLY=($(compgen -W "{subs}" -- "$cur"))'
            + (' ; COMPREPLY+=($(compgen -f -- "$cur"))' if files else ""),
            "            fi",
            "            ;;",
        ]
    out += ["    esac", "}", f"complete -o filenames -F _{PROG} {PROG}", ""]
    return "\n".join(out)


def _zsh_text(text: str) -> str:
    return text.replace("'", "'\\''").replace("[", "(").replace("]", ")").replace(":", "\\:")


def _zsh_function(node: Command) -> str:
    return "_" + "_".join(word.replace("-", "_") for word in node.words)


def zsh_script(commands: list[Command]) -> str:
    out = [
        f"#compdef {PROG}",
        f"# zsh completion for {PROG} {__version__}; generated by scripts/gen_docs.py, do not edit",
        "",
    ]
    for node in reversed(commands):  # helpers first, the entry point last
        specs = []
        for option in node.options:
            names = _spellings(option)
            group = f"({' '.join(names)})" if len(names) > 1 else ""
            spelled = f"{{{','.join(names)}}}" if len(names) > 1 else names[0]
            described = f"[{_zsh_text(option.help or '')}]"
            value = ""
            if takes_value(option):
                metavar = _zsh_text(option.make_metavar(node.context))
                if choices(option):
                    value = f":{metavar}:({' '.join(choices(option))})"
                elif wants_directories(option):
                    value = f":{metavar}:_files -/"
                elif wants_files(option):
                    value = f":{metavar}:_files"
                else:
                    value = f":{metavar}: "
            repeat = "*" if option.count else ""
            specs.append(
                f"'{group}{repeat}'{spelled}'{described}{value}'"
                if group
                else f"'{repeat}{spelled}{described}{value}'"
            )
        if node.subcommands:
            specs += ["'1: :->command'", "'*:: :->argument'"]
        else:
            for argument in node.arguments:
                action = "_files" if wants_files(argument) else " "
                position = "'*" if argument.nargs == -1 else "'"
                metavar = (argument.name or "arg").upper()
                specs.append(f"{position}:{metavar}:{action}'")
        out.append(f"{_zsh_function(node)}() {{")
        out.append('    local curcontext="$curcontext" state line')
        out.append("    _arguments -C -s \\")
        out += [f"        {spec} \\" for spec in specs]
        out.append("        && return 0")
        if node.subcommands:
            out += [
                "    case $state in",
                "        command)",
                "            local -a commands",
                "            commands=(",
            ]
            out += [f"                '{sub.name}:{_zsh_text(short_help(sub))}'" for sub in node.subcommands]
            out += [
                "            )",
                f"            _describe -t commands '{node.title} command' commands ;;",
                "        argument)",
                "            case $line[1] in",
            ]
            for sub in node.subcommands:
                child = Command((*node.words, sub.name), sub, node.context)
                out.append(f"                {sub.name}) {_zsh_function(child)} ;;")
            out += ["            esac ;;", "    esac"]
        out += ["}", ""]
    out.append(f'{_zsh_function(commands[0])} "$@"')
    return "\n".join(out) + "\n"


def _fish_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")


def fish_script(commands: list[Command]) -> str:
    out = [
        f"# fish completion for {PROG} {__version__}; generated by scripts/gen_docs.py, do not edit",
        f"complete -c {PROG} -f",
    ]
    all_subs = sorted({sub.name for node in commands for sub in node.subcommands})
    for node in commands:
        inside = node.words[1:]
        below = [sub.name for sub in node.subcommands]
        conditions = [f"__fish_seen_subcommand_from {word}" for word in inside]
        if inside:
            others = [name for name in all_subs if name not in inside]
            if others:
                conditions.append(f"not __fish_seen_subcommand_from {' '.join(others)}")
        else:
            conditions.append("__fish_use_subcommand" if below else "true")
        condition = "; and ".join(conditions) if inside else conditions[0]
        for sub in node.subcommands:
            out.append(
                f'complete -c {PROG} -n "{condition}" -a {sub.name} -d "{_fish_text(short_help(sub))}"'
            )
        option_condition = condition if inside else "true"
        for option in node.options:
            parts = []
            for spelling in _spellings(option):
                if spelling.startswith("--"):
                    parts.append(f"-l {spelling[2:]}")
                elif len(spelling) == 2:
                    parts.append(f"-s {spelling[1]}")
                else:
                    parts.append(f"-o {spelling[1:]}")
            if takes_value(option):
                parts.append("-r")
                if choices(option):
                    parts.append(f'-a "{" ".join(choices(option))}"')
                elif wants_directories(option):
                    parts.append('-a "(__fish_complete_directories)"')
                elif wants_files(option):
                    parts.append("-F")
            parts.append(f'-d "{_fish_text(option.help or "")}"')
            out.append(f'complete -c {PROG} -n "{option_condition}" {" ".join(parts)}')
        if any(wants_files(a) for a in node.arguments):
            out.append(f'complete -c {PROG} -n "{option_condition}" -F')
    return "\n".join(out) + "\n"


# -- writing and checking -------------------------------------------------------------------------


def render() -> dict[str, str]:
    """Every generated file, by its path relative to the repository root."""
    commands = walk()
    files = {f"man/{node.name}.1": man_page(node, commands) for node in commands}
    files[f"completions/{PROG}.bash"] = bash_script(commands)
    files[f"completions/_{PROG}"] = zsh_script(commands)
    files[f"completions/{PROG}.fish"] = fish_script(commands)
    return files


def write(out_dir: str) -> list[str]:
    files = render()
    for directory in ("man", "completions"):
        os.makedirs(os.path.join(out_dir, directory), exist_ok=True)
        for stale in os.listdir(os.path.join(out_dir, directory)):
            if f"{directory}/{stale}" not in files:
                os.unlink(os.path.join(out_dir, directory, stale))
    for relative, text in files.items():
        with open(os.path.join(out_dir, relative), "w", encoding="utf-8") as f:
            f.write(text)
    return sorted(files)


def check(repo: str) -> list[str]:
    """What differs between the repository's man/ and completions/ and a fresh generation."""
    problems = []
    with tempfile.TemporaryDirectory() as fresh:
        wanted = write(fresh)
        for directory in ("man", "completions"):
            present = (
                os.listdir(os.path.join(repo, directory))
                if os.path.isdir(os.path.join(repo, directory))
                else []
            )
            for extra in sorted(set(f"{directory}/{n}" for n in present) - set(wanted)):
                problems.append(f"{extra}: not generated from the CLI any more")
        for relative in wanted:
            theirs = os.path.join(repo, relative)
            if not os.path.exists(theirs):
                problems.append(f"{relative}: missing")
                continue
            with (
                open(theirs, encoding="utf-8") as a,
                open(os.path.join(fresh, relative), encoding="utf-8") as b,
            ):
                old, new = a.read(), b.read()
            if old != new:
                diff = difflib.unified_diff(
                    old.splitlines(), new.splitlines(), relative, "generated", lineterm=""
                )
                problems.append(f"{relative}: out of date\n" + "\n".join(list(diff)[:20]))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", default=ROOT, help="repository root to write into or check")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for problem in problems:
            print(problem)
        if problems:
            print("man/ and completions/ are out of date: run `make docs`")
            return 1
        print("man/ and completions/ are current")
        return 0
    for relative in write(args.out):
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
