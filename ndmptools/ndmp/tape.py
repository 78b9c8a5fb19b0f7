"""The TAPE service: a tape opened by name (a -f value) and driven record by record.

NDMP v4 asks for exact tape positioning: a read that meets a filemark fails
with EOF_ERR and stays on the near side of it, FSR/BSR stop at filemarks,
BSF ends on the near (beginning-of-tape) side of the mark it crosses, and
every count comes back with its residue. A SIMH .tap file gets all of that
from ``TapImage`` (the same format media/vtape.py reads and writes, so an
image written through NDMP is a virtual tape ``ndmptools restore -f`` reads).
Other -f values go through the media backends (``open_path``): a SCSI drive,
a cartridge library (vtape:DIR), a plain file; they read, write, rewind,
write filemarks and space forward over them, and answer the finer
positioning with NOT_SUPPORTED_ERR.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
from abc import ABC, abstractmethod

from ndmptools.errors import MediaError
from ndmptools.media.base import EndOfMedium, NotSupported, Position
from ndmptools.media.vtape import END_OF_MEDIUM, ERASE_GAP, TAPE_MARK
from ndmptools.ndmp import messages as m
from ndmptools.ndmp.session import NdmpError

log = logging.getLogger("ndmptools.ndmp")

_WORD = struct.Struct("<I")
MAX_TAPE_RECORD = 1 << 20  # the largest TAPE_READ/TAPE_WRITE: a reply must fit the record cap
UNKNOWN = 0xFFFFFFFF  # a position field the tape cannot tell right now


class TapeMark(Exception):
    """A read met a filemark; the tape stays before it."""


class EndOfData(Exception):
    """A read met the end of what was written."""


# -- devices ----------------------------------------------------------------------------------


class TapeDevice(ABC):
    """What the TAPE service and the MOVER need of a tape. Counts return their residue."""

    name = "tape"
    writable = False
    file_num = 0
    record_num: int | None = 0  # None: not known (after spacing back over a filemark)

    @abstractmethod
    def read(self, count: int) -> bytes: ...

    @abstractmethod
    def write(self, data: bytes | memoryview) -> None: ...

    @abstractmethod
    def write_filemarks(self, count: int) -> None: ...

    @abstractmethod
    def rewind(self) -> None: ...

    def fsf(self, count: int) -> int:
        raise NotSupported(f"{self.name} cannot space forward over files")

    def bsf(self, count: int) -> int:
        raise NotSupported(f"{self.name} cannot space back over files")

    def fsr(self, count: int) -> int:
        raise NotSupported(f"{self.name} cannot space over records")

    def bsr(self, count: int) -> int:
        raise NotSupported(f"{self.name} cannot space back over records")

    def space_remaining(self) -> int | None:
        return None

    def goto(self, file_num: int, record: int) -> None:
        """Put the tape before record ``record`` of file ``file_num`` (the mover's seeks)."""
        if self.file_num == file_num and self.record_num == record:
            return
        if self.file_num != file_num or self.record_num is None:
            self.rewind()
            if file_num and self.fsf(file_num):
                raise MediaError(f"{self.name} has no file {file_num}")
        delta = record - (self.record_num or 0)
        if delta > 0:
            if self.fsr(delta):
                raise MediaError(f"{self.name}: no record {record} in file {file_num}")
        elif delta < 0 and self.bsr(-delta):
            raise MediaError(f"{self.name}: cannot go back to record {record}")

    def close(self) -> None:  # noqa: B027 -- a device with nothing to release keeps this
        """Release the device; most have nothing to release."""


class TapImage(TapeDevice):
    """A SIMH .tap file with a tape drive's positioning.

    Frames: a 32-bit little-endian length before and after each record (odd
    lengths padded by a byte), 0 a filemark, 0xFFFFFFFF the end of medium,
    0xFFFFFFFE an erase gap. Writing anywhere ends the tape there, as on a
    real tape: what followed is cut off.
    """

    def __init__(self, path: str, writable: bool, capacity: int | None = None) -> None:
        self.name = path
        self.writable = writable
        self.capacity = capacity
        flags = (os.O_RDWR | os.O_CREAT) if writable else os.O_RDONLY
        self._fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
        self._offset = 0
        self.file_num = 0
        self.record_num = 0
        self._cut = False  # the tape was cut at the offset since the last positioning

    # -- frames --
    def _word(self, offset: int) -> int | None:
        data = os.pread(self._fd, 4, offset)
        return _WORD.unpack(data)[0] if len(data) == 4 else None

    def _ahead(self) -> tuple[str, int]:
        """What follows the offset: ("record", length), ("mark", 0) or ("end", 0); skips erase gaps."""
        while True:
            word = self._word(self._offset)
            if word is None or word == END_OF_MEDIUM:
                return "end", 0
            if word == ERASE_GAP:
                self._offset += 4
                continue
            if word == TAPE_MARK:
                return "mark", 0
            length = word & 0x00FFFFFF
            trailer = self._word(self._offset + 4 + length + (length & 1))
            if trailer != word:
                raise MediaError(f"{self.name}: a damaged record frame at byte {self._offset}")
            return "record", length

    def _behind(self) -> tuple[str, int]:
        """What precedes the offset: ("record", length), ("mark", 0) or ("bot", 0)."""
        while True:
            if self._offset < 4:
                return "bot", 0
            word = self._word(self._offset - 4)
            if word == ERASE_GAP:
                self._offset -= 4
                continue
            if word == TAPE_MARK:
                return "mark", 0
            length = (word or 0) & 0x00FFFFFF
            start = self._offset - 8 - length - (length & 1)
            if start < 0 or self._word(start) != word:
                raise MediaError(f"{self.name}: a damaged record frame before byte {self._offset}")
            return "record", length

    def _moved(self) -> None:
        self._cut = False

    # -- reading --
    def read(self, count: int) -> bytes:
        kind, length = self._ahead()
        if kind == "mark":
            raise TapeMark
        if kind == "end":
            raise EndOfData
        data = os.pread(self._fd, min(length, count), self._offset + 4)
        self._offset += 8 + length + (length & 1)
        if self.record_num is not None:
            self.record_num += 1
        self._moved()
        return data

    # -- writing --
    def _cut_here(self) -> None:
        if not self.writable:
            raise PermissionError(errno.EACCES, "the tape is open for reading")
        if not self._cut:
            os.ftruncate(self._fd, self._offset)
            self._cut = True

    def write(self, data: bytes | memoryview) -> None:
        length = len(data)
        frame = 8 + length + (length & 1)
        if self.capacity is not None and self._offset + frame > self.capacity:
            raise EndOfMedium(f"{self.name}: end of tape ({self.capacity} bytes)")
        self._cut_here()
        word = _WORD.pack(length)
        os.pwritev(self._fd, [word, data, b"\0" if length & 1 else b"", word], self._offset)
        self._offset += frame
        if self.record_num is not None:
            self.record_num += 1

    def write_filemarks(self, count: int) -> None:
        self._cut_here()
        for _ in range(count):
            if self.capacity is not None and self._offset + 4 > self.capacity:
                raise EndOfMedium(f"{self.name}: end of tape ({self.capacity} bytes)")
            os.pwrite(self._fd, _WORD.pack(TAPE_MARK), self._offset)
            self._offset += 4
            self.file_num += 1
            self.record_num = 0

    # -- positioning --
    def rewind(self) -> None:
        self._offset = 0
        self.file_num = 0
        self.record_num = 0
        self._moved()

    def fsr(self, count: int) -> int:
        self._moved()
        while count:
            kind, length = self._ahead()
            if kind != "record":
                break
            self._offset += 8 + length + (length & 1)
            if self.record_num is not None:
                self.record_num += 1
            count -= 1
        return count

    def bsr(self, count: int) -> int:
        self._moved()
        while count:
            kind, length = self._behind()
            if kind != "record":
                self.record_num = 0  # at a filemark or the start: the first record of this file
                break
            self._offset -= 8 + length + (length & 1)
            if self.record_num is not None:
                self.record_num = max(0, self.record_num - 1)
            count -= 1
        if not count and self._behind()[0] != "record":
            self.record_num = 0
        return count

    def fsf(self, count: int) -> int:
        self._moved()
        while count:
            kind, length = self._ahead()
            if kind == "end":
                break
            if kind == "mark":
                self._offset += 4
                self.file_num += 1
                self.record_num = 0
                count -= 1
            else:
                self._offset += 8 + length + (length & 1)
        return count

    def bsf(self, count: int) -> int:
        self._moved()
        while count:
            kind, length = self._behind()
            if kind == "bot":
                self.record_num = 0
                break
            if kind == "mark":
                self._offset -= 4  # now on the beginning-of-tape side of the mark
                self.file_num -= 1
                self.record_num = None  # somewhere at the end of the file before: not counted
                count -= 1
            else:
                self._offset -= 8 + length + (length & 1)
        return count

    def space_remaining(self) -> int | None:
        return None if self.capacity is None else max(0, self.capacity - self._offset)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class MediumDevice(TapeDevice):
    """A media backend (SCSI drive, cartridge library, plain file) behind the TAPE service."""

    def __init__(self, medium, writable: bool) -> None:
        self.medium = medium
        self.name = medium.name
        self.writable = writable

    def _position(self) -> None:
        try:
            where = self.medium.tell()
            self.file_num, self.record_num = where.file_number, where.record_number
        except MediaError:
            self.record_num = None

    def read(self, count: int) -> bytes:
        data = self.medium.read_record(count)
        if not data:
            if not self.medium.keeps_records:
                raise EndOfData
            # The backend has read past the filemark; NDMP v4 leaves the tape before it, so a DMA's
            # FSF that follows lands at the next file: go back to where the read began.
            try:
                if self.record_num is None:
                    raise NotSupported("where the read began is not known")
                self.medium.seek(Position(self.file_num, self.record_num))
            except MediaError:
                self._position()  # it stays past the mark
            raise TapeMark
        if self.record_num is not None:
            self.record_num += 1
        return data

    def write(self, data: bytes | memoryview) -> None:
        if not self.writable:
            raise PermissionError(errno.EACCES, "the tape is open for reading")
        self.medium.write_record(data)
        if self.record_num is not None:
            self.record_num += 1

    def write_filemarks(self, count: int) -> None:
        if not self.writable:
            raise PermissionError(errno.EACCES, "the tape is open for reading")
        self.medium.write_filemark(count)
        self.file_num += count
        self.record_num = 0

    def rewind(self) -> None:
        self.medium.rewind()
        self.file_num, self.record_num = 0, 0

    def fsf(self, count: int) -> int:
        self.medium.space_files(count)
        self._position()
        return 0

    def goto(self, file_num: int, record: int) -> None:
        # A drive locates (rewind, FSF, FSR in the st backend); a library or file seeks. A mover
        # reading on in order is there already: no locate per record.
        if self.file_num == file_num and self.record_num == record:
            return
        self.medium.seek(Position(file_num, record))
        self.file_num, self.record_num = file_num, record

    def close(self) -> None:
        self.medium.close()


# -- opening by name --------------------------------------------------------------------------

_busy_lock = threading.Lock()
_busy: set[str] = set()  # devices open in some session: one session at a time per device


def _device_key(spec: str) -> str:
    path = spec[len("vtape:") :] if spec.startswith("vtape:") else spec
    return os.path.realpath(path)


def open_device(spec: str, writable: bool) -> TapeDevice:
    """The device a TAPE_OPEN names; NdmpError with the NDMP reason when it cannot be had."""
    from ndmptools.media import describe_spec, open_path

    if not spec or spec == "-" or "\0" in spec:
        raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"{spec!r} names no tape")
    kind = describe_spec(spec)
    path = spec[len("vtape:") :] if spec.startswith("vtape:") else spec
    try:
        if path.endswith(".tap"):
            if not writable and not os.path.exists(path):
                raise NdmpError(m.Error.NO_DEVICE_ERR, f"{path} does not exist")
            return TapImage(path, writable)
        if kind == "file" and not writable and not os.path.exists(path):
            raise NdmpError(m.Error.NO_DEVICE_ERR, f"{path} does not exist")
        return MediumDevice(open_path(spec, "w" if writable else "r"), writable)
    except PermissionError as err:
        raise NdmpError(m.Error.PERMISSION_ERR, f"{spec}: {err.strerror}") from None
    except FileNotFoundError as err:
        raise NdmpError(m.Error.NO_DEVICE_ERR, f"{spec}: {err.strerror}") from None
    except OSError as err:
        if err.errno == errno.EBUSY:
            raise NdmpError(m.Error.DEVICE_BUSY_ERR, f"{spec}: busy") from None
        raise NdmpError(m.Error.IO_ERR, f"{spec}: {err.strerror}") from None
    except MediaError as err:
        raise NdmpError(m.Error.NO_DEVICE_ERR, err.message) from None


def media_error_code(err: BaseException) -> int:
    """The NDMP error for a failure of the device."""
    if isinstance(err, EndOfMedium):
        return m.Error.EOM_ERR
    if isinstance(err, NotSupported):
        return m.Error.NOT_SUPPORTED_ERR
    if isinstance(err, PermissionError):
        return m.Error.PERMISSION_ERR
    return m.Error.IO_ERR


# -- the service ------------------------------------------------------------------------------


class Tape:
    """The session's tape: at most one device open at a time, shared with the MOVER."""

    def __init__(self, session) -> None:
        self.session = session
        self.device: TapeDevice | None = None
        self.spec: str | None = None
        self.mode: int | None = None
        self.lock = threading.RLock()  # the mover's thread and the connection's thread share it
        self._key: str | None = None

    def require(self) -> TapeDevice:
        if self.device is None:
            raise NdmpError(m.Error.DEV_NOT_OPEN_ERR, "no tape is open")
        return self.device

    def _mover_busy(self) -> bool:
        mover = self.session.mover
        return mover is not None and mover.state in (m.MOVER_STATE_ACTIVE, m.MOVER_STATE_LISTEN)

    def check_idle_mover(self) -> None:
        """The DMA may work the tape itself only while the mover is not moving data over it."""
        if self._mover_busy():
            raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "the mover is using the tape")

    def open(self, spec: str, mode: int) -> None:
        if mode not in (m.TAPE_READ_MODE, m.TAPE_RDWR_MODE, m.TAPE_RAW_MODE):
            raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"tape open mode {mode}")
        with self.lock:
            if self.device is not None:
                raise NdmpError(m.Error.DEVICE_OPENED_ERR, f"{self.spec} is open")
            key = _device_key(spec)
            with _busy_lock:
                if key in _busy:
                    raise NdmpError(m.Error.DEVICE_BUSY_ERR, f"{spec} is open in another session")
                _busy.add(key)
            try:
                self.device = open_device(spec, writable=mode != m.TAPE_READ_MODE)
            except BaseException:
                with _busy_lock:
                    _busy.discard(key)
                raise
            self.spec, self.mode, self._key = spec, mode, key
        log.info("%s: tape %s open (%s)", self.session.name, spec, m.tape_open_mode.name_of(mode))

    def close(self) -> None:
        with self.lock:
            device = self.require()
            self.device = None
            try:
                device.close()
            finally:
                with _busy_lock:
                    _busy.discard(self._key)
                self._key = None

    def end_session(self) -> None:
        if self.device is not None:
            self.close()


def _tape(session) -> Tape:
    return session.tape


def tape_open(session, request) -> None:
    session.tape.open(request.device, request.mode)


def tape_close(session, request) -> None:
    tape = _tape(session)
    tape.require()
    tape.check_idle_mover()
    tape.close()


def tape_get_state(session, request):
    tape = _tape(session)
    with tape.lock:
        device = tape.require()
        unsupported = m.TAPE_STATE_TOTAL_SPACE_UNS
        remaining = device.space_remaining()
        if remaining is None:
            unsupported |= m.TAPE_STATE_SPACE_REMAIN_UNS
        blockno = device.record_num
        if blockno is None:
            unsupported |= m.TAPE_STATE_BLOCKNO_UNS
            blockno = UNKNOWN
        flags = m.TAPE_STATE_NOREWIND
        if not device.writable:
            flags |= m.TAPE_STATE_WR_PROT
        return m.tape_get_state_reply(
            unsupported=unsupported,
            flags=flags,
            file_num=device.file_num,
            soft_errors=0,
            block_size=0,  # variable: each write is one record
            blockno=blockno,
            space_remain=remaining or 0,
        )


def tape_mtio(session, request):
    tape = _tape(session)
    op, count = request.tape_op, request.count
    if op not in range(8):
        raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"mtio op {op}")
    with tape.lock:
        device = tape.require()
        tape.check_idle_mover()
        resid = 0
        try:
            if op == m.MTIO_FSF:
                resid = device.fsf(count)
            elif op == m.MTIO_BSF:
                resid = device.bsf(count)
            elif op == m.MTIO_FSR:
                resid = device.fsr(count)
            elif op == m.MTIO_BSR:
                resid = device.bsr(count)
            elif op in (m.MTIO_REW, m.MTIO_OFF):
                device.rewind()
            elif op == m.MTIO_EOF:
                if not device.writable:
                    raise NdmpError(m.Error.PERMISSION_ERR, "the tape is open for reading")
                device.write_filemarks(count)
            # TUR: a loaded, open tape is ready
        except NdmpError:
            raise
        except (MediaError, OSError) as err:
            raise NdmpError(media_error_code(err), str(err)) from None
        return m.tape_mtio_reply(resid_count=resid)


def tape_write(session, request):
    tape = _tape(session)
    data = request.data_out
    with tape.lock:
        device = tape.require()
        tape.check_idle_mover()
        if not device.writable:
            raise NdmpError(m.Error.PERMISSION_ERR, "the tape is open for reading")
        if not data:
            return m.tape_write_reply(count=0)  # NDMP v4: a zero-length write succeeds, writing nothing
        if len(data) > MAX_TAPE_RECORD:
            raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"a record of {len(data)} bytes")
        try:
            device.write(data)
        except (MediaError, OSError) as err:
            raise NdmpError(media_error_code(err), str(err)) from None
        return m.tape_write_reply(count=len(data))


def tape_read(session, request):
    tape = _tape(session)
    count = request.count
    with tape.lock:
        device = tape.require()
        tape.check_idle_mover()
        if count > MAX_TAPE_RECORD:
            raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"a read of {count} bytes")
        if count == 0:
            return m.tape_read_reply(data_in=b"")
        try:
            data = device.read(count)
        except TapeMark:
            device.record_num = None  # before the mark: where in the file is not counted
            raise NdmpError(m.Error.EOF_ERR) from None
        except EndOfData:
            raise NdmpError(m.Error.EOM_ERR) from None
        except (MediaError, OSError) as err:
            raise NdmpError(media_error_code(err), str(err)) from None
        return m.tape_read_reply(data_in=data)


def tape_execute_cdb(session, request):
    raise NdmpError(m.Error.NOT_SUPPORTED_ERR, "no SCSI pass-through")


HANDLERS = {
    m.Message.TAPE_OPEN: tape_open,
    m.Message.TAPE_CLOSE: tape_close,
    m.Message.TAPE_GET_STATE: tape_get_state,
    m.Message.TAPE_MTIO: tape_mtio,
    m.Message.TAPE_WRITE: tape_write,
    m.Message.TAPE_READ: tape_read,
    m.Message.TAPE_EXECUTE_CDB: tape_execute_cdb,
}
