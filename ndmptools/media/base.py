"""The Medium protocol: one record at a time, in and out."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol


class Medium(Protocol):
    """What the engine needs of a place that holds a dump.

    ``keeps_records`` is true when every read returns exactly one record as it
    was written (a tape); a file or pipe is a byte stream instead.
    """

    name: str
    keeps_records: bool
    size_hint: int | None  # bytes there are to read, when the backend knows (for progress)

    def write_record(self, record: bytes | memoryview) -> None:
        """Write one whole record, in one write where the backend allows it."""

    def read_record(self, max_size: int) -> bytes:
        """Up to ``max_size`` bytes: one record on a tape, else as much as is there; b"" at the end."""

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
