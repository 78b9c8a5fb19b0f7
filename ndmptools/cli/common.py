"""Options every command takes, also accepted before the command name."""

from __future__ import annotations

import click

from ndmptools.cli.output import App


def _setter(attribute: str):
    def callback(ctx: click.Context, _param: click.Parameter, value) -> None:
        app = ctx.find_object(App)
        if app is None or not value:
            return
        if attribute == "verbose":
            app.verbose += value
        else:
            setattr(app, attribute, True)

    return callback


def output_options(function):
    """--json, -q, -v and --debug, merged into the App on ctx.obj wherever they are given."""
    for decorator in reversed(
        [
            click.option(
                "--json",
                "json_output",
                is_flag=True,
                expose_value=False,
                callback=_setter("json"),
                help="Print the result as JSON on standard output.",
            ),
            click.option(
                "-q",
                "--quiet",
                is_flag=True,
                expose_value=False,
                callback=_setter("quiet"),
                help="Print errors only: no progress, warnings or summary.",
            ),
            click.option(
                "-v",
                "--verbose",
                count=True,
                expose_value=False,
                callback=_setter("verbose"),
                help="Say what each phase is doing.",
            ),
            click.option(
                "--debug",
                is_flag=True,
                expose_value=False,
                callback=_setter("debug"),
                help="Show the traceback of an error.",
            ),
        ]
    ):
        function = decorator(function)
    return function
