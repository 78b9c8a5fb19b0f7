"""The dump history: what was dumped, when, at what level, on which media, based on what.

Only a dump that completed can be a base: a dump is recorded as running when
it starts and becomes completed in one short transaction at its very end.
Each completed dump also keeps its inode map (file-system inode to media
inode), so that the next incremental of its chain numbers the same files the
same way, which restore -r relies on.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
import zlib
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from heapq import merge

from ndmptools.state.catalog import drop_rows
from ndmptools.state.db import StateDB


@dataclass
class DumpRecord:
    id: int
    identity: str
    fs_path: str
    dumped_path: str
    level: int
    dump_date_ns: int
    base_id: int | None
    status: str
    read_only: bool
    started: float
    finished: float | None
    pid: int | None
    host: str | None
    label: str | None
    blocking_factor: int | None
    media: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    maxino: int | None = None
    is_base: bool = True  # UPDATE=Y: later incrementals may be based on it
    file_history: bool = False  # HIST=Y: its entries are in the catalog

    @property
    def dump_date(self) -> int:
        """c_date: the dump date in whole seconds, as on media."""
        return self.dump_date_ns // 1_000_000_000

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "path": self.dumped_path,
            "identity": self.identity,
            "fs_path": self.fs_path,
            "level": self.level,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.dump_date)),
            "dump_date": self.dump_date,
            "base_id": self.base_id,
            "status": self.status,
            "media": self.media,
            "counts": self.counts,
            "is_base": self.is_base,
            "file_history": self.file_history,
        }


def _record(row) -> DumpRecord:
    return DumpRecord(
        id=row["id"],
        identity=row["identity"],
        fs_path=row["fs_path"],
        dumped_path=row["dumped_path"],
        level=row["level"],
        dump_date_ns=row["dump_date_ns"],
        base_id=row["base_id"],
        status=row["status"],
        read_only=bool(row["read_only"]),
        started=row["started"],
        finished=row["finished"],
        pid=row["pid"],
        host=row["host"],
        label=row["label"],
        blocking_factor=row["blocking_factor"],
        media=json.loads(row["media"] or "{}"),
        counts=json.loads(row["counts"] or "{}"),
        maxino=row["maxino"],
        is_base=bool(row["is_base"]),
        file_history=bool(row["file_history"]),
    )


class InodeNumbers:
    """File-system inode -> media inode for one dump, sorted for lookups by bisection.

    Kept as two flat arrays (12 bytes an entry), not a dict, so a dump of
    millions of files stays small in memory.
    """

    MAGIC = b"NDIM1"

    def __init__(self, fs_inodes: array, media_inodes: array) -> None:
        self.fs_inodes = fs_inodes  # array('Q'), ascending
        self.media_inodes = media_inodes  # array('I'), in the same order

    def __len__(self) -> int:
        return len(self.fs_inodes)

    def get(self, fs_inode: int) -> int | None:
        index = bisect_left(self.fs_inodes, fs_inode)
        if index < len(self.fs_inodes) and self.fs_inodes[index] == fs_inode:
            return self.media_inodes[index]
        return None

    # Pairs sorted at a time: a run's tuples are a few MiB, where a million files' would be 130.
    SORT_RUN = 1 << 16

    @classmethod
    def from_pairs(cls, fs_inodes: array, media_inodes: array) -> InodeNumbers:
        """From pairs in walk order; duplicates (hard links) collapse to one, the lowest media inode.

        The pairs are sorted a run at a time into flat arrays, and the runs merged.
        """
        runs = []
        for start in range(0, len(fs_inodes), cls.SORT_RUN):
            end = start + cls.SORT_RUN
            pairs = sorted(zip(fs_inodes[start:end], media_inodes[start:end], strict=True))
            runs.append((array("Q", (p[0] for p in pairs)), array("I", (p[1] for p in pairs))))
            del pairs
        runs_in_order = (zip(f, m, strict=True) for f, m in runs)
        ordered = next(runs_in_order) if len(runs) == 1 else merge(*runs_in_order)
        keep_fs, keep_media = array("Q"), array("I")
        previous = None
        for fs, media in ordered:
            if fs != previous:
                keep_fs.append(fs)
                keep_media.append(media)
                previous = fs
        return cls(keep_fs, keep_media)

    def encode(self) -> bytes:
        raw = struct.pack("<Q", len(self)) + self.fs_inodes.tobytes() + self.media_inodes.tobytes()
        return self.MAGIC + zlib.compress(raw, 3)

    @classmethod
    def decode(cls, blob: bytes) -> InodeNumbers:
        if not blob.startswith(cls.MAGIC):
            raise ValueError("not an inode map")
        raw = zlib.decompress(blob[len(cls.MAGIC) :])
        (count,) = struct.unpack_from("<Q", raw)
        fs_inodes, media_inodes = array("Q"), array("I")
        fs_inodes.frombytes(raw[8 : 8 + 8 * count])
        media_inodes.frombytes(raw[8 + 8 * count : 8 + 12 * count])
        return cls(fs_inodes, media_inodes)


class History:
    """Reading and writing the dump history of one state database."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def start(
        self,
        *,
        identity: str,
        fs_path: str,
        dumped_path: str,
        level: int,
        dump_date_ns: int,
        base_id: int | None,
        read_only: bool,
        label: str,
        blocking_factor: int,
        is_base: bool = True,
        file_history: bool = False,
    ) -> int:
        """Record a dump that begins; it is no base until ``complete`` (and never without ``is_base``)."""
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO dumps (identity, fs_path, dumped_path, level, dump_date_ns, base_id, status, "
                "read_only, started, pid, host, label, blocking_factor, is_base, file_history) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    identity,
                    fs_path,
                    dumped_path,
                    level,
                    dump_date_ns,
                    base_id,
                    int(read_only),
                    time.time(),
                    os.getpid(),
                    socket.gethostname(),
                    label,
                    blocking_factor,
                    int(is_base),
                    int(file_history),
                ),
            )
            return cursor.lastrowid

    def complete(
        self, dump_id: int, *, media: dict, counts: dict, maxino: int, numbers: InodeNumbers | None
    ) -> None:
        """The dump is on media in full: from now on it can be a base.

        ``numbers`` is None for a dump that is no base (UPDATE=N): no later
        dump numbers its inodes after it, so it keeps no inode map.
        """
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE dumps SET status = 'completed', finished = ?, media = ?, counts = ?, maxino = ? "
                "WHERE id = ?",
                (
                    time.time(),
                    json.dumps(media, sort_keys=True),
                    json.dumps(counts, sort_keys=True),
                    maxino,
                    dump_id,
                ),
            )
            if numbers is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO inode_maps (dump_id, data) VALUES (?, ?)",
                    (dump_id, numbers.encode()),
                )

    def fail(self, dump_id: int) -> None:
        """The dump will never complete: no base, and its file history goes (it points at nothing)."""
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE dumps SET status = 'failed', finished = ? WHERE id = ? "
                "AND status IN ('running', 'interrupted')",
                (time.time(), dump_id),
            )
            if cursor.rowcount:
                drop_rows(conn, dump_id)

    def interrupt(self, dump_id: int) -> None:
        """Stopped in pass IV with a restartable context: no base until a restart completes it."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE dumps SET status = 'interrupted', pid = NULL WHERE id = ? AND status = 'running'",
                (dump_id,),
            )

    def resume(self, dump_id: int) -> None:
        """A restart of an interrupted dump runs in this process."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE dumps SET status = 'running', pid = ?, started = ? WHERE id = ?",
                (os.getpid(), time.time(), dump_id),
            )

    def reap(self) -> None:
        """Dumps of this host left 'running' by a process that is gone (killed, power loss).

        One a restartable context holds is interrupted; any other failed.
        """
        host = socket.gethostname()
        rows = self.db.conn.execute(
            "SELECT id, pid, started, EXISTS (SELECT 1 FROM contexts WHERE contexts.dump_id = dumps.id) "
            "AS held FROM dumps WHERE status = 'running' AND host = ?",
            (host,),
        ).fetchall()
        for row in rows:
            if row["pid"] and not _alive(row["pid"], row["started"]):
                if row["held"]:
                    self.interrupt(row["id"])
                else:
                    self.fail(row["id"])

    def get(self, dump_id: int) -> DumpRecord | None:
        row = self.db.conn.execute("SELECT * FROM dumps WHERE id = ?", (dump_id,)).fetchone()
        return _record(row) if row else None

    def find_base(self, identity: str, fs_path: str, level: int) -> DumpRecord | None:
        """The most recent completed dump of this path with a level lower than ``level``."""
        row = self.db.conn.execute(
            "SELECT * FROM dumps WHERE identity = ? AND fs_path = ? AND status = 'completed' AND is_base "
            "AND level < ? "
            "ORDER BY dump_date_ns DESC, id DESC LIMIT 1",
            (identity, fs_path, level),
        ).fetchone()
        return _record(row) if row else None

    def dumps_of(
        self, identity: str, fs_path: str, *, completed_only: bool = True, bases_only: bool = True
    ) -> list[DumpRecord]:
        """A path's dumps in backup order; those taken with UPDATE=N only if ``bases_only`` is off."""
        query = "SELECT * FROM dumps WHERE identity = ? AND fs_path = ?"
        if completed_only:
            query += " AND status = 'completed'"
        if bases_only:
            query += " AND is_base"
        rows = self.db.conn.execute(query + " ORDER BY dump_date_ns, id", (identity, fs_path)).fetchall()
        return [_record(r) for r in rows]

    def dumps_from(self, dumped_path: str, *, bases_only: bool = True) -> list[DumpRecord]:
        """Completed dumps taken from this absolute path, whatever file system was there."""
        query = "SELECT * FROM dumps WHERE dumped_path = ? AND status = 'completed'"
        if bases_only:
            query += " AND is_base"
        rows = self.db.conn.execute(query + " ORDER BY dump_date_ns, id", (dumped_path,)).fetchall()
        return [_record(r) for r in rows]

    def by_date(self, dump_date: int) -> list[DumpRecord]:
        """Completed dumps with this c_date (whole seconds), for naming a dump seen on media."""
        low = dump_date * 1_000_000_000
        rows = self.db.conn.execute(
            "SELECT * FROM dumps WHERE status = 'completed' AND dump_date_ns >= ? AND dump_date_ns < ? "
            "ORDER BY id",
            (low, low + 1_000_000_000),
        ).fetchall()
        return [_record(r) for r in rows]

    def inode_numbers(self, dump_id: int) -> InodeNumbers | None:
        row = self.db.conn.execute("SELECT data FROM inode_maps WHERE dump_id = ?", (dump_id,)).fetchone()
        return InodeNumbers.decode(row["data"]) if row else None


def _alive(pid: int, started: float) -> bool:
    """Is the process that started a dump at ``started`` still running (not a reused pid)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK") <= started + 1
    except (OSError, ValueError, IndexError, StopIteration):
        return True
