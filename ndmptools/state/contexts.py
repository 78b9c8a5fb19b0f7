"""Restartable-dump contexts: what an interrupted dump needs to go on, kept across reboots.

A context is created when a dump enters pass IV and updated at each
checkpoint; a dump that completes removes it. Busy is not a flag in the
database but a lock on a file beside it, held by the process that runs the
dump: it goes when that process does, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass

from ndmptools.errors import StateError
from ndmptools.state.db import StateDB


@dataclass
class Context:
    id: str
    host: str
    dump_id: int | None
    dumped_path: str
    level: int
    created: float
    updated: float
    status: str  # running, interrupted
    reason: str | None
    spec: dict
    checkpoint: dict | None
    pending: dict | None
    busy: bool = False

    @property
    def restartable(self) -> bool:
        """It has a checkpoint to go on from, and nothing is running it."""
        return self.checkpoint is not None and not self.busy


class ContextBusy(StateError):
    """A live process holds the context."""


class ContextLock:
    """An exclusive lock on one context, released when closed or when its process ends."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self, remove: bool = False) -> None:
        if self._fd < 0:
            return
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1


def _loads(text: str | None) -> dict | None:
    return json.loads(text) if text else None


class ContextStore:
    def __init__(self, db: StateDB) -> None:
        self.db = db
        self.lock_dir = os.path.join(os.path.dirname(db.path), "contexts")

    def _lock_path(self, context_id: str) -> str:
        return os.path.join(self.lock_dir, f"{context_id}.lock")

    def lock(self, context_id: str) -> ContextLock:
        """Hold ``context_id`` for this process; ContextBusy if another one does."""
        os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)
        try:
            return ContextLock(self._lock_path(context_id))
        except BlockingIOError:
            raise ContextBusy(f"context {context_id} is busy: a running dump holds it") from None

    def is_busy(self, context_id: str) -> bool:
        try:
            fd = os.open(self._lock_path(context_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())

    def create(
        self, *, dumped_path: str, level: int, dump_id: int | None, spec: dict, context_id: str | None = None
    ) -> str:
        """A new context; lock ``context_id`` first, so that it is never seen unheld."""
        context_id = context_id or self.new_id()
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO contexts (id, host, dump_id, dumped_path, level, created, updated, status, "
                "spec) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?)",
                (context_id, socket.gethostname(), dump_id, dumped_path, level, now, now, json.dumps(spec)),
            )
        return context_id

    def begin_pass_iv(self, context_id: str, spec: dict, dump_id: int | None) -> None:
        """The dump reaches pass IV: what a restart needs, and the dump it belongs to."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE contexts SET spec = ?, dump_id = ?, updated = ? WHERE id = ?",
                (json.dumps(spec), dump_id, time.time(), context_id),
            )

    def save_checkpoint(self, context_id: str, checkpoint: dict) -> None:
        """The new checkpoint; a volume begun before it is no longer pending."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE contexts SET checkpoint = ?, pending = NULL, updated = ? WHERE id = ?",
                (json.dumps(checkpoint), time.time(), context_id),
            )

    def set_pending(self, context_id: str, volume: dict | None) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE contexts SET pending = ?, updated = ? WHERE id = ?",
                (json.dumps(volume) if volume else None, time.time(), context_id),
            )

    def set_status(self, context_id: str, status: str, reason: str | None = None) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE contexts SET status = ?, reason = ?, updated = ? WHERE id = ?",
                (status, reason, time.time(), context_id),
            )

    def _context(self, row) -> Context:
        return Context(
            id=row["id"],
            host=row["host"],
            dump_id=row["dump_id"],
            dumped_path=row["dumped_path"],
            level=row["level"],
            created=row["created"],
            updated=row["updated"],
            status=row["status"],
            reason=row["reason"],
            spec=json.loads(row["spec"]),
            checkpoint=_loads(row["checkpoint"]),
            pending=_loads(row["pending"]),
            busy=self.is_busy(row["id"]),
        )

    def all(self) -> list[Context]:
        rows = self.db.conn.execute("SELECT * FROM contexts ORDER BY created, id").fetchall()
        return [self._context(row) for row in rows]

    def find(self, wanted: str) -> Context:
        """The context whose id is, or starts with, ``wanted``."""
        wanted = wanted.strip().lower()
        if not wanted or not re.fullmatch(r"[0-9a-f-]+", wanted):
            raise StateError(f"{wanted!r} is not a context identifier (a UUID, or its start)")
        rows = self.db.conn.execute(
            "SELECT * FROM contexts WHERE id LIKE ? ORDER BY id", (wanted + "%",)
        ).fetchall()
        exact = [row for row in rows if row["id"] == wanted]
        if exact:
            return self._context(exact[0])
        if not rows:
            raise StateError(f"there is no context {wanted} (`ndmptools contexts list` shows them)")
        if len(rows) > 1:
            raise StateError(f"{wanted} is the start of {len(rows)} context identifiers: give more of it")
        return self._context(rows[0])

    def delete(self, context_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM contexts WHERE id = ?", (context_id,))

    def exists(self, context_id: str) -> bool:
        row = self.db.conn.execute("SELECT 1 FROM contexts WHERE id = ?", (context_id,)).fetchone()
        return row is not None
