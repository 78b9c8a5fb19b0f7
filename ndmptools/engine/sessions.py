"""Session slots: how many dumps and restores may run at once, counted across processes.

The limit comes from the machine's memory, as the seed's table has it:

    memory      sessions
    < 16 GB        4
    16 to 24 GB   16
    >= 24 GB      32

"GB" is GiB here (memory is sold in binary sizes), and it is the memory
installed, not the kernel's MemTotal: MemTotal leaves out what the firmware
and the kernel keep for themselves (1 to 3 %), so a 24 GiB machine reports
about 23.5 GiB. MemTotal is therefore rounded up to a whole GiB before the
table is read: 23.54 GiB counts as 24 and gets 32 sessions. A lower limit can
be set in the settings file (``max_sessions`` in ``<state_dir>/config.toml``,
see engine/config.py); a higher one is taken only with ``force``.

Each session holds one or more slot files, ``<state_dir>/sessions/slot.N``,
with an exclusive flock. The kernel drops the lock when the process ends,
however it ends (SIGKILL, a crash), so a held lock is the one truth of what
runs; the slot file's content is only the record shown by ``ndmptools
sessions`` (id, kind, path, pid, start time, bytes so far), rewritten at
most once a second. Slots are taken and counted under a second lock,
``<state_dir>/sessions/lock``: exclusive to take slots, shared to list them,
so that a count never mistakes a slot being probed for one in use. A
session that needs several slots (ndmpcopy: a dump and a restore) takes
them all at once or none, and a session that waits holds nothing while it
waits, so two waiting copies cannot deadlock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

from ndmptools.engine.config import load_config
from ndmptools.engine.errors import UsageError
from ndmptools.errors import MediaError, SessionLimitReached, StateError
from ndmptools.state.db import default_state_dir

__all__ = [
    "KINDS",
    "Limit",
    "Session",
    "SessionLimitReached",
    "SessionRecord",
    "acquire",
    "hold",
    "limit_for_memory",
    "listed_limit",
    "memory_gib",
    "read_memtotal_kib",
    "running",
    "session_limit",
]

MEMINFO = "/proc/meminfo"
GIB_IN_KIB = 1 << 20
# (below this many GiB, this many sessions); 32 from 24 GiB up
MEMORY_TABLE = ((16, 4), (24, 16))
MOST_SESSIONS = 32

# restore -t reads and -C compares a whole dump from the media as a restore does: they count too
KINDS = ("dump", "restore", "list", "compare", "ndmpcopy", "ndmp")
SESSIONS_DIR = "sessions"
LOCK_NAME = "lock"
SLOT_PREFIX = "slot."
FLUSH_SECONDS = 1.0  # the bytes-so-far figure is written at most this often
CLOCK_EVERY = 64  # add_bytes calls between looks at the clock...
CLOCK_BYTES = 64 << 10  # ...unless a call counts this many bytes or more
POLL_SECONDS = 0.25  # how often a waiting session looks for a free slot
RECORD_ALIGN = 512  # records are padded: a rewrite overwrites the old one whole, never leaves a tail


# -- the limit ----------------------------------------------------------------------------------


def read_memtotal_kib(path: str = MEMINFO) -> int:
    """MemTotal from /proc/meminfo, in KiB (the file says kB and means KiB)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    raise StateError(f"cannot read MemTotal from {path}: the session limit needs the machine's memory")


def memory_gib(memtotal_kib: int) -> int:
    """The memory installed, in whole GiB: MemTotal rounded up (it leaves out what the kernel keeps)."""
    return max(1, math.ceil(memtotal_kib / GIB_IN_KIB))


def limit_for_memory(memtotal_kib: int) -> int:
    """The seed's table: under 16 GiB 4 sessions, from 16 to under 24 GiB 16, from 24 GiB 32."""
    gib = memory_gib(memtotal_kib)
    for below, sessions in MEMORY_TABLE:
        if gib < below:
            return sessions
    return MOST_SESSIONS


@dataclass(frozen=True)
class Limit:
    """How many slots may be held at once, and where that number comes from."""

    value: int
    source: str  # "memory", "config" or "--force"
    memory_gib: int
    memory_limit: int
    config_path: str
    config_value: int | None = None

    def origin(self) -> str:
        """``from memory: 24 GiB``: where the number comes from."""
        if self.source == "memory":
            return f"from memory: {self.memory_gib} GiB"
        where = f"max_sessions = {self.config_value} in {self.config_path}"
        if self.source == "config":
            return f"from the config: {where}"
        return f"from --force: {where}, above the {self.memory_limit} memory allows"

    def describe(self) -> str:
        """``32 (from memory: 24 GiB)``, for messages and the sessions listing."""
        return f"{self.value} ({self.origin()})"

    def as_dict(self) -> dict:
        return asdict(self)


def session_limit(
    state_dir: str | None = None, force: bool = False, memtotal_kib: int | None = None
) -> Limit:
    """The limit for this state directory: memory's, or the config's lower one, or a higher one forced.

    A ``max_sessions`` above what memory allows is refused (UsageError) unless ``force``.
    """
    state_dir = state_dir or default_state_dir()
    kib = read_memtotal_kib() if memtotal_kib is None else memtotal_kib
    gib, by_memory = memory_gib(kib), limit_for_memory(kib)
    config = load_config(state_dir)
    wanted = config.max_sessions
    if wanted is None:
        return Limit(by_memory, "memory", gib, by_memory, config.path)
    if wanted <= by_memory:
        return Limit(wanted, "config", gib, by_memory, config.path, wanted)
    if not force:
        raise UsageError(
            f"max_sessions = {wanted} in {config.path} is above the {by_memory} sessions this machine's "
            f"memory ({gib} GiB) allows: lower it, or give --force-sessions to run that many"
        )
    return Limit(wanted, "--force", gib, by_memory, config.path, wanted)


def listed_limit(state_dir: str | None = None, memtotal_kib: int | None = None) -> tuple[Limit, str | None]:
    """The limit a session started now without --force would have, for ``ndmptools sessions``.

    A ``max_sessions`` above what memory allows is not an error here: the memory's limit is
    shown, with a note that only sessions given --force-sessions use the config's.
    """
    try:
        return session_limit(state_dir, False, memtotal_kib), None
    except UsageError:
        forced = session_limit(state_dir, True, memtotal_kib)
        note = (
            f"max_sessions = {forced.config_value} in {forced.config_path} is above the "
            f"{forced.memory_limit} the memory allows: sessions started with --force-sessions use it, "
            "the others are refused"
        )
        by_memory = Limit(
            forced.memory_limit, "memory", forced.memory_gib, forced.memory_limit, forced.config_path
        )
        return by_memory, note


# -- the records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRecord:
    """One running session as its slot files describe it."""

    id: str
    kind: str
    path: str
    pid: int
    started: float  # seconds since the epoch
    bytes: int
    slots: int  # how many slots it holds (found locked), 2 for ndmpcopy

    def as_dict(self) -> dict:
        return asdict(self)

    def brief(self) -> str:
        return f"{self.kind} {self.path} (pid {self.pid})"


def _sessions_dir(state_dir: str | None) -> str:
    return os.path.join(state_dir or default_state_dir(), SESSIONS_DIR)


_SLOT_NAME = re.compile(re.escape(SLOT_PREFIX) + r"(\d+)$")


def _slot_numbers(directory: str) -> list[int]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(_SLOT_NAME.match, names) if m)


def _read_record(fd: int) -> dict | None:
    """The record in a held slot; a rewrite under way reads as garbage for a moment, so read again."""
    for _ in range(5):
        raw = os.pread(fd, 1 << 16, 0)
        try:
            record = json.loads(raw) if raw.strip() else None
        except ValueError:
            time.sleep(0.002)
            continue
        if record is None or isinstance(record, dict):
            return record
    return None


def _probe(directory: str, number: int, flag: int) -> tuple[int | None, dict | None]:
    """(an fd holding the free slot ``number``, None) or (None, the record of whoever holds it)."""
    path = os.path.join(directory, f"{SLOT_PREFIX}{number}")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None  # gone between the listing and now: not held either
    except OSError as err:
        raise StateError(f"cannot use the session slot {path}: {err.strerror}") from None
    try:
        fcntl.flock(fd, flag | fcntl.LOCK_NB)
    except BlockingIOError:
        record = _read_record(fd)
        os.close(fd)
        return None, record or {}
    return fd, None


def _gather(held: list[dict]) -> list[SessionRecord]:
    """Slot records grouped by session: a session holding two slots is listed once."""
    by_id: dict[str, SessionRecord] = {}
    unknown = 0
    for record in held:
        sid = str(record.get("id") or "")
        if not sid:  # held, but its record is not written yet or unreadable
            unknown += 1
            sid = f"?{unknown}"
        if sid in by_id:
            found = by_id[sid]
            by_id[sid] = SessionRecord(**{**found.as_dict(), "slots": found.slots + 1})
            continue
        by_id[sid] = SessionRecord(
            id=sid,
            kind=str(record.get("kind", "?")),
            path=str(record.get("path", "?")),
            pid=int(record.get("pid", 0)),
            started=float(record.get("started", 0.0)),
            bytes=int(record.get("bytes", 0)),
            slots=1,
        )
    return sorted(by_id.values(), key=lambda r: (r.started, r.id))


@contextlib.contextmanager
def _locked(directory: str, flag: int, create: bool) -> Iterator[bool]:
    """The slot directory's lock (exclusive to take slots, shared to list); False: no directory yet."""
    if create:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as err:
            raise StateError(f"cannot use the session directory {directory}: {err.strerror}") from None
    try:
        fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        yield False
        return
    except OSError as err:
        raise StateError(f"cannot use the session directory {directory}: {err.strerror}") from None
    try:
        fcntl.flock(fd, flag)
        yield True
    finally:
        os.close(fd)


def running(state_dir: str | None = None) -> list[SessionRecord]:
    """The sessions running now: the slots whose lock some live process holds."""
    directory = _sessions_dir(state_dir)
    held: list[dict] = []
    with _locked(directory, fcntl.LOCK_SH, create=False) as exists:
        if not exists:
            return []
        for number in _slot_numbers(directory):
            fd, record = _probe(directory, number, fcntl.LOCK_SH)
            if fd is not None:
                os.close(fd)
            elif record is not None:
                held.append(record)
    return _gather(held)


# -- holding slots ------------------------------------------------------------------------------


def _pad(record: dict) -> bytes:
    data = json.dumps(record, sort_keys=True).encode()
    size = (len(data) + 1 + RECORD_ALIGN - 1) // RECORD_ALIGN * RECORD_ALIGN
    return data + b" " * (size - len(data) - 1) + b"\n"


class Session:
    """Slots held for one dump, restore or copy; released on close or when the process ends."""

    def __init__(
        self,
        kind: str,
        path: str,
        fds: list[int],
        limit: Limit,
        media: tuple[str, ...] = (),
        writing: bool = False,
    ) -> None:
        self.id = secrets.token_hex(4)
        self.kind = kind
        self.path = path
        self.media = media
        self.writing = writing
        self.pid = os.getpid()
        self.started = time.time()
        self.limit = limit
        self.bytes = 0
        self._fds = fds
        self._next_flush = time.monotonic() + FLUSH_SECONDS
        self._uncounted = 0  # add_bytes calls since the clock was last read
        self._flushing = threading.Lock()
        self._written = 0

    @property
    def slots(self) -> int:
        return len(self._fds)

    def record(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "path": self.path,
            "pid": self.pid,
            "started": self.started,
            "bytes": self.bytes,
            "media": list(self.media),
            "writing": self.writing,
        }

    def add_bytes(self, count: int) -> None:
        """Count ``count`` more bytes; cheap: the record is rewritten at most once a second."""
        self.bytes += count
        self._uncounted += 1
        # the clock only now and then (this runs per small file), or for a big piece of data
        if self._uncounted >= CLOCK_EVERY or count >= CLOCK_BYTES:
            self._uncounted = 0
            if time.monotonic() >= self._next_flush:
                self.flush()

    def flush(self) -> None:
        """Write the record (bytes so far) to the slot files now."""
        if not self._flushing.acquire(blocking=False):
            return  # another thread is writing it
        try:
            self._next_flush = time.monotonic() + FLUSH_SECONDS
            data = _pad(self.record())
            for fd in self._fds:
                os.pwrite(fd, data, 0)
                if len(data) < self._written:  # never longer before, but be sure no old tail stays
                    os.ftruncate(fd, len(data))
            self._written = len(data)
        except OSError:
            pass  # the figure is for show: a full disk must not stop the dump
        finally:
            self._flushing.release()

    def reporter(self, inner):
        """A reporter that passes everything to ``inner`` and counts the bytes in ``add_bytes``."""
        return _CountingReporter(inner, self)

    def release(self) -> None:
        """Give the slots back: the record is cleared while the lock still keeps others out."""
        fds, self._fds = self._fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


class _CountingReporter:
    """Forwards to the run's reporter; the progress it sees is the session's bytes so far."""

    def __init__(self, inner, session: Session) -> None:
        self.inner = inner
        self.session = session

    def phase(self, name: str, total_bytes: int | None = None) -> None:
        self.inner.phase(name, total_bytes)

    def advance(self, nbytes: int) -> None:
        self.session.add_bytes(nbytes)
        self.inner.advance(nbytes)

    def warning(self, message: str) -> None:
        self.inner.warning(message)

    def note(self, message: str) -> None:
        self.inner.note(message)

    def close(self) -> None:
        self.inner.close()


def _running_list(held: list[dict]) -> str:
    found = _gather(held)
    shown = ", ".join(r.brief() for r in found[:4])
    if len(found) > 4:
        shown += f" and {len(found) - 4} more"
    return shown or "none readable"


def _refusal(kind: str, path: str, slots: int, limit: Limit, held: list[dict], waited: float) -> str:
    need = f" needs {slots} sessions and" if slots > 1 else ""
    line = (
        f"the session limit is reached: {len(held)} of {limit.value} in use (limit {limit.origin()}), "
        f"so the {kind} of {path}{need} cannot start; running: {_running_list(held)}"
    )
    if waited:
        return line + f" (waited {waited:g} s)"
    return line + "; --wait waits for a free one"


def media_key(spec: str) -> str | None:
    """What two sessions naming the same media share: the resolved path (None: stdin/stdout, auto)."""
    if spec in ("-", "", "auto"):
        return None
    if spec.startswith("vtape:"):
        return "vtape:" + os.path.realpath(spec[len("vtape:") :])
    return os.path.realpath(spec)


def _check_media(media: tuple[str, ...], writing: bool, held: list[dict]) -> None:
    """Refuse media another session writes, or that this one would write while another uses it."""
    if not media:
        return
    for record in held:
        theirs = record.get("media") or []
        if not (writing or record.get("writing")):
            continue  # readers share: a file is read by many, a tape drive refuses a second open itself
        for spec in set(media) & set(theirs):
            raise MediaError(
                f"{spec} is in use by the {record.get('kind', '?')} of {record.get('path', '?')} "
                f"(pid {record.get('pid', '?')}, session {record.get('id', '?')}): one session per medium"
            )


def _try_take(
    directory: str, slots: int, limit: Limit, media: tuple[str, ...] = (), writing: bool = False
) -> tuple[list[int] | None, list[dict]]:
    """Under the exclusive lock: ``slots`` free slot fds, or None and the records of those in use."""
    free: list[int] = []
    held: list[dict] = []
    numbers = _slot_numbers(directory)
    try:
        for number in numbers:
            fd, record = _probe(directory, number, fcntl.LOCK_EX)
            if fd is None:
                if record is not None:
                    held.append(record)
            elif len(free) < slots:
                free.append(fd)
            else:
                os.close(fd)
        _check_media(media, writing, held)
        if len(held) + slots > limit.value:
            for fd in free:
                os.close(fd)
            return None, held
        number = (numbers[-1] + 1) if numbers else 0
        while len(free) < slots:
            path = os.path.join(directory, f"{SLOT_PREFIX}{number}")
            number += 1
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new, and we hold the directory's lock
            free.append(fd)
        return free, held
    except BaseException as err:
        for fd in free:
            os.close(fd)
        if not isinstance(err, OSError):
            raise
        raise StateError(f"cannot use the session directory {directory}: {err.strerror}") from None


def acquire(
    kind: str,
    path: str,
    slots: int = 1,
    wait: float | None = None,
    force: bool = False,
    state_dir: str | None = None,
    notify: Callable[[str], None] | None = None,
    limit: Limit | None = None,
    media: Iterable[str] = (),
    writing: bool = False,
) -> Session:
    """Take ``slots`` slots for a session (all or none); the caller releases it (or uses ``hold``).

    ``wait``: None or 0 fails at once when the limit is reached (SessionLimitReached), a number
    of seconds waits that long, math.inf waits until a slot frees. ``notify`` hears, once, that
    the session waits and why. ``limit`` replaces the one the machine and the config give (tests).
    ``media`` are the media specs it uses (``writing``: a dump's): a medium another session
    writes, or one this session would write while another uses it, is refused (MediaError).
    """
    if kind not in KINDS:
        raise UsageError(f"no session kind {kind!r} (one of {', '.join(KINDS)})")
    if slots < 1:
        raise UsageError("a session takes at least one slot")
    limit = limit or session_limit(state_dir, force)
    if slots > limit.value:
        raise SessionLimitReached(
            f"the {kind} of {path} needs {slots} sessions at once, and the limit is {limit.describe()}"
        )
    directory = _sessions_dir(state_dir)
    keys = tuple(dict.fromkeys(k for k in map(media_key, media) if k is not None))
    wait = wait or 0.0
    if wait < 0 or math.isnan(wait):
        raise UsageError("--wait takes a number of seconds, 0 or more")
    deadline = time.monotonic() + wait
    told = False
    while True:
        with _locked(directory, fcntl.LOCK_EX, create=True):
            fds, held = _try_take(directory, slots, limit, keys, writing)
            if fds is not None:
                session = Session(kind, path, fds, limit, keys, writing)
                session.flush()  # the record is there before the directory's lock is let go
                return session
        now = time.monotonic()
        if now >= deadline:
            raise SessionLimitReached(_refusal(kind, path, slots, limit, held, wait))
        if notify is not None and not told:
            shown = "until one frees" if math.isinf(wait) else f"up to {wait:.0f} s"
            notify(
                f"waiting for a session, {shown}: {len(held)} of {limit.value} in use (limit "
                f"{limit.origin()}); running: {_running_list(held)}"
            )
            told = True
        time.sleep(min(POLL_SECONDS * random.uniform(0.6, 1.4), max(deadline - now, 0.01)))


@contextlib.contextmanager
def hold(
    kind: str,
    path: str,
    slots: int = 1,
    wait: float | None = None,
    force: bool = False,
    state_dir: str | None = None,
    notify: Callable[[str], None] | None = None,
    limit: Limit | None = None,
    media: Iterable[str] = (),
    writing: bool = False,
) -> Iterator[Session]:
    """``with hold("dump", path) as session:`` — the slots for as long as the block runs."""
    session = acquire(kind, path, slots, wait, force, state_dir, notify, limit, media, writing)
    try:
        yield session
    finally:
        session.release()
