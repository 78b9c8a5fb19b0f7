"""Media for a dump handed straight to a restore: a pipe's reading end, and a medium whose close waits.

``ndmpcopy`` pipes a dump into a restore, in one process or through ssh. Two
things differ from ``-f -``: the reader must take what the pipe holds without
waiting for its end (the far side of a copy keeps the stream open until it is
told the restore took it), and the writer's close must not let the dump count
as complete, and become a base, before the restoring side has taken all of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ndmptools.errors import MediaError
from ndmptools.media.base import KiB, Medium
from ndmptools.media.file import FileMedium, _describe


class PipeReader(FileMedium):
    """The reading end of a pipe: each read returns the whole blocks there are, without waiting for more.

    A writer writes whole records, so a read that stopped inside a block is
    finished with the rest of that block, which is on its way.
    """

    def __init__(self, name: str, fd: int, *, owns_fd: bool = True) -> None:
        super().__init__(name, fd, "r", owns_fd=owns_fd)

    def read_record(self, max_size: int) -> bytes:
        try:
            first = os.read(self._fd, max_size)
            short = -len(first) % KiB
            if not short:
                return first
            parts = [first]
            while short:
                more = os.read(self._fd, short)
                if not more:
                    break
                parts.append(more)
                short -= len(more)
            return b"".join(parts)
        except OSError as err:
            raise MediaError(f"cannot read {self.name}: {_describe(err)}") from err


class ConfirmedMedium:
    """A writing medium whose ``close`` returns only when ``confirm`` says the reader took the dump.

    The dump engine records a dump as complete (and as a base) only after its
    medium closed; ``confirm`` raises (a MediaError, say) when the restoring
    side failed, and the dump then fails too. ``location`` is what the dump
    history keeps as the dump's place (there is no file to name).
    """

    def __init__(
        self,
        inner: Medium,
        confirm: Callable[[], None],
        location: dict,
        on_abort: Callable[[], None] | None = None,
    ) -> None:
        self._inner = inner
        self._confirm = confirm
        self._location = location
        self._on_abort = on_abort
        self._done = False

    def __getattr__(self, name: str):
        return getattr(self._inner, name)  # records, positions and the rest are the pipe's

    def location(self) -> dict:
        return dict(self._location)

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        self._inner.close()  # the reader sees the end of the stream
        self._confirm()

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._inner.abort()
        if self._on_abort is not None:
            self._on_abort()

    def suspend(self) -> None:
        self.abort()  # a stream keeps nothing a restart could go on from

    def __enter__(self) -> ConfirmedMedium:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
