"""``ndmptools restore``: restore a dump, or list it with -t."""

from __future__ import annotations

import json
import time

import click

from ndmptools.cli.chain_cmd import DateType
from ndmptools.cli.common import media_options, media_request, open_history, output_options
from ndmptools.cli.output import App, ConsoleReporter, OutputClosed, finish, summary_line
from ndmptools.engine.options import ListOptions, RestoreOptions
from ndmptools.engine.progress import RunContext, RunStats
from ndmptools.engine.restore import ListedEntry, RestoreResult
from ndmptools.errors import StateError


@click.command("restore")
@click.option(
    "-f",
    "--file",
    "files",
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
    "-D",
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
@click.option(
    "--catalog",
    "from_catalog",
    is_flag=True,
    help="With -t: list the dump from its file history in the state directory, without reading MEDIA.",
)
@click.option(
    "--no-direct",
    is_flag=True,
    help="Read the whole dump even when the file history could take a restore of PATHs straight "
    "to their places on MEDIA (DIRECT=N).",
)
@click.option(
    "-r",
    "--incremental",
    is_flag=True,
    help="Apply a dump of an increment chain on top of the earlier ones restored into DIR.",
)
@click.option(
    "--plan",
    "plan_path",
    metavar="PATH",
    help="Apply, with -r, every dump `ndmptools chain plan PATH` lists, in order (needs no -f).",
)
@click.option("--at", "at", type=DateType(), help="With --plan: PATH as it was at this date.")
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
    from_catalog: bool,
    no_direct: bool,
    incremental: bool,
    plan_path: str | None,
    at: float | None,
    paths: tuple[str, ...],
) -> int:
    """Restore the dump on MEDIA into DIR: all of it, or only the PATHs named.

    A PATH is relative to the root of the dump (sub/file, ./sub/file and
    /sub/file are the same); a directory brings everything under it. Names
    that would reach outside DIR are refused with a warning. A dump on
    several volumes is read in order: the next cartridge of a library, the
    next -f file, or the tape the operator is asked for.
    Each regular file carries the extended attribute user.ndmptools.restoring
    from the moment it is created until its data, size, owner, mode and
    times are in, so that a dump taken meanwhile leaves it out.

    \b
    Examples:
      ndmptools restore -f /backup/home.dump -D /srv/restored
      ndmptools restore -f /backup/home.dump -D /tmp/r alice/notes.txt
      ndmptools restore -f /dev/nst0 -s 2 -D /srv/restored
      ndmptools restore -t -f vtape:/backup/lib --json
      ndmptools restore -r -f home-0.dump -D /srv/home; ndmptools restore -r -f home-1.dump -D /srv/home
      ndmptools restore -r --plan /home --at "2026-11-20 18:00" -D /srv/home
    """
    if plan_path is not None or incremental:
        if list_only or paths:
            raise click.UsageError("-r applies whole dumps: it takes no PATH and no -t")
        if plan_path is None and not files:
            raise click.UsageError("-r needs the dump to apply (-f) or a chain to apply (--plan PATH)")
        if plan_path is not None and files:
            raise click.UsageError("--plan finds the media in the dump history: give no -f with it")
        if plan_path is None and at is not None:
            raise click.UsageError("--at goes with --plan")
        return run_incremental(app, files, file_number, device, not no_prompt, target, plan_path, at)
    if not files:
        raise click.UsageError("Missing option '-f' / '--file'.")
    if from_catalog and not list_only:
        raise click.UsageError("--catalog goes with -t")
    media = dict(
        file=files[0], more_files=files[1:], file_number=file_number, device=device, prompt=not no_prompt
    )
    if list_only:
        stats = run_list(ListOptions(paths=paths, **media), app, from_catalog)
        return 1 if stats.warning_count else 0
    result = run_restore(RestoreOptions(target=target, paths=paths, direct=not no_direct, **media), app)
    return finish(app, "restore", result.stats, result.as_dict())


def run_restore(options: RestoreOptions, app: App) -> RestoreResult:
    from ndmptools.engine.restore import run_restore as engine_restore
    from ndmptools.media import open_medium

    reporter = ConsoleReporter(app)
    history = None
    if options.paths and options.direct:  # the dump's file history takes the restore to its places
        try:
            history = open_history(app)
        except StateError as err:
            app.stderr.write(f"ndmptools: note: no file history ({err.message}): reading the whole dump\n")
    try:
        with open_medium(media_request(options, "r")) as medium:
            return engine_restore(options, medium, RunContext(reporter), history)
    finally:
        reporter.close()
        if history is not None:
            history.db.close()


def run_list(options: ListOptions, app: App, from_catalog: bool = False) -> RunStats:
    """Stream the listing to standard output: aligned text, or one JSON array."""
    from ndmptools.engine.restore import run_catalog_list
    from ndmptools.engine.restore import run_list as engine_list
    from ndmptools.media import open_medium

    first = True

    def emit_json(entry: ListedEntry) -> None:
        nonlocal first
        item = json.dumps(entry.as_dict())
        click.echo(("[\n  " if first else ",\n  ") + item, nl=False)
        first = False

    def emit_text(entry: ListedEntry) -> None:
        if entry.volume is None:
            click.echo(f"{entry.inode:>10}  {entry.type:<8} {entry.size:>14}  {entry.path}")
            return
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime))
        place = f"{entry.volume}:{entry.file_number}:{entry.record}"
        click.echo(f"{entry.inode:>10}  {entry.type:<8} {entry.size:>14}  {when}  {place:<14} {entry.path}")

    reporter = ConsoleReporter(app)
    emit = emit_json if app.json else emit_text
    try:
        if from_catalog:
            history = open_history(app)
            try:
                stats = run_catalog_list(options, history, RunContext(reporter), emit)
            finally:
                history.db.close()
        else:
            with open_medium(media_request(options, "r")) as medium:
                stats = engine_list(options, medium, RunContext(reporter), emit)
        if app.json:
            click.echo("[]" if first else "\n]")
    except BrokenPipeError:
        raise OutputClosed from None  # not an OSError any more: Click would make it exit 1
    finally:
        reporter.close()
    return stats


def run_incremental(
    app: App,
    files: tuple[str, ...],
    file_number: int | None,
    device: str | None,
    prompt: bool,
    target: str,
    plan_path: str | None,
    at: float | None,
) -> int:
    """restore -r: one dump (-f), or every dump of a chain plan, applied to TARGET in order."""
    from ndmptools.engine import chain as chains
    from ndmptools.engine.restore.incremental import apply_dump
    from ndmptools.media import open_medium
    from ndmptools.state.symtab import RestoreTargets

    history = open_history(app)
    try:
        targets = RestoreTargets(history.db)
        if plan_path is None:
            steps = [
                RestoreOptions(
                    file=files[0],
                    more_files=files[1:],
                    target=target,
                    file_number=file_number,
                    device=device,
                    prompt=prompt,
                )
            ]
            labels = [files[0]]
        else:
            records = chains.plan(history, plan_path, at)
            steps = [
                RestoreOptions(
                    file=r.media["spec"],
                    target=target,
                    file_number=r.media.get("file_number"),
                    device=device,
                    prompt=prompt,
                )
                for r in records
            ]
            labels = [f"level {r.level} of {chains.when(r)}" for r in records]
        results, warnings = [], 0
        for options, label in zip(steps, labels, strict=True):
            reporter = ConsoleReporter(app)
            run = RunContext(reporter)
            try:
                with open_medium(media_request(options, "r")) as medium:
                    applied = apply_dump(options, medium, run, targets, history)
            finally:
                reporter.close()
            warnings += run.stats.warning_count
            results.append(
                {
                    "dump": label,
                    "level": applied.level,
                    "date": applied.date,
                    "removed": applied.removed,
                    "moved": applied.moved,
                    "restored": applied.restored,
                    "not_restored": applied.not_restored,
                    "bytes": run.stats.bytes,
                    "warnings": run.stats.warnings,
                }
            )
            if not app.json and not app.quiet:
                click.echo(summary_line(f"restore -r ({label})", run.stats), file=app.stderr)
    finally:
        history.db.close()
    if app.json:
        click.echo(json.dumps({"target": target, "applied": results}, indent=2, sort_keys=True))
    return 1 if warnings else 0
