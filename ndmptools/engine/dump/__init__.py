"""``dump``: a level-0 backup of a path in the BSD dump format.

The passes follow Linux dump: I and II map the tree (mapping.py), III writes
the directories and IV every other inode (passes.py).
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ndmptools.engine.dump.checkpoint import snapshot_to_dict, tree_digest
from ndmptools.engine.dump.context import ContextSession, reap_abandoned
from ndmptools.engine.dump.filehistory import FileHistoryRecorder
from ndmptools.engine.dump.mapping import Base, LiveTree, map_tree
from ndmptools.engine.dump.marks import MarkFilter
from ndmptools.engine.dump.passes import DumpWriter, has_project_ids
from ndmptools.engine.errors import ChainError, MediaError, SnapshotError, SourceError, UsageError
from ndmptools.engine.fsinfo import FileSystemInfo, describe
from ndmptools.engine.levels import MAX_LEVEL
from ndmptools.engine.options import DumpOptions
from ndmptools.engine.progress import RunContext, RunStats
from ndmptools.format.constants import MAX_BLOCKING_FACTOR, MIN_BLOCKING_FACTOR, NAMELEN, TP_BSIZE
from ndmptools.format.header import HeaderPacker, InodeInfo
from ndmptools.format.records import RecordWriter
from ndmptools.media.base import Medium
from ndmptools.snapshot import (
    Provider,
    Snapshot,
    SnapshotNames,
    choose_provider,
    release_snapshot,
    take_snapshot,
)
from ndmptools.state.catalog import FileCatalog
from ndmptools.state.contexts import ContextStore
from ndmptools.state.db import default_state_dir
from ndmptools.state.history import DumpRecord, History
from ndmptools.state.marks import RestoreMarkLog


@dataclass
class DumpResult:
    """What a completed dump wrote, for the summary, --json and (later) the dump history."""

    path: str
    level: int
    date: int
    base_date: int | None
    label: str
    filesys: str
    device: str
    host: str
    blocking_factor: int
    inodes: int
    directories: int
    files: int
    blocks: int
    records: int
    volumes: int
    medium: str
    stats: RunStats
    recorded: bool = False
    snapshot: str = ""
    restarted: str | None = None  # the context this run restarted
    file_history: int | None = None  # inodes recorded in the catalog; None: HIST=N (or no history)
    skipped: list[str] = field(default_factory=list)  # files under a running restore, left out
    pending_included: list[str] = field(default_factory=list)  # left out by an earlier dump, taken now
    mount_links: list[str] = field(default_factory=list)  # mount points backed up as links to their paths
    nodump_files: int = 0  # changed files an incremental left out for the nodump flag
    nodump_directories: int = 0  # directories it left out, with all below them, for the flag

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "level": self.level,
            "date": self.date,
            "base_date": self.base_date,
            "recorded": self.recorded,
            "snapshot": self.snapshot,
            "restarted": self.restarted,
            "file_history": self.file_history,
            "skipped": self.skipped,
            "pending_included": self.pending_included,
            "mount_links": self.mount_links,
            "nodump": {"files": self.nodump_files, "directories": self.nodump_directories},
            "label": self.label,
            "filesys": self.filesys,
            "device": self.device,
            "host": self.host,
            "blocking_factor": self.blocking_factor,
            "inodes": self.inodes,
            "directories": self.directories,
            "files": self.files,
            "blocks": self.blocks,
            "records": self.records,
            "volumes": self.volumes,
            "medium": self.medium,
            "bytes": self.stats.bytes,
            "seconds": round(self.stats.seconds, 3),
            "warnings": self.stats.warnings,
        }


def resolve_source(path: str) -> str:
    """The absolute, resolved path to dump, or a SourceError saying why not."""
    try:
        real = os.path.realpath(path, strict=True)
        st = os.stat(real)
    except FileNotFoundError:
        raise SourceError(f"cannot dump {path}: no such file or directory") from None
    except OSError as err:
        raise SourceError(f"cannot dump {path}: {err.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        try:
            os.close(os.open(real, os.O_RDONLY | os.O_DIRECTORY))
        except OSError as err:
            raise SourceError(f"cannot dump {path}: {err.strerror}") from None
    return real


def _field(text: str) -> bytes:
    """A c_label/c_filesys/c_dev/c_host value: bytes, cut to fit its NUL-terminated field."""
    return os.fsencode(text)[: NAMELEN - 1]


CLOCK_REALTIME_COARSE = getattr(time, "CLOCK_REALTIME_COARSE", 5)  # Linux's number for it


def dump_clock_ns() -> int:
    """Now, by the clock the kernel stamps file times with.

    Linux takes ctime and mtime from the coarse real-time clock, which lags the
    precise one by up to a tick: a file changed just after a dump began could
    carry a time before a precise reading of "now", and the next incremental
    would miss it. Read by the same clock, every later change is at or after it.
    """
    try:
        return time.clock_gettime_ns(CLOCK_REALTIME_COARSE)
    except OSError:
        return time.time_ns() - 20_000_000  # a tick's worth of margin, and then some


def make_writer(
    medium: Medium, packer: HeaderPacker, blocking_factor: int, source: str, dump_date: int, resume=None
) -> RecordWriter:
    """The record writer of one dump, whose volumes start with the TS_TAPE headers ``packer`` makes."""
    return RecordWriter(
        medium,
        blocking_factor,
        volume_header=lambda split: packer.volume_header(
            split.tapea,
            volume=split.volume,
            inumber=split.inumber,
            inode=split.inode,
            continued_blocks=split.continued_blocks,
        ),
        description=f"the dump of {source} taken {_when(dump_date)}",
        resume=resume,
    )


def media_record(locations: list[dict], volume_starts: list[int]) -> dict:
    """Where a dump is, for the history: its first volume's place, every volume, and where each starts.

    ``volume_starts`` (c_tapea of each continuation volume's TS_TAPE) turns a
    header's c_tapea from the file history into a volume and a record on it.
    """
    return {
        "spec": locations[0]["spec"],
        "file_number": locations[0]["file_number"],
        "volumes": [loc["spec"] for loc in locations],
        "file_numbers": [loc.get("file_number", 1) for loc in locations],
        "volume_starts": [0, *volume_starts],
    }


def left_out_fields(tree) -> dict:
    """The DumpResult fields that say what the walk did not cross or left out."""
    return {
        "mount_links": sorted(os.fsdecode(target) for target, _ in tree.mount_links.values()),
        "nodump_files": tree.nodump_files,
        "nodump_directories": tree.nodump_directories,
    }


def file_history_recorder(history: History, record_id: int, tree) -> FileHistoryRecorder:
    """The recorder that writes one dump's inodes and their places to the catalog."""
    return FileHistoryRecorder(FileCatalog(history.db), record_id, tree.directories[0].path)


def packer_fields(packer: HeaderPacker) -> dict:
    """The header fields of a dump, as JSON can keep them for its restart."""
    return {k: v.hex() if isinstance(v, bytes) else v for k, v in packer.fields().items()}


def packer_from_fields(fields: dict) -> HeaderPacker:
    return HeaderPacker(
        **{k: bytes.fromhex(v) if k in ("label", "filesys", "dev", "host") else v for k, v in fields.items()}
    )


def _when(date: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(date))


def _check_record_size(blocking_factor: int, medium: Medium) -> None:
    """A dump's records must fit the drive: the seed's restoring side must take them too."""
    if medium.max_record_size and blocking_factor * TP_BSIZE > medium.max_record_size:
        largest = medium.max_record_size // TP_BSIZE
        raise MediaError(
            f"blocking factor {blocking_factor} ({blocking_factor} KiB records) is larger than the "
            f"largest block {medium.name} takes ({largest} KiB): use -b {min(largest, 256)} or less"
        )


def _choose_base(
    options: DumpOptions, source: str, fs: FileSystemInfo | None, history: History | None, run: RunContext
) -> tuple[int, DumpRecord | None]:
    """The level this dump is taken at, and its base; ChainError when an incremental cannot be."""
    if options.base_date is not None:
        return _base_by_date(options, source, fs, history, run)
    if options.level == 0:
        return 0, None
    reason = None
    base = None
    if history is None:
        reason = "an incremental needs the dump history, and there is none"
    elif history.db.newer_schema:
        reason = (
            f"the dump history in {history.db.path} was written by a newer ndmptools "
            f"(schema {history.db.version})"
        )
    elif fs is None:
        reason = f"the file system of {source} cannot be identified"
    else:
        base = history.find_base(fs.identity, fs.path_inside(source), options.level)
        if base is None:
            others = [d for d in history.dumps_from(source) if d.identity != fs.identity]
            if others:
                reason = (
                    f"the file system at {source} is not the one dumped before (it was "
                    f"{others[-1].identity}, it is {fs.identity} now)"
                )
            else:
                reason = f"there is no earlier dump of {source} at a level lower than {options.level}"
        elif base.read_only != fs.read_only:
            was, now = ("read-only", "read-write") if base.read_only else ("read-write", "read-only")
            reason = f"{source} was {was} at its base dump and is {now} now"
    if reason is None:
        return options.level, base
    if options.auto_baseline:
        run.warn(f"{reason}: taking a level 0 instead of a level {options.level}")
        return 0, None
    raise ChainError(f"{reason}: a level 0 is needed first (or use --auto-baseline)")


def _base_by_date(
    options: DumpOptions, source: str, fs: FileSystemInfo | None, history: History | None, run: RunContext
) -> tuple[int, DumpRecord | None]:
    """BASE_DATE: a DMA names the base by the DUMP_DATE it was told; the level follows from it.

    BASE_DATE=0 is a level 0. Otherwise the base is the completed dump of
    this path taken at that date; the level is LEVEL when that is above the
    base's, else one above the base's.
    """
    if options.base_date == 0:
        if options.level:
            run.note(f"BASE_DATE=0 asks for a full dump: taking a level 0, not a level {options.level}")
        return 0, None
    when = _when(options.base_date)
    if history is None or history.db.newer_schema or fs is None:
        raise ChainError(f"BASE_DATE={options.base_date} ({when}): there is no dump history to find it in")
    found = [
        d for d in history.dumps_of(fs.identity, fs.path_inside(source)) if d.dump_date == options.base_date
    ]
    if not found:
        raise ChainError(
            f"BASE_DATE={options.base_date}: there is no completed dump of {source} taken {when} "
            "to be the base (a level 0 is needed first)"
        )
    base = found[-1]
    if options.level and options.level <= base.level:
        raise ChainError(
            f"LEVEL={options.level} is not above the level {base.level} of the dump BASE_DATE names ({when})"
        )
    if base.read_only != fs.read_only:
        raise ChainError(f"{source} changed between read-only and read-write since the dump of {when}")
    if not options.level and base.level >= MAX_LEVEL:
        raise ChainError(f"the dump BASE_DATE names ({when}) is a level {MAX_LEVEL}: nothing goes above it")
    return (options.level or base.level + 1), base


def run_dump(
    options: DumpOptions,
    open_output: Callable[[], Medium],
    run: RunContext,
    history: History | None = None,
    provider: Provider | None = None,
    contexts: ContextStore | None = None,
    observer: FileHistoryObserver | None = None,
) -> DumpResult:
    """Dump ``options.path``, from a snapshot, to the medium ``open_output`` opens.

    The medium is opened only once the source has been checked and mapped, so
    a dump that cannot start creates nothing; one that fails later has its
    output discarded by the medium (a file never looks complete). With a
    history, a completed dump is recorded as a possible base (unless
    ``options.update`` is off); one that does not complete never is. The
    snapshot this dump makes is removed whatever happens, unless the dump
    stops in pass IV with a context (``contexts``) to restart it from: then
    the snapshot stays with the context. ``observer`` is told of every
    inode and its place as it is written, whatever HIST says for the catalog
    (an NDMP DMA's file history; see FileHistoryObserver).
    """
    if not 0 <= options.level <= MAX_LEVEL:
        raise UsageError(f"dump levels are 0 to {MAX_LEVEL}")
    if not MIN_BLOCKING_FACTOR <= options.blocking_factor <= MAX_BLOCKING_FACTOR:
        raise UsageError(f"blocking factor must be {MIN_BLOCKING_FACTOR} to {MAX_BLOCKING_FACTOR}")
    source = resolve_source(options.path)
    if history is not None:
        history.reap()
    if contexts is not None and not contexts.db.newer_schema:
        reap_abandoned(contexts, run)
    else:
        contexts = None
    fs = describe(source)
    level, base = _choose_base(options, source, fs, history, run)
    base_numbers = history.inode_numbers(base.id) if base is not None else None
    if base is not None and base_numbers is None:
        raise ChainError(f"the base dump of {source} (#{base.id}) has no inode map: a level 0 is needed")
    provider = provider or choose_provider(fs, source, options.snapshot_provider)
    kept = _Kept()
    if options.snapshot:
        snapshot = provider.existing(source, fs, options.snapshot)
    else:
        names = SnapshotNames(options.state_dir or default_state_dir())
        snapshot = take_snapshot(provider, source, fs, names, dump_clock_ns)
    session = None
    try:
        if contexts is not None and not snapshot.live:
            session = ContextSession.claim(contexts, source, level, snapshot)
        if snapshot.live:
            why = (
                "forced"
                if options.snapshot_provider == "none"
                else f"{fs.fstype if fs else '?'} has no snapshots"
            )
            run.note(f"dumping the live tree of {source} ({why}): changes made meanwhile are reported")
        if base is not None and snapshot.created_ns < base.dump_date_ns:
            raise ChainError(
                f"the snapshot {snapshot.name} is older than the base dump of "
                f"{_when(base.dump_date)}: it cannot be a level-{level} dump on it"
            )
        return _dump_snapshot(
            options,
            open_output,
            run,
            history,
            source,
            fs,
            level,
            base,
            base_numbers,
            snapshot,
            session,
            kept,
            observer,
        )
    finally:
        try:
            release_snapshot(provider, snapshot, keep=kept.snapshot)
        except SnapshotError as err:
            run.warn(f"{err.message}: remove it by hand")
        if session is not None and not kept.snapshot:
            session.finish()


class FileHistoryObserver(Protocol):
    """What a dump tells of each inode as it goes to media (the calls FileHistoryRecorder takes).

    ``tapea`` is the c_tapea of the inode's first header: 1 KiB blocks from
    the start of the stream, where a direct-access restore seeks to.
    """

    def directory(
        self, ino: int, path: bytes, info: InodeInfo, tapea: int, blocks: int, contents: bytes
    ) -> None: ...

    def inode(self, ino: int, info: InodeInfo, tapea: int, blocks: int) -> None: ...

    def flush(self) -> None: ...


class _Kept:
    """Whether an interrupted dump left a context, which keeps its snapshot."""

    snapshot = False


def _dump_snapshot(
    options,
    open_output,
    run,
    history,
    source,
    fs,
    level,
    base,
    base_numbers,
    snapshot: Snapshot,
    session: ContextSession | None,
    kept,
    observer=None,
) -> DumpResult:
    """Passes I-IV of one dump from ``snapshot``, recorded in the history when it completes."""
    record = history is not None and fs is not None and (options.update or options.file_history)
    if record and history.db.newer_schema:
        run.warn(f"not recorded: the dump history in {history.db.path} was written by a newer ndmptools")
        record = False
    dump_date_ns = snapshot.created_ns  # its tree is frozen then: later changes belong to the next dump
    dump_date = dump_date_ns // 1_000_000_000
    label = options.label or (fs.label if fs and fs.label else "none")
    host = socket.gethostname()
    packer = HeaderPacker(
        date=dump_date,
        ddate=base.dump_date if base is not None else 0,
        level=level,
        label=os.fsencode(label)[:15],
        filesys=_field(source),  # Linux restore -C compares against the directory named here
        dev=_field(fs.device if fs else source),
        host=_field(host),
        ntrec=options.blocking_factor,
    )
    record_id = None
    if record:
        record_id = history.start(
            identity=fs.identity,
            fs_path=fs.path_inside(source),
            dumped_path=source,
            level=level,
            dump_date_ns=dump_date_ns,
            base_id=base.id if base else None,
            read_only=fs.read_only,
            label=label,
            blocking_factor=options.blocking_factor,
            is_base=options.update,
            file_history=options.file_history,
        )
    try:
        since = Base(base.dump_date_ns, base_numbers, base.maxino or 0) if base is not None else None
        marks = MarkFilter(
            run,
            os.fsencode(source),
            live_root=None if snapshot.live else os.fsencode(source),
            forced=RestoreMarkLog(history.db).pending(base.id) if base is not None else None,
        )
        live = LiveTree.of(os.fsencode(snapshot.path), os.fsencode(source))
        tree = map_tree(
            os.fsencode(snapshot.path),
            run,
            since,
            snapshot.exclude_at_root,
            marks if options.restore_marks else None,
            live,
            exclude=options.exclude,
            ignore_ctime=options.ignore_ctime,
        )
        if tree.excluded:
            run.note(f"EXCLUDE left out {tree.excluded} entries (and all below the directories among them)")
        if record_id is not None:
            rows = ((f.ino, f.path, f.state, f.mark) for f in marks.files)
            RestoreMarkLog(history.db).record(record_id, rows)  # they count once the dump completes
        medium = open_output()
        try:
            _check_record_size(options.blocking_factor, medium)
            writer = make_writer(medium, packer, options.blocking_factor, source, dump_date)
            dumper = DumpWriter(
                tree,
                writer,
                packer,
                run,
                live=snapshot.live,
                project_ids=has_project_ids(fs),
            )
            dumper.no_acls = options.no_acls
            dumper.observer = observer
            if record_id is not None and options.file_history:
                dumper.history = file_history_recorder(history, record_id, tree)
            run.reporter.phase("dumping", total_bytes=tree.estimated_bytes)
            dumper.write_volume_start()
            dumper.write_directories()
            if dumper.history is not None:
                dumper.history.flush()  # every directory is in before pass IV: a restart does not redo them
            if session is not None:
                spec = {
                    "source": source,
                    "level": level,
                    "blocking_factor": options.blocking_factor,
                    "label": label,
                    "header": packer_fields(packer),
                    "dump_date_ns": dump_date_ns,
                    "base": None
                    if base is None
                    else {"id": base.id, "dump_date_ns": base.dump_date_ns, "maxino": base.maxino or 0},
                    "snapshot": snapshot_to_dict(snapshot),
                    "volume_name": fs.identity if fs else source,
                    "tree": {"digest": tree_digest(tree), "maxino": tree.maxino},
                    "marks": marks.as_spec(),
                    "mount_points": [path.hex() for path in live.mount_points],  # a restart sees these
                    "first_medium": medium.name,
                    "checkpoint_interval": options.checkpoint_interval,
                    "file_history": dumper.history is not None,
                    "exclude": list(options.exclude),
                    "ignore_ctime": options.ignore_ctime,
                    "no_acls": options.no_acls,
                }
                session.begin_pass_iv(spec, record_id, writer, medium)
                if dumper.history is not None:
                    session.checkpointer.before_take = dumper.history.flush
            dumper.write_files()
            dumper.finish()
            if dumper.unknown_namespaces:
                run.note(
                    f"{dumper.unknown_namespaces} inodes have system.* extended attributes (an NFSv4 ACL, "
                    "say) that ndmptools restores and Linux restore 0.4b47 does not"
                )
            if dumper.history is not None:
                dumper.history.flush()
            if observer is not None:
                observer.flush()
            if session is not None:
                session.checkpointer.stop()
        except BaseException as err:
            if session is not None and session.in_pass_iv:
                kept.snapshot = True
                session.suspend(err, run, history)
            else:
                medium.abort()
            raise
        medium.close()  # should this fail, there is nothing left to restart from: the context goes
        result = DumpResult(
            path=source,
            level=level,
            date=dump_date,
            base_date=base.dump_date if base else None,
            label=label,
            filesys=os.fsdecode(_field(source)),
            device=fs.device if fs else source,
            host=host,
            blocking_factor=options.blocking_factor,
            inodes=dumper.inodes_written,
            directories=sum(1 for n in tree.directories if n.dump),
            files=tree.files,
            blocks=writer.blocks_written,
            records=writer.records_written,
            volumes=writer.volume,
            medium=medium.name,
            stats=run.stats,
            recorded=record_id is not None and options.update,
            snapshot=snapshot.name,
            file_history=dumper.history.inodes if dumper.history is not None else None,
            skipped=[marks.shown(f) for f in marks.skipped],
            pending_included=[marks.shown(f) for f in marks.included],
            **left_out_fields(tree),
        )
        if record_id is not None:
            history.complete(
                record_id,
                media=media_record(writer.locations, writer.volume_starts),
                counts={
                    "inodes": dumper.inodes_written,
                    "blocks": writer.blocks_written,
                    "files": tree.files,
                    "directories": len(tree.directories),
                },
                maxino=tree.maxino,
                numbers=tree.numbers() if options.update else None,  # no base: no map
            )
        if session is not None:
            session.finish()  # complete: nothing to restart
    except BaseException:
        if record_id is not None and not kept.snapshot:
            history.fail(record_id)
        raise
    run.stats.entries = dumper.inodes_written
    run.stats.bytes = writer.bytes_written
    run.stats.stop()
    return result
