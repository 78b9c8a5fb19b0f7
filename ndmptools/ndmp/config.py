"""What ``ndmptools serve`` runs with: the listening address, the auth method, the credentials.

Credentials live in a file only its owner (root) may read, in the INI form::

    [user ndmp]
    password = a long secret

There is no default password: text and MD5 auth refuse to start without a
user. MD5 needs the clear-text password on both sides (the NDMP MD5 rule
digests it with the challenge), which is why the file's mode matters.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import stat
from dataclasses import dataclass, field

from ndmptools.errors import NdmpToolsError
from ndmptools.ndmp.wire import DEFAULT_MAX_RECORD

DEFAULT_CREDENTIALS = "/etc/ndmptools/serve.conf"
AUTH_METHODS = ("md5", "text", "none")


class ServeConfigError(NdmpToolsError):
    """The server cannot start: a bad address, auth method or credentials file."""

    exit_code = 2


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 10000
    auth: str = "md5"  # md5, text or none
    users: dict[str, str] = field(default_factory=dict)  # name -> clear-text password
    max_sessions: int | None = None  # this server's own cap; None: only the machine's limit
    force_sessions: bool = False  # a max_sessions in config.toml above what the memory allows
    max_record: int = DEFAULT_MAX_RECORD
    allow_remote: bool = False
    state_dir: str | None = None  # the dump history DATA uses (None: the default place)

    def check(self) -> None:
        """Refuse settings that would open the server more than asked."""
        if self.auth not in AUTH_METHODS:
            raise ServeConfigError(f"--auth must be one of {', '.join(AUTH_METHODS)}, not {self.auth}")
        if self.auth != "none" and not self.users:
            raise ServeConfigError(
                f"--auth {self.auth} needs a user in the credentials file: there is no default password"
            )
        check_address(self.host, self.allow_remote)
        if not 0 <= self.port <= 0xFFFF:
            raise ServeConfigError(f"port {self.port} is out of range")
        if self.max_sessions is not None and self.max_sessions < 1:
            raise ServeConfigError("the session limit must be at least 1")


def check_address(host: str, allow_remote: bool) -> None:
    """Serving other hosts is an explicit choice: refuse an address off loopback without it."""
    if not is_loopback(host) and not allow_remote:
        raise ServeConfigError(f"{host} is not a loopback address: pass --allow-remote to serve other hosts")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``HOST`` or ``:PORT`` (the port defaults to 10000)."""
    host, port = text, "10000"
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ServeConfigError(f"--listen {text}: an IPv6 address needs its closing ]")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ServeConfigError(f"--listen {text}: expected :PORT after the address")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    host = host or "127.0.0.1"
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 0xFFFF:
        raise ServeConfigError(f"--listen {text}: the port must be a number from 0 to 65535")
    return host, int(port)


def load_credentials(path: str) -> dict[str, str]:
    """The users and passwords in ``path``, after checking that no one else can read it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as err:
        raise ServeConfigError(f"cannot open the credentials file {path}: {err.strerror}") from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ServeConfigError(f"the credentials file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise ServeConfigError(
                f"the credentials file {path} is open to group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}): chmod 600 it"
            )
        if info.st_uid not in (0, os.geteuid()):
            raise ServeConfigError(f"the credentials file {path} belongs to uid {info.st_uid}, not root")
        with os.fdopen(fd, "r", encoding="utf-8", closefd=False) as handle:
            text = handle.read()
    finally:
        os.close(fd)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=path)
    except configparser.Error as err:
        raise ServeConfigError(f"the credentials file {path} cannot be read: {err.message}") from None
    users: dict[str, str] = {}
    for section in parser.sections():
        kind, _, name = section.partition(" ")
        if kind != "user" or not name.strip():
            raise ServeConfigError(f"{path}: [{section}] is no [user NAME] section")
        password = parser.get(section, "password", fallback="")
        if not password:
            raise ServeConfigError(f"{path}: user {name.strip()} has no password")
        users[name.strip()] = password
    return users
