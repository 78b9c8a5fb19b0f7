"""The command suite: the root group, and main(), the one place errors become exit codes."""

from __future__ import annotations

import signal
import sys
import traceback

import click

from ndmptools import __version__
from ndmptools.cli.chain_cmd import chain
from ndmptools.cli.common import output_options
from ndmptools.cli.contexts_cmd import contexts
from ndmptools.cli.devices_cmd import devices
from ndmptools.cli.dump_cmd import dump
from ndmptools.cli.ndmpcopy_cmd import ndmpcopy
from ndmptools.cli.output import App, OutputClosed
from ndmptools.cli.restore_cmd import restore
from ndmptools.cli.serve_cmd import serve
from ndmptools.errors import EXIT_CODES, NdmpToolsError

EPILOG = "\b\nExit codes:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EPILOG
)
@click.version_option(__version__, prog_name="ndmptools")
@output_options
def cli() -> None:
    """Dump and restore Linux file systems in the BSD dump format (Linux dump/restore 0.4b47)."""


cli.add_command(dump)
cli.add_command(restore)
cli.add_command(ndmpcopy)
cli.add_command(contexts)
cli.add_command(chain)
cli.add_command(devices)
cli.add_command(serve)


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
