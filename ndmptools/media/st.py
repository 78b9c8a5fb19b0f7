"""Linux SCSI tape drives (/dev/nstN) through the st driver's ioctls.

Variable block mode: each write() is one record on tape, each read() returns
one. The early-warning point sets GMT_EOT in MTIOCGET after the write that
crossed it; a write refused with ENOSPC did not reach the tape and goes on
the next volume. Every system call goes through TapeOps, the one seam a
test replaces with a fake that behaves like the st driver.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
import time

from ndmptools.errors import MediaError
from ndmptools.media.base import EndOfMedium, KiB, MediumBase, NotSupported, Position, Prompt, RecordTooLarge

# <linux/mtio.h>
MTIOCTOP = 0x40086D01  # _IOW('m', 1, struct mtop)
MTIOCGET = 0x80306D02  # _IOR('m', 2, struct mtget)
MTIOCPOS = 0x80086D03  # _IOR('m', 3, struct mtpos)
MTFSF, MTBSF, MTFSR, MTBSR, MTWEOF, MTREW, MTOFFL, MTNOP = 1, 2, 3, 4, 5, 6, 7, 8
MTEOM, MTSETBLK, MTSEEK, MTLOAD = 12, 20, 22, 30
GMT_EOF, GMT_BOT, GMT_EOT = 0x80000000, 0x40000000, 0x20000000
GMT_EOD, GMT_WR_PROT, GMT_ONLINE, GMT_DR_OPEN = 0x08000000, 0x04000000, 0x01000000, 0x00040000

MTOP = struct.Struct("@hi")  # struct mtop {short mt_op; int mt_count;}: native layout, 8 bytes
MTGET = struct.Struct("@lllllii")  # type, resid, dsreg, gstat, erreg, fileno, blkno: 48 bytes
MTPOS = struct.Struct("@l")

# <scsi/sg.h>
SG_IO = 0x2285
SG_DXFER_FROM_DEV = -3
READ_BLOCK_LIMITS = bytes([0x05, 0, 0, 0, 0, 0])


class SgIoHeader(ctypes.Structure):
    _fields_ = [
        ("interface_id", ctypes.c_int),
        ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort),
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),
        ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort),
        ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    ]


class TapeOps:
    """The system calls the st backend makes, and nothing else: the seam for tests."""

    def open(self, path: str, flags: int) -> int:
        return os.open(path, flags)

    def close(self, fd: int) -> None:
        os.close(fd)

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def ioctl(self, fd: int, request: int, arg: bytearray) -> None:
        fcntl.ioctl(fd, request, arg, True)


def _status_text(path: str, err: OSError, writing: bool) -> str:
    if err.errno == errno.EBUSY:
        return f"the drive {path} is busy: another program has it open"
    if err.errno in (errno.ENOMEDIUM, errno.EIO):
        return f"there is no tape in {path} (or the drive is not ready)"
    if err.errno in (errno.EROFS, errno.EACCES) and writing:
        return f"the tape in {path} is write-protected"
    if err.errno in (errno.ENOENT, errno.ENXIO, errno.ENODEV):
        return f"there is no tape drive at {path}"
    return f"{path}: {err.strerror}"


class ScsiTape(MediumBase):
    """A tape drive: one record per read and write, filemarks, positions, volumes."""

    keeps_records = True
    READY_WAIT_SECONDS = 120
    seek_distance = 64 << 20  # a locate takes seconds: tens of MB stream by faster

    def __init__(
        self,
        path: str,
        mode: str,
        *,
        ops: TapeOps | None = None,
        prompt: Prompt | None = None,
        host_limit: int | None = None,
    ) -> None:
        self.path = path
        self.name = path
        self.mode = mode
        self.ops = ops or TapeOps()
        self.prompt = prompt
        self.host_limit = host_limit
        self.early_warning = False
        self._fd: int | None = None
        self._zero_reads = 0
        self._open()

    # -- opening ------------------------------------------------------------------------------

    def _open(self) -> None:
        flags = (os.O_RDONLY if self.mode == "r" else os.O_RDWR) | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            self._fd = self.ops.open(self.path, flags)
        except OSError as err:
            raise MediaError(_status_text(self.path, err, self.mode != "r")) from None
        gstat = self._status()[3]
        if gstat & GMT_DR_OPEN or not gstat & GMT_ONLINE:
            self._release()
            raise MediaError(f"there is no tape in {self.path} (or the drive is not ready)")
        if self.mode != "r" and gstat & GMT_WR_PROT:
            self._release()
            raise MediaError(f"the tape in {self.path} is write-protected")
        self._op(MTSETBLK, 0)  # variable block mode: a write is a record
        self.max_record_size = self._block_limit()
        self.early_warning = False

    def _release(self) -> None:
        if self._fd is not None:
            try:
                self.ops.close(self._fd)
            finally:
                self._fd = None

    def _block_limit(self) -> int | None:
        """The largest record: the drive's READ BLOCK LIMITS, within what the host adapter moves."""
        header = SgIoHeader()
        data = (ctypes.c_ubyte * 6)()
        command = (ctypes.c_ubyte * 6)(*READ_BLOCK_LIMITS)
        sense = (ctypes.c_ubyte * 32)()
        header.interface_id = ord("S")
        header.dxfer_direction = SG_DXFER_FROM_DEV
        header.cmd_len = 6
        header.mx_sb_len = 32
        header.dxfer_len = 6
        header.dxferp = ctypes.addressof(data)
        header.cmdp = ctypes.addressof(command)
        header.sbp = ctypes.addressof(sense)
        header.timeout = 30_000
        buffer = bytearray(bytes(header))
        drive = None
        try:
            self.ops.ioctl(self._fd, SG_IO, buffer)
            done = SgIoHeader.from_buffer_copy(buffer)
            if done.status == 0 and done.host_status == 0 and done.driver_status == 0:
                drive = int.from_bytes(bytes(data[1:4]), "big") or None
        except OSError:
            pass  # an adapter that passes no SCSI commands: only the host limit is known
        limits = [x for x in (drive, self.host_limit) if x]
        return min(limits) if limits else None

    # -- ioctls -------------------------------------------------------------------------------

    def _op(self, op: int, count: int = 1) -> None:
        buffer = bytearray(MTOP.pack(op, count))
        try:
            self.ops.ioctl(self._fd, MTIOCTOP, buffer)
        except OSError as err:
            raise MediaError(f"{self.path}: tape operation {op} failed: {err.strerror}") from None

    def _status(self) -> tuple[int, ...]:
        buffer = bytearray(MTGET.size)
        try:
            self.ops.ioctl(self._fd, MTIOCGET, buffer)
        except OSError as err:
            raise MediaError(f"{self.path}: cannot read the drive status: {err.strerror}") from None
        return MTGET.unpack(buffer)

    # -- records ------------------------------------------------------------------------------

    def write_record(self, record: bytes | memoryview) -> None:
        try:
            written = self.ops.write(self._fd, record)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                self.early_warning = True
                raise EndOfMedium(f"{self.path}: end of tape") from None
            if err.errno in (errno.EACCES, errno.EROFS):
                raise MediaError(f"the tape in {self.path} is write-protected") from None
            if err.errno == errno.EINVAL and self.max_record_size and len(record) > self.max_record_size:
                limit = self.max_record_size // KiB
                raise MediaError(f"{self.path} takes records of at most {limit} KiB") from None
            raise MediaError(f"cannot write to {self.path}: {err.strerror}") from None
        if written != len(record):
            raise EndOfMedium(f"{self.path}: end of tape in the middle of a record")
        if self._status()[3] & GMT_EOT:
            self.early_warning = True

    def read_record(self, max_size: int) -> bytes:
        try:
            data = self.ops.read(self._fd, max_size)
        except OSError as err:
            if err.errno == errno.ENOMEM:
                raise RecordTooLarge(self._size_of_next_record(max_size), max_size) from None
            if err.errno == errno.EIO and self._zero_reads:
                return b""  # past the end of data
            raise MediaError(f"cannot read {self.path}: {err.strerror}") from None
        self._zero_reads = 0 if data else self._zero_reads + 1
        return data

    def _size_of_next_record(self, tried: int) -> int | None:
        """How large the record that did not fit is, read again into the drive's largest buffer."""
        if not self.max_record_size or self.max_record_size <= tried:
            return None
        try:
            self._op(MTBSR, 1)
            return len(self.ops.read(self._fd, self.max_record_size))
        except (OSError, MediaError):
            return None

    def write_filemark(self, count: int = 1) -> None:
        self._op(MTWEOF, count)

    # -- position -----------------------------------------------------------------------------

    def rewind(self) -> None:
        self._op(MTREW)
        self.early_warning = False

    def space_files(self, count: int) -> None:
        if count > 0:
            self._op(MTFSF, count)
        elif count < 0:
            here = self.tell()
            if here.file_number + count < 0:
                raise MediaError(f"{self.path}: there is no file {here.file_number + count} to go back to")
            self.seek(Position(here.file_number + count, 0))

    def seek_end_of_data(self) -> None:
        self._op(MTEOM)
        if self._status()[3] & GMT_EOT:
            self.early_warning = True

    def tell(self) -> Position:
        status = self._status()
        if status[5] < 0 or status[6] < 0:
            raise NotSupported(f"{self.path} lost track of its position")
        return Position(status[5], status[6])

    def seek(self, position: Position) -> None:
        self.rewind()
        if position.file_number:
            self._op(MTFSF, position.file_number)
        if position.record_number:
            self._op(MTFSR, position.record_number)

    def seek_block(self, block: int, record_size: int) -> int:
        """Locate the record within the current file: MTSEEK when the drive says where it is
        (MTIOCPOS), else spacing records forward or back from the record it is at."""
        per_record = max(1, record_size // KiB)
        record = block // per_record
        here = self._status()[6]  # mt_blkno: the record number within the current file
        if here < 0:
            raise NotSupported(f"{self.path} lost track of its position")
        delta = record - here
        if delta:
            try:
                position = bytearray(MTPOS.size)
                self.ops.ioctl(self._fd, MTIOCPOS, position)
                (logical,) = MTPOS.unpack(position)
                self._op(MTSEEK, logical + delta)
            except (OSError, MediaError):
                self._op(MTFSR if delta > 0 else MTBSR, abs(delta))
        return record * per_record

    # -- volumes ------------------------------------------------------------------------------

    def next_volume(self, volume: int, description: str) -> bool:
        """Unload, then ask the operator for the next tape and wait until the drive has it."""
        if self.prompt is None:
            return False
        self._op(MTOFFL)
        self._release()
        problem = ""
        while True:
            answer = self.prompt(
                f"{problem}Insert volume {volume} of {description} into {self.path}, "
                "then press Enter (q to stop): "
            )
            if answer is None or answer.strip().lower() in ("q", "quit"):
                return False
            deadline = time.monotonic() + self.READY_WAIT_SECONDS
            while True:
                try:
                    self._open()
                    return True
                except MediaError as err:
                    if "no tape" not in err.message or time.monotonic() > deadline:
                        problem = f"{err.message}. "
                        break
                    time.sleep(2)

    def checkpoint(self) -> dict:
        self._op(MTWEOF, 0)  # no filemark: the drive writes out what it buffers
        return {"kind": "tape", "name": self.path}

    def close(self) -> None:
        # Closing a drive written to makes the st driver write the final filemark.
        self._release()
