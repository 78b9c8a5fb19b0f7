"""The MOVER service: moves the data stream between a data connection and the tape."""

from __future__ import annotations

import socket
import threading

from ndmptools.ndmp import messages as m
from ndmptools.ndmp.session import NdmpError


class Mover:
    """The session's mover; its data connection is always a stream socket (see the seam in docs/ndmp.md)."""

    def __init__(self, session) -> None:
        self.session = session
        self.lock = threading.RLock()
        self.state = m.MOVER_STATE_IDLE
        self.mode = m.MOVER_MODE_NOACTION
        self.listen_type: int | None = None
        self._local_peer: socket.socket | None = None

    def local_data_socket(self) -> socket.socket:
        """DATA_CONNECT LOCAL: the DATA end of a socketpair whose other end this mover uses."""
        with self.lock:
            if self.state != m.MOVER_STATE_LISTEN or self.listen_type != m.ADDR_LOCAL:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "the mover is not listening on LOCAL")
            data_end, mover_end = socket.socketpair()
            self._local_peer = mover_end
            return data_end

    def end_session(self) -> None:
        pass


HANDLERS: dict = {}
