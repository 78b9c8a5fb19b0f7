"""Checkpoints of pass IV, which make a dump restartable.

Every few seconds of pass IV (and at each change of volume) the medium is
made durable and the context records how far it is: the blocks on media, the
inode a restart rebuilds the stream from, and how to seal the volume there.
The stream is a pure function of the snapshot, so a restart rebuilds it from
that inode and writes only what comes after the blocks already on media.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable

from ndmptools.engine.dump.mapping import TreeMap
from ndmptools.format.records import RecordWriter, Resume
from ndmptools.media.base import Medium
from ndmptools.snapshot import Snapshot
from ndmptools.state.contexts import ContextStore

DEFAULT_INTERVAL = 5.0  # seconds of pass IV between checkpoints


def tree_digest(tree: TreeMap) -> str:
    """What a restart checks it would write the same stream: the numbering and the directories."""
    digest = hashlib.sha256()
    digest.update(tree.numbers().encode())
    digest.update(struct.pack("<QQ", tree.maxino, len(tree.directories)))
    for node in tree.directories:
        digest.update(struct.pack("<QQ?", node.ino, len(node.contents), node.dump))
        digest.update(node.contents)
    for ino, index, name in tree.files_to_dump:
        digest.update(struct.pack("<QQ", ino, index) + name)
    return digest.hexdigest()


def snapshot_to_dict(snapshot: Snapshot) -> dict:
    return {
        "provider": snapshot.provider,
        "name": snapshot.name,
        "path": snapshot.path,
        "created_ns": snapshot.created_ns,
        "owned": snapshot.owned,
        "exclude_at_root": [name.hex() for name in snapshot.exclude_at_root],
        "handle": {k: v for k, v in snapshot.handle.items() if k != "mount_point"},
    }


def snapshot_from_dict(data: dict) -> Snapshot:
    return Snapshot(
        provider=data["provider"],
        name=data["name"],
        path=data["path"],
        created_ns=data["created_ns"],
        owned=data["owned"],
        exclude_at_root=tuple(bytes.fromhex(name) for name in data.get("exclude_at_root", [])),
        handle=dict(data.get("handle", {})),
    )


def resume_of(checkpoint: dict) -> Resume:
    return Resume(
        start_tapea=checkpoint["start_tapea"],
        blocks=checkpoint["blocks"],
        volume=checkpoint["volume"],
        phantoms=tuple(checkpoint.get("phantoms", ())),
    )


class Checkpointer:
    """Writes a checkpoint to the context at most every ``interval`` seconds of records."""

    def __init__(
        self,
        contexts: ContextStore,
        context_id: str,
        writer: RecordWriter,
        medium: Medium,
        *,
        interval: float = DEFAULT_INTERVAL,
        earlier_volumes: list[dict] | None = None,
    ) -> None:
        self.contexts = contexts
        self.context_id = context_id
        self.writer = writer
        self.medium = medium
        self.interval = interval
        self.earlier_volumes = list(earlier_volumes or [])  # volumes before this run's first
        self._last = 0.0
        self._volume_changed = False
        self.active = True
        self.before_take: Callable[[], None] | None = None  # e.g. the file history's flush
        writer.on_record = self._after_record
        writer.on_volume = self._volume_begins

    def _after_record(self) -> None:
        if not self.active:
            return
        if self._volume_changed or self.medium.early_warning:
            self.take()  # a volume's first record, or its last before the next: both worth keeping
        elif time.monotonic() - self._last >= self.interval:
            self.take()

    def _volume_begins(self) -> None:
        """A volume begins: until its first checkpoint, a restart undoes it."""
        if self.active:
            self._volume_changed = True
            self.contexts.set_pending(self.context_id, self.medium.checkpoint())

    def take(self) -> None:
        """Make the records on the medium durable, then say so in the context."""
        w = self.writer
        if self.before_take is not None:
            self.before_take()
        seal = self.medium.checkpoint()
        blocks = w.durable_blocks
        start_tapea, resume = w.resume_point()
        checkpoint = {
            "volume": w.volume,
            "blocks": blocks,
            "start_tapea": start_tapea,
            "resume": resume,
            "phantoms": [p for p in w.volume_starts if start_tapea < p < blocks],
            "volume_starts": [p for p in w.volume_starts if p < blocks],  # for the file history
            "seal": seal,
            "volumes": self.earlier_volumes + list(w.locations),
            "taken": time.time(),
        }
        self.contexts.save_checkpoint(self.context_id, checkpoint)
        self._last = time.monotonic()
        self._volume_changed = False

    def stop(self) -> None:
        self.active = False
        self.writer.on_record = None
        self.writer.on_volume = None
