"""The restore target: every change to it goes through here, relative to its root.

Each directory is opened from its parent's descriptor with O_NOFOLLOW, each
final name is created without following links, and a name from the dump is
always a single validated component. So nothing a dump contains, nor a
symbolic link already in the target, can make a restore create, follow or
write anything outside the target.

A compare reads a tree through the same descriptors (OpenDirectories), and
only reads.

The rules for what is already there: a file (anything but a directory) of the
same name is replaced, a directory is merged, and a directory is never
replaced by anything else.

A regular file made here carries the restore mark (restoremarks.py) from
the moment it exists until ``finish_file``; one never finished is removed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from contextlib import suppress

from ndmptools.engine.errors import TargetError
from ndmptools.engine.restoremarks import MARK_XATTR, RestoreMarker
from ndmptools.format.constants import ROOTINO

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_O_NOATIME = getattr(os, "O_NOATIME", 0)


_OUT_OF_ROOM = (errno.ENOSPC, errno.EDQUOT)


class Refused(Exception):
    """This entry cannot be restored; the message says why. The restore goes on, unless
    the target is out of room (``out_of_room``): then nothing more can be written."""

    def __init__(self, message: str, error: int | None = None) -> None:
        super().__init__(message)
        self.errno = error

    @property
    def out_of_room(self) -> bool:
        return self.errno in _OUT_OF_ROOM


def out_of_room(err: OSError | None) -> bool:
    """The file system (or the user's quota) has no space or no inodes left."""
    return err is not None and err.errno in _OUT_OF_ROOM


def _refused(what: str, err: OSError) -> Refused:
    return Refused(f"{what}: {err.strerror}", err.errno)


class OpenDirectories:
    """Directories known by their media inode, opened down from a root, a few kept open.

    Each one is opened from its parent's descriptor with O_NOFOLLOW, so a
    symbolic link in the tree is never followed. ``flags`` may add O_NOATIME
    (a compare); where the kernel refuses it (not the owner), it is dropped.
    """

    CACHE_SIZE = 64

    def __init__(self, root_fd: int, flags: int = _DIR_FLAGS) -> None:
        self.root_fd = root_fd
        self._flags = flags
        self._parents: dict[int, tuple[int, bytes]] = {}
        self._cache: OrderedDict[int, int] = OrderedDict()
        self._pins: dict[int, int] = {}

    def close(self) -> None:
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()
        os.close(self.root_fd)

    # -- directory descriptors --------------------------------------------------------

    def register(self, ino: int, parent: int, name: bytes) -> None:
        """Tell where directory ``ino`` lives, so it can be opened later."""
        self._parents[ino] = (parent, name)

    def directory(self, ino: int) -> _Held:
        """An open descriptor of directory ``ino``, held open for the ``with`` block."""
        return _Held(self, ino)

    def _acquire(self, ino: int) -> int:
        if ino == ROOTINO:
            return self.root_fd
        if ino not in self._cache:
            self._open_down_to(ino)
        self._cache.move_to_end(ino)
        self._pin(ino)
        return self._cache[ino]

    def _open_down_to(self, ino: int) -> None:
        """Open ``ino`` and every uncached directory above it, from the nearest open one down."""
        chain = []
        current = ino
        while current != ROOTINO and current not in self._cache:
            chain.append(current)
            current = self._parents[current][0]
        self._pin(current)
        try:
            for step in reversed(chain):
                parent_fd = self.root_fd if current == ROOTINO else self._cache[current]
                try:
                    fd = self._open_at(parent_fd, self._parents[step][1])
                except OSError as err:
                    raise _refused("cannot open directory", err) from None
                self._cache[step] = fd
                self._pin(step)
                self._unpin(current)
                current = step
                self._evict()
        finally:
            self._unpin(current)

    def _open_at(self, parent_fd: int, name: bytes) -> int:
        try:
            return os.open(name, self._flags, dir_fd=parent_fd)
        except PermissionError as err:
            if err.errno != errno.EPERM or not self._flags & _O_NOATIME:
                raise
            self._flags &= ~_O_NOATIME  # O_NOATIME needs ownership or CAP_FOWNER
            return os.open(name, self._flags, dir_fd=parent_fd)

    def _pin(self, ino: int) -> None:
        if ino != ROOTINO:
            self._pins[ino] = self._pins.get(ino, 0) + 1

    def _unpin(self, ino: int) -> None:
        if ino == ROOTINO:
            return
        left = self._pins[ino] - 1
        if left:
            self._pins[ino] = left
        else:
            del self._pins[ino]

    def _release(self, ino: int) -> None:
        self._unpin(ino)
        self._evict()

    def _evict(self) -> None:
        if len(self._cache) <= self.CACHE_SIZE:
            return
        for ino in list(self._cache):
            if len(self._cache) <= self.CACHE_SIZE:
                break
            if ino not in self._pins:
                os.close(self._cache.pop(ino))


class _Held:
    """OpenDirectories.directory's ``with``: a class, as a generator-made context manager costs
    some three times as much, twice for every file a restore makes."""

    __slots__ = ("_directories", "_ino")

    def __init__(self, directories: OpenDirectories, ino: int) -> None:
        self._directories = directories
        self._ino = ino

    def __enter__(self) -> int:
        return self._directories._acquire(self._ino)

    def __exit__(self, *exc_info: object) -> None:
        self._directories._release(self._ino)


class TargetTree(OpenDirectories):
    """The directory a restore writes into."""

    def __init__(self, path: str, marker: RestoreMarker | None = None) -> None:
        try:
            os.makedirs(path, exist_ok=True)
            root_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise TargetError(f"cannot restore into {path}: {err.strerror}") from None
        super().__init__(root_fd)
        self.path = path
        self.marker = marker  # marks each new regular file until it is complete (None: unmarked)

    # -- making entries ---------------------------------------------------------------

    def make_directory(self, ino: int, parent: int, name: bytes) -> bool:
        """Create (or merge into) directory ``name``; a non-directory there is replaced.

        Returns whether it was created (False: an existing directory, merged).
        """
        self.register(ino, parent, name)
        with self.directory(parent) as dir_fd:
            try:
                os.mkdir(name, 0o700, dir_fd=dir_fd)
                return True
            except FileExistsError:
                pass
            except OSError as err:
                raise _refused("cannot create directory", err) from None
            if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
                return False  # merged: its metadata is set in stage 4
            self._unlink(dir_fd, name)
            try:
                os.mkdir(name, 0o700, dir_fd=dir_fd)
            except OSError as err:
                raise _refused("cannot create directory", err) from None
            return True

    def create_file(self, parent: int, name: bytes) -> None:
        """An empty regular file, replacing whatever non-directory was there; marked as under restore."""
        with self.directory(parent) as dir_fd:
            self._make(dir_fd, name, lambda: self._new_file(dir_fd, name))

    def _new_file(self, dir_fd: int, name: bytes) -> None:
        fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            if self.marker is not None:
                self.marker.mark(fd)
        finally:
            os.close(fd)

    def finish_file(self, fd: int) -> None:
        """A file's data, size, owner, mode and times are in: it is no longer under restore."""
        if self.marker is None:
            return
        try:
            self.marker.unmark(fd)
        except OSError as err:
            raise Refused(
                f"restored, but its {MARK_XATTR} mark could not be removed: {err.strerror}"
            ) from None

    def open_file(self, parent: int, name: bytes) -> tuple[int, os.stat_result]:
        """Open a file made by create_file for writing, never through a link; its fd and fstat."""
        with self.directory(parent) as dir_fd:
            try:
                fd = os.open(name, _WRITE_FLAGS, dir_fd=dir_fd)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise Refused("it is a symbolic link now; not written through") from None
                raise _refused("cannot open", err) from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                raise Refused("it is not a regular file now")
            return fd, st

    def make_symlink(self, parent: int, name: bytes, target: bytes) -> None:
        with self.directory(parent) as dir_fd:
            self._make(dir_fd, name, lambda: os.symlink(target, name, dir_fd=dir_fd))

    def make_node(self, parent: int, name: bytes, mode: int, device: int) -> None:
        """A FIFO, socket or device node (owner-only until its metadata is applied)."""
        with self.directory(parent) as dir_fd:
            kind = stat.S_IFMT(mode)
            self._make(dir_fd, name, lambda: os.mknod(name, kind | 0o600, device, dir_fd=dir_fd))

    def make_link(self, source_parent: int, source_name: bytes, parent: int, name: bytes) -> None:
        """Another name for an entry already restored."""
        with self.directory(source_parent) as source_fd, self.directory(parent) as dir_fd:
            self._make(
                dir_fd,
                name,
                lambda: os.link(
                    source_name, name, src_dir_fd=source_fd, dst_dir_fd=dir_fd, follow_symlinks=False
                ),
            )

    def move(
        self, parent: int, name: bytes, new_parent: int, new_name: bytes, directory: int | None = None
    ) -> None:
        """Rename an entry within the target; a moved directory keeps its inode (and open descriptor)."""
        with self.directory(parent) as source_fd, self.directory(new_parent) as dir_fd:
            try:
                os.rename(name, new_name, src_dir_fd=source_fd, dst_dir_fd=dir_fd)
            except OSError as err:
                raise _refused("cannot move it", err) from None
        if directory is not None:
            self.register(directory, new_parent, new_name)

    def remove_tree(self, parent: int, name: bytes) -> None:
        """Remove an entry and, for a directory, all it holds; links inside are never followed."""
        with self.directory(parent) as dir_fd:
            try:
                _remove_at(dir_fd, name)
            except OSError as err:
                raise Refused(f"cannot remove it: {err.strerror}") from None

    def remove(self, parent: int, name: bytes) -> None:
        """Remove a non-directory this restore made (a file that could not be finished)."""
        with self.directory(parent) as dir_fd, suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)

    def _make(self, dir_fd: int, name: bytes, create) -> None:
        try:
            create()
            return
        except FileExistsError:
            pass
        except OSError as err:
            raise _refused("cannot create", err) from None
        self._unlink(dir_fd, name)
        try:
            create()
        except OSError as err:
            raise _refused("cannot create", err) from None

    @staticmethod
    def _unlink(dir_fd: int, name: bytes) -> None:
        """Make room for a new entry: files go, directories stay."""
        try:
            if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
                raise Refused("a directory of that name is in the target; it is never replaced")
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise _refused("cannot replace the existing entry", err) from None


def _remove_at(dir_fd: int, name: bytes) -> None:
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        for entry in os.listdir(fd):
            _remove_at(fd, os.fsencode(entry))
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
