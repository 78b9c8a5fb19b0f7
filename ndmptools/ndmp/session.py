"""One NDMP connection: its socket, its auth state, and the services' state for it.

Every connection has its own Session (and its own thread, see server.py);
nothing in one Session is reachable from another, so a connection that
misbehaves can break only itself. Services keep their state on it:
``session.tape`` (the TAPE service's open medium), ``session.mover`` (the
MOVER), ``session.data`` (the DATA service, set by ndmptools.ndmp.data).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from typing import Any

from ndmptools.ndmp import messages as m
from ndmptools.ndmp.config import ServeSettings
from ndmptools.ndmp.wire import encode_message, frame
from ndmptools.ndmp.xdr import Record

log = logging.getLogger("ndmptools.ndmp")

SEND_TIMEOUT = 120.0  # seconds a client may leave our messages unread before the connection ends


class NdmpError(Exception):
    """A request fails with an NDMP error code: the reply body carries it in its ``error``."""

    def __init__(self, code: int, why: str = "") -> None:
        super().__init__(why or m.error_name(code))
        self.code = code
        self.why = why


class Session:
    """The state of one connection; ``post`` and replies may be sent from any thread."""

    def __init__(self, sock: socket.socket, peer: Any, settings: ServeSettings, number: int) -> None:
        from ndmptools.ndmp.mover import Mover
        from ndmptools.ndmp.tape import Tape

        self.sock = sock
        self.peer = peer
        self.settings = settings
        self.number = number
        self.opened = False  # CONNECT_OPEN seen (or implied by the first other request)
        self.protocol_version = m.PROTOCOL_VERSION
        self.authenticated = settings.auth == "none"
        self.user: str | None = None
        self.md5_challenge: bytes | None = None
        self.closing = False  # CONNECT_CLOSE seen: the server loop ends the connection
        self.auth_failures = 0
        self.current_request: Record | None = None  # the header of the request being handled
        self._send_lock = threading.Lock()
        self._sequence = 0
        self.tape = Tape(self)
        self.mover = Mover(self)
        self.data: Any = None  # the DATA service's state (ndmptools.ndmp.data), made on demand
        self.slot: Any = None  # the engine session slot this connection holds (bytes are counted on it)

    @property
    def name(self) -> str:
        return f"session {self.number} ({self.peer})"

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF or 1
        return self._sequence

    def _send(self, message_type: int, code: int, body, body_type, reply_sequence=0, error_code=0) -> None:
        with self._send_lock:
            payload = encode_message(
                self._next_sequence(), message_type, code, body, body_type, reply_sequence, error_code
            )
            self._send_bounded(frame(payload))

    def _send_bounded(self, data: bytes) -> None:
        """Send it all within SEND_TIMEOUT, or end the connection.

        A peer that stops reading would otherwise block this thread (and a
        mover posting under its lock) for ever, holding a session slot.
        """
        view = memoryview(data)
        deadline = time.monotonic() + SEND_TIMEOUT
        while view:
            try:
                sent = self.sock.send(view, socket.MSG_DONTWAIT)
            except BlockingIOError:
                wait = deadline - time.monotonic()
                if wait <= 0 or not select.select([], [self.sock], [], wait)[1]:
                    with contextlib.suppress(OSError):
                        self.sock.shutdown(socket.SHUT_RDWR)
                    why = f"{self.name}: the client read nothing for {SEND_TIMEOUT:.0f} s"
                    raise TimeoutError(why) from None
                continue
            view = view[sent:]

    def post(self, code: int, body: Record | None = None) -> None:
        """Send a request the client does not answer: NOTIFY_*, LOG_*, FH_* (thread-safe).

        A connection that is gone makes this a no-op: a background mover or
        data thread finishing after the DMA hung up has no one to tell.
        """
        definition = m.MESSAGES[code]
        try:
            self._send(m.MESSAGE_REQUEST, code, body, definition.request)
        except OSError as err:
            log.debug("%s: post %s not sent: %s", self.name, m.message_name(code), err)

    def reply(self, request: Record, body: Record | None, error_code: int = 0) -> None:
        """Answer ``request`` (a header); a header error goes without a body."""
        definition = m.MESSAGES.get(request.message_code)
        body_type = definition.reply if definition and not error_code else None
        self._send(
            m.MESSAGE_REPLY,
            request.message_code,
            body,
            body_type,
            reply_sequence=request.sequence,
            error_code=error_code,
        )

    def log_message(self, text: str, log_type: int = m.LOG_NORMAL) -> None:
        """A LOG_MESSAGE to the DMA (ndmjob prints these)."""
        self.post(
            m.Message.LOG_MESSAGE,
            m.log_message_post(log_type=log_type, message_id=0, entry=text),
        )

    def end(self) -> None:
        """The connection is over: stop what runs for it and release the tape."""
        for name, stop in (("data", self.data), ("mover", self.mover), ("tape", self.tape)):
            if stop is None:
                continue
            try:
                stop.end_session()
            except Exception:  # one service failing to stop must not keep the others running
                log.exception("%s: stopping %s", self.name, name)
