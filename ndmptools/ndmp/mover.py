"""The MOVER service: moves the data stream between a data connection and the session's tape.

The data connection is always a stream socket: the far end of a socketpair
for LOCAL (DATA of the same session takes the other end with
``local_data_socket``), a TCP connection for TCP (MOVER_LISTEN waits for a
remote DATA to connect, MOVER_CONNECT connects to a DATA that listens).

Mode READ (a backup: the mover reads the connection) cuts the stream into
records of MOVER_SET_RECORD_SIZE bytes and writes them to the tape; mode
WRITE (a recover) reads records from the tape and writes the bytes the DMA
asked for with MOVER_READ to the connection. Stream offsets map to the tape
through the window (MOVER_SET_WINDOW): the window's first byte is the
record the tape was at when the window was set. Reaching the end of the
window pauses the mover (EOW), so does the end of the medium (EOM), a
filemark on reading (EOF) and a MOVER_READ outside the window (SEEK): the
DMA changes tapes or moves the window and says MOVER_CONTINUE.

One thread per active mover does the moving; the connection's thread keeps
answering requests, and the two share state under ``lock``.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import struct
import threading

from ndmptools.errors import MediaError
from ndmptools.media.base import EndOfMedium
from ndmptools.ndmp import messages as m
from ndmptools.ndmp.session import NdmpError
from ndmptools.ndmp.tape import EndOfData, TapeMark

log = logging.getLogger("ndmptools.ndmp")

MAX_RECORD_SIZE = 256 << 10  # the dump format's largest blocking factor: 256 blocks of 1 KiB
DEFAULT_RECORD_SIZE = 10240  # ndmjob's default, -b 20 (twenty 512-byte blocks)
INFINITY = (1 << 64) - 1  # a window length that never ends
CONNECT_TIMEOUT = 30


def _addr_reply(sock: socket.socket) -> object:
    host, port = sock.getsockname()[:2]
    packed = struct.unpack(">I", socket.inet_aton(host))[0]
    return m.addr(m.ADDR_TCP, [m.tcp_addr(ip_addr=packed, port=port, addr_env=[])])


def _ipv4_of(host: str) -> str:
    """NDMP v4 addresses are IPv4: the one to offer for a control connection that came in on ``host``."""
    if ":" not in host:
        return host
    if host == "::1":
        return "127.0.0.1"
    if host.lower().startswith("::ffff:"):
        return host[7:]
    raise NdmpError(m.Error.CONNECT_ERR, f"NDMP v4 data connections are IPv4: no address for {host}")


def tcp_endpoint(address) -> tuple[str, int]:
    """(host, port) of the first TCP address in an ndmp addr; ILLEGAL_ARGS if there is none."""
    if address.addr_type != m.ADDR_TCP or not address.tcp_addr:
        raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, "a TCP address is needed")
    first = address.tcp_addr[0]
    return socket.inet_ntoa(struct.pack(">I", first.ip_addr)), first.port


class Mover:
    """The session's mover."""

    def __init__(self, session) -> None:
        self.session = session
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._reset()
        self.record_size = DEFAULT_RECORD_SIZE
        self.window_offset = 0
        self.window_length = INFINITY
        self._window_file = 0
        self._window_record = 0

    def _reset(self) -> None:
        self.state = m.MOVER_STATE_IDLE
        self.mode = m.MOVER_MODE_NOACTION
        self.pause_reason = m.MOVER_PAUSE_NA
        self.halt_reason = m.MOVER_HALT_NA
        self.record_num = 0
        self.bytes_moved = 0
        self.seek_position = 0
        self.bytes_left_to_read = 0
        self.position = 0  # the stream offset of the next byte to move
        self.listen_type: int | None = None
        self.connection_addr = m.addr(m.ADDR_LOCAL)
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._pending: bytes | bytearray | None = None  # a record the tape (EOM) or window refused

    # -- state changes (called with the lock held) --

    def _halt(self, reason: int) -> None:
        if self.state in (m.MOVER_STATE_HALTED, m.MOVER_STATE_IDLE):
            return
        self.state = m.MOVER_STATE_HALTED
        self.halt_reason = reason
        self.pause_reason = m.MOVER_PAUSE_NA
        self._close_sockets()
        self.changed.notify_all()
        log.info("%s: mover halted (%s)", self.session.name, m.mover_halt_reason.name_of(reason))
        self.session.post(m.Message.NOTIFY_MOVER_HALTED, m.notify_mover_halted_post(reason=reason))

    def _pause(self, reason: int, seek_position: int) -> None:
        self.state = m.MOVER_STATE_PAUSED
        self.pause_reason = reason
        self.seek_position = seek_position
        self.changed.notify_all()
        log.info("%s: mover paused (%s)", self.session.name, m.mover_pause_reason.name_of(reason))
        self.session.post(
            m.Message.NOTIFY_MOVER_PAUSED,
            m.notify_mover_paused_post(reason=reason, seek_position=seek_position),
        )

    def _close_sockets(self) -> None:
        for sock in (self._listener, self._conn):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._listener = self._conn = None

    # -- the seam with DATA --

    def local_data_socket(self) -> socket.socket:
        """DATA_CONNECT LOCAL: the DATA end of a socketpair whose other end this mover uses."""
        with self.lock:
            if self.state != m.MOVER_STATE_LISTEN or self.listen_type != m.ADDR_LOCAL:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "the mover is not listening on LOCAL")
            data_end, mover_end = socket.socketpair()
            self._start(mover_end, m.addr(m.ADDR_LOCAL))
            return data_end

    # -- requests --

    def _check_mode(self, mode: int) -> None:
        if mode not in (m.MOVER_MODE_READ, m.MOVER_MODE_WRITE):
            raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"mover mode {mode}")

    def _check_tape(self, mode: int) -> None:
        device = self.session.tape.device
        if device is None:
            raise NdmpError(m.Error.DEV_NOT_OPEN_ERR, "no tape is open")
        if mode == m.MOVER_MODE_READ and not device.writable:
            raise NdmpError(m.Error.PERMISSION_ERR, "a backup needs the tape open for writing")

    def listen(self, mode: int, addr_type: int) -> object:
        self._check_mode(mode)
        if addr_type not in (m.ADDR_LOCAL, m.ADDR_TCP):
            raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"address type {addr_type}")
        with self.lock:
            if self.state != m.MOVER_STATE_IDLE:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "the mover is not idle")
            self._check_tape(mode)
            if addr_type == m.ADDR_LOCAL:
                reply_addr = m.addr(m.ADDR_LOCAL)
            else:
                host = _ipv4_of(self.session.sock.getsockname()[0])  # where the DMA reached us
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    listener.bind((host, 0))
                    listener.listen(1)
                except OSError as err:
                    listener.close()
                    raise NdmpError(m.Error.CONNECT_ERR, f"cannot listen: {err.strerror}") from None
                self._listener = listener
                reply_addr = _addr_reply(listener)
                threading.Thread(
                    target=self._accept,
                    args=(listener,),
                    name=f"ndmp-mover-accept-{self.session.number}",
                    daemon=True,
                ).start()
            self.mode = mode
            self.listen_type = addr_type
            self.state = m.MOVER_STATE_LISTEN
            self.connection_addr = reply_addr
            return reply_addr

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, peer = listener.accept()
        except OSError:
            return  # closed: the mover was aborted while listening
        with self.lock:
            if self.state != m.MOVER_STATE_LISTEN or self._listener is not listener:
                conn.close()
                return
            listener.close()
            self._listener = None
            host, port = peer[:2]
            address = m.addr(
                m.ADDR_TCP,
                [m.tcp_addr(ip_addr=struct.unpack(">I", socket.inet_aton(host))[0], port=port)],
            )
            self._start(conn, address)

    def connect(self, mode: int, address) -> None:
        self._check_mode(mode)
        if address.addr_type not in (m.ADDR_LOCAL, m.ADDR_TCP):
            raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"address type {address.addr_type}")
        with self.lock:
            if self.state != m.MOVER_STATE_IDLE:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "the mover is not idle")
            self._check_tape(mode)
            if address.addr_type == m.ADDR_LOCAL:
                data = self.session.data
                opener = getattr(data, "local_mover_socket", None)
                if opener is None:
                    raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "DATA is not listening on LOCAL")
                conn = opener()  # DATA's LISTEN LOCAL hands the mover its end of a socketpair
            else:
                host, port = tcp_endpoint(address)
                try:
                    conn = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
                    conn.settimeout(None)
                except OSError as err:
                    raise NdmpError(m.Error.CONNECT_ERR, f"cannot connect to {host}:{port}: {err}") from None
            self.mode = mode
            self._start(conn, address)

    def _start(self, conn: socket.socket, address) -> None:
        """The data connection is up: go ACTIVE and start moving (lock held)."""
        self._conn = conn
        self.connection_addr = address
        self.state = m.MOVER_STATE_ACTIVE
        self.pause_reason = self.halt_reason = m.MOVER_PAUSE_NA
        target = self._backup if self.mode == m.MOVER_MODE_READ else self._recover
        self._thread = threading.Thread(
            target=self._guarded, args=(target, conn), name=f"ndmp-mover-{self.session.number}", daemon=True
        )
        self._thread.start()
        self.changed.notify_all()

    def set_record_size(self, size: int) -> None:
        with self.lock:
            if self.state not in (m.MOVER_STATE_IDLE, m.MOVER_STATE_PAUSED):
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "the record size is set while idle or paused")
            if not 0 < size <= MAX_RECORD_SIZE:
                raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"record size {size}: 1 to {MAX_RECORD_SIZE}")
            self.record_size = size

    def set_window(self, offset: int, length: int) -> None:
        with self.lock:
            if self.state not in (m.MOVER_STATE_IDLE, m.MOVER_STATE_PAUSED):
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "the window is set while idle or paused")
            if offset % self.record_size:
                raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, "the window starts on a record boundary")
            if length != INFINITY and offset + length > INFINITY:
                raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, "the window ends past 2^64")
            self.window_offset = offset
            self.window_length = length
            device = self.session.tape.device
            if device is not None:
                self._window_file = device.file_num
                self._window_record = device.record_num or 0
            if self.state == m.MOVER_STATE_IDLE or self.mode == m.MOVER_MODE_READ:
                self.position = max(self.position, offset)

    def _window_end(self) -> int:
        if self.window_length == INFINITY:
            return INFINITY
        return self.window_offset + self.window_length

    def cont(self) -> None:
        with self.lock:
            if self.state != m.MOVER_STATE_PAUSED:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "the mover is not paused")
            if self.session.tape.device is None:
                raise NdmpError(m.Error.DEV_NOT_OPEN_ERR, "no tape is open to continue on")
            self.state = m.MOVER_STATE_ACTIVE
            self.pause_reason = m.MOVER_PAUSE_NA
            self.changed.notify_all()

    def abort(self) -> None:
        with self.lock:
            if self.state not in (m.MOVER_STATE_LISTEN, m.MOVER_STATE_ACTIVE, m.MOVER_STATE_PAUSED):
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "the mover is neither listening nor moving")
            self._halt(m.MOVER_HALT_ABORTED)

    def stop(self) -> None:
        with self.lock:
            if self.state != m.MOVER_STATE_HALTED:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "the mover stops once halted")
            thread = self._thread
            record_size = self.record_size
            self._reset()
            self.record_size = record_size
            self.window_offset, self.window_length = 0, INFINITY
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def close(self) -> None:
        with self.lock:
            if self.state != m.MOVER_STATE_PAUSED:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "the mover closes its connection when paused")
            self._halt(m.MOVER_HALT_CONNECT_CLOSED)

    def read(self, offset: int, length: int) -> None:
        with self.lock:
            # A DATA that just connected to our TCP listener may be a moment ahead of the accept
            # thread: give it two seconds to make the mover ACTIVE before calling the read illegal.
            self.changed.wait_for(lambda: self.state != m.MOVER_STATE_LISTEN or self._listener is None, 2)
            if self.state != m.MOVER_STATE_ACTIVE or self.mode != m.MOVER_MODE_WRITE:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "MOVER_READ is for an active recover")
            if self.bytes_left_to_read:
                raise NdmpError(m.Error.READ_IN_PROGRESS_ERR, "a read is in progress")
            self.position = offset
            self.bytes_left_to_read = length
            self.changed.notify_all()

    def get_state(self) -> object:
        with self.lock:
            return m.mover_get_state_reply(
                mode=self.mode,
                state=self.state,
                pause_reason=self.pause_reason if self.state == m.MOVER_STATE_PAUSED else m.MOVER_PAUSE_NA,
                halt_reason=self.halt_reason if self.state == m.MOVER_STATE_HALTED else m.MOVER_HALT_NA,
                record_size=self.record_size,
                record_num=self.record_num & 0xFFFFFFFF,
                bytes_moved=self.bytes_moved,
                seek_position=self.seek_position,
                bytes_left_to_read=self.bytes_left_to_read,
                window_offset=self.window_offset,
                window_length=self.window_length,
                data_connection_addr=self.connection_addr,
            )

    def end_session(self) -> None:
        with self.lock:
            if self.state in (m.MOVER_STATE_LISTEN, m.MOVER_STATE_ACTIVE, m.MOVER_STATE_PAUSED):
                self._halt(m.MOVER_HALT_ABORTED)
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    # -- the moving thread --

    def _guarded(self, target, conn: socket.socket) -> None:
        try:
            target(conn)
        except Exception:
            log.exception("%s: the mover failed", self.session.name)
            with self.lock:
                if self._conn is conn:
                    self._halt(m.MOVER_HALT_INTERNAL_ERROR)

    def _wait_active(self, conn: socket.socket) -> bool:
        """Block while paused; False once halted (or the connection was replaced)."""
        with self.lock:
            while self.state == m.MOVER_STATE_PAUSED and self._conn is conn:
                self.changed.wait()
            return self.state == m.MOVER_STATE_ACTIVE and self._conn is conn

    def _fill(self, conn: socket.socket, size: int) -> bytearray:
        """Up to ``size`` bytes: fewer only at the end of the stream (received in place, no joins)."""
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            try:
                count = conn.recv_into(view[got:])
            except OSError:
                count = 0
            if not count:
                break
            got += count
        view.release()
        if got < size:
            del buffer[got:]
        return buffer

    def _backup(self, conn: socket.socket) -> None:
        """Mode READ: the stream, cut into records, onto the tape."""
        tape = self.session.tape
        while self._wait_active(conn):
            with self.lock:
                record = self._pending  # bytes-like: a bytearray from _fill
                size = self.record_size
            if record is None:
                record = self._fill(conn, size)
                if not record:
                    with self.lock:
                        if self._conn is conn:
                            self._halt(m.MOVER_HALT_CONNECT_CLOSED)
                    return
                if len(record) < size:
                    record.extend(bytes(size - len(record)))  # the last record, padded to the full size
            with self.lock:
                if self._conn is not conn or self.state != m.MOVER_STATE_ACTIVE:
                    self._pending = record
                    continue
                if self.position + len(record) > self._window_end():
                    self._pending = record
                    self._pause(m.MOVER_PAUSE_EOW, self.position)
                    continue
            try:
                with tape.lock:
                    device = tape.device
                    if device is None:
                        raise MediaError("the tape was closed")
                    device.write(record)
            except EndOfMedium:
                with self.lock:
                    self._pending = record
                    self._pause(m.MOVER_PAUSE_EOM, self.position)
                continue
            except (MediaError, OSError) as err:
                log.warning("%s: mover: tape write failed: %s", self.session.name, err)
                with self.lock:
                    self._pending = record
                    self._pause(m.MOVER_PAUSE_MEDIA_ERROR, self.position)
                continue
            with self.lock:
                self._pending = None
                self.position += len(record)
                self.bytes_moved += len(record)
                self.record_num += 1

    def _peer_closed(self, conn: socket.socket) -> bool:
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            if readable:
                return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (OSError, ValueError):
            return True
        return False

    def _recover(self, conn: socket.socket) -> None:
        """Mode WRITE: the bytes MOVER_READ asks for, from the tape's records, onto the stream."""
        tape = self.session.tape
        buffered: tuple[int, bytes] | None = None  # (stream offset of the record, its bytes)
        while True:
            with self.lock:
                while self._conn is conn and (
                    self.state == m.MOVER_STATE_PAUSED
                    or (self.state == m.MOVER_STATE_ACTIVE and not self.bytes_left_to_read)
                ):
                    if self.state == m.MOVER_STATE_ACTIVE and self._peer_closed(conn):
                        self._halt(m.MOVER_HALT_CONNECT_CLOSED)
                        return
                    self.changed.wait(timeout=0.2)
                if self._conn is not conn or self.state != m.MOVER_STATE_ACTIVE:
                    return
                want, left, size = self.position, self.bytes_left_to_read, self.record_size
                if not self.window_offset <= want < self._window_end():
                    self._pause(m.MOVER_PAUSE_SEEK, want)
                    buffered = None
                    continue
                first, skip = self._window_file, self._window_record
            index = (want - self.window_offset) // size
            record_start = self.window_offset + index * size
            if buffered is None or buffered[0] != record_start:
                try:
                    with tape.lock:
                        device = tape.device
                        if device is None:
                            raise MediaError("the tape was closed")
                        device.goto(first, skip + index)
                        data = device.read(size)
                except TapeMark:
                    with self.lock:
                        self._pause(m.MOVER_PAUSE_EOF, want)
                    continue
                except EndOfData:
                    with self.lock:
                        self._pause(m.MOVER_PAUSE_EOM, want)
                    continue
                except (MediaError, OSError) as err:
                    log.warning("%s: mover: tape read failed: %s", self.session.name, err)
                    with self.lock:
                        self._pause(m.MOVER_PAUSE_MEDIA_ERROR, want)
                    continue
                buffered = (record_start, data)
                with self.lock:
                    self.record_num += 1
            start = want - buffered[0]
            piece = buffered[1][start : start + left]
            if not piece:
                with self.lock:
                    self._pause(m.MOVER_PAUSE_EOF, want)  # a short record: nothing at this offset
                buffered = None
                continue
            with self.lock:
                # Counted before sending: once DATA has the bytes, the DMA may ask for the next read.
                self.position += len(piece)
                self.bytes_left_to_read -= len(piece)
                self.bytes_moved += len(piece)
            try:
                conn.sendall(piece)
            except OSError:
                with self.lock:
                    if self._conn is conn:
                        self._halt(m.MOVER_HALT_CONNECT_CLOSED)
                return


def _mover(session) -> Mover:
    return session.mover


def mover_get_state(session, request):
    return _mover(session).get_state()


def mover_listen(session, request):
    address = _mover(session).listen(request.mode, request.addr_type)
    return m.mover_listen_reply(connect_addr=address)


def mover_connect(session, request) -> None:
    _mover(session).connect(request.mode, request.addr)


def mover_continue(session, request) -> None:
    _mover(session).cont()


def mover_abort(session, request) -> None:
    _mover(session).abort()


def mover_stop(session, request) -> None:
    _mover(session).stop()


def mover_close(session, request) -> None:
    _mover(session).close()


def mover_set_window(session, request) -> None:
    _mover(session).set_window(request.offset, request.length)


def mover_read(session, request) -> None:
    _mover(session).read(request.offset, request.length)


def mover_set_record_size(session, request) -> None:
    _mover(session).set_record_size(request.len)


HANDLERS = {
    m.Message.MOVER_GET_STATE: mover_get_state,
    m.Message.MOVER_LISTEN: mover_listen,
    m.Message.MOVER_CONNECT: mover_connect,
    m.Message.MOVER_CONTINUE: mover_continue,
    m.Message.MOVER_ABORT: mover_abort,
    m.Message.MOVER_STOP: mover_stop,
    m.Message.MOVER_CLOSE: mover_close,
    m.Message.MOVER_SET_WINDOW: mover_set_window,
    m.Message.MOVER_READ: mover_read,
    m.Message.MOVER_SET_RECORD_SIZE: mover_set_record_size,
}
