"""``ndmptools serve``: an NDMP version 4 server that lets a DMA drive the dump engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import click

from ndmptools.cli.common import output_options
from ndmptools.cli.output import App


@dataclass(frozen=True)
class ServeOptions:
    listen: str
    auth: str
    credentials: str | None
    allow_remote: bool
    max_sessions: int | None
    force_sessions: bool


@click.command("serve")
@click.option(
    "--listen",
    default="127.0.0.1:10000",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on; port 0 picks a free one. Anything but loopback needs --allow-remote.",
)
@click.option(
    "--auth",
    type=click.Choice(["md5", "text", "none"]),
    default="md5",
    show_default=True,
    help="How a DMA authenticates: MD5 challenge, clear-text password, or not at all.",
)
@click.option(
    "--credentials",
    "--config",
    "credentials",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="The users and passwords ([user NAME] / password = ...), readable by root only "
    "(default /etc/ndmptools/serve.conf; not read with --auth none).",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow listening on an address other hosts can reach.",
)
@click.option(
    "--max-sessions",
    type=click.IntRange(min=1),
    default=None,
    help="Connections this server takes at once; more are refused. Each connection is also one of "
    "the machine's sessions (see `ndmptools sessions`), whose limit refuses them first.",
)
@click.option(
    "--force-sessions",
    is_flag=True,
    help="Take a max_sessions in config.toml that is above what the machine's memory allows.",
)
@output_options
@click.pass_obj
def serve(app: App, **values) -> int:
    """Serve NDMP version 4 (CONNECT, CONFIG, DATA, TAPE, MOVER) to a backup application.

    A DMA such as Amanda's ndmjob connects, authenticates, and drives
    backups (butype dump) and restores of this host, to a tape, a virtual
    tape or a file named in TAPE_OPEN (a -f value), or to its own tape agent.
    Runs until interrupted (SIGINT or SIGTERM).

    \b
    Examples:
      ndmptools serve --credentials /etc/ndmptools/serve.conf
      ndmptools serve --listen 127.0.0.1:10000 --auth text
      ndmptools serve --listen 0.0.0.0:10000 --allow-remote
    """
    return run_serve(app, ServeOptions(**values))


def run_serve(app: App, opts: ServeOptions) -> int:
    """Check the options, load the credentials, listen, and serve until interrupted."""
    from ndmptools.ndmp.config import (
        DEFAULT_CREDENTIALS,
        ServeSettings,
        check_address,
        load_credentials,
        parse_listen,
    )
    from ndmptools.ndmp.server import NdmpServer

    host, port = parse_listen(opts.listen)
    check_address(host, opts.allow_remote)  # before the credentials: the address is the bigger mistake
    users: dict[str, str] = {}
    if opts.auth != "none":
        users = load_credentials(opts.credentials or DEFAULT_CREDENTIALS)
    settings = ServeSettings(
        host=host,
        port=port,
        auth=opts.auth,
        users=users,
        max_sessions=opts.max_sessions,
        force_sessions=opts.force_sessions,
        allow_remote=opts.allow_remote,
        state_dir=app.state_dir,
    )
    settings.check()
    from ndmptools.engine.sessions import session_limit

    limit = session_limit(app.state_dir, opts.force_sessions)  # a bad config.toml fails here, not later
    _configure_logging(app)
    server = NdmpServer(settings)
    bound_host, bound_port = server.bind()
    if not app.quiet:
        click.echo(
            f"ndmptools: serving NDMP v4 on {bound_host}:{bound_port} (auth {opts.auth}; "
            f"each connection is a session, at most {limit.describe()})",
            err=True,
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


def _configure_logging(app: App) -> None:
    level = logging.DEBUG if app.debug else logging.INFO if app.verbose else logging.WARNING
    if app.quiet:
        level = logging.ERROR
    handler = logging.StreamHandler(app.stderr)
    handler.setFormatter(logging.Formatter("ndmptools serve: %(message)s"))
    logger = logging.getLogger("ndmptools.ndmp")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
