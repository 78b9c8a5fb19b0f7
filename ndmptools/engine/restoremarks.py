"""The mark a restore puts on each regular file while it writes it, and how a dump reads it.

The seed's rule: a file a restore is still writing is incomplete, so a dump
taken meanwhile leaves it out (and the next dump takes it). The restore sets
an extended attribute, ``MARK_XATTR``, on every regular file it creates,
before any of its data is written, and removes it once data, size, owner,
mode and times are all in. Its value names the restore: host, boot, pid and
the process's start time, so a dump can tell a restore that is still running
from one that died (a pid reused since has another start time).

The name is a ``user.`` attribute, not ``trusted.``: a restore run by an
ordinary user can set it, and a dump run by one can read it (``trusted.``
needs CAP_SYS_ADMIN for both). The price: whoever may write a file may mark
it, and so keep it out of dumps for as long as a process the mark names
lives (as chattr +d, the nodump flag, would); every such dump warns about
the file and records it, and takes it once that process is gone.

This module is the one place the name is spelled. The mark is never backed
up nor restored: a dump that stores extended attributes must leave
``MARK_XATTR`` out, and a restore must never set it from media.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import stat
from dataclasses import dataclass

from ndmptools.engine.progress import RunContext

MARK_XATTR = "user.ndmptools.restoring"
"""The extended attribute of a file under restore. Never dumped, never restored from media."""

_MAGIC = "ndmptools-restore/1"
_MAX_MARK = 1024  # a mark longer than this was not written by ndmptools
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


@functools.cache
def boot_id() -> str:
    """This boot's random id: a pid from an earlier boot names nothing now."""
    try:
        with open(BOOT_ID_FILE) as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def _proc_stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (which may hold anything); None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (/proc/PID/stat field 22)."""
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields is not None else None
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class RestoreMark:
    """Who set a mark: enough to tell, on this host and boot, whether that process still runs."""

    host: str
    boot: str
    pid: int
    start: int  # clock ticks since boot

    def encode(self) -> bytes:
        return f"{_MAGIC} boot={self.boot} pid={self.pid} start={self.start} host={self.host}".encode()

    @classmethod
    def parse(cls, value: bytes) -> RestoreMark | None:
        """The mark in ``value``, or None when it is not one ndmptools wrote."""
        if len(value) > _MAX_MARK:
            return None
        try:
            magic, rest = value.decode().split(" ", 1)
            boot, pid, start, host = rest.split(" ", 3)  # the host comes last: it may hold spaces
            if magic != _MAGIC:
                return None
            fields = {}
            for key, item in (("boot", boot), ("pid", pid), ("start", start), ("host", host)):
                name, _, fields[key] = item.partition("=")
                if name != key:
                    return None
            return cls(fields["host"], fields["boot"], int(fields["pid"]), int(fields["start"]))
        except ValueError:
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"

    def running(self) -> tuple[bool, str]:
        """Whether the restore that set this mark still runs here; if not, why not."""
        if self.host != socket.gethostname():
            return False, f"it was set on {self.host}, where this dump cannot check it"
        if self.boot != boot_id():
            return False, "it was set before this host last booted"
        fields = _proc_stat(self.pid)
        if fields is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False, f"process {self.pid} is gone"
            except PermissionError:
                pass
            return True, ""  # there, but hidden from this user in /proc (hidepid): assume it is the restore
        if fields[0] in (b"Z", b"X"):
            return False, f"process {self.pid} is gone"  # killed, its parent has not reaped it yet
        if len(fields) < 20 or fields[19] != str(self.start).encode():
            return False, f"process {self.pid} is gone (its pid now names another process)"
        return True, ""


def this_process_mark() -> RestoreMark:
    pid = os.getpid()
    return RestoreMark(socket.gethostname(), boot_id(), pid, process_start_ticks(pid) or 0)


def read_mark(path: bytes) -> bytes | None:
    """The raw mark on ``path`` (never through a symbolic link), or None when it has none.

    listxattr first: a file without extended attributes answers it without
    an error, which in Python costs half of a getxattr that fails.
    """
    names = os.listxattr(path, follow_symlinks=False)
    if MARK_XATTR not in names:
        return None
    try:
        return os.getxattr(path, MARK_XATTR, follow_symlinks=False)
    except OSError as err:
        if err.errno == errno.ENODATA:
            return None  # removed between the two calls: the restore finished it
        raise


_CANNOT_HOLD = (errno.ENOTSUP, errno.EPERM)


class RestoreMarker:
    """Sets and removes the mark on the files one restore writes.

    A target that cannot hold the mark (no user extended attributes there)
    turns marking off for the rest of the run, with one note; any other
    failure leaves that one file unmarked and is counted in one note at the end.
    """

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.value = this_process_mark().encode()
        self.enabled = True
        self.marked = 0  # files marked: until one is, there is nothing to remove
        self.unmarked = 0  # files left unmarked by an error other than "cannot hold it"
        self._last_error = ""

    def mark(self, fd: int) -> None:
        """Mark a new, still empty file; never fails the restore."""
        if not self.enabled:
            return
        try:
            os.setxattr(fd, MARK_XATTR, self.value)
            self.marked += 1
        except OSError as err:
            if err.errno in _CANNOT_HOLD:
                self.enabled = False
                self.run.note(
                    f"the restore target cannot hold the {MARK_XATTR} mark ({err.strerror}): files are "
                    "restored unmarked, and a dump taken meanwhile cannot tell they are incomplete"
                )
            else:
                self.unmarked += 1
                self._last_error = err.strerror or str(err)

    def unmark(self, fd: int) -> None:
        """The file is complete: remove its mark. OSError when it cannot be removed.

        Tried even once marking is off: files marked before it went off (on
        another file system of the target) must lose their marks too.
        """
        if not self.marked:
            return
        try:
            os.removexattr(fd, MARK_XATTR)
        except OSError as err:
            if err.errno in (errno.ENODATA, errno.ENOTSUP):
                return  # never marked (marking failed or was off), or someone removed it
            if err.errno != errno.EACCES:
                raise
            # An ordinary user's file whose restored mode is read-only: a user. attribute needs
            # write permission, so the owner's write bit comes back for the one call. Times stay.
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            os.fchmod(fd, mode | stat.S_IWUSR)
            try:
                os.removexattr(fd, MARK_XATTR)
            finally:
                os.fchmod(fd, mode)

    def finish(self) -> None:
        """One note for the files an error left unmarked."""
        if self.unmarked:
            self.run.note(
                f"{self.unmarked} restored file{'s' if self.unmarked != 1 else ''} could not be marked "
                f"while being written ({self._last_error})"
            )
