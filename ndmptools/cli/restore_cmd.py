"""``ndmptools restore``: restore a dump, or list it with -t."""

from __future__ import annotations

import json

import click

from ndmptools.cli.common import media_options, media_request, output_options
from ndmptools.cli.output import App, ConsoleReporter, OutputClosed, finish
from ndmptools.engine.options import ListOptions, RestoreOptions
from ndmptools.engine.progress import RunContext, RunStats
from ndmptools.engine.restore import ListedEntry, RestoreResult


@click.command("restore")
@click.option(
    "-f",
    "--file",
    "files",
    required=True,
    multiple=True,
    metavar="MEDIA",
    help="The dump to read: a file, - (standard input), a tape drive, NAME.tap or vtape:DIR; "
    "repeat for the files of the next volumes.",
)
@click.option(
    "-s",
    "--file-number",
    type=click.IntRange(1),
    metavar="N",
    help="Tapes: restore the Nth dump on the tape (1 is the first).",
)
@media_options
@click.option(
    "-C",
    "--target",
    default=".",
    show_default=True,
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Directory to restore into (created if missing).",
)
@click.option(
    "-t",
    "--list",
    "list_only",
    is_flag=True,
    help="List path, inode, type and size of each entry instead of restoring.",
)
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@output_options
@click.pass_obj
def restore(
    app: App,
    files: tuple[str, ...],
    file_number: int | None,
    device: str | None,
    no_prompt: bool,
    target: str,
    list_only: bool,
    paths: tuple[str, ...],
) -> int:
    """Restore the dump on MEDIA into DIR: all of it, or only the PATHs named.

    A PATH is relative to the root of the dump (sub/file, ./sub/file and
    /sub/file are the same); a directory brings everything under it. Names
    that would reach outside DIR are refused with a warning. A dump on
    several volumes is read in order: the next cartridge of a library, the
    next -f file, or the tape the operator is asked for.

    \b
    Examples:
      ndmptools restore -f /backup/home.dump -C /srv/restored
      ndmptools restore -f /backup/home.dump -C /tmp/r alice/notes.txt
      ndmptools restore -f /dev/nst0 -s 2 -C /srv/restored
      ndmptools restore -t -f vtape:/backup/lib --json
    """
    media = dict(
        file=files[0], more_files=files[1:], file_number=file_number, device=device, prompt=not no_prompt
    )
    if list_only:
        stats = run_list(ListOptions(paths=paths, **media), app)
        return 1 if stats.warning_count else 0
    result = run_restore(RestoreOptions(target=target, paths=paths, **media), app)
    return finish(app, "restore", result.stats, result.as_dict())


def run_restore(options: RestoreOptions, app: App) -> RestoreResult:
    from ndmptools.engine.restore import run_restore as engine_restore
    from ndmptools.media import open_medium

    reporter = ConsoleReporter(app)
    try:
        with open_medium(media_request(options, "r")) as medium:
            return engine_restore(options, medium, RunContext(reporter))
    finally:
        reporter.close()


def run_list(options: ListOptions, app: App) -> RunStats:
    """Stream the listing to standard output: aligned text, or one JSON array."""
    from ndmptools.engine.restore import run_list as engine_list
    from ndmptools.media import open_medium

    first = True

    def emit_json(entry: ListedEntry) -> None:
        nonlocal first
        item = json.dumps({"path": entry.path, "inode": entry.inode, "type": entry.type, "size": entry.size})
        click.echo(("[\n  " if first else ",\n  ") + item, nl=False)
        first = False

    def emit_text(entry: ListedEntry) -> None:
        click.echo(f"{entry.inode:>10}  {entry.type:<8} {entry.size:>14}  {entry.path}")

    reporter = ConsoleReporter(app)
    try:
        with open_medium(media_request(options, "r")) as medium:
            stats = engine_list(options, medium, RunContext(reporter), emit_json if app.json else emit_text)
        if app.json:
            click.echo("[]" if first else "\n]")
    except BrokenPipeError:
        raise OutputClosed from None  # not an OSError any more: Click would make it exit 1
    finally:
        reporter.close()
    return stats
