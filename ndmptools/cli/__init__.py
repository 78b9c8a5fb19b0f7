"""The command suite: the root group, and main(), the one place errors become exit codes."""

from __future__ import annotations

import importlib
import signal
import sys
import traceback

import click

from ndmptools import __version__
from ndmptools.cli.common import output_options
from ndmptools.cli.output import App, OutputClosed
from ndmptools.errors import EXIT_CODES, NdmpToolsError

EPILOG = "\b\nExit codes:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES)


# Each command's module (and the engine behind it) is imported only when that command is asked
# for: a dump need not load the NDMP server's or the chain's code (some 30 M instructions a run).
_COMMANDS = {
    "dump": "ndmptools.cli.dump_cmd:dump",
    "restore": "ndmptools.cli.restore_cmd:restore",
    "ndmpcopy": "ndmptools.cli.ndmpcopy_cmd:ndmpcopy",
    "contexts": "ndmptools.cli.contexts_cmd:contexts",
    "chain": "ndmptools.cli.chain_cmd:chain",
    "devices": "ndmptools.cli.devices_cmd:devices",
    "serve": "ndmptools.cli.serve_cmd:serve",
    "sessions": "ndmptools.cli.sessions_cmd:sessions",
}


class _LazyGroup(click.Group):
    """The root group: its commands come from _COMMANDS, each module imported at first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            module, name = _COMMANDS[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), name), cmd_name)
        return self.commands.get(cmd_name)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.version_option(__version__, prog_name="ndmptools")
@output_options
def cli() -> None:
    """Dump and restore Linux file systems in the BSD dump format (Linux dump/restore 0.4b47)."""


def _terminated(signum: int, frame) -> None:
    """SIGTERM ends a run as SIGINT does: what can be kept is kept (a restartable context)."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and turn whatever happens into one line on stderr and an exit code."""
    app = App()
    signal.signal(signal.SIGTERM, _terminated)
    try:
        result = cli.main(args=argv, prog_name="ndmptools", obj=app, standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.ClickException as err:
        err.show()
        code = err.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("ndmptools: interrupted", err=True)
        code = 130
    except NdmpToolsError as err:
        if app.debug:
            traceback.print_exc()
        click.echo(f"ndmptools: error: {err}", err=True)
        code = err.exit_code
    except OutputClosed as closed:
        _silence_stdout()
        code = closed.exit_code
    except Exception as err:  # a bug: one line, and the traceback behind --debug
        if app.debug:
            traceback.print_exc()
        click.echo(f"ndmptools: internal error: {err!r} (run with --debug for the traceback)", err=True)
        code = 3
    sys.exit(code)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on the closed pipe."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
