"""``ndmptools restore``: restore a dump, list it with -t, or compare it with a tree with -C."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import TYPE_CHECKING

import click

from ndmptools.cli.chain_cmd import DateType
from ndmptools.cli.common import (
    environment_fields,
    environment_option,
    held_session,
    media_options,
    media_request,
    open_history,
    output_options,
    session_options,
    session_reporter,
)
from ndmptools.cli.output import App, ConsoleReporter, OutputClosed, finish, summary_line
from ndmptools.engine.errors import TargetError
from ndmptools.engine.options import (
    CompareOptions,
    ListOptions,
    RestoreOptions,
    check_extract,
    variable_of,
)
from ndmptools.engine.progress import RunContext, RunStats
from ndmptools.errors import DIFFERENCES_FOUND, StateError

if TYPE_CHECKING:  # the engine is imported when a restore runs, not for --help
    from ndmptools.engine.restore import ListedEntry, RestoreResult
    from ndmptools.engine.restore.compare import Difference


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
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Directory to restore into (created if missing; default: the current directory); with -C, "
    "the tree to compare with (default: where the dump was taken from).",
)
@click.option(
    "-C",
    "--compare",
    is_flag=True,
    help="Compare the dump with the tree at DIR instead of restoring, and list what differs "
    "(PATH: WHAT, the media's value first); nothing is written. Exit code 11 when something differs.",
)
@click.option(
    "-t",
    "--list",
    "list_only",
    is_flag=True,
    help="List path, inode, type and size of each entry instead of restoring.",
)
@click.option(
    "-l",
    "--long",
    "long_listing",
    is_flag=True,
    help="With -t: also each entry's mode as ls -l shows it (+ for a POSIX ACL), owner and group "
    "(the numbers on media), mtime, birth time, chattr flags (lsattr's letters), the DOS attributes "
    "Samba keeps in user.DOSATTRIB and its alternate data streams (user.DosStream.*). With --catalog, "
    "what the file history keeps: no ACL, DOS attributes or streams.",
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
    "--original",
    is_flag=True,
    help="Restore into the directory the dump was taken from (as the dump history, else the dump, "
    "names it) instead of DIR.",
)
@click.option(
    "--rename",
    "renames",
    multiple=True,
    metavar="OLD=NEW",
    help="Restore OLD (a path in the dump) as NEW (a path in DIR), EXTRACT=E; repeatable.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Skip the check for room (the data plus 100 MiB, and inodes) before writing (FORCE=Y); "
    "the restore stops cleanly when DIR fills up.",
)
@environment_option("restore")
@session_options
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
@click.pass_context
def restore(
    ctx: click.Context,
    files: tuple[str, ...],
    file_number: int | None,
    device: str | None,
    no_prompt: bool,
    target: str | None,
    compare: bool,
    list_only: bool,
    long_listing: bool,
    from_catalog: bool,
    no_direct: bool,
    original: bool,
    renames: tuple[str, ...],
    force: bool,
    environment: tuple[str, ...],
    session_wait: float | None,
    force_sessions: bool,
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
    A restore, a listing from MEDIA (-t) and a compare (-C) each hold a
    session, as a dump does (see `ndmptools sessions`): they read the whole
    dump from the media. A listing from the file history (--catalog) does not.
    Each regular file carries the extended attribute user.ndmptools.restoring
    from the moment it is created until its data, size, owner, mode and
    times are in, so that a dump taken meanwhile leaves it out.

    With -C nothing is restored: each entry of the dump (under the PATHs) is
    compared with the tree at DIR, by type, mode, owner, group, size, mtime,
    content, symlink target, device number, hard links, extended attributes
    (each name and value, in every namespace this process can read: trusted.*
    needs root), POSIX ACLs and the chattr flags a restore sets, and each
    directory's names with the tree's (a name the dump does not list is
    "only in the tree"). Not compared: atime, ctime, birth time and project
    ids. An incremental compares only what it holds.

    \b
    The kinds of difference (with --json, "media" and "tree" hold the values):
      only-on-media, only-in-tree, type, mode, owner, group, size, mtime,
      content, holes, symlink, device, hardlink,
      xattr  an extended attribute: NAME=VALUE as getfattr -d shows it (cut)
      acl    a POSIX ACL in getfacl's short form, numeric ids (d: for default)
      flags  chattr flags, as lsattr's letters

    With -t --json each entry has path, inode, type and size (from --catalog
    also mtime in seconds, volume, file and record: its place on media).
    With --long also: mode (st_mode as a number), ls_mode ("-rw-r--r--+"),
    acl (true/false), uid, gid, user and group (the names this system gives
    those numbers, or null), mtime, mtime_ns, birth_ns (null: none on media),
    flags and flag_letters (chattr), dos (null without user.DOSATTRIB, else
    attributes as a number, letters R H S D A N T P L C O I E as Windows
    shows them, create_time_ns, version of Samba's blob, problem when it
    could not all be read) and streams (how many user.DosStream.*). From
    --catalog acl, dos and streams are null (the file history does not keep
    them), and so are birth_ns, flags, uid, gid, user and group of a dump
    whose file history an older ndmptools recorded.

    \b
    Examples:
      ndmptools restore -f /backup/home.dump -D /srv/restored
      ndmptools restore -f /backup/home.dump -D /tmp/r alice/notes.txt
      ndmptools restore -f /dev/nst0 -s 2 -D /srv/restored
      ndmptools restore -t -f vtape:/backup/lib --json
      ndmptools restore -tl -f /backup/home.dump alice
      ndmptools restore -C -f /backup/home.dump
      ndmptools restore -C -f /backup/home.dump -D /srv/restored alice
      ndmptools restore -r -f home-0.dump -D /srv/home; ndmptools restore -r -f home-1.dump -D /srv/home
      ndmptools restore -r --plan /home --at "2026-11-20 18:00" -D /srv/home
    """
    app: App = ctx.obj
    env = environment_fields(
        ctx, "restore", environment, {"force": ("force", bool), "direct": ("no_direct", lambda v: not v)}
    )
    pairs = tuple(_rename_pair(text) for text in renames)
    check_extract(env.get("extract"), paths, pairs)
    force = env.get("force", force)
    direct = env.get("direct", not no_direct)
    if env.get("list"):
        if compare:
            raise click.UsageError("-E LIST=Y lists: it does not go with -C")
        list_only = True  # LIST=Y is -t
    restore_only = {
        k: env[k] for k in ("extract_acl", "nowrite", "recursive", "full_paths", "dump_date") if k in env
    }
    if restore_only and (compare or list_only or incremental or plan_path is not None):
        names = ", ".join(variable_of("restore", k) for k in restore_only)
        raise click.UsageError(f"-E {names} goes with a restore (not -C, -t or -r)")
    if compare:
        for given, option in (
            (list_only, "-t"),
            (incremental, "-r"),
            (plan_path, "--plan"),
            (from_catalog, "--catalog"),
            (pairs, "--rename"),
            (force, "--force"),
            (original, "--original (-C compares with the original place unless -D is given)"),
        ):
            if given:
                raise click.UsageError(f"-C compares a dump with a tree: it does not go with {option}")
    if plan_path is not None or incremental:
        if list_only or paths or pairs or original:
            raise click.UsageError(
                "-r applies whole dumps into -D: it takes no PATH, no --rename, no --original and no -t"
            )
        if plan_path is None and not files:
            raise click.UsageError("-r needs the dump to apply (-f) or a chain to apply (--plan PATH)")
        if plan_path is not None and files:
            raise click.UsageError("--plan finds the media in the dump history: give no -f with it")
        if plan_path is None and at is not None:
            raise click.UsageError("--at goes with --plan")
        return run_incremental(
            app,
            files,
            file_number,
            device,
            not no_prompt,
            target or ".",
            plan_path,
            at,
            RestoreOptions("", session_wait=session_wait, force_sessions=force_sessions),
        )
    if not files:
        raise click.UsageError("Missing option '-f' / '--file'.")
    if from_catalog and not list_only:
        raise click.UsageError("--catalog goes with -t")
    if long_listing and not list_only:
        raise click.UsageError("--long goes with -t")
    if list_only and (pairs or force or original):
        raise click.UsageError("-t lists: --rename, --force and --original go with a restore")
    if original and target is not None:
        raise click.UsageError("--original restores where the dump was taken from: give no -D with it")
    media = dict(
        file=files[0],
        more_files=files[1:],
        file_number=file_number,
        device=device,
        prompt=not no_prompt,
        session_wait=session_wait,
        force_sessions=force_sessions,
    )
    if compare:
        return run_compare(CompareOptions(tree=target, paths=paths, **media), app)
    if list_only:
        stats = run_list(ListOptions(paths=paths, long=long_listing, **media), app, from_catalog)
        return 1 if stats.warning_count else 0
    options = RestoreOptions(
        target=target or ".",
        paths=paths,
        direct=direct,
        renames=pairs,
        force=force,
        original=original,
        **restore_only,
        **media,
    )
    result = run_restore(options, app)
    code = finish(app, "restore", result.stats, result.as_dict())
    if result.stopped is not None:
        click.echo(f"ndmptools: error: {stopped_line(result)}", file=app.stderr)
        return TargetError.exit_code
    return code


def _rename_pair(text: str) -> tuple[str, str]:
    old, sep, new = text.partition("=")
    if not sep or not old or not new:
        raise click.UsageError(f"--rename takes OLD=NEW, not {text!r}")
    return old, new


def stopped_line(result: RestoreResult) -> str:
    """What a restore that filled its target left undone, in one line."""
    shown = result.unrestored[:3]
    more = result.not_restored - len([p for p in shown if not p.endswith("/")])
    listed = ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")
    return (
        f"the restore stopped: the target is full ({result.stopped}); {result.restored:,} entries "
        f"restored, {result.not_restored:,} not restored"
        + (f": {listed}" if listed else "")
        + " (--json lists them)"
    )


def run_restore(options: RestoreOptions, app: App) -> RestoreResult:
    from ndmptools.engine.restore import run_restore as engine_restore
    from ndmptools.media import open_medium

    reporter = ConsoleReporter(app)
    history = None
    try:  # the dump's file history: direct access to PATHs, and the size of the data to check
        history = open_history(app)
    except StateError as err:
        app.stderr.write(f"ndmptools: note: no file history ({err.message})\n")
    shown = "(the original place)" if options.original else os.path.abspath(options.target)
    try:
        with (
            session_reporter(app, reporter, "restore", shown, options, optional=True) as counted,
            open_medium(media_request(options, "r")) as medium,
        ):
            return engine_restore(options, medium, RunContext(counted), history)
    finally:
        reporter.close()
        if history is not None:
            history.db.close()


def run_compare(options: CompareOptions, app: App) -> int:
    """Each difference on standard output as it is found (or one JSON document); the exit code by result."""
    from ndmptools.engine.restore.compare import run_compare as engine_compare
    from ndmptools.media import open_medium

    reporter = ConsoleReporter(app)
    history = None
    if options.tree is None:  # the dump history knows where the dump was taken from in full
        try:
            history = open_history(app)
        except StateError as err:
            app.stderr.write(f"ndmptools: note: no dump history ({err.message}): the dump's header says\n")
    first = True

    def emit_json(difference: Difference) -> None:  # streamed: the document is never held whole
        nonlocal first
        click.echo(
            ('{\n  "differences": [\n    ' if first else ",\n    ") + json.dumps(difference.as_dict()),
            nl=False,
        )
        first = False

    def emit_text(difference: Difference) -> None:
        click.echo(difference.describe())

    shown = os.path.abspath(options.tree) if options.tree is not None else options.file
    try:
        with (
            session_reporter(app, reporter, "compare", shown, options, optional=True) as counted,
            open_medium(media_request(options, "r")) as medium,
        ):
            result = engine_compare(
                options, medium, RunContext(counted), history, emit_json if app.json else emit_text
            )
        if app.json:
            rest = json.dumps(result.as_dict(), indent=2, sort_keys=True).removeprefix("{\n")
            click.echo(('{\n  "differences": [],\n' if first else "\n  ],\n") + rest)
    except BrokenPipeError:
        raise OutputClosed(DIFFERENCES_FOUND) from None  # it left while a difference was printed
    finally:
        reporter.close()
        if history is not None:
            history.db.close()
    stats = result.stats
    if not app.json and not app.quiet:
        found = result.differences
        line = summary_line("compare", stats, f"{found:,} difference{'s' if found != 1 else ''}")
        click.echo(line, file=app.stderr)
    if result.differences:
        return DIFFERENCES_FOUND
    return 1 if stats.warning_count else 0


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
        if entry.details is not None:
            click.echo(long_line(entry))
            return
        if entry.volume is None:
            click.echo(f"{entry.inode:>10}  {entry.type:<8} {entry.size:>14}  {entry.path}")
            return
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime))
        place = f"{entry.volume}:{entry.file_number}:{entry.record}"
        click.echo(f"{entry.inode:>10}  {entry.type:<8} {entry.size:>14}  {when}  {place:<14} {entry.path}")

    reporter = ConsoleReporter(app)
    emit = emit_json if app.json else emit_text
    try:
        if options.long and not app.json:
            click.echo(long_header(from_catalog))
        if from_catalog:
            history = open_history(app)
            try:
                stats = run_catalog_list(options, history, RunContext(reporter), emit)
            finally:
                history.db.close()
        else:
            with (
                session_reporter(app, reporter, "list", options.file, options, optional=True) as counted,
                open_medium(media_request(options, "r")) as medium,
            ):
                stats = engine_list(options, medium, RunContext(counted), emit)
        if app.json:
            click.echo("[]" if first else "\n]")
    except BrokenPipeError:
        raise OutputClosed from None  # not an OSError any more: Click would make it exit 1
    finally:
        reporter.close()
    return stats


_LONG_HEADINGS = ("INODE", "TYPE", "MODE", "UID", "GID", "SIZE", "MTIME", "BIRTH", "FLAGS", "DOS", "STREAMS")


def _long_columns(fields: tuple, place: str | None, path: str) -> str:
    inode, kind, mode, uid, gid, size, mtime, birth, flags, dos, streams = fields
    line = (
        f"{inode:>10}  {kind:<8} {mode:<11} {uid:>6} {gid:>6} {size:>14}  {mtime:<16}  {birth:<16}  "
        f"{flags:<6} {dos:<6} {streams:>7}  "
    )
    if place is not None:
        line += f"{place:<14} "
    return line + path


def long_header(from_catalog: bool) -> str:
    """The headings of ``restore -t --long``: two kinds of letters need telling apart."""
    return _long_columns(_LONG_HEADINGS, "PLACE" if from_catalog else None, "PATH")


def _when(ns: int | None) -> str:
    if ns is None:
        return ""
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(ns // 1_000_000_000))
    except (OverflowError, OSError, ValueError):
        return "?"  # a time no calendar here holds


def long_line(entry: ListedEntry) -> str:
    """One entry of ``restore -t --long``: blank where the media or the catalog has nothing to say."""
    d = entry.details
    dos = "" if d.dos is None else ("?" if d.dos.attributes is None else d.dos.letters)
    fields = (
        entry.inode,
        entry.type,
        d.ls_mode,
        "" if d.uid is None else d.uid,
        "" if d.gid is None else d.gid,
        entry.size,
        _when(d.mtime_ns),
        _when(d.birth_ns),
        d.flag_letters or "",
        dos,
        d.streams or "",
    )
    place = None if entry.volume is None else f"{entry.volume}:{entry.file_number}:{entry.record}"
    return _long_columns(fields, place, entry.path)


def run_incremental(
    app: App,
    files: tuple[str, ...],
    file_number: int | None,
    device: str | None,
    prompt: bool,
    target: str,
    plan_path: str | None,
    at: float | None,
    waiting: RestoreOptions | None = None,
) -> int:
    """restore -r: one dump (-f), or every dump of a chain plan, applied to TARGET in order.

    The whole run holds one session (``waiting``: its --wait and --force-sessions).
    """
    from ndmptools.engine import chain as chains
    from ndmptools.engine.restore.incremental import apply_dump
    from ndmptools.media import open_medium
    from ndmptools.state.symtab import RestoreTargets

    history = open_history(app)
    held = contextlib.ExitStack()
    try:
        notes = ConsoleReporter(app)  # says that the run waits for a session, if it does
        where = os.path.abspath(target)
        waiting = waiting or RestoreOptions("")
        if plan_path is None:  # the media it reads; a plan's are known only once the history says
            waiting = dataclasses.replace(waiting, file=files[0], more_files=files[1:])
        session = held.enter_context(held_session(app, notes, "restore", where, waiting))
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
            run = RunContext(reporter if session is None else session.reporter(reporter))
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
                    "stopped": applied.stopped,
                    "bytes": run.stats.bytes,
                    "warnings": run.stats.warnings,
                }
            )
            if not app.json and not app.quiet:
                click.echo(summary_line(f"restore -r ({label})", run.stats), file=app.stderr)
    finally:
        held.close()
        history.db.close()
    if app.json:
        click.echo(json.dumps({"target": target, "applied": results}, indent=2, sort_keys=True))
    return 1 if warnings else 0
