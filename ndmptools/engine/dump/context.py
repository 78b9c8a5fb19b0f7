"""The context a dump keeps from its snapshot on, and what becomes of it when the dump stops."""

from __future__ import annotations

import socket

from ndmptools.engine.dump.checkpoint import Checkpointer, snapshot_from_dict, snapshot_to_dict
from ndmptools.engine.progress import RunContext
from ndmptools.errors import NdmpToolsError
from ndmptools.format.records import RecordWriter
from ndmptools.media.base import Medium
from ndmptools.snapshot import Snapshot, make_provider
from ndmptools.state.contexts import Context, ContextBusy, ContextLock, ContextStore
from ndmptools.state.history import History


def why_stopped(err: BaseException) -> str:
    if isinstance(err, KeyboardInterrupt):
        return "interrupted by a signal"
    if isinstance(err, NdmpToolsError):
        return err.message
    return f"internal error: {err!r}"


class ContextSession:
    """One process's hold on a context: the lock, the checkpoints, and the ending."""

    def __init__(
        self,
        contexts: ContextStore,
        context_id: str,
        lock: ContextLock,
        checkpointer: Checkpointer | None,
        medium: Medium | None,
        record_id: int | None,
    ) -> None:
        self.contexts = contexts
        self.context_id = context_id
        self.lock = lock
        self.checkpointer = checkpointer
        self.medium = medium
        self.record_id = record_id

    @classmethod
    def claim(cls, contexts: ContextStore, source: str, level: int, snapshot: Snapshot) -> ContextSession:
        """A dump has its snapshot: a context, held by this process, says so until pass IV or the end.

        Should the process die before pass IV, the next dump finds the context
        with no checkpoint and nobody holding it, and removes the snapshot.
        """
        spec = {"source": source, "level": level, "snapshot": snapshot_to_dict(snapshot)}
        context_id = contexts.new_id()
        lock = contexts.lock(context_id)  # held before the context exists: never seen abandoned
        try:
            contexts.create(dumped_path=source, level=level, dump_id=None, spec=spec, context_id=context_id)
        except BaseException:
            lock.release(remove=True)
            raise
        return cls(contexts, context_id, lock, None, None, None)

    def begin_pass_iv(self, spec: dict, record_id: int | None, writer: RecordWriter, medium: Medium) -> None:
        """Pass IV begins: the context gets what a restart needs, and its first checkpoint."""
        self.contexts.begin_pass_iv(self.context_id, spec, record_id)
        self.record_id = record_id
        self.medium = medium
        interval = spec.get("checkpoint_interval", 5.0)
        self.checkpointer = Checkpointer(self.contexts, self.context_id, writer, medium, interval=interval)
        self.checkpointer.take()

    @classmethod
    def resume(
        cls,
        contexts: ContextStore,
        context_id: str,
        lock: ContextLock,
        writer: RecordWriter,
        medium: Medium,
        record_id: int | None,
        interval: float,
        earlier_volumes: list[dict],
    ) -> ContextSession:
        """A restart holds the context again; its checkpoints continue the old ones."""
        contexts.set_status(context_id, "running")
        checkpointer = Checkpointer(
            contexts, context_id, writer, medium, interval=interval, earlier_volumes=earlier_volumes
        )
        return cls(contexts, context_id, lock, checkpointer, medium, record_id)

    def suspend(self, err: BaseException, run: RunContext, history: History | None) -> None:
        """The dump stops in pass IV: keep what is on media, the snapshot and the context."""
        self.checkpointer.stop()
        self.medium.suspend()
        reason = why_stopped(err)
        try:
            self.contexts.set_status(self.context_id, "interrupted", reason)
            if history is not None and self.record_id is not None:
                history.interrupt(self.record_id)
        except NdmpToolsError as state_err:
            run.warn(f"the context of this dump could not be updated: {state_err.message}")
        self.lock.release()
        run.note(
            f"the dump stopped in pass IV and can go on from its last checkpoint: "
            f"ndmptools dump --restart {self.context_id} -f NEXT-VOLUME "
            f"(or `ndmptools contexts delete {self.context_id}` to give it up)"
        )

    @property
    def in_pass_iv(self) -> bool:
        return self.checkpointer is not None

    def finish(self) -> None:
        """The dump is over, done or failed with nothing to restart: its context goes."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.contexts.delete(self.context_id)
        self.lock.release(remove=True)


def remove_owned_snapshot(context: Context) -> str:
    """Remove the snapshot a context's dump made, unless it is gone already; returns its name."""
    saved = snapshot_from_dict(context.spec["snapshot"])
    provider = make_provider(saved.provider)
    if saved.owned and provider.exists(saved):
        provider.delete(saved)
    return saved.name


def reap_abandoned(contexts: ContextStore, run: RunContext) -> None:
    """Contexts of dumps that died before pass IV: nothing to restart, so their snapshots go."""
    for context in contexts.all():
        if context.checkpoint is not None or context.busy or context.host != socket.gethostname():
            continue
        try:
            lock = contexts.lock(context.id)
        except ContextBusy:
            continue
        try:
            if not contexts.exists(context.id):
                continue  # its dump ended meanwhile, and took it along
            name = remove_owned_snapshot(context)
            contexts.delete(context.id)
            run.note(f"removed the snapshot {name} of a dump of {context.dumped_path} that died early")
        except NdmpToolsError as err:
            run.warn(f"a dump of {context.dumped_path} that died early left {err.message}")
        finally:
            lock.release(remove=True)
