"""``ndmptools dump``: back up a path in the BSD dump format."""

from __future__ import annotations

import click

from ndmptools.cli.common import output_options
from ndmptools.cli.output import App, ConsoleReporter, finish
from ndmptools.engine.dump import DumpResult
from ndmptools.engine.errors import UsageError
from ndmptools.engine.options import DumpOptions
from ndmptools.engine.progress import RunContext
from ndmptools.format.constants import DEFAULT_BLOCKING_FACTOR, MAX_BLOCKING_FACTOR, MIN_BLOCKING_FACTOR


@click.command("dump")
@click.option(
    "-level",
    "--level",
    type=click.IntRange(0, 31),
    default=0,
    show_default=True,
    help="Dump level; 0 backs up everything.",
)
@click.option(
    "-f",
    "--file",
    "file",
    required=True,
    metavar="FILE",
    help="Where the dump goes: a file, or - for standard output.",
)
@click.option(
    "-b",
    "--blocking-factor",
    type=click.IntRange(MIN_BLOCKING_FACTOR, MAX_BLOCKING_FACTOR),
    default=DEFAULT_BLOCKING_FACTOR,
    show_default=True,
    help="Record size in 1 KiB tape blocks (4 to 256); one write per record.",
)
@click.option(
    "-L",
    "--label",
    metavar="LABEL",
    help="Dump label (15 bytes at most); default: the file system's label, or 'none'.",
)
@click.argument("path", type=click.Path(file_okay=True, dir_okay=True))
@output_options
@click.pass_obj
def dump(app: App, level: int, file: str, blocking_factor: int, label: str | None, path: str) -> int:
    """Back up PATH (a file system, a subtree or a single file) to FILE.

    PATH becomes the root of the dump, and the walk stays on PATH's file
    system: a file system mounted below it is dumped as an empty directory.

    \b
    Examples:
      ndmptools dump -level 0 -f /backup/home.dump /home
      ndmptools dump -f - -b 128 /srv | ssh vault 'cat > srv.dump'
    """
    options = DumpOptions(path=path, file=file, level=level, blocking_factor=blocking_factor, label=label)
    result = run_dump(options, app)
    return finish(app, "dump", result.stats, result.as_dict())


def run_dump(options: DumpOptions, app: App) -> DumpResult:
    """Check the options, open the medium, run the engine; the caller renders the result."""
    from ndmptools.engine.dump import run_dump as engine_dump
    from ndmptools.media import open_medium

    if options.file == "-" and app.json:
        raise UsageError("--json cannot share standard output with the dump (-f -)")
    if options.label is not None and len(options.label.encode()) > 15:
        raise UsageError("a label is at most 15 bytes")
    reporter = ConsoleReporter(app)
    run = RunContext(reporter)
    try:
        return engine_dump(options, lambda: open_medium(options.file, "w"), run)
    finally:
        reporter.close()
