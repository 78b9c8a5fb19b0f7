"""``ndmptools dump``: back up a path in the BSD dump format."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from ndmptools.cli.common import (
    environment_fields,
    environment_option,
    media_options,
    media_request,
    open_history,
    output_options,
    session_options,
    session_reporter,
)
from ndmptools.cli.output import App, ConsoleReporter, finish
from ndmptools.engine.errors import UsageError
from ndmptools.engine.options import DumpOptions
from ndmptools.engine.progress import RunContext
from ndmptools.format.constants import DEFAULT_BLOCKING_FACTOR, MAX_BLOCKING_FACTOR, MIN_BLOCKING_FACTOR

if TYPE_CHECKING:  # the engine is imported when a dump runs, not for --help
    from ndmptools.engine.dump import DumpResult

MEDIA_HELP = (
    "Where the dump goes: a file, - (standard output), a tape drive (/dev/nst0, or auto), "
    "a virtual tape (NAME.tap) or a library of them (vtape:DIR)."
)


class SizeType(click.ParamType):
    """400M, 2G, 512K or bytes."""

    name = "SIZE"

    def convert(self, value, param, ctx) -> int:
        from ndmptools.media.vtape import parse_size

        if isinstance(value, int):
            return value
        try:
            size = parse_size(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)
        if size < 64 * 1024:
            self.fail("a tape of less than 64K cannot hold a dump", param, ctx)
        return size


@click.command("dump")
@click.option(
    "-level",
    "--level",
    type=click.IntRange(0, 31),
    default=0,
    show_default=True,
    help="Dump level; 0 backs up everything.",
)
@click.option("-f", "--file", "file", required=True, metavar="MEDIA", help=MEDIA_HELP)
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
@click.option(
    "--capacity",
    type=SizeType(),
    help="Virtual tapes: what a cartridge holds (e.g. 400M); the dump goes on to the next at its end.",
)
@click.option("--append", is_flag=True, help="Tapes: write after the last dump instead of from the start.")
@click.option(
    "--no-update",
    is_flag=True,
    help="This dump will be no base for later incrementals (UPDATE=N); it is still in the file history.",
)
@click.option(
    "--no-history",
    is_flag=True,
    help="Keep no file history (HIST=N): no `restore -t --catalog`, `chain find` or direct-access "
    "restore for this dump.",
)
@click.option(
    "--auto-baseline",
    is_flag=True,
    help="Take a level 0 when an incremental has no usable base, instead of failing.",
)
@click.option(
    "--snapshot",
    metavar="NAME",
    help="Dump from this existing snapshot (kept) instead of taking snapshot_for_backup.N (removed).",
)
@click.option(
    "--snapshot-provider",
    type=click.Choice(["auto", "btrfs", "lvm", "zfs", "none"]),
    default="auto",
    show_default=True,
    help="How to snapshot PATH; auto picks from its file system, none dumps it live.",
)
@click.option(
    "--restart",
    metavar="ID",
    help="Go on with the interrupted dump of this context (see `ndmptools contexts`), "
    "as its next volume on MEDIA; PATH and the dump options come from the context.",
)
@click.option(
    "--checkpoint-interval",
    type=click.FloatRange(0, 3600),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="How often pass IV records how far it is, for a restart; 0 after every record.",
)
@click.option(
    "--commit-from-stdin",
    is_flag=True,
    hidden=True,  # the far side of an ndmpcopy: recorded only once its restore says it took all
    help="With -f -: record the dump only when standard input says its restore took all of it.",
)
@environment_option("dump")
@media_options
@session_options
@click.argument("path", required=False, type=click.Path(file_okay=True, dir_okay=True))
@output_options
@click.pass_context
def dump(
    ctx: click.Context,
    level: int,
    file: str,
    blocking_factor: int,
    label: str | None,
    capacity: int | None,
    append: bool,
    no_update: bool,
    no_history: bool,
    auto_baseline: bool,
    snapshot: str | None,
    snapshot_provider: str,
    restart: str | None,
    checkpoint_interval: float,
    commit_from_stdin: bool,
    environment: tuple[str, ...],
    device: str | None,
    no_prompt: bool,
    session_wait: float | None,
    force_sessions: bool,
    path: str | None,
) -> int:
    """Back up PATH (a file system, a subtree or a single file) to MEDIA.

    PATH becomes the root of the dump, and the walk stays on PATH's file
    system: a file system mounted below it is backed up as a symbolic link
    to its mount point. From level 1 up, what has the nodump flag (chattr
    +d), and everything below a directory that has it, is left out.
    The dump reads a snapshot, never the live tree: one it takes
    (snapshot_for_backup.N, removed afterwards) or one named with
    --snapshot. On a file system without snapshots it reads the live tree
    and reports what changed meanwhile.
    A level-N dump holds what changed since the most recent dump of PATH at
    a lower level (its base); `ndmptools chain show PATH` lists them.
    A regular file a running restore is writing (its user.ndmptools.restoring
    mark names a live restore) is left out with a warning, and the next
    dumps of PATH take it; a mark whose restore died is dumped, with a
    warning that the file may be incomplete.
    Each dump holds a session: at most as many run at once as the
    machine's memory allows (see `ndmptools sessions`); one more fails at
    once with exit code 12, or waits with --wait.
    At the end of a tape the dump goes on to the next volume: the next
    cartridge of a library, or the next tape the operator loads.
    A dump stopped while writing files (a signal, a media error, a crash)
    keeps a context and its snapshot: --restart ID goes on from its last
    checkpoint onto a new volume, and `ndmptools contexts` lists them.

    \b
    Examples:
      ndmptools dump -level 0 -f /backup/home.dump /home
      ndmptools dump -level 1 -f /backup/home-1.dump /home
      ndmptools dump --snapshot nightly -f /backup/srv.dump /srv
      ndmptools dump -f /dev/nst0 -b 256 --append /srv
      ndmptools dump -f vtape:/backup/lib --capacity 400M /home
      ndmptools dump -f - -b 128 /srv | ssh vault 'cat > srv.dump'
      ndmptools dump --restart 330e6739 -f /backup/home.dump.2
    """
    app: App = ctx.obj
    env = environment_fields(
        ctx,
        "dump",
        environment,
        {
            "level": ("level", int),
            "path": ("path", str),
            "file_history": ("no_history", lambda v: not v),
            "update": ("no_update", lambda v: not v),
        },
    )
    if restart is not None and env:
        raise click.UsageError("--restart takes the dump's options from its context: give no -E")
    level = env.get("level", level)
    path = env.get("path", path)
    no_history = not env.get("file_history", not no_history)
    no_update = not env.get("update", not no_update)
    if restart is not None:
        given = [
            name
            for name in (
                "level",
                "blocking_factor",
                "label",
                "snapshot",
                "snapshot_provider",
                "append",
                "no_update",
                "no_history",
                "auto_baseline",
                "checkpoint_interval",
            )
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        ]
        if path is not None or given:
            what = "PATH" if path is not None else "--" + given[0].replace("_", "-")
            raise click.UsageError(f"--restart takes the dump's {what} from its context: leave it out")
    elif path is None:
        raise click.UsageError("Missing argument 'PATH'.")
    options = DumpOptions(
        path=path or "",
        file=file,
        level=level,
        blocking_factor=blocking_factor,
        label=label,
        capacity=capacity,
        append=append,
        device=device,
        prompt=not no_prompt,
        update=not no_update,
        file_history=not no_history,
        auto_baseline=auto_baseline,
        snapshot=snapshot,
        snapshot_provider=snapshot_provider,
        state_dir=app.state_dir,
        restart=restart,
        checkpoint_interval=checkpoint_interval,
        session_wait=session_wait,
        force_sessions=force_sessions,
        base_date=env.get("base_date"),
        exclude=env.get("exclude", ()),
        ignore_ctime=env.get("ignore_ctime", False),
        no_acls=env.get("no_acls", False),
    )
    if commit_from_stdin and (file != "-" or restart is not None):
        raise click.UsageError("--commit-from-stdin is for a dump to standard output (-f -), not a restart")
    result = run_dump(options, app, commit_from_stdin)
    return finish(app, "dump", result.stats, result.as_dict(), skipped_summary(result))


def skipped_summary(result: DumpResult) -> str:
    """The end of the summary line when files under restore were left out."""
    count = len(result.skipped)
    if not count:
        return ""
    if count == 1:
        return "1 file under restore left out (the next dump takes it)"
    return f"{count:,} files under restore left out (the next dump takes them)"


def run_dump(options: DumpOptions, app: App, commit_from_stdin: bool = False) -> DumpResult:
    """Check the options, open the medium, run the engine; the caller renders the result.

    ``commit_from_stdin``: the far side of an ndmpcopy, whose medium closes (and
    the dump counts) only when the copy's restore sends its word on stdin.
    """
    from ndmptools.engine.dump import run_dump as engine_dump
    from ndmptools.media import open_medium

    if options.file == "-" and app.json:
        raise UsageError("--json cannot share standard output with the dump (-f -)")
    if options.label is not None and len(options.label.encode()) > 15:
        raise UsageError("a label is at most 15 bytes")
    from ndmptools.state.contexts import ContextStore

    request = media_request(options, "w")
    history = open_history(app)  # the dump history, and the contexts of restartable dumps
    contexts = ContextStore(history.db)
    reporter = ConsoleReporter(app)
    shown = os.path.abspath(options.path) if options.restart is None else f"(context {options.restart})"
    try:
        with session_reporter(app, reporter, "dump", shown, options, writing=True) as counted:
            run = RunContext(counted)
            if options.restart is not None:
                from ndmptools.engine.dump.restart import run_restart

                return run_restart(options, lambda: open_medium(request), run, history, contexts)
            if commit_from_stdin:
                from ndmptools.engine.copy import await_commit
                from ndmptools.media.stream import ConfirmedMedium

                def open_confirmed():
                    place = {"spec": "ndmpcopy", "file_number": 1}
                    return ConfirmedMedium(open_medium(request), await_commit, place)

                return engine_dump(options, open_confirmed, run, history)  # a stream: no context to restart
            return engine_dump(options, lambda: open_medium(request), run, history, contexts=contexts)
    finally:
        reporter.close()
        if history is not None:
            history.db.close()
