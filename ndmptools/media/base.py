"""The Medium protocol: what the engine may ask of any place that holds dumps.

Records go in and out one at a time; a tape also has filemarks between dumps,
a position (file number, record number), an end-of-tape warning before its
physical end, and a next volume. The engine talks to this protocol only, so a
plain file, a virtual tape, a cartridge library and a SCSI drive look alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from ndmptools.errors import MediaError

KiB = 1024


@dataclass(frozen=True, order=True)
class Position:
    """Where a tape is: the file (dump) number from the beginning, and the record within it."""

    file_number: int
    record_number: int


class EndOfMedium(MediaError):
    """The record could not be written: the medium is full. It goes on the next volume."""


class RecordTooLarge(MediaError):
    """A record on the medium is larger than the buffer (or drive) reading it can hold."""

    def __init__(self, record_size: int | None, limit: int, who: str = "this reader") -> None:
        size = f"{record_size // KiB} KiB" if record_size else "larger than that"
        super().__init__(
            f"the medium holds records of {size} but {who} takes at most {limit // KiB} KiB per "
            f"record: restore on a system that supports the dump's blocking factor"
        )
        self.record_size = record_size
        self.limit = limit


class NotSupported(MediaError):
    """The backend has no such operation (a plain file has no filemarks)."""


# Asks the operator for the next volume: the message says which; the answer is a path or
# an empty string to go on with what is now loaded, None to stop.
Prompt = Callable[[str], "str | None"]


class Medium(Protocol):
    """A place that holds dumps: a file, a virtual tape or library, or a tape drive.

    ``keeps_records``: every read returns exactly one record as it was written
    (a tape); a file or pipe is a byte stream instead.
    """

    name: str
    keeps_records: bool
    size_hint: int | None  # bytes there are to read, when the backend knows (for progress)
    max_record_size: int | None  # the largest record the device takes; None: no limit
    seek_distance: int  # bytes ahead that are cheaper to read on through than to seek over
    early_warning: bool  # the last write passed the end-of-tape warning: change volume soon

    def write_record(self, record: bytes | memoryview) -> None:
        """Write one whole record in one write; EndOfMedium if it did not fit."""

    def read_record(self, max_size: int) -> bytes:
        """One record (a tape) or up to ``max_size`` bytes (a stream); b"" at a filemark or the end."""

    def write_filemark(self, count: int = 1) -> None:
        """End the current tape file (a dump); a plain file ignores it."""

    def rewind(self) -> None: ...

    def space_files(self, count: int) -> None:
        """Forward past ``count`` filemarks; back (count < 0) to the start of the file -count before."""

    def seek_end_of_data(self) -> None:
        """After the last filemark: where the next dump is appended."""

    def tell(self) -> Position: ...

    def seek(self, position: Position) -> None: ...

    def seek_block(self, block: int, record_size: int) -> int:
        """Go to the record of the current dump (tape file) that holds 1 KiB block ``block``.

        Records are ``record_size`` bytes from the dump's start on this volume.
        Returns the block the next read begins with (the record's first block,
        on a tape). NotSupported where the medium cannot seek (a pipe).
        """

    def next_volume(self, volume: int, description: str) -> bool:
        """Unload this volume and load volume number ``volume``; False when there is none."""

    def location(self) -> dict:
        """Where the medium is now, to find it again: the -f value and the dump number (1 = first)."""

    def close(self) -> None:
        """Finish normally: flush and keep what was written."""

    def abort(self) -> None:
        """Finish after a failure: discard what can be discarded."""

    def __enter__(self) -> Medium: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class MediumBase:
    """Defaults for backends: no filemarks or positions unless they say otherwise."""

    name = "medium"
    keeps_records = False
    size_hint: int | None = None
    max_record_size: int | None = None
    seek_distance = 64 << 10  # files and virtual tapes seek for nothing: read on only within a chunk
    early_warning = False

    def write_filemark(self, count: int = 1) -> None:
        pass  # one dump per file: the end of the file is its end

    def rewind(self) -> None:
        raise NotSupported(f"{self.name} cannot be rewound")

    def space_files(self, count: int) -> None:
        if count:
            raise NotSupported(f"{self.name} holds a single dump: there is no file {count} to go to")

    def seek_end_of_data(self) -> None:
        raise NotSupported(f"{self.name} cannot be appended to: it holds a single dump")

    def tell(self) -> Position:
        raise NotSupported(f"{self.name} has no position")

    def seek(self, position: Position) -> None:
        raise NotSupported(f"{self.name} cannot seek")

    def seek_block(self, block: int, record_size: int) -> int:
        raise NotSupported(f"{self.name} cannot seek")

    def next_volume(self, volume: int, description: str) -> bool:
        return False

    def location(self) -> dict:
        name = self.name if self.name.startswith("/") else os.path.abspath(self.name)
        try:
            return {"spec": name, "file_number": self.tell().file_number + 1}
        except MediaError:
            return {"spec": name, "file_number": 1}

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.close()

    def checkpoint(self) -> dict:
        """Make what was written durable, and say how to find its end again.

        A restartable dump stores the answer; its restart seals the volume
        there (``ndmptools.media.seal_volume``). A stream has nothing to seal.
        """
        return {"kind": "stream", "name": self.name}

    def suspend(self) -> None:
        """Stop writing but keep what was written: the volume waits for a restart."""
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
