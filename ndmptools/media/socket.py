"""A dump over a stream socket: NDMP's data connection between the DATA service and a mover.

Writing (a backup) is a byte stream like a pipe: each record goes out in
one sendall, and closing shuts the writing side so the mover sees the end.

Reading (a recover) is a stream too, but in NDMP nothing arrives unless it
is asked for: the DATA side says which bytes it wants (NOTIFY_DATA_READ,
``request(offset, length)``) and a mover sends exactly those. A whole-dump
restore asks once for everything from the start. A direct-access restore
asks record by record, so that a seek (``seek_block``) is a new request
once the bytes asked for before have all come: a mover takes no second
read while one is outstanding.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

from ndmptools.errors import MediaError
from ndmptools.media.base import KiB, MediumBase, NotSupported, Position

EVERYTHING = (1 << 63) - 1  # the length of "all the rest": the mover stops at the end of its tape file


def _describe(err: OSError) -> str:
    return err.strerror or str(err)


class SocketMedium(MediumBase):
    """One dump over ``sock``: mode "w" for a backup, "r" for a recover (see the module)."""

    keeps_records = False
    seek_distance = 1 << 20  # a seek costs a round trip through the DMA: read on through a MiB

    def __init__(
        self,
        sock: socket.socket,
        mode: str,
        name: str = "the NDMP data connection",
        request: Callable[[int, int], None] | None = None,
        paged: bool = False,
    ) -> None:
        self.name = name
        self._sock = sock
        self._mode = mode
        self._request = request
        self._paged = paged and request is not None
        self._position = 0  # bytes from the start of the stream the next read returns
        self._outstanding = 0  # bytes asked for that have not come yet
        self._asked = False
        self._closed = False
        self.bytes_moved = 0  # for DATA_GET_STATE's bytes_processed (read from another thread)

    # -- writing ---------------------------------------------------------------------------

    def write_record(self, record: bytes | memoryview) -> None:
        try:
            self._sock.sendall(record)
        except OSError as err:
            raise MediaError(f"cannot write to {self.name}: {_describe(err)}") from err
        self.bytes_moved += len(record)

    # -- reading ---------------------------------------------------------------------------

    def _ask(self, offset: int, length: int) -> None:
        if self._request is None:
            return  # a peer that sends unasked (a test's plain socket)
        self._request(offset, length)
        self._outstanding = length

    def read_record(self, max_size: int) -> bytes:
        """Up to ``max_size`` bytes (fewer only at the end of the stream); b"" at the end."""
        if not self._asked:
            self._asked = True
            if not self._paged:
                self._ask(0, EVERYTHING)
        if self._paged and self._outstanding == 0:
            self._ask(self._position, max_size)
        if self._request is not None:
            max_size = min(max_size, self._outstanding)
        parts = []
        got = 0
        try:
            while got < max_size:
                chunk = self._sock.recv(max_size - got)
                if not chunk:
                    self._outstanding = 0
                    break
                parts.append(chunk)
                got += len(chunk)
        except OSError as err:
            raise MediaError(f"cannot read {self.name}: {_describe(err)}") from err
        if self._request is not None:
            self._outstanding -= got
        self._position += got
        self.bytes_moved += got
        return b"".join(parts)

    def _drain(self) -> None:
        """Take in what was asked for and not read yet: the mover finishes one read before the next."""
        while self._outstanding > 0:
            if not self.read_record(min(self._outstanding, 1 << 20)):
                break

    def drain_to_end(self, timeout: float = 60.0) -> int:
        """After the dump's end marker: read what the mover still sends until it ends the stream.

        A mover sends its whole tape file (the records after TS_END, their
        padding); closing on it would make it fail its writes. Returns the
        bytes taken; gives up quietly after ``timeout`` seconds of silence.
        """
        taken = 0
        self._sock.settimeout(timeout)
        try:
            while True:
                chunk = self._sock.recv(1 << 16)
                if not chunk:
                    break
                taken += len(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self._sock.settimeout(None)
        return taken

    def seek_block(self, block: int, record_size: int) -> int:
        """Ask for the stream from 1 KiB block ``block`` on (direct access reads ask record by record)."""
        if not self._paged or self._mode != "r":
            raise NotSupported(f"{self.name} is read in order")
        self._drain()
        self._position = block * KiB
        return block

    def tell(self) -> Position:
        return Position(0, self._position // KiB)

    def location(self) -> dict:
        return {"spec": self.name, "file_number": 1}

    # -- the end ---------------------------------------------------------------------------

    def close(self) -> None:
        """The end of the dump (a backup) or of what the restore wanted: the mover sees the stream end."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR if self._mode == "r" else socket.SHUT_WR)
        self._sock.close()

    def abort(self) -> None:
        """A failed backup: the stream ends without its end marker, so no reader takes it for whole."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def stop(self) -> None:
        """From another thread (DATA_ABORT): make the engine's next read or write fail."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
