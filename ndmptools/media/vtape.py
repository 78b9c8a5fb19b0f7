"""Virtual tapes in the SIMH .tap format, and libraries of them.

A .tap file is a sequence of records, each framed by its length as a 32-bit
little-endian word before and after the data (odd lengths padded by one
byte); a zero word is a tape mark (filemark), 0xFFFFFFFF marks the end of
the medium, 0xFFFFFFFE an erase gap. A capacity makes a cartridge behave like
a real one at its end: past the early-warning point every write still
succeeds but ``early_warning`` is set, and a record that would cross the
physical end is refused with EndOfMedium.

A library (``vtape:DIR``) is a folder of cartridges loaded in name order:
a dump continues on the next blank cartridge (a new one is made when none is
left), a restore reads them in turn.
"""

from __future__ import annotations

import os
import re
import struct

from ndmptools.errors import MediaError
from ndmptools.media.base import (
    EndOfMedium,
    KiB,
    MediumBase,
    NotSupported,
    Position,
    Prompt,
    RecordTooLarge,
)

TAPE_MARK = 0
END_OF_MEDIUM = 0xFFFFFFFF
ERASE_GAP = 0xFFFFFFFE
BAD_RECORD = 0x80000000
_WORD = struct.Struct("<I")
MiB = 1 << 20


def parse_size(text: str) -> int:
    """``400M``, ``2G``, ``512K`` or plain bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 400M or 2G)")
    return int(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " ")


def early_warning_margin(capacity: int) -> int:
    """Room kept after the early-warning point: a tenth of the tape, at most 32 MiB."""
    return min(capacity // 10, 32 * MiB)


class VirtualTape(MediumBase):
    """One .tap cartridge, opened for reading or writing."""

    keeps_records = True

    def __init__(self, path: str, mode: str, capacity: int | None = None) -> None:
        self.path = path
        self.name = path
        self.mode = mode
        self.capacity = capacity
        self._warn_at = capacity - early_warning_margin(capacity) if capacity else None
        flags = os.O_RDONLY if mode == "r" else os.O_RDWR | os.O_CREAT
        try:
            self._fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise MediaError(f"cannot open virtual tape {path}: {err.strerror}") from err
        self._offset = 0
        self._file = 0
        self._record = 0
        self._file_start = 0  # byte offset of the current tape file's first record
        self._dirty = False  # written since the last positioning: the tape ends here
        self._last_was_record = False
        self.early_warning = False
        self._closed = False

    # -- reading ----------------------------------------------------------------------------

    def _word_at(self, offset: int) -> int | None:
        data = os.pread(self._fd, 4, offset)
        return _WORD.unpack(data)[0] if len(data) == 4 else None

    def read_record(self, max_size: int) -> bytes:
        while True:
            word = self._word_at(self._offset)
            if word is None or word == END_OF_MEDIUM:
                return b""  # end of data: stay here
            if word == ERASE_GAP:
                self._offset += 4
                continue
            if word == TAPE_MARK:
                self._offset += 4
                self._file += 1
                self._record = 0
                self._file_start = self._offset
                return b""
            if word & BAD_RECORD:
                raise MediaError(f"{self.name}: a record marked bad at byte {self._offset}")
            length = word & 0x00FFFFFF
            if length > max_size:
                raise RecordTooLarge(length, max_size)
            data = os.pread(self._fd, length, self._offset + 4)
            padded = length + (length & 1)
            trailer = self._word_at(self._offset + 4 + padded)
            if len(data) < length or trailer != word:
                raise MediaError(f"{self.name}: a damaged record frame at byte {self._offset}")
            self._offset += 8 + padded
            self._record += 1
            return data

    def _skip_record(self) -> int:
        """Step over what is at the offset: 1 a record, 0 a tape mark, -1 the end of data."""
        while True:
            word = self._word_at(self._offset)
            if word is None or word == END_OF_MEDIUM:
                return -1
            if word == ERASE_GAP:
                self._offset += 4
                continue
            if word == TAPE_MARK:
                self._offset += 4
                self._file += 1
                self._record = 0
                self._file_start = self._offset
                return 0
            length = word & 0x00FFFFFF
            self._offset += 8 + length + (length & 1)
            self._record += 1
            return 1

    # -- writing ----------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.mode == "r":
            raise NotSupported(f"{self.name} is open for reading")

    def write_record(self, record: bytes | memoryview) -> None:
        self._check_writable()
        length = len(record)
        frame = 8 + length + (length & 1)
        if self.capacity is not None and self._offset + frame > self.capacity:
            raise EndOfMedium(f"{self.name}: end of tape ({self.capacity} bytes)")
        word = _WORD.pack(length)
        parts = [word, record, b"\0" if length & 1 else b"", word]
        self._cut_here_once()
        try:
            os.pwritev(self._fd, parts, self._offset)
        except OSError as err:
            raise MediaError(f"cannot write {self.name}: {err.strerror}") from err
        self._offset += frame
        self._record += 1
        self._dirty = True
        self._last_was_record = True
        if self._warn_at is not None and self._offset >= self._warn_at:
            self.early_warning = True

    def _cut_here_once(self) -> None:
        """The first write after positioning ends the tape there: older data past it is gone."""
        if not self._dirty:
            os.ftruncate(self._fd, self._offset)
            self._dirty = True

    def write_filemark(self, count: int = 1) -> None:
        self._check_writable()
        self._cut_here_once()
        for _ in range(count):
            os.pwrite(self._fd, _WORD.pack(TAPE_MARK), self._offset)
            self._offset += 4
            self._file += 1
            self._record = 0
            self._file_start = self._offset
        self._dirty = True
        self._last_was_record = False

    def _end_data_here(self) -> None:
        """What follows a write is gone, as on a tape: mark the end of data and cut the file."""
        os.pwrite(self._fd, _WORD.pack(END_OF_MEDIUM), self._offset)
        os.ftruncate(self._fd, self._offset + 4)
        self._dirty = False

    def _finish_writing(self) -> None:
        if self.mode != "r" and (self._dirty or self._last_was_record):
            if self._last_was_record:
                self.write_filemark()  # as the st driver does when a written tape is closed
            self._end_data_here()

    # -- positioning ------------------------------------------------------------------------

    def rewind(self) -> None:
        self._finish_writing()
        self._offset = self._file = self._record = self._file_start = 0
        self.early_warning = False

    def space_files(self, count: int) -> None:
        self._finish_writing()
        if count < 0:
            target = self._file + count
            if target < 0:
                raise MediaError(f"{self.name}: there is no file {target} to go back to")
            self.rewind()
            count = target
        while count > 0:
            step = self._skip_record()
            if step < 0:
                raise MediaError(
                    f"{self.name} holds {self._file} dumps: there is no dump {self._file + count}"
                )
            if step == 0:
                count -= 1

    def seek_end_of_data(self) -> None:
        self._finish_writing()
        while self._skip_record() >= 0:
            pass
        if self._warn_at is not None and self._offset >= self._warn_at:
            self.early_warning = True

    def tell(self) -> Position:
        return Position(self._file, self._record)

    def seek(self, position: Position) -> None:
        self.rewind()
        self.space_files(position.file_number)
        for _ in range(position.record_number):
            if self._skip_record() != 1:
                raise MediaError(
                    f"{self.name}: no record {position.record_number} in file {position.file_number}"
                )

    def seek_block(self, block: int, record_size: int) -> int:
        """Go to a record of the current file: straight there when its records are all one size.

        A dump's records are; the frame found there (its length word, and the
        trailer of the record before) confirms the guess, else the records
        are stepped over one by one from the file's start.
        """
        if self.mode != "r":
            raise NotSupported(f"{self.name} is open for writing")
        per_record = max(1, record_size // KiB)
        record = block // per_record
        frame = 8 + record_size + (record_size & 1)
        guess = self._file_start + record * frame
        if self._word_at(guess) == record_size and (record == 0 or self._word_at(guess - 4) == record_size):
            self._offset, self._record = guess, record
            return record * per_record
        self._offset, self._record = self._file_start, 0
        for _ in range(record):
            if self._skip_record() != 1:
                raise MediaError(f"{self.name}: no record {record} in file {self._file}")
        return record * per_record

    def is_blank(self) -> bool:
        first = self._word_at(0)
        return first is None or first == END_OF_MEDIUM

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._finish_writing()
        finally:
            self._closed = True
            os.close(self._fd)

    def abort(self) -> None:
        # What was written stays, as on a real tape; the end of data goes after it.
        self.close()

    def checkpoint(self) -> dict:
        try:
            os.fsync(self._fd)
        except OSError as err:
            raise MediaError(f"cannot write {self.name}: {err.strerror}") from err
        return {"kind": "vtape", "path": os.path.abspath(self.path), "offset": self._offset}


def _rewrite_end(path: str, offset: int, ending: bytes) -> None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        if offset == 0:
            return  # nothing was ever written there
        raise MediaError(f"the virtual tape {path} is gone") from None
    except OSError as err:
        raise MediaError(f"cannot open virtual tape {path}: {err.strerror}") from err
    try:
        os.ftruncate(fd, offset)
        os.pwrite(fd, ending, offset)
        os.fsync(fd)
    except OSError as err:
        raise MediaError(f"cannot write {path}: {err.strerror}") from err
    finally:
        os.close(fd)


def blank_from(path: str, offset: int) -> None:
    """Erase a cartridge from ``offset`` on (a volume begun and never checkpointed)."""
    _rewrite_end(path, offset, _WORD.pack(END_OF_MEDIUM))


def seal_tap(path: str, offset: int) -> None:
    """End a cartridge's data at ``offset``, after a record: a filemark, then the end of medium.

    What a dump wrote there after its last checkpoint goes; its restart writes it again.
    """
    _rewrite_end(path, offset, _WORD.pack(TAPE_MARK) + _WORD.pack(END_OF_MEDIUM))


class SingleTape(VirtualTape):
    """A lone .tap file: at its end the operator names the next one, if there is a prompt."""

    def __init__(self, path: str, mode: str, capacity: int | None = None, prompt: Prompt | None = None):
        super().__init__(path, mode, capacity)
        self.prompt = prompt

    def next_volume(self, volume: int, description: str) -> bool:
        if self.prompt is None:
            return False
        path = self.prompt(
            f"Volume {volume} of {description} is needed: the .tap file for it (nothing to stop): "
        )
        if not path:
            return False
        self.close()
        VirtualTape.__init__(self, path, self.mode, self.capacity)
        return True


class VirtualLibrary(MediumBase):
    """A folder of .tap cartridges, loaded in turn like a changer would."""

    keeps_records = True

    def __init__(
        self,
        directory: str,
        mode: str,
        capacity: int | None = None,
        *,
        start: str | None = None,
        append: bool = False,
    ) -> None:
        self.directory = directory
        self.mode = mode
        self.capacity = capacity
        if mode == "r" and not os.path.isdir(directory):
            raise MediaError(f"no virtual tape library at {directory}")
        os.makedirs(directory, exist_ok=True)
        names = self.cartridges()
        if start is not None:
            first = start
        elif mode == "r":
            if not names:
                raise MediaError(f"the virtual tape library {directory} has no cartridges")
            first = names[0]
        elif append:
            used = [n for n in names if not self._blank(n)]
            first = used[-1] if used else self._blank_or_new(None)
        else:
            first = self._blank_or_new(None)
        self.tape = VirtualTape(os.path.join(directory, first), mode, capacity)
        self.current = first
        if mode == "w" and append:
            self.tape.seek_end_of_data()

    @property
    def name(self) -> str:
        return f"vtape:{self.tape.path}"

    @property
    def early_warning(self) -> bool:
        return self.tape.early_warning

    def cartridges(self) -> list[str]:
        return sorted(n for n in os.listdir(self.directory) if n.endswith(".tap"))

    def _blank(self, name: str) -> bool:
        path = os.path.join(self.directory, name)
        if os.path.getsize(path) == 0:
            return True
        with open(path, "rb") as f:
            return f.read(4) == _WORD.pack(END_OF_MEDIUM)

    def _blank_or_new(self, after: str | None) -> str:
        for name in self.cartridges():
            if (after is None or name > after) and self._blank(name):
                return name
        numbers = [int(n[:-4]) for n in self.cartridges() if n[:-4].isdigit()]
        return f"{max(numbers, default=0) + 1:06d}.tap"

    def next_volume(self, volume: int, description: str) -> bool:
        self.tape.close()
        if self.mode == "r":
            later = [n for n in self.cartridges() if n > self.current]
            if not later:
                return False
            self.current = later[0]
        else:
            self.current = self._blank_or_new(self.current)
        self.tape = VirtualTape(os.path.join(self.directory, self.current), self.mode, self.capacity)
        return True

    def location(self) -> dict:
        path = os.path.abspath(self.tape.path)
        return {"spec": f"vtape:{path}", "file_number": self.tape.tell().file_number + 1}

    # Everything else is the loaded cartridge's.
    def read_record(self, max_size: int) -> bytes:
        return self.tape.read_record(max_size)

    def write_record(self, record) -> None:
        self.tape.write_record(record)

    def write_filemark(self, count: int = 1) -> None:
        self.tape.write_filemark(count)

    def rewind(self) -> None:
        self.tape.rewind()

    def space_files(self, count: int) -> None:
        self.tape.space_files(count)

    def seek_end_of_data(self) -> None:
        self.tape.seek_end_of_data()

    def tell(self) -> Position:
        return self.tape.tell()

    def seek(self, position: Position) -> None:
        self.tape.seek(position)

    def seek_block(self, block: int, record_size: int) -> int:
        return self.tape.seek_block(block, record_size)

    def close(self) -> None:
        self.tape.close()

    def checkpoint(self) -> dict:
        return self.tape.checkpoint()
