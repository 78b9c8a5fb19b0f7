"""A fake Linux st driver, behind the one seam the st backend has (TapeOps).

No tape drive exists here, so this plays the driver's part at the system-call
level: variable-block records, filemarks (a read returns 0 bytes, two in a row
at the end of data), ENOMEM for a read buffer smaller than the record, the
early-warning point (the write that crosses it succeeds and sets GMT_EOT, the
next is refused with ENOSPC, then they alternate until the physical end),
write protection, an empty drive, a busy drive, MTIOCGET/MTIOCTOP, and SG_IO
for READ BLOCK LIMITS. Everything above the seam is the real backend.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field

from ndmptools.media import st

FILEMARK = None


@dataclass
class FakeCartridge:
    capacity: int | None = None  # bytes of records the cartridge holds
    early_warning_at: int | None = None  # bytes after which GMT_EOT is set
    write_protected: bool = False
    items: list = field(default_factory=list)  # records (bytes) and filemarks (None)

    def used_before(self, index: int) -> int:
        return sum(len(i) for i in self.items[:index] if i is not None)


class FakeStDriver(st.TapeOps):
    """One drive; ``shelf`` holds the cartridges an operator loads in turn."""

    def __init__(
        self,
        loaded: FakeCartridge | None = None,
        *,
        shelf: list[FakeCartridge] | None = None,
        max_block: int = 256 * 1024,
        busy: bool = False,
        locate: bool = True,
    ) -> None:
        self.loaded = loaded
        self.shelf = list(shelf or [])
        self.unloaded: list[FakeCartridge] = []
        self.max_block = max_block
        self.busy = busy
        self.locate = locate  # MTIOCPOS and MTSEEK work (most drives); off: only record spacing
        self.pos = 0  # index into loaded.items
        self.open_fd: int | None = None
        self.last_was_write = False
        self.zero_reads = 0
        self.past_warning_refused = False  # the ENOSPC/allowed alternation past early warning
        self.calls: list[str] = []

    # -- the operator ------------------------------------------------------------------------------

    def load_next(self, _message: str = "") -> str | None:
        """What a prompt answers after putting the next cartridge from the shelf in the drive."""
        if not self.shelf:
            return None
        self.loaded = self.shelf.pop(0)
        self.pos = 0
        return ""

    # -- system calls --------------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        self.calls.append("open")
        if self.busy:
            raise OSError(errno.EBUSY, "Device or resource busy")
        if self.loaded is None and not flags & os.O_NONBLOCK:
            raise OSError(errno.EIO, "Input/output error")
        self.open_fd = 1000
        self.zero_reads = 0
        return self.open_fd

    def close(self, fd: int) -> None:
        if self.last_was_write:
            self._write_filemarks(1)  # the driver ends a written tape with a filemark
        self.open_fd = None

    def read(self, fd: int, size: int) -> bytes:
        if self.loaded is None:
            raise OSError(errno.EIO, "Input/output error")
        self.last_was_write = False
        items = self.loaded.items
        if self.pos >= len(items):
            self.zero_reads += 1
            if self.zero_reads > 2:
                raise OSError(errno.EIO, "Input/output error")
            return b""
        item = items[self.pos]
        self.pos += 1
        if item is FILEMARK:
            self.zero_reads += 1
            return b""
        self.zero_reads = 0
        if len(item) > size:
            raise OSError(errno.ENOMEM, "Cannot allocate memory")
        return item

    def write(self, fd: int, data) -> int:
        tape = self.loaded
        if tape is None:
            raise OSError(errno.EIO, "Input/output error")
        if tape.write_protected:
            raise OSError(errno.EACCES, "Permission denied")
        if len(data) > self.max_block:
            raise OSError(errno.EINVAL, "Invalid argument")
        used = tape.used_before(self.pos)
        if tape.capacity is not None and used + len(data) > tape.capacity:
            raise OSError(errno.ENOSPC, "No space left on device")
        if tape.early_warning_at is not None and used >= tape.early_warning_at:
            self.past_warning_refused = not self.past_warning_refused
            if self.past_warning_refused:
                raise OSError(errno.ENOSPC, "No space left on device")
        del tape.items[self.pos :]
        tape.items.append(bytes(data))
        self.pos += 1
        self.last_was_write = True
        return len(data)

    def ioctl(self, fd: int, request: int, arg: bytearray) -> None:
        if request == st.MTIOCTOP:
            op, count = st.MTOP.unpack(bytes(arg))
            self.calls.append(f"op{op}:{count}")
            self._operation(op, count)
        elif request == st.MTIOCGET:
            arg[:] = st.MTGET.pack(0x72, 0, 0, self._gstat(), 0, *self._file_and_block())
        elif request == st.MTIOCPOS and self.locate:
            self.calls.append("tell")
            arg[:] = st.MTPOS.pack(self.pos)  # SCSI logical objects: records and filemarks alike
        elif request == st.SG_IO:
            self._sg_io(arg)
        else:
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    # -- the driver's inside ------------------------------------------------------------------------

    def _gstat(self) -> int:
        tape = self.loaded
        if tape is None:
            return st.GMT_DR_OPEN
        status = st.GMT_ONLINE
        if tape.write_protected:
            status |= st.GMT_WR_PROT
        if self.pos == 0:
            status |= st.GMT_BOT
        if tape.early_warning_at is not None and tape.used_before(self.pos) >= tape.early_warning_at:
            status |= st.GMT_EOT
        return status

    def _file_and_block(self) -> tuple[int, int]:
        items = self.loaded.items if self.loaded else []
        file_number = block = 0
        for item in items[: self.pos]:
            if item is FILEMARK:
                file_number, block = file_number + 1, 0
            else:
                block += 1
        return file_number, block

    def _write_filemarks(self, count: int) -> None:
        tape = self.loaded
        del tape.items[self.pos :]
        tape.items.extend([FILEMARK] * count)
        self.pos += count
        self.last_was_write = False

    def _operation(self, op: int, count: int) -> None:
        tape = self.loaded
        if op in (st.MTSETBLK, st.MTNOP):
            return
        if tape is None:
            raise OSError(errno.EIO, "Input/output error")
        if op == st.MTWEOF:
            if tape.write_protected:
                raise OSError(errno.EACCES, "Permission denied")
            self._write_filemarks(count)
            return
        if self.last_was_write and op in (st.MTREW, st.MTOFFL, st.MTBSF):
            self._write_filemarks(1)
        self.last_was_write = False
        self.past_warning_refused = False
        if op == st.MTREW:
            self.pos = 0
        elif op == st.MTOFFL:
            self.pos = 0
            self.unloaded.append(tape)
            self.loaded = None
        elif op == st.MTFSF:
            for _ in range(count):
                while self.pos < len(tape.items) and tape.items[self.pos] is not FILEMARK:
                    self.pos += 1
                if self.pos >= len(tape.items):
                    raise OSError(errno.EIO, "Input/output error")
                self.pos += 1
        elif op == st.MTBSF:
            for _ in range(count):
                self.pos -= 1
                while self.pos >= 0 and tape.items[self.pos] is not FILEMARK:
                    self.pos -= 1
                if self.pos < 0:
                    self.pos = 0
                    raise OSError(errno.EIO, "Input/output error")
        elif op == st.MTFSR:
            self.pos = min(self.pos + count, len(tape.items))
        elif op == st.MTBSR:
            self.pos = max(self.pos - count, 0)
        elif op == st.MTEOM:
            self.pos = len(tape.items)
        elif op == st.MTSEEK and self.locate:
            if not 0 <= count <= len(tape.items):
                raise OSError(errno.EIO, "Input/output error")
            self.pos = count
        else:
            raise OSError(errno.EINVAL, "Invalid argument")

    def _sg_io(self, arg: bytearray) -> None:
        header = st.SgIoHeader.from_buffer(arg)
        command = ctypes.string_at(header.cmdp, header.cmd_len)
        if command[0] != st.READ_BLOCK_LIMITS[0]:
            raise OSError(errno.EINVAL, "Invalid argument")
        reply = bytes([0]) + self.max_block.to_bytes(3, "big") + (1).to_bytes(2, "big")
        ctypes.memmove(header.dxferp, reply, min(len(reply), header.dxfer_len))
        header.status = header.host_status = header.driver_status = 0
