"""ndmpcopy: a dump piped into ``restore -r`` in one run, here or over ssh.

A level-0 copy makes TARGET a copy of SOURCE; a later level brings it up to
date, removing and renaming what was removed and renamed, as ``restore -r``
applies the increments of a chain (the symbol table it keeps for TARGET in the
restoring side's state directory says what TARGET holds). The dump's base
comes from the history of the side that dumps.

On this machine the dump runs in a thread and writes into a pipe the restore
reads in the calling thread: nothing is staged on disk. A side given as
``[user@]host:path`` is another ndmptools run through ssh: ``dump -f -`` whose
standard output is the stream, or ``restore -r -f -`` fed on its standard input.

A dump becomes a base only when the restore took all of it: the dump's medium
(a ConfirmedMedium) closes only once the restoring side has finished, and a far
dump waits, before it records anything, for the word COMMIT on its standard
input, which is sent only then. A copy that fails anywhere leaves no new base,
so the next copy at that level does the same work again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ndmptools.engine.errors import (
    ChainError,
    FormatError,
    Interrupted,
    MediaError,
    RemoteError,
    SourceError,
    TargetError,
    UsageError,
)
from ndmptools.engine.levels import MAX_LEVEL
from ndmptools.engine.options import CopyOptions, DumpOptions, RestoreOptions
from ndmptools.engine.progress import RunContext, RunStats
from ndmptools.media.file import FileMedium
from ndmptools.media.stream import ConfirmedMedium, PipeReader
from ndmptools.state.history import History

# What the restoring side sends a far dump (dump --commit-from-stdin) once it has taken the whole dump.
COMMIT = b"ndmptools-copy: restored\n"
PIPE_SIZE = 1 << 20  # the local copy's pipe (the most an unprivileged process may ask by default)
FAR_EXIT_TIMEOUT = 30.0  # seconds a far side that lost its stream is given to exit before it is killed


@dataclass(frozen=True)
class Endpoint:
    """One side of a copy: a path here, or a path on ``host`` (``[user@]host`` as ssh takes it)."""

    path: str
    host: str | None = None

    @property
    def remote(self) -> bool:
        return self.host is not None

    def __str__(self) -> str:
        return f"{self.host}:{self.path}" if self.host else self.path


def parse_endpoint(text: str) -> Endpoint:
    """``[user@]host:path`` when a colon comes before any slash (as scp reads it), else a local path.

    A local path with a colon in its first part can be written ./a:b.
    """
    if not text:
        raise UsageError("SRC and DST cannot be empty")
    head, sep, tail = text.partition(":")
    if not sep or not head or "/" in head:
        return Endpoint(text)
    user, at, host = head.rpartition("@")
    if not host or (at and not user) or host.startswith("-") or user.startswith("-"):
        raise UsageError(f"{text}: not [user@]host:path")
    if not tail:
        raise UsageError(f"{text}: give the path on {host} after the colon")
    return Endpoint(tail, head)


def await_commit(fd: int = 0) -> None:
    """Wait for the restoring side's word that it took the whole dump (a far dump of a copy).

    MediaError when the stream ends without it: the restore failed or the
    connection broke, and this dump must not become a base.
    """
    got = b""
    try:
        while len(got) < len(COMMIT):
            chunk = os.read(fd, len(COMMIT) - len(got))
            if not chunk:
                break
            got += chunk
    except OSError as err:
        raise MediaError(f"the copy's restoring side cannot be heard: {err.strerror}") from None
    if got != COMMIT:
        raise MediaError("the copy's restoring side did not take the dump: it is no base")


@dataclass
class CopyResult:
    """What a copy did, for the summary line and --json."""

    source: str
    target: str
    level: int
    date: int | None  # the dump's date (c_date)
    base_date: int | None
    removed: int  # names removed from TARGET (an incremental)
    moved: int  # entries renamed or moved
    restored: int  # non-directory entries written
    not_restored: int
    stats: RunStats
    dump: dict | None = None  # the dump's own result, when it ran here
    restore_bytes: int = 0
    far: list[str] = field(default_factory=list)  # the hosts the copy went through

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "target": self.target,
            "level": self.level,
            "date": self.date,
            "base_date": self.base_date,
            "removed": self.removed,
            "moved": self.moved,
            "restored": self.restored,
            "not_restored": self.not_restored,
            "entries": self.stats.entries,
            "bytes": self.stats.bytes,
            "seconds": round(self.stats.seconds, 3),
            "warnings": self.stats.warnings,
            "notes": self.stats.notes,
            "dump": self.dump,
        }


def _when(date: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(date))


class _SideReporter:
    """One side's reporter: warnings and notes go to the copy's run; only one side draws the bar.

    The sides run in threads (and far sides' messages arrive in threads), so
    every call into the copy's run holds one lock. Once the copy is cancelled,
    the next progress call of a side stops it.
    """

    def __init__(
        self, run: RunContext, lock: threading.Lock, draws: bool, cancelled: threading.Event | None = None
    ) -> None:
        self.run, self.lock, self.draws, self.cancelled = run, lock, draws, cancelled

    def _check(self) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            raise Interrupted("the copy was stopped")

    def phase(self, name: str, total_bytes: int | None = None) -> None:
        self._check()
        if self.draws:
            with self.lock:
                self.run.reporter.phase(name, total_bytes)

    def advance(self, nbytes: int) -> None:
        self._check()
        if self.draws:
            with self.lock:
                self.run.reporter.advance(nbytes)

    def warning(self, message: str) -> None:
        with self.lock:
            self.run.warn(message)

    def note(self, message: str) -> None:
        with self.lock:
            self.run.note(message)

    def close(self) -> None:
        pass


class _FirstFailure:
    """The error that stopped a copy first: the other side's error is only its echo."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def note(self, error: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = error

    def raise_it(self) -> None:
        if self.error is not None:
            raise self.error


# -- the far side ------------------------------------------------------------------------------------


_FAR_PREFIXES = (
    ("ndmptools: warning: ", "warning"),
    ("ndmptools: note: ", "note"),
    ("ndmptools: error: ", "error"),
    ("ndmptools: internal error: ", "error"),
)


class FarSide:
    """An ndmptools run on another host through ssh: its stream, its messages and its exit code.

    Its standard error is read as it comes: its warnings and notes become this
    run's (prefixed with the host), its error line is kept for the one line this
    run ends with, and other lines (ssh's own) are kept for that line too, or
    shown as notes when all went well.
    """

    def __init__(
        self,
        options: CopyOptions,
        host: str,
        words: list[str],
        what: str,
        run: RunContext,
        lock: threading.Lock,
        shell: str | None = None,
    ) -> None:
        self.host, self.what, self.run, self.lock = host, what, run, lock
        self.command = shell or " ".join([options.remote_command, *(shlex.quote(w) for w in words)])
        try:
            ssh = shlex.split(options.ssh)
        except ValueError as err:
            raise UsageError(f"--ssh {options.ssh!r}: {err}") from None
        if not ssh:
            raise UsageError("--ssh names no command")
        self.ssh_name = os.path.basename(ssh[0])
        argv = [*ssh, "--", host, self.command]
        try:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
            )
        except OSError as err:
            raise RemoteError(f"cannot run {ssh[0]}: {err.strerror}") from None
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):  # ssh moves the stream in larger pieces
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.error_line: str | None = None
        self.other_lines: list[str] = []
        self.warned = False
        self.output = b""  # its standard output, when that is not the stream (restore --json)
        self._stderr = threading.Thread(
            target=self._read_messages, name=f"ndmpcopy-{what}-stderr", daemon=True
        )
        self._stderr.start()
        self._stdout: threading.Thread | None = None

    @property
    def stdin_fd(self) -> int:
        return self.process.stdin.fileno()

    @property
    def stdout_fd(self) -> int:
        return self.process.stdout.fileno()

    def collect_output(self) -> None:
        """Keep what it prints on standard output (a far restore's --json result)."""

        def read() -> None:
            self.output = self.process.stdout.read()

        self._stdout = threading.Thread(target=read, name=f"ndmpcopy-{self.what}-stdout", daemon=True)
        self._stdout.start()

    def _read_messages(self) -> None:
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            for prefix, kind in _FAR_PREFIXES:  # noqa: B007 - kind is read after the loop
                if line.startswith(prefix):
                    text = line[len(prefix) :]
                    break
            else:
                kind, text = ("error", "interrupted") if line == "ndmptools: interrupted" else ("other", line)
            if kind == "warning":
                self.warned = True
                with self.lock:
                    self.run.warn(f"{self.host}: {text}")
            elif kind == "note":
                with self.lock:
                    self.run.note(f"{self.host}: {text}")
            elif kind == "error":
                self.error_line = text
            elif not text.startswith("dump: "):  # the far dump's summary: this run has its own
                self.other_lines.append(text)

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code, once it and its messages are done; killed when ``timeout`` passes."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._stderr.join(5)  # a child ssh left behind may hold its stderr open: do not hang on it
        if self._stdout is not None:
            self._stdout.join(5)
        return code

    def failure(self, code: int) -> RemoteError | None:
        """The one line that says why it failed (None: it did not)."""
        if code in (0, 1):
            return None
        last = self.other_lines[-1] if self.other_lines else ""
        if code < 0:
            return RemoteError(f"the {self.what} on {self.host} was stopped: it did not end with its stream")
        if code == 255:
            why = last or f"{self.ssh_name} ended with {code}"
            return RemoteError(f"cannot reach {self.host} with {self.ssh_name}: {why}")
        if code in (126, 127) and self.error_line is None:
            why = f": {last}" if last else ""
            return RemoteError(f"{self.host} cannot run {self.command.split(' ', 1)[0]!r}{why}")
        if self.error_line is not None:
            return RemoteError(f"on {self.host}: {self.error_line}", code if 2 <= code <= 130 else None)
        why = f": {last}" if last else ""
        return RemoteError(f"the {self.what} on {self.host} failed with exit code {code}{why}")

    def show_other_lines(self) -> None:
        for line in self.other_lines:
            with self.lock:
                self.run.note(f"{self.host}: {line}")
        self.other_lines = []

    def close_input(self) -> None:
        with contextlib.suppress(OSError):  # it has gone already: its exit code says why
            self.process.stdin.close()

    def finish(self) -> None:
        """It was given all it needs: wait for it, and raise its failure."""
        self.close_input()
        code = self.wait()
        failed = self.failure(code)
        if failed is not None:
            raise failed
        self.show_other_lines()
        if code == 1 and not self.warned:  # it ended with warnings this run did not hear
            with self.lock:
                self.run.warn(f"{self.host}: the {self.what} there ended with warnings")

    def commit(self) -> None:
        """Tell a far dump its restore took everything (it becomes a base), then wait for it."""
        with contextlib.suppress(OSError):  # it has gone: its exit code says why
            os.write(self.stdin_fd, COMMIT)
        self.collect_output()  # nothing should follow the dump's end; if anything does, it must not block it
        self.finish()

    def abandon(self) -> RemoteError | None:
        """Stop it without its word (a far dump records nothing); its failure, if it failed."""
        self.close_input()
        if self._stdout is None:  # the stream: closing it stops a far dump still writing
            with contextlib.suppress(OSError):
                self.process.stdout.close()
        code = self.wait(FAR_EXIT_TIMEOUT)
        return self.failure(code)


def _far_dump_words(options: CopyOptions, path: str) -> list[str]:
    return [
        "dump",
        "-level",
        str(options.level),
        "-b",
        str(options.blocking_factor),
        "--snapshot-provider",
        options.snapshot_provider,
        "--no-history",
        "--no-prompt",
        "--commit-from-stdin",
        "-f",
        "-",
        "--",
        path,
    ]


def _far_restore_words(path: str) -> list[str]:
    return ["--json", "restore", "-r", "--no-prompt", "-f", "-", f"--target={path}"]


def _pick(local: BaseException, fars: list[tuple[RemoteError | None, bool]]) -> BaseException:
    """The error to report: a far side's, when the local one is only the echo of its stream breaking.

    ``fars`` lists (a far side's failure, whether the local error is about its stream).
    """
    if isinstance(local, (FormatError, MediaError)):
        for failure, about_it in fars:
            if failure is not None and about_it:
                return failure
    return local


# -- checks made before anything runs -------------------------------------------------------------------


def _check_local_target(target: str, level: int, history: History) -> None:
    """A level 0 goes into a new or empty directory; a later level needs the copy it continues."""
    from ndmptools.state.symtab import RestoreTargets

    if os.path.lexists(target) and not os.path.isdir(target):
        raise TargetError(f"cannot copy into {target}: it is not a directory")
    fresh = not os.path.isdir(target) or not os.listdir(target)
    table, why = (None, None) if level == 0 and fresh else RestoreTargets(history.db).load(target)
    if level == 0:
        if table is not None:
            raise ChainError(
                f"{target} already holds a copy (the level-{table.last_level} dump of "
                f"{_when(table.last_date)}): bring it up to date with -level {table.last_level + 1}, "
                "or copy at level 0 into a new directory"
            )
        if not fresh:
            raise TargetError(f"{target} is not empty: a level-0 copy goes into a new or empty directory")
        return  # restore -r forgets what a removed copy there left (its inode may be reused)
    if table is None:
        extra = f" ({why})" if why else ""
        raise ChainError(f"{target} holds no copy to bring up to date{extra}: copy at level 0 first")
    if level <= table.last_level:
        raise ChainError(
            f"{target} holds the level-{table.last_level} copy of {_when(table.last_date)}: bring it up to "
            f"date with -level {table.last_level + 1} (a level-{level} dump would be based on an older one)"
        )


def _check_local_base(source: str, target: str, level: int, history: History) -> None:
    """Both sides here: the dump's base must be the dump the target holds, from the same source."""
    from ndmptools.engine.fsinfo import describe
    from ndmptools.state.symtab import RestoreTargets

    table, _ = RestoreTargets(history.db).load(target)
    if table is None:
        return
    from ndmptools.format.constants import NAMELEN

    if table.filesys and os.fsencode(table.filesys) != os.fsencode(source)[: NAMELEN - 1]:  # c_filesys is cut
        raise ChainError(f"{target} holds a copy of {table.filesys}, not of {source}")
    fs = describe(source)
    if fs is None or level == 0:
        return
    base = history.find_base(fs.identity, fs.path_inside(source), level)
    if base is not None and base.dump_date != table.last_date:
        where = base.media.get("spec", "?")
        raise ChainError(
            f"a level-{level} dump of {source} would be based on its level-{base.level} dump of "
            f"{_when(base.dump_date)} (on {where}), and {target} holds the dump of {_when(table.last_date)}: "
            "copy at level 0 into a new directory"
        )


_NOT_A_DIRECTORY, _NOT_EMPTY = 3, 4


def _check_far_target(options: CopyOptions, host: str, target: str, run: RunContext) -> None:
    """A level 0 goes into a new or empty directory on the far side too (a POSIX shell asks there)."""
    p = shlex.quote(target)
    shell = (
        f'p={p}; if [ -e "$p" ] && [ ! -d "$p" ]; then exit {_NOT_A_DIRECTORY}; fi; '
        f'if [ -d "$p" ] && [ -n "$(ls -A -- "$p")" ]; then exit {_NOT_EMPTY}; fi; exit 0'
    )
    far = FarSide(options, host, [], "check", run, threading.Lock(), shell=shell)
    far.close_input()
    code = far.wait()
    if code == _NOT_A_DIRECTORY:
        raise TargetError(f"cannot copy into {host}:{target}: it is not a directory")
    if code == _NOT_EMPTY:
        raise TargetError(f"{host}:{target} is not empty: a level-0 copy goes into a new or empty directory")
    failed = far.failure(code)
    if failed is not None:
        raise failed


def _check_paths(source: Endpoint, target: Endpoint) -> tuple[str, str]:
    """Local sides resolved; a target inside the source (or around it) is refused."""
    src, dst = source.path, target.path
    if not source.remote:
        try:
            src = os.path.realpath(source.path, strict=True)
        except OSError as err:
            why = "no such file or directory" if isinstance(err, FileNotFoundError) else err.strerror
            raise SourceError(f"cannot copy {source.path}: {why}") from None
        if not os.path.isdir(src):
            raise SourceError(f"cannot copy {source.path}: ndmpcopy copies a directory")
    if not target.remote:
        dst = os.path.realpath(target.path)
    same_host = source.host == target.host
    if same_host:
        a, b = src.rstrip("/") + "/", dst.rstrip("/") + "/"
        if a == b:
            raise UsageError(f"{target} is {source}: a copy needs another directory")
        if b.startswith(a):
            raise UsageError(f"{target} is inside {source}: the copy would copy into itself")
        if a.startswith(b):
            raise UsageError(f"{target} holds {source}: the copy would write over its own source")
    return src, dst


# -- the copy ------------------------------------------------------------------------------------------


def local_sides(options: CopyOptions) -> int:
    """How many sessions a copy counts as on this host: one per side that runs here (at least one).

    A far side's dump or restore is counted by ndmptools there; a copy
    between two far hosts still relays the stream here, so it counts once.
    """
    sides = sum(not parse_endpoint(end).remote for end in (options.source, options.target))
    return max(1, sides)


def run_copy(options: CopyOptions, run: RunContext, open_history: Callable[[], History]) -> CopyResult:
    """Copy ``options.source`` into ``options.target`` at ``options.level``.

    ``open_history`` opens this side's state (dump history and restore
    targets); each thread opens its own, as SQLite connections stay in theirs.
    """
    if not 0 <= options.level <= MAX_LEVEL:
        raise UsageError(f"dump levels are 0 to {MAX_LEVEL}")
    source, target = parse_endpoint(options.source), parse_endpoint(options.target)
    src, dst = _check_paths(source, target)
    if not target.remote:
        history = open_history()
        try:
            _check_local_target(dst, options.level, history)
            if not source.remote:
                _check_local_base(src, dst, options.level, history)
        finally:
            history.db.close()
    elif options.level == 0:
        _check_far_target(options, target.host, dst, run)
    if not source.remote and not target.remote:
        return _copy_here(options, src, dst, run, open_history)
    if source.remote and not target.remote:
        return _copy_from_far(options, source.host, src, dst, run, open_history)
    if not source.remote:
        return _copy_to_far(options, src, target.host, dst, run, open_history)
    return _copy_between_far(options, source, target, run)


def _dump_options(options: CopyOptions, source: str, target: str) -> DumpOptions:
    return DumpOptions(
        path=source,
        file=f"ndmpcopy:{target}",
        level=options.level,
        blocking_factor=options.blocking_factor,
        snapshot_provider=options.snapshot_provider,
        state_dir=options.state_dir,
        prompt=False,
        file_history=False,  # its media is gone once restored: no place to restore a file from
    )


def _restore_options(target: str) -> RestoreOptions:
    return RestoreOptions(file="-", target=target, prompt=False)


def _finish(
    options: CopyOptions, run: RunContext, applied, dump_result, restore_bytes: int, far: list[str]
) -> CopyResult:
    """The copy's result, from what the restore applied and (when it ran here) the dump."""
    run.stats.stop()
    return CopyResult(
        source=options.source,
        target=options.target,
        level=applied.level if applied is not None else options.level,
        date=applied.date if applied is not None else (dump_result.date if dump_result else None),
        base_date=dump_result.base_date if dump_result is not None else None,
        removed=applied.removed if applied is not None else 0,
        moved=applied.moved if applied is not None else 0,
        restored=applied.restored if applied is not None else 0,
        not_restored=applied.not_restored if applied is not None else 0,
        stats=run.stats,
        dump=dump_result.as_dict() if dump_result is not None else None,
        restore_bytes=restore_bytes,
        far=far,
    )


def _apply(target: str, medium, run: RunContext, open_history: Callable[[], History]):
    """restore -r of the stream into ``target``; a target that filled up fails the copy."""
    from ndmptools.engine.restore.incremental import apply_dump
    from ndmptools.state.symtab import RestoreTargets

    history = open_history()
    try:
        applied = apply_dump(_restore_options(target), medium, run, RestoreTargets(history.db), history)
    finally:
        history.db.close()
    _check_stopped(target, applied.stopped)
    return applied


def _check_stopped(target: str, stopped: str | None) -> None:
    if stopped:
        raise TargetError(
            f"the copy stopped: {target} is full ({stopped}); it holds part of this dump, "
            "so copy at level 0 into a new directory once there is room"
        )


def _copy_here(
    options: CopyOptions, source: str, target: str, run: RunContext, open_history: Callable[[], History]
) -> CopyResult:
    """Both sides on this machine: the dump in a thread writes a pipe the restore reads here."""
    from ndmptools.engine.dump import run_dump

    lock = threading.Lock()
    cancelled = threading.Event()
    first = _FirstFailure()
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):  # larger pieces: fewer hand-overs between the two threads
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    reader = PipeReader("the copy's pipe", read_fd)
    writer = FileMedium("the copy's pipe", write_fd, "w")
    restore_finished = threading.Event()
    restored = threading.Event()

    def restore_took_it() -> None:  # the dump closes its medium, and may become a base, only then
        restore_finished.wait()
        if not restored.is_set():
            raise MediaError(f"the restore into {target} did not take the dump: it is no base")

    handoff = ConfirmedMedium(writer, restore_took_it, {"spec": f"ndmpcopy:{target}", "file_number": 1})

    def open_output() -> ConfirmedMedium:
        if cancelled.is_set():
            raise Interrupted("the copy was stopped")
        return handoff

    dump_run = RunContext(_SideReporter(run, lock, draws=True, cancelled=cancelled))
    restore_run = RunContext(_SideReporter(run, lock, draws=False))
    outcome: dict = {}

    def dump_side() -> None:
        try:
            history = open_history()
            try:
                outcome["dump"] = run_dump(
                    _dump_options(options, source, target), open_output, dump_run, history
                )
            finally:
                history.db.close()
        except BaseException as err:  # handed to the calling thread
            first.note(err)
        finally:
            handoff.abort()  # no-op once closed; else the restore sees the stream end
            writer.abort()

    thread = threading.Thread(target=dump_side, name="ndmpcopy-dump", daemon=True)
    thread.start()
    applied = None
    try:
        applied = _apply(target, reader, restore_run, open_history)
        restored.set()
    except BaseException as err:
        first.note(err)
        cancelled.set()
    finally:
        reader.abort()  # a dump still writing stops on EPIPE
        restore_finished.set()
        while thread.is_alive():
            thread.join(0.2)
    first.raise_it()
    dump_result = outcome["dump"]
    run.stats.entries = dump_result.inodes
    run.stats.bytes = dump_result.stats.bytes
    return _finish(options, run, applied, dump_result, restore_run.stats.bytes, [])


def _copy_from_far(
    options: CopyOptions,
    host: str,
    source: str,
    target: str,
    run: RunContext,
    open_history: Callable[[], History],
) -> CopyResult:
    """The dump runs on ``host``; its standard output is restored here, then it is told to commit."""
    lock = threading.Lock()
    far = FarSide(options, host, _far_dump_words(options, source), "dump", run, lock)
    reader = PipeReader(f"the dump from {host}", far.stdout_fd, owns_fd=False)
    restore_run = RunContext(_SideReporter(run, lock, draws=True))
    try:
        applied = _apply(target, reader, restore_run, open_history)
    except BaseException as err:
        failure = far.abandon()
        raise _pick(err, [(failure, True)]) from None
    far.commit()
    run.stats.entries = restore_run.stats.entries
    run.stats.bytes = restore_run.stats.bytes
    return _finish(options, run, applied, None, restore_run.stats.bytes, [host])


def _copy_to_far(
    options: CopyOptions,
    source: str,
    host: str,
    target: str,
    run: RunContext,
    open_history: Callable[[], History],
) -> CopyResult:
    """The dump runs here into the standard input of ``restore -r -f -`` on ``host``."""
    from ndmptools.engine.dump import run_dump

    lock = threading.Lock()
    started: list[FarSide] = []

    applied: list[_FarApplied] = []

    def open_output() -> ConfirmedMedium:
        far = FarSide(options, host, _far_restore_words(target), "restore", run, lock)
        started.append(far)
        far.collect_output()
        writer = FileMedium(f"the restore on {host}", far.stdin_fd, "w", owns_fd=False)

        def restore_took_it() -> None:  # the far restore ended well, and did not stop for a full target
            far.finish()
            applied.append(_far_applied(far))
            _check_stopped(f"{host}:{target}", applied[0].stopped)

        return ConfirmedMedium(
            writer, restore_took_it, {"spec": f"ndmpcopy:{host}:{target}", "file_number": 1}
        )

    dump_run = RunContext(_SideReporter(run, lock, draws=True))
    history = open_history()
    try:
        dump_result = run_dump(
            _dump_options(options, source, f"{host}:{target}"), open_output, dump_run, history
        )
    except BaseException as err:
        if not started:
            raise
        failure = started[0].abandon()
        raise _pick(err, [(failure, True)]) from None
    finally:
        history.db.close()
    run.stats.entries = dump_result.inodes
    run.stats.bytes = dump_result.stats.bytes
    return _finish(options, run, applied[0], dump_result, dump_result.stats.bytes, [host])


@dataclass
class _FarApplied:
    level: int
    date: int | None
    removed: int
    moved: int
    restored: int
    not_restored: int
    stopped: str | None = None


def _far_applied(far: FarSide) -> _FarApplied:
    """What the far ``restore -r --json`` says it did."""
    import json

    try:
        step = json.loads(far.output)["applied"][0]
        return _FarApplied(
            step["level"],
            step["date"],
            step["removed"],
            step["moved"],
            step["restored"],
            step["not_restored"],
            step.get("stopped"),
        )
    except (ValueError, KeyError, IndexError, TypeError):
        with far.lock:
            far.run.warn(f"{far.host}: the far restore's result cannot be read")
        return _FarApplied(0, None, 0, 0, 0, 0)


class _Relay:
    """Reads the far dump's stream and writes each piece on to the far restore."""

    def __init__(self, reader: PipeReader, out_fd: int, name: str, run: RunContext) -> None:
        self.reader, self.out_fd, self.run = reader, out_fd, run
        self.name = name
        self.write_failed = False
        self.keeps_records = False
        self.size_hint = None
        self.max_record_size = None
        self.seek_distance = 0
        self.early_warning = False

    def read_record(self, max_size: int) -> bytes:
        data = self.reader.read_record(max_size)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.out_fd, view) :]
        except OSError as err:
            self.write_failed = True
            raise MediaError(f"cannot write to {self.name}: {err.strerror}") from None
        self.run.reporter.advance(len(data))
        return data

    def next_volume(self, volume: int, description: str) -> bool:
        return False


def _copy_between_far(
    options: CopyOptions, source: Endpoint, target: Endpoint, run: RunContext
) -> CopyResult:
    """Both sides far: the stream passes through here, read just far enough to know where it ends."""
    from ndmptools.format.reader import DumpReader

    lock = threading.Lock()
    dumper = FarSide(options, source.host, _far_dump_words(options, source.path), "dump", run, lock)
    try:
        restorer = FarSide(options, target.host, _far_restore_words(target.path), "restore", run, lock)
    except BaseException:
        dumper.abandon()
        raise
    restorer.collect_output()
    relay = _Relay(
        PipeReader(f"the dump from {source.host}", dumper.stdout_fd, owns_fd=False),
        restorer.stdin_fd,
        f"the restore on {target.host}",
        run,
    )
    try:
        with lock:
            run.reporter.phase("copying")
        reader = DumpReader(relay, run.warn)
        reader.read_volume_start()
        inodes = 0
        while (header := reader.next_inode()) is not None:
            reader.skip_data(header)
            inodes += 1
        restorer.finish()
        applied = _far_applied(restorer)
        _check_stopped(str(target), applied.stopped)
    except BaseException as err:
        if isinstance(err, RemoteError):  # the far restore failed: the far dump must not commit
            dumper.abandon()
            raise
        failures = [(restorer.abandon(), relay.write_failed), (dumper.abandon(), True)]
        raise _pick(err, failures) from None
    dumper.commit()
    run.stats.entries = inodes
    run.stats.bytes = reader.blocks.bytes_from_medium
    return _finish(options, run, applied, None, run.stats.bytes, [source.host, target.host])
