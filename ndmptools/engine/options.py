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
    base_date: int | None = None  # BASE_DATE: the c_date of the base dump (0: none, a level 0)
    exclude: tuple[str, ...] = ()  # EXCLUDE: name or relative-path patterns left out
    ignore_ctime: bool = False  # IGNORE_CTIME=Y: an incremental looks at mtime only
    no_acls: bool = False  # NO_ACLS=Y: no POSIX ACL areas on media


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
    extract_acl: bool = True  # EXTRACT_ACL=N: the POSIX ACLs on media are not set
    nowrite: bool = False  # NOWRITE=Y: read all a restore would, write nothing
    recursive: bool = True  # RECURSIVE=N: a directory PATH brings only the directory
    full_paths: bool = True  # RECOVER_FULL_PATHS=N: directories on the way to a PATH as mkdir makes them
    dump_date: int | None = None  # DUMP_DATE: the c_date the dump must have
    places: tuple[tuple[str, int], ...] = ()  # (PATH, c_tapea) from a DMA's file history, for DAR


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


# -- the NDMP-style environment (-E NAME=VALUE, and NDMP's DATA_START_* env) -------------------

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


def _date(value: str) -> int:
    """A dump date as DUMP_DATE reports it: seconds since the epoch, decimal or 0x hex."""
    try:
        date = int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        raise ValueError("a dump date in seconds since 1970 (as DUMP_DATE reports it)") from None
    if not 0 <= date < 2**32:
        raise ValueError("a dump date in seconds since 1970 (as DUMP_DATE reports it)")
    return date


def _type(value: str) -> str:
    if value.lower() != "dump":
        raise ValueError("dump (the only backup type ndmptools writes)")
    return "dump"


def _patterns(value: str) -> tuple[str, ...]:
    """EXCLUDE: comma-separated patterns, ONTAP-style; empty ones are dropped (EXCLUDE= excludes nothing).

    A DMA may send the butype's default environment back as it got it, EXCLUDE="" included.
    """
    found = tuple(p.strip() for p in value.split(",") if p.strip())
    if any(p.startswith("/") or ".." in p.split("/") for p in found):
        raise ValueError("patterns of names or of paths inside the dump (no leading '/', no '..')")
    return found


@dataclass(frozen=True)
class Variable:
    """One environment variable: the option field it sets, how its value reads, what it does."""

    name: str
    field: str
    read: object  # Callable[[str], object]; ValueError's text says what the value must be
    effect: str  # one line: what it does in this engine (docs, help, and the NDMP log)
    repeatable: bool = False  # each occurrence adds (EXCLUDE), rather than having to agree


_DUMP_VARIABLES = (
    Variable("FILESYSTEM", "path", _path, "the path to back up"),
    Variable("LEVEL", "level", _level, "the dump level, 0 to 31"),
    Variable("HIST", "file_history", _flag, "Y: record the file history (and send it to an NDMP DMA)"),
    Variable("UPDATE", "update", _flag, "Y: a completed dump becomes a base for later levels"),
    Variable("TYPE", "type", _type, "the backup type: only dump"),
    Variable(
        "BASE_DATE",
        "base_date",
        _date,
        "the DUMP_DATE of the base dump: an incremental on exactly that dump (0: a level 0)",
    ),
    Variable(
        "EXCLUDE",
        "exclude",
        _patterns,
        "names (or paths inside the dump) to leave out, shell patterns, comma-separated",
        repeatable=True,
    ),
    Variable("IGNORE_CTIME", "ignore_ctime", _flag, "Y: an incremental selects files by mtime only"),
    Variable("NO_ACLS", "no_acls", _flag, "Y: POSIX ACLs are not written to media"),
    Variable("DEBUG", "debug", _flag, "Y: debug output (--debug; over NDMP, debug log messages)"),
    Variable("VERBOSE", "verbose", _flag, "Y: verbose output (-v; over NDMP, a log message per phase)"),
)

_RESTORE_VARIABLES = (
    Variable("EXTRACT", "extract", _extract, "N: the whole dump, Y: the PATHs named, E: PATHs renamed"),
    Variable("FORCE", "force", _flag, "Y: no check for room before writing"),
    Variable("DIRECT", "direct", _flag, "Y: PATHs are read at their places on media (DAR)"),
    Variable("EXTRACT_ACL", "extract_acl", _flag, "N: POSIX ACLs on media are not restored"),
    Variable("LIST", "list", _flag, "Y: list the dump's entries instead of restoring (restore -t)"),
    Variable("NOWRITE", "nowrite", _flag, "Y: read and check everything a restore would, write nothing"),
    Variable("RECURSIVE", "recursive", _flag, "N: a directory PATH brings the directory, not what is in it"),
    Variable(
        "RECOVER_FULL_PATHS",
        "full_paths",
        _flag,
        "Y: the directories on the way to a PATH get their attributes from the dump too",
    ),
    Variable("DUMP_DATE", "dump_date", _date, "the dump expected: a dump of another date is refused"),
    Variable("TYPE", "type", _type, "the backup type: only dump"),
    Variable("DEBUG", "debug", _flag, "Y: debug output (--debug; over NDMP, debug log messages)"),
    Variable("VERBOSE", "verbose", _flag, "Y: verbose output (-v; over NDMP, a log message per phase)"),
)

VARIABLES: dict[str, dict[str, Variable]] = {
    "dump": {v.name: v for v in _DUMP_VARIABLES},
    "restore": {v.name: v for v in _RESTORE_VARIABLES},
}

# name -> (the option field it sets, how its value reads), per command (the older shape, for the CLI)
ENVIRONMENT: dict[str, dict[str, tuple[str, object]]] = {
    command: {name: (v.field, v.read) for name, v in names.items()} for command, names in VARIABLES.items()
}


def variable_of(command: str, field: str) -> str:
    """The environment variable that sets option ``field`` of ``command`` (for messages)."""
    return next(name for name, (f, _) in ENVIRONMENT[command].items() if f == field)


def _split(pair: str) -> tuple[str, str]:
    name, sep, value = pair.partition("=")
    name = name.strip().upper()
    if not sep or not name:
        raise UsageError(f"-E takes NAME=VALUE, not {pair!r}")
    return name, value.strip()


def _parse(variable: Variable, value: str) -> object:
    try:
        return variable.read(value)
    except ValueError as err:
        raise UsageError(f"{variable.name}={value}: the value must be {err}") from None


def read_environment(command: str, pairs: tuple[str, ...] | list[str]) -> dict[str, object]:
    """The option fields that ``-E NAME=VALUE`` pairs set for ``command``.

    Names are case-insensitive; a name this command does not take (unknown,
    or the other command's) is refused, and so is a name given twice with
    different values (EXCLUDE adds up instead). UsageError carries the one
    line to show.
    """
    known = VARIABLES[command]
    found: dict[str, object] = {}
    given: dict[str, str] = {}
    for pair in pairs:
        name, value = _split(pair)
        if name not in known:
            other = next((c for c, names in VARIABLES.items() if name in names), None)
            hint = f" ({name} is for {other})" if other else ""
            accepted = ", ".join(sorted(known))
            raise UsageError(
                f"{command} does not take the environment variable {name}{hint}: it takes {accepted}"
            )
        variable = known[name]
        parsed = _parse(variable, value)
        if variable.repeatable:
            found[variable.field] = (*found.get(variable.field, ()), *parsed)
            continue
        if variable.field in found and found[variable.field] != parsed:
            raise UsageError(f"{name} is given twice, as {given[name]} and {value}")
        found[variable.field] = parsed
        given[name] = value
    return found


def read_ndmp_environment(
    command: str, pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...]
) -> tuple[dict[str, object], list[str]]:
    """The option fields an NDMP DMA's environment sets, and a message for every name that does nothing.

    A DMA sends what it sends: the names of the other operation (a recover
    gets the backup's LEVEL back from its index), names of its own (ndmjob's
    PREFIX, USER, FILES) and names no engine knows. None of them stops the
    operation, and none goes unsaid: each gets a line for the DMA's log. A
    value that cannot be read is a UsageError (the DMA asked for something
    that cannot be done); a name given again replaces what it said before.
    """
    known = VARIABLES[command]
    other_command = "restore" if command == "dump" else "dump"
    operation = "a backup" if command == "dump" else "a recover"
    found: dict[str, object] = {}
    notes: list[str] = []
    for raw_name, value in pairs:
        name = raw_name.strip().upper()
        value = value.strip()
        variable = known.get(name)
        if variable is None:
            if name in VARIABLES[other_command]:
                notes.append(f"{name}={value} has no effect on {operation}: it is for the other operation")
            else:
                notes.append(f"{name}={value} is not an environment variable ndmptools knows: ignored")
            continue
        parsed = _parse(variable, value)
        if variable.repeatable:
            found[variable.field] = (*found.get(variable.field, ()), *parsed)
            continue
        if variable.field in found and found[variable.field] != parsed:
            notes.append(f"{name} is given again, as {value}: that value counts")
        found[variable.field] = parsed
    return found, notes


def environment_help(command: str) -> str:
    """What each of ``command``'s environment variables does, one line each (for docs and -E help)."""
    return "\n".join(f"{v.name}: {v.effect}" for v in VARIABLES[command].values())


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
