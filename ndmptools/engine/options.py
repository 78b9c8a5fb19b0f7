"""What a run is asked to do: frozen option objects the CLI builds and the engine reads."""

from __future__ import annotations

from dataclasses import dataclass

from ndmptools.engine.errors import UsageError
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
    session_wait: float | None = None  # --wait: seconds to wait for a session slot (inf: forever)
    force_sessions: bool = False  # accept a max_sessions above what the memory allows


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
    renames: tuple[tuple[str, str], ...] = ()  # EXTRACT=E: (OLD, NEW) pairs, each OLD restored at NEW
    force: bool = False  # FORCE=Y: no check for room first; stop cleanly when the target is full
    original: bool = False  # into the directory the dump was taken from, not ``target``
    mark_files: bool = True  # each regular file carries the restore mark until complete (off: benchmarks)
    session_wait: float | None = None
    force_sessions: bool = False


@dataclass(frozen=True)
class ListOptions:
    """``ndmptools restore -t``: list a dump's entries without restoring anything."""

    file: str
    paths: tuple[str, ...] = ()
    more_files: tuple[str, ...] = ()
    file_number: int | None = None
    device: str | None = None
    prompt: bool = True
    long: bool = False  # --long: mode, owner, times, flags and what the extended attributes say
    session_wait: float | None = None
    force_sessions: bool = False


@dataclass(frozen=True)
class CompareOptions:
    """``ndmptools restore -C``: compare a dump with a tree, changing nothing."""

    file: str
    tree: str | None = None  # None: where the dump was taken from
    paths: tuple[str, ...] = ()
    more_files: tuple[str, ...] = ()
    file_number: int | None = None
    device: str | None = None
    prompt: bool = True
    session_wait: float | None = None
    force_sessions: bool = False


@dataclass(frozen=True)
class CopyOptions:
    """``ndmptools ndmpcopy``: a dump of SOURCE restored into TARGET, either of them over ssh."""

    source: str  # a local path or [user@]host:path
    target: str
    level: int = 0
    blocking_factor: int = DEFAULT_BLOCKING_FACTOR
    snapshot_provider: str = "auto"
    ssh: str = "ssh"  # the ssh command and its options, split as a shell would
    remote_command: str = "ndmptools"  # what the far side runs: a shell command prefix
    state_dir: str | None = None  # this side's state directory (the far side keeps its own)
    session_wait: float | None = None  # when the session limit is reached: None fails, N waits N s
    force_sessions: bool = False  # a max_sessions above the memory's limit is taken


# -- the NDMP-style environment (-E NAME=VALUE) ------------------------------------------------

_YES = {"Y": True, "T": True, "N": False, "F": False}  # ONTAP takes T and F for Y and N


def _flag(value: str) -> bool:
    if value.upper() not in _YES:
        raise ValueError("Y or N")
    return _YES[value.upper()]


def _level(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 31:
        raise ValueError("a level from 0 to 31")
    return int(value)


def _extract(value: str) -> str:
    if value.upper() not in ("Y", "N", "E"):
        raise ValueError("Y, N or E")
    return value.upper()


def _path(value: str) -> str:
    if not value:
        raise ValueError("a path")
    return value


# name -> (the option field it sets, how its value reads), per command
ENVIRONMENT: dict[str, dict[str, tuple[str, object]]] = {
    "dump": {
        "LEVEL": ("level", _level),
        "FILESYSTEM": ("path", _path),
        "HIST": ("file_history", _flag),
        "UPDATE": ("update", _flag),
    },
    "restore": {
        "EXTRACT": ("extract", _extract),
        "FORCE": ("force", _flag),
        "DIRECT": ("direct", _flag),
    },
}


def variable_of(command: str, field: str) -> str:
    """The environment variable that sets option ``field`` of ``command`` (for messages)."""
    return next(name for name, (f, _) in ENVIRONMENT[command].items() if f == field)


def read_environment(command: str, pairs: tuple[str, ...] | list[str]) -> dict[str, object]:
    """The option fields that ``-E NAME=VALUE`` pairs set for ``command``.

    Names are case-insensitive; a name this command does not take (unknown,
    or the other command's) is refused, and so is a name given twice with
    different values. UsageError carries the one line to show.
    """
    known = ENVIRONMENT[command]
    found: dict[str, object] = {}
    given: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().upper()
        if not sep or not name:
            raise UsageError(f"-E takes NAME=VALUE, not {pair!r}")
        if name not in known:
            other = next((c for c, names in ENVIRONMENT.items() if name in names), None)
            hint = f" ({name} is for {other})" if other else ""
            accepted = ", ".join(sorted(known))
            raise UsageError(
                f"{command} does not take the environment variable {name}{hint}: it takes {accepted}"
            )
        field, read = known[name]
        try:
            parsed = read(value.strip())
        except ValueError as err:
            raise UsageError(f"{name}={value}: the value must be {err}") from None
        if field in found and found[field] != parsed:
            raise UsageError(f"{name} is given twice, as {given[name]} and {value}")
        found[field] = parsed
        given[name] = value
    return found


def check_extract(extract: str | None, paths: tuple[str, ...], renames: tuple[tuple[str, str], ...]) -> None:
    """EXTRACT=N restores the whole dump, Y the PATHs named, E the PATHs with --rename."""
    if extract == "N" and (paths or renames):
        raise UsageError("EXTRACT=N restores the whole dump: give no PATH and no --rename")
    if extract == "Y" and renames:
        raise UsageError("EXTRACT=Y restores PATHs as they are named: --rename needs EXTRACT=E")
    if extract == "Y" and not paths:
        raise UsageError("EXTRACT=Y restores the PATHs named: give at least one")
    if extract == "E" and not renames:
        raise UsageError("EXTRACT=E renames on the way: give --rename OLD=NEW")
