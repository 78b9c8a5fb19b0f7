"""``ndmptools ndmpcopy``: a dump piped into a restore, here or over ssh, in one command."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ndmptools.cli.common import open_history, output_options
from ndmptools.cli.output import App, ConsoleReporter, finish
from ndmptools.engine.errors import UsageError
from ndmptools.engine.options import CopyOptions
from ndmptools.engine.progress import RunContext
from ndmptools.format.constants import DEFAULT_BLOCKING_FACTOR, MAX_BLOCKING_FACTOR, MIN_BLOCKING_FACTOR

if TYPE_CHECKING:  # the engine is imported when a copy runs, not for --help
    from ndmptools.engine.copy import CopyResult


@click.command("ndmpcopy")
@click.option(
    "-level",
    "--level",
    type=click.IntRange(0, 31),
    default=0,
    show_default=True,
    help="0 copies everything into a new or empty DST; N brings DST, which holds the copy at a "
    "lower level, up to date.",
)
@click.option(
    "-b",
    "--blocking-factor",
    type=click.IntRange(MIN_BLOCKING_FACTOR, MAX_BLOCKING_FACTOR),
    default=DEFAULT_BLOCKING_FACTOR,
    show_default=True,
    help="Record size of the stream in 1 KiB tape blocks (4 to 256).",
)
@click.option(
    "--snapshot-provider",
    type=click.Choice(["auto", "btrfs", "lvm", "zfs", "none"]),
    default="auto",
    show_default=True,
    help="How to snapshot SRC; auto picks from its file system, none copies it live.",
)
@click.option(
    "--ssh",
    "ssh",
    metavar="COMMAND",
    envvar="NDMPTOOLS_SSH",
    default="ssh",
    show_default=True,
    help="How to run ssh for a host:path side, split as a shell would (env NDMPTOOLS_SSH), "
    "e.g. 'ssh -p 2222 -i KEY'.",
)
@click.option(
    "--remote-command",
    metavar="COMMAND",
    default="ndmptools",
    show_default=True,
    help="What the far side runs for ndmptools: a shell command, e.g. "
    "'NDMPTOOLS_STATE_DIR=/srv/state /opt/ndmptools/bin/ndmptools'.",
)
@click.argument("source", metavar="SRC")
@click.argument("target", metavar="DST")
@output_options
@click.pass_context
def ndmpcopy(
    ctx: click.Context,
    level: int,
    blocking_factor: int,
    snapshot_provider: str,
    ssh: str,
    remote_command: str,
    source: str,
    target: str,
) -> int:
    """Copy the directory SRC into DST: a dump piped into a restore -r, with nothing staged on disk.

    SRC and DST are local paths or [user@]host:path; a host side runs
    `ndmptools dump -f -` or `ndmptools restore -r -f -` there through ssh
    (both may be far: the stream then passes through this host). A level-0
    copy goes into a new or empty DST; a later level brings DST up to date
    from the copy it holds, removing what was removed from SRC and renaming
    what was renamed, as `restore -r` applies a chain. Its base is the most
    recent dump of SRC at a lower level in the dump history of the side
    that dumps (the far one when SRC is far); what DST holds is kept in the
    state directory of the side that restores. A copy that fails anywhere
    (the restore included) leaves no new base, so the next copy at that
    level does it again. The dump reads a snapshot of SRC as `dump` does.

    \b
    Examples:
      ndmptools ndmpcopy /home /mnt/copy/home
      ndmptools ndmpcopy -level 1 /home /mnt/copy/home
      ndmptools ndmpcopy /srv/data backup@vault:/copies/data
      ndmptools ndmpcopy -level 1 --ssh 'ssh -p 2222 -i ~/.ssh/copy' web1:/srv /copies/web1
    """
    app: App = ctx.obj
    options = CopyOptions(
        source=source,
        target=target,
        level=level,
        blocking_factor=blocking_factor,
        snapshot_provider=snapshot_provider,
        ssh=ssh,
        remote_command=remote_command,
        state_dir=app.state_dir,
    )
    result = run_ndmpcopy(options, app)
    return finish(app, "ndmpcopy", result.stats, result.as_dict(), summary_extra(result))


def summary_extra(result: CopyResult) -> str:
    """The end of the summary: what the restore did to DST."""
    done = f"level {result.level} into {result.target}: {result.restored:,} restored"
    if result.level:
        done += f", {result.removed:,} removed, {result.moved:,} moved"
    if result.not_restored:
        done += f", {result.not_restored:,} not restored"
    return done


def run_ndmpcopy(options: CopyOptions, app: App) -> CopyResult:
    """Check the options, run the copy with the console's progress; the caller renders the result."""
    from ndmptools.engine.copy import run_copy

    if not options.remote_command.strip():
        raise UsageError("--remote-command cannot be empty")
    reporter = ConsoleReporter(app)
    try:
        return run_copy(options, RunContext(reporter), lambda: open_history(app))
    finally:
        reporter.close()
