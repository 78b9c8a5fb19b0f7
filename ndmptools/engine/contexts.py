"""Restartable-dump contexts as the operator sees them: listed, shown, deleted.

``show`` gives every field the seed's ``restartable-backup show`` prints,
under the same names; ``delete`` gives a dump up: the unfinished volume file
goes, a volume begun after the last checkpoint is undone, the snapshot is
released (removed if the dump made it), and the dump is recorded as failed.
"""

from __future__ import annotations

import time

from ndmptools.engine.dump.context import remove_owned_snapshot
from ndmptools.engine.progress import RunContext
from ndmptools.errors import SnapshotError
from ndmptools.media import discard_volume
from ndmptools.state.contexts import Context, ContextStore
from ndmptools.state.history import History

RESTART_PASS = 4  # contexts exist from pass IV on: a restart goes on there

# (label the seed prints, key in --json)
FIELDS = (
    ("Host", "host"),
    ("Context Identifier", "context_id"),
    ("Volume Name", "volume_name"),
    ("Is Cleanup Pending?", "is_cleanup_pending"),
    ("Backup Engine Type", "backup_engine_type"),
    ("Is Snapshot Copy Auto-created?", "is_snapshot_copy_auto_created"),
    ("Dump Path", "dump_path"),
    ("Incremental Backup Level ID", "incremental_backup_level_id"),
    ("Dump Name", "dump_name"),
    ("Context Last Updated Time", "context_last_updated_time"),
    ("Has Offset Map?", "has_offset_map"),
    ("Offset Verify", "offset_verify"),
    ("Is Context Restartable?", "is_context_restartable"),
    ("Is Context Busy?", "is_context_busy"),
    ("Restart Pass", "restart_pass"),
    ("Status of Backup", "status_of_backup"),
    ("Snapshot Copy Name", "snapshot_copy_name"),
    ("State of the Context", "state_of_the_context"),
)


def cleanup_pending(context: Context) -> bool:
    """Nothing can restart it, yet it holds a snapshot and media: it waits to be deleted."""
    return not context.busy and context.checkpoint is None


def context_fields(context: Context) -> dict:
    """Every field of ``contexts show``, by its --json key."""
    spec = context.spec
    checkpoint = context.checkpoint or {}
    snapshot = spec.get("snapshot", {})
    state = "active" if context.busy else ("restartable" if context.restartable else "not restartable")
    status = "running" if context.busy else (context.reason or "interrupted (the process ended)")
    return {
        "host": context.host,
        "context_id": context.id,
        "volume_name": spec.get("volume_name", ""),
        "is_cleanup_pending": cleanup_pending(context),
        "backup_engine_type": "dump",
        "is_snapshot_copy_auto_created": bool(snapshot.get("owned")),
        "dump_path": context.dumped_path,
        "incremental_backup_level_id": context.level,
        "dump_name": f"{context.dumped_path} level {context.level} of "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(spec.get('dump_date_ns', 0) // 10**9))}",
        "context_last_updated_time": int(context.updated),
        "has_offset_map": False,
        "offset_verify": False,
        "is_context_restartable": context.restartable,
        "is_context_busy": context.busy,
        "restart_pass": RESTART_PASS,
        "status_of_backup": status,
        "snapshot_copy_name": snapshot.get("name", ""),
        "state_of_the_context": state,
        "checkpoint": {
            "volume": checkpoint.get("volume"),
            "blocks_on_media": checkpoint.get("blocks"),
            "resume": checkpoint.get("resume"),
            "volumes": [v.get("spec") for v in checkpoint.get("volumes", [])],
        },
    }


def delete_context(contexts: ContextStore, wanted: str, history: History | None, run: RunContext) -> str:
    """Give up a restartable dump; refused (ContextBusy) while a process runs it."""
    lock = contexts.lock(contexts.find(wanted).id)
    try:
        context = contexts.find(wanted)  # again, now that it is held: a restart may have ended it
        if context.pending:
            discard_volume(context.pending)  # begun after the last checkpoint
        seal = (context.checkpoint or {}).get("seal", {})
        if seal.get("kind") == "file":
            discard_volume(seal)  # the unfinished file: a failed dump leaves none
        try:
            remove_owned_snapshot(context)
        except SnapshotError as err:
            raise SnapshotError(
                f"{err.message}: the context stays until its snapshot can be removed"
            ) from None
        if history is not None and context.dump_id is not None:
            history.fail(context.dump_id)
        contexts.delete(context.id)
    finally:
        lock.release(remove=True)
    return context.id
