"""``dump --restart``: an interrupted dump goes on from its last checkpoint, as its next volume.

The volume the dump was writing is sealed at the checkpoint (a file cut back
and put in place, a cartridge given its filemark there), a volume begun after
it is undone, and the stream is rebuilt from the checkpoint's inode on the
same snapshot: what the old volumes hold is counted and not written again,
and the rest goes to a new volume whose TS_TAPE continues where they end,
as at any change of volume. A completed restart completes the dump.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from ndmptools.engine.dump import (
    DumpResult,
    _check_record_size,
    _field,
    file_history_recorder,
    left_out_fields,
    make_writer,
    media_record,
    packer_from_fields,
)
from ndmptools.engine.dump.checkpoint import resume_of, snapshot_from_dict, tree_digest
from ndmptools.engine.dump.context import ContextSession
from ndmptools.engine.dump.mapping import Base, LiveTree, map_tree
from ndmptools.engine.dump.marks import MarkFilter
from ndmptools.engine.dump.passes import DumpWriter, has_project_ids
from ndmptools.engine.errors import ChainError, SnapshotError, StateError, UsageError
from ndmptools.engine.fsinfo import describe
from ndmptools.engine.options import DumpOptions
from ndmptools.engine.progress import RunContext
from ndmptools.media import discard_volume, seal_volume
from ndmptools.media.base import Medium
from ndmptools.snapshot import Snapshot, make_provider, release_snapshot
from ndmptools.state.contexts import Context, ContextStore
from ndmptools.state.history import History


def reattach_snapshot(context: Context) -> tuple[object, Snapshot]:
    """The context's snapshot, found (and mounted, for LVM) again; SnapshotError if it is gone."""
    saved = snapshot_from_dict(context.spec["snapshot"])
    provider = make_provider(saved.provider)
    source = context.spec["source"]
    fs = describe(source)
    try:
        found = provider.existing(source, fs, saved.name)
    except SnapshotError as err:
        raise SnapshotError(
            f"the snapshot {saved.name} of context {context.id} is gone ({err.message}): the dump "
            f"cannot be restarted; `ndmptools contexts delete {context.id}` gives it up"
        ) from None
    found.owned = saved.owned
    found.created_ns = saved.created_ns
    found.exclude_at_root = saved.exclude_at_root
    return provider, found


def _file_volumes(checkpoint: dict) -> set[str]:
    """Paths of the volumes already written, which the restart must not overwrite."""
    paths = set()
    for location in checkpoint.get("volumes", []):
        spec = location.get("spec", "")
        if not spec.startswith("vtape:") and spec.startswith("/"):
            paths.add(os.path.realpath(spec))
        elif spec.startswith("vtape:") and spec.endswith(".tap"):
            paths.add(os.path.realpath(spec[len("vtape:") :]))
    seal = checkpoint.get("seal", {})
    for key in ("final", "path"):
        if seal.get(key):
            paths.add(os.path.realpath(seal[key]))
    return paths


def run_restart(
    options: DumpOptions,
    open_output: Callable[[], Medium],
    run: RunContext,
    history: History | None,
    contexts: ContextStore,
) -> DumpResult:
    """Go on with the dump of context ``options.restart`` onto the medium ``open_output`` opens."""
    lock = contexts.lock(contexts.find(options.restart).id)
    try:
        context = contexts.find(options.restart)  # again, now that it is held: another run may have ended it
        return _restart(options, open_output, run, history, contexts, context, lock)
    finally:
        lock.release()


def _restart(options, open_output, run, history, contexts, context, lock) -> DumpResult:
    checkpoint = context.checkpoint
    if checkpoint is None:
        raise StateError(f"context {context.id} has no checkpoint to restart from: delete it")
    if context.host != socket.gethostname():
        raise StateError(f"context {context.id} belongs to {context.host}: restart it there")
    target = options.file
    if target not in ("-", "auto") and os.path.realpath(target.removeprefix("vtape:")) in _file_volumes(
        checkpoint
    ):
        raise UsageError(f"{target} holds a volume of this dump already: the restart needs another one")
    provider, snapshot = reattach_snapshot(context)
    try:
        result = _rebuild(options, open_output, run, history, contexts, context, lock, snapshot)
    except BaseException:
        release_snapshot(provider, snapshot, keep=True)  # unmount (LVM); it stays with the context
        raise
    try:
        release_snapshot(provider, snapshot)
    except SnapshotError as err:
        run.warn(f"{err.message}: remove it by hand")
    return result


def _rebuild(options, open_output, run, history, contexts, context, lock, snapshot) -> DumpResult:
    spec = context.spec
    checkpoint = context.checkpoint
    source = spec["source"]
    base = spec.get("base")
    since = None
    if base is not None:
        numbers = history.inode_numbers(base["id"]) if history is not None else None
        if numbers is None:
            raise ChainError(f"the base dump (#{base['id']}) of context {context.id} has lost its inode map")
        since = Base(base["dump_date_ns"], numbers, base["maxino"])
    marks = MarkFilter.from_spec(run, os.fsencode(source), spec.get("marks"))  # the first run's choices
    walk_root = os.fsencode(snapshot.path)
    if "mount_points" in spec:  # the first run's mount points, whatever is mounted now
        mounts = tuple(bytes.fromhex(path) for path in spec["mount_points"])
        live = LiveTree(walk_root, os.fsencode(source), mounts)
    else:
        live = LiveTree.of(walk_root, os.fsencode(source))
    tree = map_tree(
        walk_root,
        run,
        since,
        snapshot.exclude_at_root,
        marks,
        live,
        exclude=tuple(spec.get("exclude", ())),
        ignore_ctime=spec.get("ignore_ctime", False),
    )
    if tree_digest(tree) != spec["tree"]["digest"]:
        raise SnapshotError(
            f"the snapshot {snapshot.name} no longer reads as it did when context {context.id} began: "
            "the dump cannot be restarted"
        )
    fresh = checkpoint["blocks"] == 0  # nothing reached the media: the restart is the whole dump
    if fresh:
        discard_volume(checkpoint["seal"])
    else:
        seal_volume(checkpoint["seal"])
    if context.pending:
        discard_volume(context.pending)
        contexts.set_pending(context.id, None)
    packer = packer_from_fields(spec["header"])
    dump_date = spec["header"]["date"]
    resume = None if fresh else resume_of(checkpoint)
    earlier = [] if fresh else list(checkpoint.get("volumes", []))
    record_id = context.dump_id
    if history is not None and record_id is not None:
        history.resume(record_id)
    medium = open_output()
    session = None
    try:
        _check_record_size(spec["blocking_factor"], medium)
        writer = make_writer(medium, packer, spec["blocking_factor"], source, dump_date, resume=resume)
        if resume is not None:  # the volumes before the resume point start where they started
            earlier_starts = {p for p in checkpoint.get("volume_starts", ()) if p < checkpoint["blocks"]}
            writer.volume_starts = sorted(earlier_starts | set(writer.volume_starts))
        session = ContextSession.resume(
            contexts,
            context.id,
            lock,
            writer,
            medium,
            record_id,
            spec.get("checkpoint_interval", 5.0),
            earlier,
        )
        dumper = DumpWriter(tree, writer, packer, run, project_ids=has_project_ids(describe(source)))
        dumper.no_acls = spec.get("no_acls", False)
        what = {"kind": "start"} if fresh else checkpoint["resume"]
        if spec.get("file_history") and history is not None and record_id is not None:
            dumper.history = file_history_recorder(history, record_id, tree)
            # What is written again goes to a new volume: the places the catalog has for it go first.
            dumper.history.restart_from(what["ino"] if what["kind"] == "file" else None)
            session.checkpointer.before_take = dumper.history.flush
        run.reporter.phase("restarting", total_bytes=tree.estimated_bytes)
        if fresh:
            run.note(f"restarting context {context.id}: nothing was on media, so this is the whole dump")
        else:
            run.note(
                f"restarting context {context.id} as volume {checkpoint['volume'] + 1}, "
                + (f"from inode {what['ino']}" if what["kind"] == "file" else "from the start of the stream")
            )
        if what["kind"] == "file":
            dumper.write_files(resume_from=what["ino"])
        else:
            dumper.write_volume_start()
            dumper.write_directories()
            dumper.write_files()
        dumper.finish()
        if dumper.history is not None:
            dumper.history.flush()
        session.checkpointer.stop()
    except BaseException as err:
        if session is not None:
            session.suspend(err, run, history)
        else:
            medium.abort()
            contexts.set_status(context.id, "interrupted", f"restart failed: {err}")
            if history is not None and record_id is not None:
                history.interrupt(record_id)
        raise
    medium.close()
    volumes = earlier + list(writer.locations)
    if history is not None and record_id is not None:
        history.complete(
            record_id,
            media=media_record(volumes, writer.volume_starts),
            counts={
                "inodes": None,  # written over several runs: not counted
                "blocks": writer.blocks_written,
                "files": tree.files,
                "directories": len(tree.directories),
            },
            maxino=tree.maxino,
            numbers=tree.numbers(),
        )
    session.finish()
    fields = spec["header"]
    run.stats.entries = dumper.inodes_written
    run.stats.bytes = writer.bytes_written - (resume.blocks * 1024 if resume else 0)
    run.stats.stop()
    return DumpResult(
        path=source,
        level=spec["level"],
        date=dump_date,
        base_date=fields["ddate"] or None,
        label=spec["label"],
        filesys=os.fsdecode(_field(source)),
        device=bytes.fromhex(fields["dev"]).decode(errors="replace"),
        host=bytes.fromhex(fields["host"]).decode(errors="replace"),
        blocking_factor=spec["blocking_factor"],
        inodes=dumper.inodes_written,
        directories=sum(1 for n in tree.directories if n.dump),
        files=tree.files,
        blocks=writer.blocks_written,
        records=writer.records_written,
        volumes=writer.volume,
        medium=medium.name,
        stats=run.stats,
        recorded=record_id is not None and history is not None and history.get(record_id).is_base,
        file_history=dumper.history.inodes if dumper.history is not None else None,
        snapshot=snapshot.name,
        restarted=context.id,
        skipped=[marks.shown(f) for f in marks.skipped],
        pending_included=[marks.shown(f) for f in marks.included],
        **left_out_fields(tree),
    )
