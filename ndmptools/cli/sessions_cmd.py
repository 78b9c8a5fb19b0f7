"""``ndmptools sessions``: the dumps and restores running now, and how many may run at once."""

from __future__ import annotations

import json
import time

import click

from ndmptools.cli.common import output_options
from ndmptools.cli.output import App
from ndmptools.engine.progress import human_bytes


@click.command("sessions")
@output_options
@click.pass_obj
def sessions(app: App) -> int:
    """The sessions running now (id, kind, path, pid, start, bytes so far) and the limit.

    Every dump, restore, listing from media (restore -t), compare
    (restore -C) and NDMP session holds one session, an ndmpcopy two. At
    most as many run at once as the machine's memory allows: 4 under 16 GiB,
    16 from 16 GiB, 32 from 24 GiB (MemTotal rounded up to whole GiB, as it
    leaves out what the kernel keeps). A lower limit can be set with
    max_sessions = N in config.toml in the state directory; a higher one is
    used only by the commands given --force-sessions. One more session fails
    with exit code 12, or waits with --wait. A session that dies (even
    killed with SIGKILL) frees its slot at once: the slots are file locks the
    kernel lets go of.

    \b
    Examples:
      ndmptools sessions
      ndmptools sessions --json
    """
    return run_sessions(app)


def run_sessions(app: App) -> int:
    from tabulate import tabulate

    from ndmptools.engine import sessions as engine_sessions

    limit, note = engine_sessions.listed_limit(app.state_dir)
    found = engine_sessions.running(app.state_dir)
    in_use = sum(s.slots for s in found)
    if app.json:
        document = {
            "limit": limit.value,
            "limit_source": limit.source,
            "limit_origin": limit.origin(),
            "memory_gib": limit.memory_gib,
            "memory_limit": limit.memory_limit,
            "config": limit.config_path,
            "config_max_sessions": limit.config_value,
            "note": note,
            "in_use": in_use,
            "sessions": [{**s.as_dict(), "started_local": _when(s.started)} for s in found],
        }
        click.echo(json.dumps(document, indent=2, sort_keys=True))
        return 0
    if found:
        rows = [[s.id, s.kind, s.path, s.pid, _when(s.started), human_bytes(s.bytes), s.slots] for s in found]
        click.echo(tabulate(rows, headers=["ID", "KIND", "PATH", "PID", "STARTED", "BYTES", "SLOTS"]))
    else:
        click.echo("No sessions running.")
    click.echo(f"{in_use} of {limit.value} sessions in use (limit {limit.origin()}).")
    if note:
        click.echo(f"Note: {note}.")
    return 0


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
