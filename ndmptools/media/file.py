"""The file backend: a plain file, a pipe, a character device, or stdin/stdout.

A dump written to a regular file goes to a temporary name beside it and is
renamed into place only when the dump completes, so a failed dump never
leaves a file that looks like a good one, nor clobbers the previous one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys

from ndmptools.errors import MediaError
from ndmptools.media.base import KiB, MediumBase, NotSupported, Position, Prompt

_STDIO = "-"


def _describe(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on device"
    if err.errno == errno.EPIPE:
        return "the reading end of the pipe was closed"
    return err.strerror or str(err)


class FileMedium(MediumBase):
    """A byte stream with no record boundaries; one dump per file.

    A dump read from files may span several of them (one per volume): the
    next one comes from the list given, or from the operator when a prompt
    is available.
    """

    keeps_records = False

    def __init__(
        self,
        name: str,
        fd: int,
        mode: str,
        *,
        final_path: str | None = None,
        temp_path: str | None = None,
        owns_fd: bool = True,
    ) -> None:
        self.name = name
        self._fd = fd
        self._mode = mode
        self._final_path = final_path
        self._temp_path = temp_path
        self._owns_fd = owns_fd
        self._closed = False
        self.size_hint: int | None = None
        self.more_volumes = []
        if mode == "r":
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                self.size_hint = st.st_size

    more_volumes: list[str]
    prompt: Prompt | None = None

    @classmethod
    def open_volumes(cls, specs: list[str], mode: str, prompt: Prompt | None = None) -> FileMedium:
        """The first of ``specs``; the others (and the prompt) give the next volumes."""
        medium = cls.open(specs[0], mode)
        medium.more_volumes = list(specs[1:])
        medium.prompt = prompt
        return medium

    def next_volume(self, volume: int, description: str) -> bool:
        if self._mode != "r":
            return False  # a dump to a file fails when the file system is full
        if self.more_volumes:
            path = self.more_volumes.pop(0)
        elif self.prompt is not None and self._owns_fd:
            path = self.prompt(
                f"Volume {volume} of {description} is needed: the path of the file "
                "holding it (nothing to stop): "
            )
            if not path:
                return False
        else:
            return False
        replacement = FileMedium.open(path, "r")
        self.close()
        self.name, self._fd, self._closed = replacement.name, replacement._fd, False
        self.size_hint = replacement.size_hint
        replacement._closed = True  # its descriptor now belongs to self
        return True

    def location(self) -> dict:
        path = self._final_path or self.name
        return {"spec": path if not self._owns_fd else os.path.abspath(path), "file_number": 1}

    def rewind(self) -> None:
        self.seek(Position(0, 0))

    def tell(self) -> Position:
        """The position in 1 KiB tape blocks (a stream has no other records)."""
        try:
            return Position(0, os.lseek(self._fd, 0, os.SEEK_CUR) // KiB)
        except OSError as err:
            raise MediaError(f"{self.name} has no position: {_describe(err)}") from err

    def seek(self, position: Position) -> None:
        if position.file_number != 0:
            super().space_files(position.file_number)
        try:
            os.lseek(self._fd, position.record_number * KiB, os.SEEK_SET)
        except OSError as err:
            raise MediaError(f"cannot seek in {self.name}: {_describe(err)}") from err

    def seek_block(self, block: int, record_size: int) -> int:
        """A plain file holds one dump from byte 0: any block is a seek away (not on a pipe)."""
        if self._mode != "r" or self.size_hint is None:
            raise NotSupported(f"{self.name} cannot seek")
        try:
            os.lseek(self._fd, block * KiB, os.SEEK_SET)
        except OSError as err:
            raise NotSupported(f"cannot seek in {self.name}: {_describe(err)}") from err
        return block

    @classmethod
    def open(cls, spec: str, mode: str) -> FileMedium:
        if spec == _STDIO:
            stream = sys.stdin if mode == "r" else sys.stdout
            name = "standard input" if mode == "r" else "standard output"
            if mode == "w":
                stream.flush()
            return cls(name, stream.fileno(), mode, owns_fd=False)
        if mode == "r":
            try:
                fd = os.open(spec, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as err:
                raise MediaError(f"cannot open {spec}: {_describe(err)}") from err
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)
                raise MediaError(f"cannot read {spec}: it is a directory")
            return cls(spec, fd, mode)
        return cls._open_for_writing(spec)

    @classmethod
    def _open_for_writing(cls, spec: str) -> FileMedium:
        try:
            st = os.stat(spec)
        except FileNotFoundError:
            st = None
        except OSError as err:
            raise MediaError(f"cannot write {spec}: {_describe(err)}") from err
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise MediaError(f"cannot write {spec}: it is a directory")
        if st is not None and not stat.S_ISREG(st.st_mode):
            # A pipe, a character device (/dev/null) or a socket: write straight to it.
            try:
                fd = os.open(spec, os.O_WRONLY | os.O_CLOEXEC)
            except OSError as err:
                raise MediaError(f"cannot open {spec}: {_describe(err)}") from err
            return cls(spec, fd, "w")
        directory, base = os.path.split(os.path.abspath(spec))
        for attempt in range(100):
            temp = os.path.join(directory, f".{base}.ndmptools-{os.getpid()}-{attempt}")
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                break
            except FileExistsError:
                continue
            except OSError as err:
                raise MediaError(f"cannot create {spec}: {_describe(err)}") from err
        else:
            raise MediaError(f"cannot create a temporary file beside {spec}")
        if st is not None:
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        return cls(spec, fd, "w", final_path=spec, temp_path=temp)

    def write_record(self, record: bytes | memoryview) -> None:
        view = memoryview(record)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as err:
            raise MediaError(f"cannot write {self.name}: {_describe(err)}") from err

    def read_record(self, max_size: int) -> bytes:
        """Read until ``max_size`` bytes or the end, so reads stay block-aligned on pipes."""
        try:
            first = os.read(self._fd, max_size)
            if len(first) == max_size or not first:
                return first
            parts = [first]
            got = len(first)
            while got < max_size:
                more = os.read(self._fd, max_size - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            return b"".join(parts)
        except OSError as err:
            raise MediaError(f"cannot read {self.name}: {_describe(err)}") from err

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._temp_path is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                os.rename(self._temp_path, self._final_path)
            elif self._owns_fd:
                os.close(self._fd)
        except OSError as err:
            self._discard()
            raise MediaError(f"cannot finish {self.name}: {_describe(err)}") from err

    def checkpoint(self) -> dict:
        if self._temp_path is None:
            return {"kind": "stream", "name": self.name}
        try:
            os.fsync(self._fd)
            written = os.lseek(self._fd, 0, os.SEEK_CUR)
        except OSError as err:
            raise MediaError(f"cannot write {self.name}: {_describe(err)}") from err
        return {"kind": "file", "temp": self._temp_path, "final": self._final_path, "bytes": written}

    def suspend(self) -> None:
        """Close, keeping the unfinished file under its temporary name for the restart."""
        if self._closed:
            return
        self._closed = True
        if self._owns_fd or self._temp_path is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._temp_path is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._discard()
        elif self._owns_fd:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def _discard(self) -> None:
        if self._temp_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp_path)
