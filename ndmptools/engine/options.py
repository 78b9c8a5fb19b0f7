"""What a run is asked to do: frozen option objects the CLI builds and the engine reads."""

from __future__ import annotations

from dataclasses import dataclass

from ndmptools.format.constants import DEFAULT_BLOCKING_FACTOR


@dataclass(frozen=True)
class DumpOptions:
    """``ndmptools dump``: what to back up, where to, and how."""

    path: str
    file: str
    level: int = 0
    blocking_factor: int = DEFAULT_BLOCKING_FACTOR
    label: str | None = None
    capacity: int | None = None  # virtual tapes: bytes per cartridge
    append: bool = False  # after the last dump on the tape
    device: str | None = None  # a drive by serial number
    prompt: bool = True  # ask the operator for the next tape (off: fail cleanly, for cron)
    update: bool = True  # record a completed dump as a possible base (UPDATE=Y)
    auto_baseline: bool = False  # a level > 0 with no base becomes a level 0 instead of failing
    snapshot: str | None = None  # dump from this existing snapshot; None: make one
    snapshot_provider: str = "auto"  # btrfs, lvm, zfs, none, or auto: from the file system
    state_dir: str | None = None  # where the snapshot counter (and history) live; None: the default
    restart: str | None = None  # the context of an interrupted dump to go on with
    checkpoint_interval: float = 5.0  # seconds of pass IV between checkpoints of a restartable dump
    file_history: bool = True  # HIST=Y: every entry and its place on media go to the catalog
    restore_marks: bool = True  # leave out files a running restore marks (off: benchmarks only)


@dataclass(frozen=True)
class RestoreOptions:
    """``ndmptools restore``: which dump, into which target, which paths (all when empty)."""

    file: str
    target: str = "."
    paths: tuple[str, ...] = ()
    more_files: tuple[str, ...] = ()  # the next volumes, when the volumes are files
    file_number: int | None = None  # the Nth dump on a tape
    device: str | None = None
    prompt: bool = True
    direct: bool = True  # DIRECT=Y: with PATHs and a file history, read only their places on media
    mark_files: bool = True  # each regular file carries the restore mark until complete (off: benchmarks)


@dataclass(frozen=True)
class ListOptions:
    """``ndmptools restore -t``: list a dump's entries without restoring anything."""

    file: str
    paths: tuple[str, ...] = ()
    more_files: tuple[str, ...] = ()
    file_number: int | None = None
    device: str | None = None
    prompt: bool = True
