"""The DATA service: the dump engine behind NDMP's DATA_* requests.

States, as NDMP v4 has them: IDLE -> LISTEN (DATA_LISTEN) or CONNECTED
(DATA_CONNECT) -> ACTIVE (DATA_START_BACKUP / DATA_START_RECOVER) ->
HALTED (done, failed or DATA_ABORT; NOTIFY_DATA_HALTED says so) -> IDLE
(DATA_STOP). The data stream is a stream socket (media/socket.py): the
DATA end of the local mover's socketpair, a connection to a remote mover
or plain socket, or one a remote mover made to our listening socket.

The engine runs in a thread of its own, so the connection keeps answering
DATA_GET_STATE and DATA_ABORT meanwhile. What the engine says goes to the
DMA as LOG_MESSAGE (warnings as WARNING, notes as NORMAL), a backup's file
history as FH_ADD_DIR and FH_ADD_NODE, a recover's outcome per name as
LOG_FILE. Every environment variable the DMA sends either takes effect
(engine/options.py) or is named in a log message saying it did not.

fh_info: the byte offset on the data stream of the inode's first TS_INODE
header (its c_tapea times 1 KiB). A recover given fh_info for its names
reads the directories in order, then asks (NOTIFY_DATA_READ) for each file
at its place.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
import traceback

from ndmptools.engine.errors import UsageError
from ndmptools.engine.options import DumpOptions, RestoreOptions, read_ndmp_environment
from ndmptools.engine.progress import RunContext
from ndmptools.errors import NdmpToolsError
from ndmptools.format.constants import (
    DEFAULT_BLOCKING_FACTOR,
    MAX_BLOCKING_FACTOR,
    MIN_BLOCKING_FACTOR,
    TP_BSIZE,
)
from ndmptools.format.dirent import parse_directory
from ndmptools.media.socket import SocketMedium
from ndmptools.ndmp import messages as m
from ndmptools.ndmp.session import NdmpError

log = logging.getLogger("ndmptools.ndmp")

# Names DMAs send that are theirs, not the engine's: what each means here (logged, never silent).
DMA_NAMES = {
    "PREFIX": "ndmjob's -C: the names' destination paths carry it already",
    "USER": "the DMA's user: the recover runs as the server's own user",
    "FILES": "ndmjob's file arguments: a dump backs up FILESYSTEM whole (EXCLUDE leaves parts out)",
    "RULES": "ndmjob's -o rules: nothing in the dump engine follows them",
}
INVALID_U_QUAD = (1 << 64) - 1  # NDMP's "no value" for an fh_info or node
FH_BATCH = 256  # entries per FH_ADD_DIR / FH_ADD_NODE post
CONNECT_TIMEOUT = 30.0  # seconds a listening DATA waits for the remote mover at START


# -- the engine's reports, as NDMP log messages --------------------------------------------------


class DmaReporter:
    """An engine Reporter that tells the DMA: warnings, notes, and (VERBOSE) each phase."""

    def __init__(self, session, verbose: bool = False) -> None:
        self.session = session
        self.verbose = verbose

    def phase(self, name: str, total_bytes: int | None = None) -> None:
        if self.verbose:
            self.session.log_message(f"ndmptools: {name}")

    def advance(self, nbytes: int) -> None:
        pass

    def warning(self, message: str) -> None:
        self.session.log_message(f"ndmptools: warning: {message}", m.LOG_WARNING)

    def note(self, message: str) -> None:
        self.session.log_message(f"ndmptools: {message}")

    def close(self) -> None:
        pass


# -- a backup's file history, as FH_ADD_DIR / FH_ADD_NODE ----------------------------------------


def _file_type(mode: int) -> int:
    kind = mode & 0o170000
    return {
        0o040000: m.FILE_DIR,
        0o010000: m.FILE_FIFO,
        0o020000: m.FILE_CSPEC,
        0o060000: m.FILE_BSPEC,
        0o100000: m.FILE_REG,
        0o120000: m.FILE_SLINK,
        0o140000: m.FILE_SOCK,
    }.get(kind, m.FILE_OTHER)


def file_stat(info) -> object:
    """An NDMP file_stat of an inode as the dump wrote it (times in whole seconds, 32 bits)."""
    return m.file_stat(
        unsupported=0,
        fs_type=m.FS_UNIX,
        ftype=_file_type(info.mode),
        mtime=max(0, info.mtime_ns // 1_000_000_000) & 0xFFFFFFFF,
        atime=max(0, info.atime_ns // 1_000_000_000) & 0xFFFFFFFF,
        ctime=max(0, info.ctime_ns // 1_000_000_000) & 0xFFFFFFFF,
        owner=info.uid & 0xFFFFFFFF,
        group=info.gid & 0xFFFFFFFF,
        fattr=info.mode & 0o7777,
        size=info.size,
        links=info.nlink & 0xFFFFFFFF,
    )


class FileHistoryPoster:
    """The dump's FileHistoryObserver for a DMA: each directory's entries and each inode's place.

    The dump writes every directory before any other inode (pass III), the
    root first, so the DMA gets the root's "." as its first FH_ADD_DIR entry
    (ndmjob takes the root node from it) and every name before its node.
    """

    def __init__(self, session, batch: int = FH_BATCH) -> None:
        self.session = session
        self.batch = batch
        self._dirs: list = []
        self._nodes: list = []
        self.entries = 0
        self.nodes = 0

    def directory(self, ino: int, path: bytes, info, tapea: int, blocks: int, contents: bytes) -> None:
        entries, _ = parse_directory(contents)
        for entry in entries:
            name = entry.name.decode("utf-8", "surrogateescape")
            self._dirs.append(m.dir_entry(names=[m.file_name(m.FS_UNIX, name)], node=entry.ino, parent=ino))
            if len(self._dirs) >= self.batch:
                self._post_dirs()
        self.inode(ino, info, tapea, blocks)

    def inode(self, ino: int, info, tapea: int, blocks: int) -> None:
        self._nodes.append(m.node(stats=[file_stat(info)], node=ino, fh_info=tapea * TP_BSIZE))
        if len(self._nodes) >= self.batch:
            self.flush()

    def _post_dirs(self) -> None:
        if self._dirs:
            self.entries += len(self._dirs)
            self.session.post(m.Message.FH_ADD_DIR, m.fh_add_dir_post(dirs=self._dirs))
            self._dirs = []

    def flush(self) -> None:
        self._post_dirs()  # names before the nodes they name
        if self._nodes:
            self.nodes += len(self._nodes)
            self.session.post(m.Message.FH_ADD_NODE, m.fh_add_node_post(nodes=self._nodes))
            self._nodes = []


# -- the service -------------------------------------------------------------------------------


class DataService:
    """The session's DATA state machine and the thread the engine runs in."""

    def __init__(self, session) -> None:
        self.session = session
        self.lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self.state = m.DATA_STATE_IDLE
        self.operation = m.DATA_OP_NOACTION
        self.halt_reason = m.DATA_HALT_NA
        self.addr = m.addr(m.ADDR_LOCAL)
        self.sock: socket.socket | None = None
        self.listener: socket.socket | None = None
        self.local_peer: socket.socket | None = None  # DATA_LISTEN LOCAL: the end a local mover takes
        self.medium: SocketMedium | None = None
        self.thread: threading.Thread | None = None
        self.aborted = False
        self.env_out: list[tuple[str, str]] = []  # a backup's, for DATA_GET_ENV (a recover: what it got)
        self.env_in: list[tuple[str, str]] = []
        self.read_offset = 0
        self.read_length = 0
        self.bytes_done = 0

    # -- connection --------------------------------------------------------------------------

    def connect(self, addr) -> None:
        with self.lock:
            if self.state != m.DATA_STATE_IDLE:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "DATA_CONNECT needs the IDLE state")
            if addr.addr_type == m.ADDR_LOCAL:
                self.sock = self.session.mover.local_data_socket()
            elif addr.addr_type == m.ADDR_TCP:
                if not addr.tcp_addr:
                    raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, "a TCP address with no address in it")
                self.sock = _connect_any(addr.tcp_addr)
            else:
                raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, "DATA_CONNECT takes LOCAL or TCP")
            self.addr = addr
            self.state = m.DATA_STATE_CONNECTED

    def listen(self, addr_type: int):
        with self.lock:
            if self.state != m.DATA_STATE_IDLE:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "DATA_LISTEN needs the IDLE state")
            if addr_type == m.ADDR_LOCAL:
                self.sock, self.local_peer = socket.socketpair()
                self.addr = m.addr(m.ADDR_LOCAL)
            elif addr_type == m.ADDR_TCP:
                host = self.session.sock.getsockname()[0]  # where the DMA reached us
                listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
                listener.bind((host, 0))
                listener.listen(1)
                self.listener = listener
                ip = int(ipaddress.ip_address(host)) if ":" not in host else 0
                port = listener.getsockname()[1]
                self.addr = m.addr(m.ADDR_TCP, [m.tcp_addr(ip_addr=ip, port=port, addr_env=[])])
            else:
                raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, "DATA_LISTEN takes LOCAL or TCP")
            self.state = m.DATA_STATE_LISTEN
            return self.addr

    def local_mover_socket(self) -> socket.socket:
        """MOVER_CONNECT LOCAL after DATA_LISTEN LOCAL: the mover's end of the socketpair."""
        with self.lock:
            if self.state != m.DATA_STATE_LISTEN or self.local_peer is None:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "DATA is not listening on LOCAL")
            peer, self.local_peer = self.local_peer, None
            self.state = m.DATA_STATE_CONNECTED
            return peer

    def _stream(self) -> socket.socket:
        """The data connection, once there: a listening DATA waits for its mover here."""
        if self.sock is not None and self.state == m.DATA_STATE_CONNECTED:
            return self.sock
        if self.listener is not None:
            self.listener.settimeout(CONNECT_TIMEOUT)
            try:
                self.sock, _ = self.listener.accept()
            except OSError as err:
                raise NdmpError(m.Error.CONNECT_ERR, f"no mover connected: {err}") from None
            finally:
                self.listener.close()
                self.listener = None
            self.sock.settimeout(None)
            return self.sock
        if self.sock is not None and self.local_peer is None:
            return self.sock
        raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "DATA_START needs DATA_CONNECT or DATA_LISTEN first")

    # -- starting ----------------------------------------------------------------------------

    def _environment(self, command: str, env) -> tuple[dict, list[str]]:
        pairs, notes = [], []
        for pval in env:
            said = DMA_NAMES.get(pval.name.strip().upper())
            if said is None:
                pairs.append((pval.name, pval.value))
            else:
                notes.append(f"{pval.name}={pval.value}: {said}")
        with self.lock:
            self.env_in = [(p.name, p.value) for p in env]
        try:
            fields, more = read_ndmp_environment(command, pairs)
            notes += more
        except UsageError as err:
            self.session.log_message(f"ndmptools: {err.message}", m.LOG_ERROR)
            raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, err.message) from None
        return fields, notes

    def start_backup(self, request) -> None:
        with self.lock:
            if self.state not in (m.DATA_STATE_CONNECTED, m.DATA_STATE_LISTEN):
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "DATA_START_BACKUP needs a data connection")
            if request.butype_name.lower() != "dump":
                raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"no backup type {request.butype_name!r}")
            fields, notes = self._environment("dump", request.env)
            if not fields.get("path"):
                self.session.log_message("ndmptools: FILESYSTEM names no path to back up", m.LOG_ERROR)
                raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, "FILESYSTEM is missing")
            sock = self._stream()
            self.medium = SocketMedium(sock, "w")
            self._begin(m.DATA_OP_BACKUP, self._backup, fields, notes)

    def start_recover(self, request) -> None:
        with self.lock:
            if self.state not in (m.DATA_STATE_CONNECTED, m.DATA_STATE_LISTEN):
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "DATA_START_RECOVER needs a data connection")
            if request.butype_name.lower() != "dump":
                raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"no backup type {request.butype_name!r}")
            fields, notes = self._environment("restore", request.env)
            try:
                plan = recover_plan(request.nlist)
            except UsageError as err:
                self.session.log_message(f"ndmptools: {err.message}", m.LOG_ERROR)
                raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, err.message) from None
            if "extract" in fields:
                notes.append(
                    f"EXTRACT={fields['extract']}: over NDMP the name list says what is restored and where "
                    "(a destination other than the original path is a rename)"
                )
            sock = self._stream()
            # Seeks go to this server's own mover only: others may take reads in whole records of a
            # size DATA is never told (ndmjob's own tape agent does), so theirs is read on in order.
            paged = fields.get("direct", True) and bool(plan.places) and self.addr.addr_type == m.ADDR_LOCAL
            if plan.places and not paged:
                notes.append(
                    "the names have places (fh_info), but the mover is another agent's: the stream is "
                    "read on in order to them, not sought"
                )
            self.medium = SocketMedium(sock, "r", request=self._ask, paged=paged)
            self._begin(m.DATA_OP_RECOVER, self._recover, fields, notes, plan)

    def _begin(self, operation: int, work, fields: dict, notes: list[str], *more) -> None:
        self.state = m.DATA_STATE_ACTIVE
        self.operation = operation
        self.halt_reason = m.DATA_HALT_NA
        for note in notes:
            self.session.log_message(f"ndmptools: {note}", m.LOG_WARNING)
        if fields.get("debug"):
            shown = ", ".join(f"{k}={v!r}" for k, v in sorted(fields.items()))
            self.session.log_message(f"ndmptools: options from the environment: {shown}", m.LOG_DEBUG)
        self.thread = threading.Thread(
            target=self._run, args=(work, fields, *more), name=f"ndmp-data-{self.session.number}", daemon=True
        )
        self.thread.start()

    def _ask(self, offset: int, length: int) -> None:
        """The engine wants bytes [offset, offset+length) of the stream: tell the DMA."""
        with self.lock:
            self.read_offset, self.read_length = offset, length
        self.session.post(m.Message.NOTIFY_DATA_READ, m.notify_data_read_post(offset=offset, length=length))

    # -- running -----------------------------------------------------------------------------

    def _run(self, work, fields: dict, *more) -> None:
        reason = m.DATA_HALT_SUCCESSFUL
        reporter = DmaReporter(self.session, verbose=bool(fields.get("verbose")))
        if self.session.slot is not None:  # the connection's session slot counts the bytes moved
            reporter = self.session.slot.reporter(reporter)
        run = RunContext(reporter)
        try:
            work(fields, run, *more)
        except NdmpToolsError as err:
            reason = m.DATA_HALT_ABORTED if self.aborted else m.DATA_HALT_INTERNAL_ERROR
            self.session.log_message(f"ndmptools: error: {err}", m.LOG_ERROR)
            if fields.get("debug"):
                self.session.log_message(traceback.format_exc(), m.LOG_DEBUG)
        except Exception as err:  # a bug: the DMA hears of it, the server goes on
            reason = m.DATA_HALT_ABORTED if self.aborted else m.DATA_HALT_INTERNAL_ERROR
            log.exception("%s: DATA failed", self.session.name)
            self.session.log_message(f"ndmptools: internal error: {err!r}", m.LOG_ERROR)
        finally:
            if self.medium is not None:
                self.bytes_done = self.medium.bytes_moved
                with contextlib.suppress(NdmpToolsError):
                    self.medium.close()
        self._halt(m.DATA_HALT_ABORTED if self.aborted else reason)

    def _halt(self, reason: int) -> None:
        with self.lock:
            if self.state == m.DATA_STATE_HALTED:
                return
            self.state = m.DATA_STATE_HALTED
            self.halt_reason = reason
            for sock in (self.listener, self.local_peer):
                if sock is not None:
                    sock.close()
            self.listener = self.local_peer = None
            if self.medium is None and self.sock is not None:
                self.sock.close()
        self.session.post(m.Message.NOTIFY_DATA_HALTED, m.notify_data_halted_post(reason=reason))

    def _history(self):
        from ndmptools.state.db import StateDB
        from ndmptools.state.history import History

        return History(StateDB(self.session.settings.state_dir))

    def _blocking_factor(self) -> int:
        """The mover's record size, in 1 KiB blocks, when the mover is ours and it fits; else the default."""
        size = getattr(self.session.mover, "record_size", 0) or 0
        if self.addr.addr_type == m.ADDR_LOCAL and size % TP_BSIZE == 0:
            factor = size // TP_BSIZE
            if MIN_BLOCKING_FACTOR <= factor <= MAX_BLOCKING_FACTOR:
                return factor
        return DEFAULT_BLOCKING_FACTOR

    def _backup(self, fields: dict, run: RunContext) -> None:
        from ndmptools.engine.dump import run_dump
        from ndmptools.state.contexts import ContextStore

        options = DumpOptions(
            path=fields["path"],
            file="ndmp",
            level=fields.get("level", 0),
            blocking_factor=self._blocking_factor(),
            update=fields.get("update", True),
            file_history=fields.get("file_history", False),
            prompt=False,
            state_dir=self.session.settings.state_dir,
            base_date=fields.get("base_date"),
            exclude=fields.get("exclude", ()),
            ignore_ctime=fields.get("ignore_ctime", False),
            no_acls=fields.get("no_acls", False),
        )
        poster = FileHistoryPoster(self.session) if options.file_history else None
        history = self._history()
        try:
            result = run_dump(
                options, lambda: self.medium, run, history, contexts=ContextStore(history.db), observer=poster
            )
        finally:
            history.db.close()
        env = [
            ("FILESYSTEM", result.path),
            ("TYPE", "dump"),
            ("LEVEL", str(result.level)),
            ("DUMP_DATE", str(result.date)),
            ("UPDATE", "Y" if options.update else "N"),
            ("HIST", "Y" if poster is not None else "N"),
        ]
        if result.base_date is not None:
            env.append(("BASE_DATE", str(result.base_date)))
        with self.lock:
            self.env_out = env
        self.session.log_message(
            f"ndmptools: dump of {result.path} at level {result.level} done: {result.inodes} inodes, "
            f"{result.blocks} blocks of 1 KiB (DUMP_DATE={result.date})"
        )

    def _recover(self, fields: dict, run: RunContext, plan: RecoverPlan) -> None:
        from ndmptools.engine.options import ListOptions
        from ndmptools.engine.restore import run_list, run_restore

        if fields.get("list"):
            options = ListOptions(file="ndmp", paths=plan.paths, prompt=False)
            run_list(options, self.medium, run, lambda e: self.session.log_message(f"{e.type} {e.path}"))
            for entry in plan.entries:
                self._log_file(entry, m.RECOVERY_SUCCESSFUL)
            self.medium.drain_to_end()
            return
        options = RestoreOptions(
            file="ndmp",
            target=plan.target,
            paths=plan.paths,
            renames=plan.renames,
            prompt=False,
            direct=self.medium._paged,
            force=fields.get("force", False),
            extract_acl=fields.get("extract_acl", True),
            nowrite=fields.get("nowrite", False),
            recursive=fields.get("recursive", True),
            full_paths=fields.get("full_paths", True),
            dump_date=fields.get("dump_date"),
            places=plan.places,
        )
        history = self._history()
        try:
            result = run_restore(options, self.medium, run, history)
        except NdmpToolsError:
            for entry in plan.entries:
                self._log_file(entry, m.RECOVERY_FAILED_UNDEFINED_ERROR)
            raise
        finally:
            history.db.close()
        lost = ": not found in the dump"
        missing = {w.split(lost)[0] for w in run.stats.warnings if lost in w}
        unrestored = set(result.unrestored)
        for entry, path in zip(plan.entries, plan.entry_paths, strict=True):
            if path in missing:
                self._log_file(entry, m.RECOVERY_FAILED_NOT_FOUND)
            elif path in unrestored or result.stopped:
                self._log_file(entry, m.RECOVERY_FAILED_IO_ERROR)
            else:
                self._log_file(entry, m.RECOVERY_SUCCESSFUL)
        if not options.direct:
            self.medium.drain_to_end()  # the mover sends to its end of file: take it, so it ends clean

    def _log_file(self, name: str, status: int) -> None:
        self.session.post(m.Message.LOG_FILE, m.log_file_post(name=name, recovery_status=status))

    # -- the other requests ------------------------------------------------------------------

    def get_state(self):
        with self.lock:
            moved = self.medium.bytes_moved if self.medium is not None else self.bytes_done
            return m.data_get_state_reply(
                unsupported=m.DATA_STATE_EST_BYTES_REMAIN_UNS | m.DATA_STATE_EST_TIME_REMAIN_UNS,
                error=m.Error.NO_ERR,
                operation=self.operation,
                state=self.state,
                halt_reason=self.halt_reason,
                bytes_processed=moved,
                est_bytes_remain=0,
                est_time_remain=0,
                data_connection_addr=self.addr,
                read_offset=self.read_offset,
                read_length=self.read_length,
            )

    def get_env(self):
        with self.lock:
            if self.state not in (m.DATA_STATE_ACTIVE, m.DATA_STATE_HALTED):
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "DATA_GET_ENV needs an operation")
            env = self.env_out if self.operation == m.DATA_OP_BACKUP else self.env_in
            return m.data_get_env_reply(error=m.Error.NO_ERR, env=[m.pval(name=k, value=v) for k, v in env])

    def abort(self) -> None:
        with self.lock:
            if self.state == m.DATA_STATE_IDLE:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "nothing to abort")
            if self.state == m.DATA_STATE_HALTED:
                return
            self.aborted = True
            running = self.thread is not None and self.thread.is_alive()
            if self.medium is not None:
                self.medium.stop()
        if not running:
            self._halt(m.DATA_HALT_ABORTED)

    def stop(self) -> None:
        with self.lock:
            if self.state != m.DATA_STATE_HALTED:
                raise NdmpError(m.Error.ILLEGAL_STATE_ERR, "DATA_STOP needs the HALTED state")
            thread = self.thread
        if thread is not None:
            thread.join(timeout=10)
        with self.lock:
            if self.sock is not None:
                with contextlib.suppress(OSError):
                    self.sock.close()
            self._reset()

    def end_session(self) -> None:
        """The DMA hung up: stop the engine and let it go."""
        with self.lock:
            self.aborted = True
            if self.medium is not None:
                self.medium.stop()
            for sock in (self.listener, self.local_peer, self.sock):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
            thread = self.thread
        if thread is not None:
            thread.join(timeout=10)


def _connect_any(addresses) -> socket.socket:
    """A connection to the first of a TCP addr's addresses that answers."""
    last = None
    for where in addresses:
        host = str(ipaddress.IPv4Address(where.ip_addr))
        try:
            sock = socket.create_connection((host, where.port), timeout=CONNECT_TIMEOUT)
            sock.settimeout(None)  # connected: from here on the stream waits as long as the mover does
            return sock
        except OSError as err:
            last = err
    raise NdmpError(m.Error.CONNECT_ERR, f"cannot connect the data stream: {last}")


# -- what a recover's name list asks for --------------------------------------------------------


class RecoverPlan:
    """A name list as the engine takes it: one target, PATHs (or renames), and places for DAR."""

    def __init__(self) -> None:
        self.target = "/"
        self.paths: tuple[str, ...] = ()
        self.renames: tuple[tuple[str, str], ...] = ()
        self.places: tuple[tuple[str, int], ...] = ()
        self.entries: list[str] = []  # original paths, as the DMA named them (for LOG_FILE)
        self.entry_paths: list[str] = []  # each as the engine reports it


def _inside(path: str) -> str:
    return "/".join(p for p in path.split("/") if p not in ("", "."))


def recover_plan(nlist) -> RecoverPlan:
    """Where each name goes: names restored as they are below one directory, or renamed below a common one.

    A destination that ends with the original path is that path below its
    destination's root; when all share one root, that is the target.
    Otherwise the target is the directory the destinations have in common
    and each name is renamed to its place below it (EXTRACT=E).
    """
    plan = RecoverPlan()
    if not nlist:
        raise UsageError("a recover needs at least one name in its name list")
    pairs = []
    for entry in nlist:
        original = _inside(entry.original_path)
        destination = os.path.normpath(entry.destination_path or "/")
        if not destination.startswith("/"):
            raise UsageError(f"destination {entry.destination_path!r} is not an absolute path")
        pairs.append((original, destination))
        plan.entries.append(entry.original_path)
        plan.entry_paths.append(original or ".")
        fh_info = entry.fh_info
        if original and fh_info not in (None, INVALID_U_QUAD) and fh_info % TP_BSIZE == 0:
            plan.places = (*plan.places, (original, fh_info // TP_BSIZE))
    roots = set()
    for original, destination in pairs:
        if not original:
            roots.add(destination)
        elif destination == "/" + original or destination.endswith("/" + original):
            roots.add(destination[: len(destination) - len(original) - 1] or "/")
        else:
            roots.add(None)
    if len(roots) == 1 and None not in roots:
        plan.target = roots.pop()
        plan.paths = tuple(o for o, _ in pairs if o)
        if any(not o for o, _ in pairs):
            if len(pairs) > 1:
                raise UsageError("the whole dump ('/') and other names cannot be recovered together")
            plan.paths = ()
        return plan
    if any(not o for o, _ in pairs):
        raise UsageError("the whole dump ('/') goes to one place, with no other names")
    common = os.path.commonpath([os.path.dirname(d) for _, d in pairs])
    plan.target = common
    plan.renames = tuple((o, os.path.relpath(d, common)) for o, d in pairs)
    return plan


# -- the handlers ------------------------------------------------------------------------------


def _service(session) -> DataService:
    if session.data is None:
        session.data = DataService(session)
    return session.data


def data_get_state(session, body):
    return _service(session).get_state()


def data_connect(session, body):
    _service(session).connect(body.addr)


def data_listen(session, body):
    addr = _service(session).listen(body.addr_type)
    return m.data_listen_reply(error=m.Error.NO_ERR, connect_addr=addr)


def data_start_backup(session, body):
    _service(session).start_backup(body)


def data_start_recover(session, body):
    _service(session).start_recover(body)


def data_start_recover_filehist(session, body):
    raise NdmpError(m.Error.NOT_SUPPORTED_ERR, "a file history from the media is not offered")


def data_abort(session, body):
    _service(session).abort()


def data_get_env(session, body):
    return _service(session).get_env()


def data_stop(session, body):
    _service(session).stop()


HANDLERS = {
    m.Message.DATA_GET_STATE: data_get_state,
    m.Message.DATA_CONNECT: data_connect,
    m.Message.DATA_LISTEN: data_listen,
    m.Message.DATA_START_BACKUP: data_start_backup,
    m.Message.DATA_START_RECOVER: data_start_recover,
    m.Message.DATA_START_RECOVER_FILEHIST: data_start_recover_filehist,
    m.Message.DATA_ABORT: data_abort,
    m.Message.DATA_GET_ENV: data_get_env,
    m.Message.DATA_STOP: data_stop,
}
