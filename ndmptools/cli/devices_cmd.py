"""``ndmptools devices``: the tape drives and media changers this machine has."""

from __future__ import annotations

import json

import click

from ndmptools.cli.common import output_options
from ndmptools.cli.output import App


@click.command("devices")
@output_options
@click.pass_obj
def devices(app: App) -> int:
    """List tape drives and media changers, as udev knows them.

    For each drive: its device node, the non-rewinding node to give to -f,
    vendor, model, serial number (for --device) and the largest block its
    host adapter moves in one command.

    \b
    Examples:
      ndmptools devices
      ndmptools devices --json
    """
    from ndmptools.media.discovery import list_devices

    drives, changers = list_devices()
    if app.json:
        click.echo(
            json.dumps(
                {"drives": [d.as_dict() for d in drives], "changers": [c.as_dict() for c in changers]},
                indent=2,
                sort_keys=True,
            )
        )
        return 0
    if not drives and not changers:
        click.echo("No tape drives or media changers found.")
        return 0
    from tabulate import tabulate

    if drives:
        rows = [
            [
                d.node,
                d.nonrewinding_node or "-",
                d.vendor,
                d.model,
                d.serial or "-",
                f"{d.max_block // 1024} KiB" if d.max_block else "unknown",
            ]
            for d in drives
        ]
        click.echo(
            tabulate(rows, headers=["drive", "non-rewinding", "vendor", "model", "serial", "max block"])
        )
    if changers:
        if drives:
            click.echo()
        rows = [[c.node, c.vendor, c.model, c.serial or "-"] for c in changers]
        click.echo(tabulate(rows, headers=["changer", "vendor", "model", "serial"]))
    return 0
