"""``ndmptools contexts``: restartable dumps, listed, shown and given up."""

from __future__ import annotations

import json

import click

from ndmptools.cli.common import open_history, output_options
from ndmptools.cli.output import App, ConsoleReporter
from ndmptools.engine.progress import RunContext


def _store(app: App):
    from ndmptools.state.contexts import ContextStore

    history = open_history(app)
    return history, ContextStore(history.db)


def _yes_no(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@click.group("contexts")
def contexts() -> None:
    """Restartable dumps: a dump stopped in pass IV keeps a context (and its snapshot).

    A dump interrupted while writing files (a signal, a media error, the end
    of the last tape, a crash or a power cut) leaves a context, which
    survives reboots and keeps the dump's snapshot. `ndmptools dump --restart
    ID -f NEXT-VOLUME` goes on from its last checkpoint; `contexts delete ID`
    gives the dump up and releases the snapshot.
    """


@contexts.command("list")
@output_options
@click.pass_obj
def list_contexts(app: App) -> int:
    """Every context: host, identifier, and whether cleanup is pending.

    \b
    Examples:
      ndmptools contexts list
      ndmptools contexts list --json
    """
    from tabulate import tabulate

    from ndmptools.engine.contexts import cleanup_pending

    history, store = _store(app)
    try:
        found = store.all()
    finally:
        history.db.close()
    if app.json:
        rows = [
            {
                "host": c.host,
                "context_id": c.id,
                "is_cleanup_pending": cleanup_pending(c),
                "dump_path": c.dumped_path,
                "level": c.level,
                "is_context_busy": c.busy,
            }
            for c in found
        ]
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    if not found:
        click.echo("No restartable contexts.")
        return 0
    table = [[c.host, c.id, _yes_no(cleanup_pending(c))] for c in found]
    click.echo(tabulate(table, headers=["Host", "Context Identifier", "Is Cleanup Pending?"]))
    click.echo(f"{len(found)} {'entry was' if len(found) == 1 else 'entries were'} displayed.")
    return 0


@contexts.command("show")
@click.argument("context_id", metavar="ID")
@output_options
@click.pass_obj
def show(app: App, context_id: str) -> int:
    """Every field of one context (ID may be shortened to a unique start).

    \b
    Examples:
      ndmptools contexts show 330e6739
      ndmptools contexts show 330e6739-0179-11e6-a299-005056bb4bc9 --json
    """
    from ndmptools.engine.contexts import FIELDS, context_fields

    history, store = _store(app)
    try:
        fields = context_fields(store.find(context_id))
    finally:
        history.db.close()
    if app.json:
        click.echo(json.dumps(fields, indent=2, sort_keys=True))
        return 0
    width = max(len(label) for label, _ in FIELDS)
    for label, key in FIELDS:
        click.echo(f"{label:>{width}}: {_yes_no(fields[key])}")
    return 0


@contexts.command("delete")
@click.argument("context_id", metavar="ID")
@output_options
@click.pass_obj
def delete(app: App, context_id: str) -> int:
    """Give up a restartable dump: remove its context and release its snapshot.

    The snapshot is removed if the dump made it; a volume file it left
    unfinished is removed. A context that a running dump holds is busy, and
    is not deleted.

    \b
    Examples:
      ndmptools contexts delete 330e6739-0179-11e6-a299-005056bb4bc9
    """
    from ndmptools.engine.contexts import delete_context

    history, store = _store(app)
    reporter = ConsoleReporter(app)
    run = RunContext(reporter)
    try:
        deleted = delete_context(store, context_id, history, run)
    finally:
        reporter.close()
        history.db.close()
    if app.json:
        click.echo(json.dumps({"deleted": deleted, "warnings": run.stats.warnings}, indent=2))
    elif not app.quiet:
        click.echo(f"deleted context {deleted}", err=True)
    return 1 if run.stats.warning_count else 0
