"""The NDMP v4 server: a listening socket, one thread per connection, the dispatch table.

Why threads: a DMA's session is mostly waiting (on the tape, on the data
stream), the DATA and MOVER services of one session share a socketpair and
state, and a thread costs little. Isolation comes from the loop below: every
record is handled inside a try that turns any failure into an NDMP error
reply (or, for bytes that are no NDMP record at all, a closed connection),
a record is capped in size before it is read, and a Session is reachable
only from its own connection. Nothing one connection sends reaches another.

Dispatch: a request's message number selects a handler
``handler(session, request_body) -> reply_body`` from HANDLERS. Header-level
errors, as ndmjob's own agent sends them (reply header error, no body):
NOT_SUPPORTED_ERR for a message with no handler, NOT_AUTHORIZED_ERR before
CONNECT_CLIENT_AUTH succeeded, XDR_DECODE_ERR for a body that does not
decode. A handler fails a request with ``NdmpError(code)``: the reply body
then carries that code in its error field.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from ndmptools.errors import NdmpToolsError
from ndmptools.ndmp import connect, data, info, mover, tape
from ndmptools.ndmp import messages as m
from ndmptools.ndmp.config import ServeSettings
from ndmptools.ndmp.session import NdmpError, Session
from ndmptools.ndmp.wire import RECORD_TIMEOUT, PeerClosed, WireError, read_record, split_record
from ndmptools.ndmp.xdr import Record, XdrError

log = logging.getLogger("ndmptools.ndmp")

Handler = Callable[[Session, Any], Any]

HANDLERS: dict[int, Handler] = {}
HANDLERS.update(connect.HANDLERS)
HANDLERS.update(info.HANDLERS)
HANDLERS.update(tape.HANDLERS)
HANDLERS.update(mover.HANDLERS)
HANDLERS.update(data.HANDLERS)

# What a client may ask before it has authenticated.
BEFORE_AUTH = {
    m.Message.CONNECT_OPEN,
    m.Message.CONNECT_CLIENT_AUTH,
    m.Message.CONNECT_CLOSE,
    m.Message.CONNECT_SERVER_AUTH,
    m.Message.CONFIG_GET_AUTH_ATTR,
    m.Message.CONFIG_GET_SERVER_INFO,
}


def handle_record(session: Session, record: bytes, handlers: dict[int, Handler] = HANDLERS) -> None:
    """Answer one record. Raises WireError only when the connection must close."""
    try:
        incoming = split_record(record)
    except XdrError as err:
        raise WireError(f"not an NDMP message: {err}") from None
    head = incoming.header
    if head.message_type == m.MESSAGE_REPLY:
        # The server asks nothing that is answered (posts have no reply): a stray reply is noise.
        log.debug("%s: an unexpected reply to %s ignored", session.name, m.message_name(head.message_code))
        return
    if head.message_type != m.MESSAGE_REQUEST:
        session.reply(head, None, m.Error.XDR_DECODE_ERR)
        return
    code = head.message_code
    definition = m.MESSAGES.get(code)
    handler = handlers.get(code)
    if definition is None or definition.post or handler is None:
        session.reply(head, None, m.Error.NOT_SUPPORTED_ERR)
        return
    if not session.authenticated and code not in BEFORE_AUTH:
        session.reply(head, None, m.Error.NOT_AUTHORIZED_ERR)
        return
    if definition.request is not None:
        try:
            body = definition.request.decode(incoming.body)
        except XdrError as err:
            log.debug("%s: %s does not decode: %s", session.name, m.message_name(code), err)
            session.reply(head, None, m.Error.XDR_DECODE_ERR)
            return
    else:
        body = None
    log.debug("%s: %s", session.name, m.message_name(code))
    session.opened = True  # as ndmjob's agent does: a first request other than OPEN implies v4
    session.current_request = head
    try:
        answer = handler(session, body)
    except NdmpError as err:
        log.debug("%s: %s: %s %s", session.name, m.message_name(code), m.error_name(err.code), err.why)
        answer = _error_body(definition, err.code)
    except Exception:
        log.exception("%s: %s failed", session.name, m.message_name(code))
        answer = _error_body(definition, m.Error.UNDEFINED_ERR)
    if definition.reply is None:
        return  # CONNECT_CLOSE: answered by NOTIFY_CONNECTION_STATUS, not a reply
    if answer is None:
        answer = definition.reply()
    try:
        session.reply(head, answer)
    except XdrError:
        log.exception("%s: the reply to %s does not encode", session.name, m.message_name(code))
        session.reply(head, None, m.Error.XDR_ENCODE_ERR)


def _error_body(definition: m.MessageDef, code: int) -> Record | None:
    if definition.reply is None:
        return None
    return definition.reply(error=code)


class NdmpServer:
    """Listens, and runs one Session per connection in its own thread."""

    def __init__(self, settings: ServeSettings, handlers: dict[int, Handler] | None = None) -> None:
        self.settings = settings
        self.handlers = HANDLERS if handlers is None else handlers
        self.listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sessions: dict[int, Session | None] = {}  # None: accepted, its thread not yet running
        self._threads: set[threading.Thread] = set()
        self._counter = 0

    def bind(self) -> tuple[str, int]:
        """Open the listening socket; the address it got (port 0 picks a free port)."""
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.settings.host, self.settings.port))
            listener.listen(16)
        except OSError as err:
            listener.close()
            from ndmptools.ndmp.config import ServeConfigError

            raise ServeConfigError(
                f"cannot listen on {self.settings.host}:{self.settings.port}: {err.strerror}"
            ) from None
        self.listener = listener
        host, port = listener.getsockname()[:2]
        return host, port

    def serve_forever(self) -> None:
        assert self.listener is not None, "bind() first"
        self.listener.settimeout(0.5)  # to notice shutdown()
        while not self._stopping.is_set():
            try:
                sock, peer = self.listener.accept()
            except TimeoutError:
                continue
            except OSError as err:
                if self._stopping.is_set():
                    break
                log.warning("accept failed: %s", err)
                continue
            sock.settimeout(None)
            self._start(sock, peer)
        self.listener.close()

    def _start(self, sock: socket.socket, peer: Any) -> None:
        with self._lock:
            self._counter += 1
            number = self._counter
            cap = self.settings.max_sessions
            full = cap is not None and len(self._sessions) >= cap
            if not full:
                self._sessions[number] = None  # the place is taken now, before the thread runs
        if full:
            why = f"the server's limit of {cap} connections is reached"
            threading.Thread(target=self._refuse, args=(sock, peer, number, why), daemon=True).start()
            return
        # Each connection is a session of the machine's limit (ndmptools sessions), taken at
        # accept so that a burst cannot pass it, and given back when the connection ends.
        try:
            slot = self._take_slot(peer)
        except NdmpToolsError as err:
            with self._lock:
                self._sessions.pop(number, None)
            threading.Thread(target=self._refuse, args=(sock, peer, number, err.message), daemon=True).start()
            return
        thread = threading.Thread(
            target=self._run, args=(sock, peer, number, slot), name=f"ndmp-session-{number}", daemon=True
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _take_slot(self, peer: Any):
        from ndmptools.engine import sessions

        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        return sessions.acquire(
            "ndmp",
            f"NDMP connection from {where}",
            wait=0,
            force=self.settings.force_sessions,
            state_dir=self.settings.state_dir,
        )

    def _refuse(self, sock: socket.socket, peer: Any, number: int, why: str) -> None:
        session = Session(sock, peer, self.settings, number)
        try:
            session.post(
                m.Message.NOTIFY_CONNECTION_STATUS,
                m.notify_connection_status_post(
                    reason=m.REFUSED, protocol_version=m.PROTOCOL_VERSION, text_reason=why
                ),
            )
        except OSError:
            pass  # the client went away first: nothing to tell it
        finally:
            sock.close()
        log.info("session %s from %s refused: %s", number, peer, why)

    def _run(self, sock: socket.socket, peer: Any, number: int, slot=None) -> None:
        session = Session(sock, peer, self.settings, number)
        session.slot = slot
        with self._lock:
            self._sessions[number] = session
        log.info("%s: connected", session.name)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session.post(
                m.Message.NOTIFY_CONNECTION_STATUS,
                m.notify_connection_status_post(
                    reason=m.CONNECTED, protocol_version=m.PROTOCOL_VERSION, text_reason="ndmptools"
                ),
            )
            while not session.closing and not self._stopping.is_set():
                record = read_record(sock, self.settings.max_record, RECORD_TIMEOUT)
                handle_record(session, record, self.handlers)
        except PeerClosed:
            log.info("%s: closed by the client", session.name)
        except WireError as err:
            log.warning("%s: closing: %s", session.name, err)
        except OSError as err:
            log.info("%s: connection lost: %s", session.name, err)
        except Exception:  # a bug: this connection ends, the server and the others go on
            log.exception("%s: internal error, closing the connection", session.name)
        finally:
            session.end()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            if slot is not None:
                slot.release()
            with self._lock:
                self._sessions.pop(number, None)
                self._threads.discard(threading.current_thread())
            log.info("%s: ended", session.name)

    def shutdown(self) -> None:
        """Stop accepting; end the sessions (their services stop, their tapes close)."""
        self._stopping.set()
        with self._lock:
            sessions = [session for session in self._sessions.values() if session is not None]
            threads = list(self._threads)
        for session in sessions:
            with contextlib.suppress(OSError):
                session.sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=10)

    @property
    def session_count(self) -> int:
        with self._lock:
            return len(self._sessions)
