"""The CONNECT service: open (protocol version), client authentication, close.

MD5 follows the NDMP rule as ndmjob computes it: a 128-byte message of zeros
with the password (its first 32 bytes) at the start and again at the end,
and the server's 64-byte challenge from CONFIG_GET_AUTH_ATTR between them at
offset 64 - len(password); the digest is the MD5 of those 128 bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from ndmptools.ndmp import messages as m
from ndmptools.ndmp.session import NdmpError, Session

log = logging.getLogger("ndmptools.ndmp")

MAX_AUTH_FAILURES = 3  # then the connection is closed: no password guessing on one connection
MD5_PASSWORD_LIMIT = 32


def md5_digest(challenge: bytes, password: str | bytes) -> bytes:
    """The NDMP MD5 digest of ``password`` for ``challenge`` (64 bytes)."""
    if len(challenge) != m.MD5_CHALLENGE_LENGTH:
        raise ValueError(f"an MD5 challenge has {m.MD5_CHALLENGE_LENGTH} bytes, not {len(challenge)}")
    secret = password.encode("utf-8") if isinstance(password, str) else bytes(password)
    secret = secret[:MD5_PASSWORD_LIMIT]
    size = len(secret)
    message = bytearray(128)
    message[0:size] = secret
    message[128 - size : 128] = secret
    message[64 - size : 128 - size] = challenge
    return hashlib.md5(bytes(message)).digest()


def connect_open(session: Session, request) -> None:
    if request.protocol_version != m.PROTOCOL_VERSION:
        raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"protocol version {request.protocol_version}: only 4")
    session.opened = True


def _failed(session: Session, why: str) -> NdmpError:
    session.auth_failures += 1
    log.warning("%s: authentication failed: %s", session.name, why)
    if session.auth_failures >= MAX_AUTH_FAILURES:
        session.closing = True
    return NdmpError(m.Error.NOT_AUTHORIZED_ERR, why)


def _allowed(session: Session, kind: int) -> bool:
    method = session.settings.auth
    if method == "none":
        return True
    if method == "text":
        return kind in (m.AUTH_TEXT, m.AUTH_MD5)  # MD5 proves the same secret without sending it
    return kind == m.AUTH_MD5


def connect_client_auth(session: Session, request) -> None:
    data = request.auth_data
    kind = data.auth_type
    if kind not in (m.AUTH_NONE, m.AUTH_TEXT, m.AUTH_MD5):
        raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"auth type {kind}")
    if not _allowed(session, kind):
        raise _failed(session, f"{m.auth_type.name_of(kind)} authentication is not accepted here")
    users = session.settings.users
    if kind == m.AUTH_NONE:
        user = None
    elif kind == m.AUTH_TEXT:
        user = data.auth_text.auth_id
        expected = users.get(user)
        given = data.auth_text.auth_password.encode("utf-8", "surrogateescape")
        if expected is None or not hmac.compare_digest(given, expected.encode("utf-8")):
            raise _failed(session, f"wrong user or password for {user!r}")
    else:
        user = data.auth_md5.auth_id
        challenge, session.md5_challenge = session.md5_challenge, None  # a challenge is good once
        if challenge is None:
            raise _failed(session, "MD5 without a challenge (CONFIG_GET_AUTH_ATTR first)")
        expected = users.get(user)
        if expected is None or not hmac.compare_digest(
            md5_digest(challenge, expected), data.auth_md5.auth_digest
        ):
            raise _failed(session, f"wrong user or password for {user!r}")
    session.authenticated = True
    session.user = user
    log.info("%s: authenticated%s", session.name, f" as {user}" if user else " (auth none)")


def connect_server_auth(session: Session, request) -> None:
    raise NdmpError(m.Error.NOT_SUPPORTED_ERR, "the server does not authenticate itself")


def connect_close(session: Session, request) -> None:
    session.post(
        m.Message.NOTIFY_CONNECTION_STATUS,
        m.notify_connection_status_post(
            reason=m.SHUTDOWN,
            protocol_version=m.PROTOCOL_VERSION,
            text_reason="closed at the client's request",
        ),
    )
    session.closing = True


HANDLERS = {
    m.Message.CONNECT_OPEN: connect_open,
    m.Message.CONNECT_CLIENT_AUTH: connect_client_auth,
    m.Message.CONNECT_SERVER_AUTH: connect_server_auth,
    m.Message.CONNECT_CLOSE: connect_close,
}
