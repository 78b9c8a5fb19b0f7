"""Options every command takes, also accepted before the command name."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ndmptools.media import MediaRequest

from ndmptools.cli.output import App


def _setter(attribute: str):
    def callback(ctx: click.Context, _param: click.Parameter, value) -> None:
        app = ctx.find_object(App)
        if app is None or not value:
            return
        if attribute == "verbose":
            app.verbose += value
        elif attribute == "state_dir":
            app.state_dir = value
        else:
            setattr(app, attribute, True)

    return callback


def output_options(function):
    """--json, -q, -v, --debug and --state-dir, merged into the App on ctx.obj wherever they are given."""
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
            click.option(
                "--state-dir",
                metavar="DIR",
                expose_value=False,
                callback=_setter("state_dir"),
                type=click.Path(file_okay=False),
                help="Where the dump history is kept (default: $NDMPTOOLS_STATE_DIR, else /var/lib/ndmptools "
                "as root).",
            ),
        ]
    ):
        function = decorator(function)
    return function


def terminal_prompt(message: str) -> str | None:
    """Ask on the controlling terminal (not stdin, which may carry a dump); None without one."""
    try:
        tty = open("/dev/tty", "r+")  # noqa: SIM115 - closed below, kept open across the question
    except OSError:
        return None
    with tty:
        tty.write(message)
        tty.flush()
        line = tty.readline()
    return line.strip() if line else None


def media_request(options, mode: str) -> MediaRequest:
    """The media a dump, restore or listing names, with the operator prompt unless --no-prompt."""
    from ndmptools.media import MediaRequest  # the media backends load when a command runs

    return MediaRequest(
        specs=(options.file, *getattr(options, "more_files", ())),
        mode=mode,
        capacity=getattr(options, "capacity", None),
        append=getattr(options, "append", False),
        file_number=getattr(options, "file_number", None),
        device_serial=options.device,
        prompt=terminal_prompt if options.prompt else None,
    )


def media_options(function):
    """--device and --no-prompt: which drive, and whether to ask for the next tape."""
    for decorator in reversed(
        [
            click.option(
                "--device",
                metavar="SERIAL",
                help="The tape drive with this serial number (see `ndmptools devices`).",
            ),
            click.option(
                "--no-prompt",
                is_flag=True,
                help="Never ask for the next volume: fail cleanly instead (for cron).",
            ),
        ]
    ):
        function = decorator(function)
    return function


def session_options(function):
    """--wait[=SECONDS] and --force-sessions: what to do when the session limit is reached."""
    for decorator in reversed(
        [
            click.option(
                "--wait",
                "session_wait",
                type=click.FloatRange(min=0),
                is_flag=False,
                flag_value=math.inf,
                default=None,
                metavar="[SECONDS]",
                help="When as many sessions run as allowed (see `ndmptools sessions`), wait for one to "
                "end: up to SECONDS (--wait=30), or as long as it takes (--wait); without it, fail at once.",
            ),
            click.option(
                "--force-sessions",
                is_flag=True,
                help="Accept a max_sessions in the settings file above what this machine's memory allows.",
            ),
        ]
    ):
        function = decorator(function)
    return function


@contextmanager
def held_session(
    app: App,
    reporter,
    kind: str,
    path: str,
    options,
    optional: bool = False,
    writing: bool = False,
    slots: int = 1,
) -> Iterator:
    """Hold a session slot while the block runs (the Session, or None when not counted).

    ``optional``: a state directory that cannot be used only costs the count (a note), as a
    restore without a dump history still restores. The media are the options' -f files;
    ``writing`` says they are written (a dump), so that no other session may use them meanwhile.
    ``slots``: how many sessions this run counts as (an ndmpcopy here: its dump and its restore).
    """
    from ndmptools.engine import sessions
    from ndmptools.errors import StateError

    try:
        media = getattr(options, "file", None)
        session = sessions.acquire(
            kind,
            path,
            slots,
            wait=options.session_wait,
            force=options.force_sessions,
            state_dir=app.state_dir,
            notify=reporter.note,
            media=(media, *getattr(options, "more_files", ())) if media else (),
            writing=writing,
        )
    except StateError as err:
        if not optional:
            raise
        reporter.note(f"this {kind} is not counted among the sessions ({err.message})")
        session = None
    if session is None:  # yielded outside the except: the run's own errors carry no StateError context
        yield None
        return
    with session:
        yield session


@contextmanager
def session_reporter(
    app: App,
    reporter,
    kind: str,
    path: str,
    options,
    optional: bool = False,
    writing: bool = False,
    slots: int = 1,
) -> Iterator:
    """A session held while the block runs; yields the reporter that also counts its bytes."""
    with held_session(app, reporter, kind, path, options, optional, writing, slots) as session:
        yield reporter if session is None else session.reporter(reporter)


def open_history(app: App):
    """The dump history in the state directory (created on first use)."""
    from ndmptools.state.db import StateDB
    from ndmptools.state.history import History

    return History(StateDB(app.state_dir))


def environment_option(command: str):
    """-E NAME=VALUE, repeatable: the NDMP-style environment ONTAP's dump takes."""
    from ndmptools.engine.options import ENVIRONMENT

    names = ", ".join(sorted(ENVIRONMENT[command]))
    return click.option(
        "-E",
        "--env",
        "environment",
        multiple=True,
        metavar="NAME=VALUE",
        help=f"An NDMP environment variable ({names}); Y/N also as T/F. Repeatable; "
        "docs/ndmp.md says what each does.",
    )


def environment_fields(
    ctx: click.Context, command: str, pairs: tuple[str, ...], params: dict[str, tuple[str, object]]
) -> dict[str, object]:
    """The option fields -E sets; a flag given too must say the same thing.

    ``params`` maps each field to the Click parameter that sets it and how that
    parameter's value reads as the field's (``--no-history`` is HIST=N).
    """
    from ndmptools.engine.options import read_environment, variable_of

    found = read_environment(command, pairs)
    for field, value in found.items():
        if field not in params:
            continue
        param, as_field = params[field]
        if ctx.get_parameter_source(param) != click.core.ParameterSource.COMMANDLINE:
            continue
        flagged = as_field(ctx.params[param])
        if isinstance(value, str):  # a path: the same place however it is spelled
            flagged, value = os.path.realpath(flagged), os.path.realpath(value)
        if flagged != value:
            flag = "--" + param.replace("_", "-") if param != "path" else "PATH"
            raise click.UsageError(f"-E {variable_of(command, field)} and {flag} disagree")
    app = ctx.obj
    if found.pop("debug", False):
        app.debug = True  # DEBUG=Y is --debug
    if found.pop("verbose", False):
        app.verbose = max(app.verbose, 1)  # VERBOSE=Y is -v
    found.pop("type", None)  # TYPE=dump: checked when read, nothing to set
    return found
