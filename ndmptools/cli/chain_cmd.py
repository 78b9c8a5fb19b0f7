"""``ndmptools chain``: a path's increment chains, and what to restore to get a date back."""

from __future__ import annotations

import json
from datetime import datetime

import click

from ndmptools.cli.common import open_history, output_options
from ndmptools.cli.output import App


class DateType(click.ParamType):
    """2026-11-25, 2026-11-25 14:30[:05], 2026-11-25T14:30 or seconds since the epoch."""

    name = "DATE"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        if text.replace(".", "", 1).isdigit():
            return float(text)
        for pattern in (
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d",
        ):
            try:
                moment = datetime.strptime(text, pattern)
            except ValueError:
                continue
            if pattern == "%Y-%m-%d":
                moment = moment.replace(hour=23, minute=59, second=59)
            return moment.timestamp()
        self.fail(f"not a date: {text!r} (use 2026-11-25 14:30 or 2026-11-25)", param, ctx)


@click.group("chain")
def chain() -> None:
    """Increment chains: which dumps a path has, and which to restore."""


@chain.command("show")
@click.argument("path", type=click.Path())
@output_options
@click.pass_obj
def show(app: App, path: str) -> int:
    """The dumps of PATH in backup order: level, increment chain, base, what each holds.

    \b
    Examples:
      ndmptools chain show /home
      ndmptools chain show /home --json
    """
    from tabulate import tabulate

    from ndmptools.engine import chain as chains

    history = open_history(app)
    try:
        found = chains.history_of(history, path)
        rows = chains.table(found.dumps)
    finally:
        history.db.close()
    if app.json:
        click.echo(
            json.dumps(
                {
                    "path": found.path,
                    "dumps": [
                        {
                            **d.as_dict(),
                            "order": r.order,
                            "increment_chain": r.chain,
                            "base": r.base,
                            "holds": r.files,
                        }
                        for d, r in zip(found.dumps, rows, strict=True)
                    ],
                    "incomplete": [d.as_dict() for d in found.incomplete],
                },
                indent=2,
                sort_keys=True,
            )
        )
        return 0
    if not found.dumps:
        click.echo(f"No completed dumps of {found.path}.")
    else:
        table = [
            [r.order, r.level, r.chain, r.base, r.files, chains.when(d), chains.media_text(d)]
            for d, r in zip(found.dumps, rows, strict=True)
        ]
        click.echo(
            tabulate(
                table,
                headers=[
                    "Backup order",
                    "Increment level",
                    "Increment chain",
                    "Base",
                    "Files backed up",
                    "Date",
                    "Media",
                ],
                maxcolwidths=[None, None, 12, 36, 36, None, 30],
            )
        )
    for d in found.incomplete:
        click.echo(f"Not a base: the level-{d.level} dump of {chains.when(d)} is {d.status}.")
    return 0


@chain.command("plan")
@click.argument("path", type=click.Path())
@click.option("--at", "at", type=DateType(), help="The moment to restore PATH to [default: its last dump].")
@output_options
@click.pass_obj
def plan(app: App, path: str, at: float | None) -> int:
    """The dumps to restore, in order, to get PATH back as it was at a date.

    \b
    Examples:
      ndmptools chain plan /home
      ndmptools chain plan /home --at "2026-11-20 18:00"
      ndmptools restore -r --plan /home -D /srv/restored
    """
    from ndmptools.engine import chain as chains

    history = open_history(app)
    try:
        steps = chains.plan(history, path, at)
    finally:
        history.db.close()
    if app.json:
        click.echo(json.dumps([d.as_dict() for d in steps], indent=2, sort_keys=True))
        return 0
    from tabulate import tabulate

    click.echo(
        tabulate(
            [[n, d.level, chains.when(d), chains.media_text(d)] for n, d in enumerate(steps, 1)],
            headers=["Step", "Level", "Date", "Media"],
        )
    )
    return 0


@chain.command("find")
@click.argument("pattern")
@click.argument("path", type=click.Path())
@output_options
@click.pass_obj
def find(app: App, pattern: str, path: str) -> int:
    """Which dumps of PATH hold an entry matching PATTERN, from their file history.

    PATTERN is a shell pattern (*, ?, [...]). Without a '/' it matches the
    last part of each name, as find -name does; with one, the whole path
    from the root of the dump, where * matches across '/' too. Exit code 1
    when nothing matches.

    \b
    Examples:
      ndmptools chain find '*.conf' /etc
      ndmptools chain find 'alice/notes*' /home --json
    """
    from ndmptools.engine import chain as chains
    from ndmptools.engine.restore import type_name
    from ndmptools.engine.restore.catalog import show

    history = open_history(app)
    try:
        real, found, unsearched = chains.find(history, pattern, path)
    finally:
        history.db.close()
    rows = [
        {
            "dump_id": f.dump.id,
            "level": f.dump.level,
            "date": chains.when(f.dump),
            "media": chains.media_text(f.dump),
            "path": show(f.entry.path),
            "type": type_name(f.entry.mode),
            "size": f.entry.size,
            "mtime": f.entry.mtime_ns // 1_000_000_000,
        }
        for f in found
    ]
    if app.json:
        click.echo(json.dumps({"path": real, "matches": rows, "dumps_without_history": unsearched}, indent=2))
    elif rows:
        from tabulate import tabulate

        click.echo(
            tabulate(
                [[r["date"], r["level"], r["type"], r["size"], r["path"], r["media"]] for r in rows],
                headers=["Date", "Level", "Type", "Size", "Path", "Media"],
            )
        )
    else:
        click.echo(f"Nothing matching {pattern} in the file history of {real}.")
    if unsearched and not app.quiet:
        click.echo(
            f"ndmptools: note: {unsearched} dump(s) of {real} keep no file history and were not searched",
            err=True,
        )
    return 0 if rows else 1
