"""NDMP messages on a stream socket: RPC record marking around header + body.

Each message is one record of the ONC RPC record marking standard (RFC
5531 section 11): fragments, each after a 4-byte big-endian word whose top
bit says "last fragment" and whose low 31 bits give the fragment's length.
The record is the 24-byte NDMP header followed by the XDR body.

A reader caps the record size: a peer announcing more than the cap gets
``RecordTooLong`` before a byte of it is buffered.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass

from ndmptools.ndmp import messages as m
from ndmptools.ndmp.xdr import Record, XdrError

LAST_FRAGMENT = 0x80000000
_MARK = struct.Struct(">I")
# Large enough for a TAPE_WRITE of the biggest record (256 KiB) and a recover's long name list,
# small enough that a hostile peer cannot make a connection hold much memory.
DEFAULT_MAX_RECORD = 4 << 20
MAX_FRAGMENT_SEND = 1 << 20
RECORD_TIMEOUT = 60.0  # seconds for the rest of a record once its first word has come


class WireError(Exception):
    """The byte stream is not NDMP records: the connection cannot go on."""


class PeerClosed(WireError):
    """The peer closed the connection (cleanly between records, or in the middle of one)."""


class RecordTooLong(WireError):
    """A record longer than the reader's cap."""


class RecordTimeout(WireError):
    """A record that began did not arrive whole in time."""


def _recv_exact(sock: socket.socket, size: int, deadline: float | None = None) -> bytes:
    chunks = []
    left = size
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([sock], [], [], wait)[0]:
                raise RecordTimeout("a record did not arrive whole in time")
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise PeerClosed("the peer closed the connection" + (" mid-record" if size != left else ""))
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_record(
    sock: socket.socket, max_size: int = DEFAULT_MAX_RECORD, record_timeout: float | None = None
) -> bytes:
    """One whole record (all its fragments joined).

    The wait for a record to begin is unbounded (a DMA may be quiet for
    hours); once it has begun, all of it must come within ``record_timeout``
    seconds, so a peer that stops mid-record does not hold its thread forever.
    """
    parts: list[bytes] = []
    total = 0
    deadline = None
    while True:
        (mark,) = _MARK.unpack(_recv_exact(sock, 4, deadline))
        if deadline is None and record_timeout is not None:
            deadline = time.monotonic() + record_timeout
        length = mark & ~LAST_FRAGMENT
        total += length
        if total > max_size:
            raise RecordTooLong(f"a record of more than {max_size} bytes")
        if length:
            parts.append(_recv_exact(sock, length, deadline))
        if mark & LAST_FRAGMENT:
            return b"".join(parts)


def frame(payload: bytes) -> bytes:
    """``payload`` as one record, in fragments of at most MAX_FRAGMENT_SEND bytes."""
    if not payload:
        return _MARK.pack(LAST_FRAGMENT)
    pieces = []
    for start in range(0, len(payload), MAX_FRAGMENT_SEND):
        chunk = payload[start : start + MAX_FRAGMENT_SEND]
        last = start + MAX_FRAGMENT_SEND >= len(payload)
        pieces.append(_MARK.pack(len(chunk) | (LAST_FRAGMENT if last else 0)))
        pieces.append(chunk)
    return b"".join(pieces)


@dataclass
class Incoming:
    """A record split into its header and the undecoded body bytes."""

    header: Record
    body: bytes


def split_record(record: bytes) -> Incoming:
    """Header and body bytes; XdrError when the record is shorter than a header."""
    if len(record) < m.HEADER_SIZE:
        raise XdrError(f"a record of {len(record)} bytes holds no {m.HEADER_SIZE}-byte header")
    return Incoming(m.header.decode(record[: m.HEADER_SIZE]), record[m.HEADER_SIZE :])


def encode_message(
    sequence: int,
    message_type: int,
    code: int,
    body: Record | None,
    body_type=None,
    reply_sequence: int = 0,
    error_code: int = 0,
) -> bytes:
    """Header + body as record payload (not yet framed)."""
    head = m.header.encode(
        m.header(
            sequence=sequence,
            time_stamp=int(time.time()) & 0xFFFFFFFF,
            message_type=message_type,
            message_code=code,
            reply_sequence=reply_sequence,
            error_code=error_code,
        )
    )
    if body is None or body_type is None:
        return head
    return head + body_type.encode(body)
