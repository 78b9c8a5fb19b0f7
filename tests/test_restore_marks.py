"""Files under restore: a restore marks each file until it is whole, a dump taken meanwhile leaves the
file out and records it, and the next dumps of its chain take it; a mark whose restore died is stale.

The restores run in other processes and read their dump from a pipe the test
feeds, so a test can stop feeding in the middle of a large file and dump the
target while the restore waits there. Each case runs on the live tree
(--snapshot-provider none) and from a btrfs snapshot on a loop device.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import termios
import time
import traceback
from pathlib import Path
from typing import ClassVar

import pytest

from ndmptools.engine import metadata
from ndmptools.engine.options import RestoreOptions
from ndmptools.engine.progress import RunContext
from ndmptools.engine.restore import run_restore
from ndmptools.engine.restoremarks import MARK_XATTR, RestoreMark, boot_id, process_start_ticks
from ndmptools.engine.treediff import compare_trees
from ndmptools.media import open_path
from tests.btrfs import btrfs_subvolume

pytestmark = pytest.mark.root

READ_SYSCALL = {"x86_64": 0, "aarch64": 63, "riscv64": 63}[platform.machine()]  # read(2)'s number
BIG = 24 << 20  # large enough that a restore fed in pieces is still inside it when the test stops


def mark_of(path: Path) -> RestoreMark | None:
    try:
        return RestoreMark.parse(os.getxattr(path, MARK_XATTR, follow_symlinks=False))
    except OSError as err:
        if err.errno != errno.ENODATA:
            raise
        return None


def make_source(root: Path) -> Path:
    """a, sub/c, and the large sub/deeper/big, which a dump numbers (and writes) last."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a").write_bytes(b"alpha\n")
    (root / "sub" / "c").write_bytes(os.urandom(5000))
    (root / "sub" / "deeper" / "big").write_bytes(os.urandom(BIG))
    os.chmod(root / "sub" / "deeper" / "big", 0o640)
    return root


def _started(path: Path, marked: bool) -> bool:
    """``path`` has some data (and, if ``marked``, a restore mark: a file restore -r is replacing)."""
    try:
        return path.stat().st_size > 0 and (not marked or mark_of(path) is not None)
    except FileNotFoundError:
        return False


class SlowRestore:
    """``ndmptools restore -f - -D TARGET`` in another process, its standard input fed by the test."""

    CHUNK = 32 * 1024
    started: ClassVar[
        list[SlowRestore]
    ] = []  # killed after each test, so that a failing one leaves none behind

    def __init__(self, dump: bytes, target: Path, *args: str, incremental: bool = False) -> None:
        self.started.append(self)
        self.dump = dump
        self.sent = 0
        self.target = target
        restore = ["restore", "-r"] if incremental else ["restore"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ndmptools", *args, *restore, "-f", "-", "-D", str(target)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def feed_until_inside(self, name: str, replaced: bool = False) -> Path:
        """Feed the dump until ``name`` under the target has some of its data, then stop there.

        ``replaced``: the file is there already, and the restore writes a new one in its place.
        Returns once the restore has taken in all that was fed and waits for more.
        """
        path = self.target / name
        while not _started(path, replaced):
            assert self.sent < len(self.dump), "the whole dump went in before the file began"
            self.proc.stdin.write(self.dump[self.sent : self.sent + self.CHUNK])
            self.proc.stdin.flush()
            self.sent += self.CHUNK
            self._wait_until_waiting()
        assert path.stat().st_size < BIG // 2, "the restore is not in the middle of the file"
        return path

    def _wait_until_waiting(self) -> None:
        """Until the pipe is empty and the restore sleeps in read() on it: nothing moves then."""
        for _ in range(10_000):
            pending = fcntl.ioctl(self.proc.stdin.fileno(), termios.FIONREAD, b"\0" * 4)
            if int.from_bytes(pending, sys.byteorder) == 0:
                with open(f"/proc/{self.proc.pid}/syscall") as f:
                    if f.read().startswith(f"{READ_SYSCALL} 0x0 "):  # in read(0, ...)
                        return
            assert self.proc.poll() is None, self.proc.stderr.read()
            time.sleep(0.005)
        raise AssertionError("the restore never settled")

    def finish(self) -> subprocess.CompletedProcess:
        out, err = self.proc.communicate(self.dump[self.sent :], timeout=120)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()  # reaped: a zombie is no running restore either, but leave none behind
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture(autouse=True)
def no_restore_left_running():
    yield
    while SlowRestore.started:
        restore = SlowRestore.started.pop()
        if restore.proc.returncode is None:
            restore.kill()


class Place:
    """Where the restore target lives and how it is dumped: the live tree, or a btrfs snapshot."""

    def __init__(self, kind: str, root: Path, state: Path, ndmptools) -> None:
        self.kind = kind
        self.root = root
        self.state = state
        self.ndmptools = ndmptools

    @property
    def provider(self) -> str:
        return "none" if self.kind == "live" else "btrfs"

    def dump(self, path: Path, out: Path, level: int = 0, *more: str) -> tuple[dict, str]:
        done = self.ndmptools(
            "--state-dir",
            str(self.state),
            "dump",
            "--json",
            "--snapshot-provider",
            self.provider,
            "-level",
            str(level),
            "-f",
            str(out),
            *more,
            str(path),
        )
        assert done.returncode in (0, 1), done.stderr.decode(errors="replace")
        return json.loads(done.stdout), done.stderr.decode(errors="replace")

    def rows(self) -> list[tuple]:
        """Every restore_marks row: (dump id, path, state)."""
        with sqlite3.connect(self.state / "ndmptools.db") as db:
            return db.execute(
                "SELECT dump_id, path, state FROM restore_marks ORDER BY dump_id, path"
            ).fetchall()

    def dump_date_ns(self, dump_id: int) -> int:
        with sqlite3.connect(self.state / "ndmptools.db") as db:
            return db.execute("SELECT dump_date_ns FROM dumps WHERE id = ?", (dump_id,)).fetchone()[0]

    def last_dump_id(self) -> int:
        with sqlite3.connect(self.state / "ndmptools.db") as db:
            return db.execute("SELECT max(id) FROM dumps").fetchone()[0]


@pytest.fixture(scope="module")
def btrfs_volume(tmp_path_factory):
    with btrfs_subvolume(tmp_path_factory.mktemp("marks-btrfs")) as vol:
        yield vol


@pytest.fixture(params=["live", "btrfs"])
def place(request, tmp_path, ndmptools) -> Place:
    if request.param == "live":
        root = tmp_path / "live"
        root.mkdir()
    else:
        root = request.getfixturevalue("btrfs_volume") / request.node.name.replace("[", "-").rstrip("]")
        root.mkdir()
    return Place(request.param, root, tmp_path / "state", ndmptools)


@pytest.fixture
def source_dump(tmp_path, ndmptools) -> tuple[Path, bytes]:
    source = make_source(tmp_path / "source")
    out = tmp_path / "source.dump"
    ndmptools.ok(
        "--state-dir",
        str(tmp_path / "source-state"),
        "dump",
        "--snapshot-provider",
        "none",
        "-f",
        str(out),
        str(source),
    )
    return source, out.read_bytes()


def listing(ndmptools, dump: Path) -> list[str]:
    done = ndmptools.ok("restore", "-t", "--json", "-f", str(dump))
    return sorted(entry["path"] for entry in json.loads(done.stdout))


BIG_PATH = "sub/deeper/big"


def test_a_restore_marks_a_file_until_it_is_whole_and_a_dump_meanwhile_leaves_it_out(
    place, source_dump, tmp_path, ndmptools
):
    source, dump = source_dump
    target = place.root / "restored"
    restore = SlowRestore(dump, target)
    big = restore.feed_until_inside(BIG_PATH)
    mark = mark_of(big)
    assert mark is not None and mark.pid == restore.proc.pid
    assert (mark.host, mark.boot, mark.start) == (
        socket.gethostname(),
        boot_id(),
        process_start_ticks(mark.pid),
    )
    assert mark_of(target / "a") is None and mark_of(target / "sub" / "c") is None  # whole: unmarked

    during, stderr = place.dump(target, tmp_path / "during.dump")
    assert during["skipped"] == [str(target / BIG_PATH)]
    assert f"{target / BIG_PATH}: being restored (by pid {restore.proc.pid}" in stderr
    assert "1 file under restore left out" not in stderr  # --json: the document says it
    assert listing(ndmptools, tmp_path / "during.dump") == [".", "a", "sub", "sub/c", "sub/deeper"]
    first_id = place.last_dump_id()
    assert place.rows() == [(first_id, BIG_PATH.encode(), "skipped")]

    done = restore.finish()
    assert done.returncode == 0, done.stderr
    assert mark_of(big) is None and mark_of(target / "a") is None
    assert compare_trees(str(source), str(target))[1] == []  # data, size, owner, mode and times

    # The restore's last change to the file (its mark going) came after the dump that left it out,
    # so times select it too; the pending row is what says it is on media again.
    after, _ = place.dump(target, tmp_path / "after.dump", 1)
    assert after["pending_included"] == [str(target / BIG_PATH)] and after["skipped"] == []
    assert BIG_PATH in listing(ndmptools, tmp_path / "after.dump")
    second_id = place.last_dump_id()
    assert place.rows() == [
        (first_id, BIG_PATH.encode(), "skipped"),
        (second_id, BIG_PATH.encode(), "included"),
    ]
    later, _ = place.dump(target, tmp_path / "later.dump", 2)
    assert later["pending_included"] == [] and BIG_PATH not in listing(ndmptools, tmp_path / "later.dump")


def test_a_restore_killed_mid_file_leaves_a_stale_mark_that_the_next_dumps_take(
    place, source_dump, tmp_path, ndmptools
):
    """The case times alone miss: the file stops changing before the dump that leaves it out."""
    _, dump = source_dump
    target = place.root / "restored"
    restore = SlowRestore(dump, target)
    big = restore.feed_until_inside(BIG_PATH)  # it waits for more: nothing moves the file's times now
    ctime_before = big.stat().st_ctime_ns
    level0, _ = place.dump(target, tmp_path / "d0.dump")
    assert level0["skipped"] == [str(target / BIG_PATH)]
    level0_id = place.last_dump_id()
    restore.kill()
    partial = big.stat().st_size
    assert big.stat().st_ctime_ns == ctime_before < place.dump_date_ns(level0_id)  # times would not select it

    level1, stderr = place.dump(target, tmp_path / "d1.dump", 1)
    assert level1["skipped"] == [] and level1["pending_included"] == [str(target / BIG_PATH)]
    assert (
        f"{target / BIG_PATH}: left by a restore that is no longer running (process {restore.proc.pid}"
        in stderr
    )
    assert "it may be incomplete" in stderr
    entries = json.loads(ndmptools.ok("restore", "-t", "--json", "-f", str(tmp_path / "d1.dump")).stdout)
    assert [e["size"] for e in entries if e["path"] == BIG_PATH] == [partial]  # as it is, not left out
    assert mark_of(big) is not None  # the dump reads, it never clears the mark

    # On the level 1, the chain has it: a level 2 does not take it again ...
    level2, stderr = place.dump(target, tmp_path / "d2.dump", 2)
    assert level2["pending_included"] == [] and BIG_PATH not in listing(ndmptools, tmp_path / "d2.dump")
    # ... but another level 1, whose chain is the level 0 alone, must: restoring the level 0 and
    # it would otherwise lack the file.
    again, _ = place.dump(target, tmp_path / "d1b.dump", 1)
    assert again["pending_included"] == [str(target / BIG_PATH)]
    assert BIG_PATH in listing(ndmptools, tmp_path / "d1b.dump")
    restored = tmp_path / "chain"
    ndmptools.ok(
        "--state-dir",
        str(tmp_path / "rstate"),
        "restore",
        "-r",
        "-f",
        str(tmp_path / "d0.dump"),
        "-D",
        str(restored),
    )
    ndmptools.ok(
        "--state-dir",
        str(tmp_path / "rstate"),
        "restore",
        "-r",
        "-f",
        str(tmp_path / "d1b.dump"),
        "-D",
        str(restored),
    )
    assert (restored / BIG_PATH).read_bytes() == big.read_bytes()


def hand_mark(path: Path, pid: int, start: int, host: str | None = None, boot: str | None = None) -> None:
    mark = RestoreMark(host or socket.gethostname(), boot or boot_id(), pid, start)
    os.setxattr(path, MARK_XATTR, mark.encode())


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_hand_written_marks_live_dead_reused_and_foreign(place, tmp_path, ndmptools, sleeper):
    tree = place.root / "tree"
    tree.mkdir()
    for name in ("live", "dead", "reused", "foreign", "old-boot", "garbled", "plain"):
        (tree / name).write_bytes(name.encode())
    os.link(tree / "live", tree / "live-too")  # every name of a marked file stays out
    hand_mark(tree / "live", sleeper.pid, process_start_ticks(sleeper.pid))
    dead = subprocess.Popen(["true"])
    dead.wait()
    hand_mark(tree / "dead", dead.pid, 12345)
    hand_mark(tree / "reused", sleeper.pid, process_start_ticks(sleeper.pid) + 1)  # its pid, not its start
    hand_mark(tree / "foreign", sleeper.pid, process_start_ticks(sleeper.pid), host="elsewhere.example")
    hand_mark(tree / "old-boot", sleeper.pid, process_start_ticks(sleeper.pid), boot="an-earlier-boot")
    os.setxattr(tree / "garbled", MARK_XATTR, b"\xff not a mark")

    level0, stderr = place.dump(tree, tmp_path / "d0.dump")
    assert level0["skipped"] == [str(tree / "live")]
    assert listing(ndmptools, tmp_path / "d0.dump") == [
        ".",
        "dead",
        "foreign",
        "garbled",
        "old-boot",
        "plain",
        "reused",
    ]
    assert f"(process {dead.pid} is gone)" in stderr
    assert f"process {sleeper.pid} is gone (its pid now names another process)" in stderr
    assert "it was set on elsewhere.example, where this dump cannot check it" in stderr
    assert "it was set before this host last booted" in stderr
    assert f"{tree / 'garbled'}: carries a {MARK_XATTR} mark ndmptools cannot read" in stderr
    assert f"{tree / 'plain'}" not in stderr

    # The restore "dies" without touching the file: only the record of the level 0 brings it back.
    sleeper.kill()
    sleeper.wait()
    level1, stderr = place.dump(tree, tmp_path / "d1.dump", 1)
    assert level1["pending_included"] == [str(tree / "live")] and level1["skipped"] == []
    assert {"live", "live-too"} <= set(listing(ndmptools, tmp_path / "d1.dump"))
    assert f"{tree / 'live'}: left by a restore that is no longer running" in stderr


def test_a_restore_of_many_files_gets_twenty_warnings_and_one_count(place, tmp_path, sleeper):
    tree = place.root / "tree"
    tree.mkdir()
    for i in range(45):
        (tree / f"f{i:02d}").write_bytes(b"")  # as stage 2 of a big restore leaves them: marked, empty
        hand_mark(tree / f"f{i:02d}", sleeper.pid, process_start_ticks(sleeper.pid))
    level0, stderr = place.dump(tree, tmp_path / "d0.dump")
    assert len(level0["skipped"]) == 45
    assert stderr.count("being restored (by") == 20
    assert "25 more files under restore left out of this dump" in stderr


def test_still_under_restore_at_the_next_dump_it_is_left_out_again(place, tmp_path, sleeper):
    tree = place.root / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(b"f")
    hand_mark(tree / "f", sleeper.pid, process_start_ticks(sleeper.pid))
    place.dump(tree, tmp_path / "d0.dump")
    level1, _ = place.dump(tree, tmp_path / "d1.dump", 1)
    assert level1["skipped"] == [str(tree / "f")] and level1["pending_included"] == []
    first, second = place.last_dump_id() - 1, place.last_dump_id()
    assert place.rows() == [(first, b"f", "skipped"), (second, b"f", "skipped")]
    sleeper.kill()
    sleeper.wait()
    level2, _ = place.dump(tree, tmp_path / "d2.dump", 2)
    assert level2["pending_included"] == [str(tree / "f")]


def test_a_failed_dump_puts_nothing_on_media_for_the_chain(place, tmp_path, ndmptools, sleeper):
    """A dump that failed is no base: what it left out is still owed by the chain it was part of."""
    tree = place.root / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(b"f")
    hand_mark(tree / "f", sleeper.pid, process_start_ticks(sleeper.pid))
    place.dump(tree, tmp_path / "d0.dump")
    sleeper.kill()
    sleeper.wait()
    failed = place.ndmptools(
        "--state-dir",
        str(place.state),
        "dump",
        "--snapshot-provider",
        place.provider,
        "-level",
        "1",
        "-f",
        str(tmp_path / "no" / "such" / "dir"),
        str(tree),
    )
    assert failed.returncode not in (0, 1)
    level1, _ = place.dump(tree, tmp_path / "d1.dump", 1)
    assert level1["pending_included"] == [str(tree / "f")]


def test_a_snapshot_taken_mid_restore_keeps_the_file_out_even_once_the_restore_is_over(
    btrfs_volume, source_dump, tmp_path, ndmptools
):
    """Marks are judged when the dump reads them, after its snapshot: a restore that ended in between
    finished or removed the file in the live tree, which then has no mark; only a mark still there
    means a restore that died with it."""
    _, dump = source_dump
    root = btrfs_volume / "snapshot-then-dump"
    root.mkdir()
    state = str(tmp_path / "state")
    (btrfs_volume / ".snapshot").mkdir(exist_ok=True)
    for ending in ("finished", "killed"):
        target = root / ending
        restore = SlowRestore(dump, target)
        restore.feed_until_inside(BIG_PATH)
        snapshot = btrfs_volume / ".snapshot" / f"mid-{ending}"
        btrfs("subvolume", "snapshot", "-r", str(btrfs_volume), str(snapshot))
        try:
            if ending == "finished":
                assert restore.finish().returncode == 0
            else:
                restore.kill()
            out = tmp_path / f"{ending}.dump"
            dump_args = ("dump", "--json", "--snapshot", snapshot.name, "-f", str(out), str(target))
            done = ndmptools("--state-dir", state, *dump_args)
            result, stderr = json.loads(done.stdout), done.stderr.decode()
        finally:
            btrfs("subvolume", "delete", str(snapshot))
        if ending == "finished":
            assert result["skipped"] == [str(target / BIG_PATH)]
            assert "was being restored when the snapshot was taken" in stderr
            assert BIG_PATH not in listing(ndmptools, out)
        else:
            assert result["skipped"] == []
            assert "left by a restore that is no longer running" in stderr
            assert BIG_PATH in listing(ndmptools, out)


def btrfs(*args: str) -> None:
    subprocess.run(["btrfs", *args], check=True, capture_output=True)


def test_the_summary_line_counts_the_files_left_out(tmp_path, ndmptools, sleeper):
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("x", "y", "z"):
        (tree / name).write_bytes(b"1")
        hand_mark(tree / name, sleeper.pid, process_start_ticks(sleeper.pid))
    done = ndmptools(
        "--state-dir",
        str(tmp_path / "s"),
        "dump",
        "--snapshot-provider",
        "none",
        "-f",
        str(tmp_path / "d"),
        str(tree),
    )
    assert done.returncode == 1
    summary = done.stderr.decode().splitlines()[-1]
    assert summary.startswith("dump: ") and summary.endswith(
        "; 3 files under restore left out (the next dump takes them)"
    ), summary


def test_a_target_without_extended_attributes_is_restored_unmarked_with_one_note(
    tmp_path, ndmptools, small_tree
):
    dump = tmp_path / "small.dump"
    ndmptools.ok("dump", "--snapshot-provider", "none", "-f", str(dump), small_tree)
    target = tmp_path / "ramfs"
    target.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "none", str(target)], check=True)
    try:
        done = ndmptools.ok("restore", "-f", str(dump), "-D", str(target / "r"))
        notes = [line for line in done.stderr.decode().splitlines() if MARK_XATTR in line]
        assert len(notes) == 1 and "cannot hold the" in notes[0], done.stderr
        problems = compare_trees(small_tree, str(target / "r"))[1]
        assert [p for p in problems if not p.endswith("holes differ")] == []  # ramfs keeps no holes
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_an_ordinary_users_read_only_file_loses_its_mark(tmp_path, ndmptools):
    """A user. mark needs write permission to go: a restored mode without it is lifted for that call.

    The restore runs in a child of this process that has become nobody (the venv's interpreter
    lives where nobody cannot read it), on a dump and a target it can reach.
    """
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ro").write_bytes(b"read only\n")
    os.chmod(tree / "ro", 0o444)
    os.utime(tree / "ro", ns=(1_000_000_000, 2_000_000_000))
    shared = Path(tempfile.mkdtemp(prefix="ndmptools-marks-"))
    try:
        os.chmod(shared, 0o755)
        dump = shared / "ro.dump"
        ndmptools.ok("dump", "--snapshot-provider", "none", "-f", str(dump), str(tree))
        os.chmod(dump, 0o644)
        target = shared / "user"
        target.mkdir()
        os.chown(target, 65534, 65534)
        child = os.fork()
        if child == 0:
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                metadata.RESTORES_OWNERS = False  # as it is in a process started by nobody
                with open_path(str(dump), "r") as medium:
                    result = run_restore(
                        RestoreOptions(file=str(dump), target=str(target)), medium, RunContext()
                    )
                os._exit(0 if result.restored == 1 and not result.stats.warnings else 3)
            except BaseException:
                traceback.print_exc()
                os._exit(4)
        assert os.waitpid(child, 0)[1] == 0
        restored = target / "ro"
        assert mark_of(restored) is None
        st = restored.stat()
        assert (st.st_mode & 0o777, st.st_mtime_ns, st.st_uid) == (0o444, 2_000_000_000, 65534)
    finally:
        shutil.rmtree(shared)


def test_restore_r_marks_what_it_writes(tmp_path, ndmptools, sleeper):
    """The incremental apply writes files through the same restorer: a dump during it leaves them out."""
    source = make_source(tmp_path / "source")
    state = str(tmp_path / "state")
    ndmptools.ok(
        "--state-dir", state, "dump", "--snapshot-provider", "none", "-f", str(tmp_path / "d0"), str(source)
    )
    (source / "sub" / "deeper" / "big").write_bytes(os.urandom(BIG))
    ndmptools.ok(
        "--state-dir",
        state,
        "dump",
        "--snapshot-provider",
        "none",
        "-level",
        "1",
        "-f",
        str(tmp_path / "d1"),
        str(source),
    )
    target = tmp_path / "target"
    rstate = str(tmp_path / "rstate")
    ndmptools.ok("--state-dir", rstate, "restore", "-r", "-f", str(tmp_path / "d0"), "-D", str(target))
    big = target / BIG_PATH
    restore = SlowRestore((tmp_path / "d1").read_bytes(), target, "--state-dir", rstate, incremental=True)
    restore.feed_until_inside(BIG_PATH, replaced=True)
    assert mark_of(big).pid == restore.proc.pid
    during, _ = Place("live", target, tmp_path / "dstate", ndmptools).dump(target, tmp_path / "during")
    assert during["skipped"] == [str(big)]
    assert restore.finish().returncode == 0
    assert mark_of(big) is None
    assert compare_trees(str(source), str(target))[1] == []


def test_killed_restore_gone_pid_is_not_a_zombie(tmp_path):
    """A killed restore its parent has not reaped yet is no running restore."""
    proc = subprocess.Popen(["sleep", "600"])
    start = process_start_ticks(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    mark = RestoreMark(socket.gethostname(), boot_id(), proc.pid, start)
    assert mark.running() == (False, f"process {proc.pid} is gone")
    proc.wait()
    assert mark.running() == (False, f"process {proc.pid} is gone")


def test_marks_parse_only_what_ndmptools_writes():
    mark = RestoreMark("host with spaces", "b00t", 42, 7)
    assert RestoreMark.parse(mark.encode()) == mark
    for bad in (
        b"",
        b"ndmptools-restore/1",
        b"ndmptools-restore/2 boot=b pid=1 start=2 host=h",
        b"ndmptools-restore/1 pid=1 boot=b start=2 host=h",
        b"ndmptools-restore/1 boot=b pid=x start=2 host=h",
        b"ndmptools-restore/1 boot=b pid=1 start=2 host=" + b"h" * 2000,
    ):
        assert RestoreMark.parse(bad) is None, bad


def test_a_restarted_dump_leaves_out_what_its_first_run_left_out(btrfs_volume, tmp_path, ndmptools, sleeper):
    """The restart rebuilds the stream on the same snapshot with the same choices, even though the
    restore has died since; the level 1 after it then takes the file."""
    tree = btrfs_volume / "restarted"
    tree.mkdir()
    for i in range(12):
        (tree / f"f{i:02d}").write_bytes(os.urandom(100_000))
    (tree / "marked").write_bytes(b"half")
    hand_mark(tree / "marked", sleeper.pid, process_start_ticks(sleeper.pid))
    state = str(tmp_path / "state")
    fault = os.path.join(os.path.dirname(__file__), "fault_dump.py")
    env = dict(os.environ, FAULT_KILL_AFTER_RECORDS="20", FAULT_PARTIAL="0")
    media = ("-b", "16", "--checkpoint-interval", "0")
    killed = subprocess.run(
        [
            sys.executable,
            fault,
            "dump",
            "--state-dir",
            state,
            *media,
            "-f",
            str(tmp_path / "vol1"),
            str(tree),
        ],
        capture_output=True,
        env=env,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    contexts = json.loads(ndmptools.ok("--state-dir", state, "contexts", "list", "--json").stdout)
    sleeper.kill()
    sleeper.wait()
    restarted = ndmptools(
        "--state-dir",
        state,
        "dump",
        "--json",
        "--restart",
        contexts[0]["context_id"],
        "-f",
        str(tmp_path / "vol2"),
    )
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["skipped"] == [str(tree / "marked")]
    target = tmp_path / "r"
    ndmptools.ok("restore", "-f", str(tmp_path / "vol1"), "-f", str(tmp_path / "vol2"), "-D", str(target))
    assert sorted(os.listdir(target)) == [f"f{i:02d}" for i in range(12)]
    level1 = ndmptools(
        "--state-dir", state, "dump", "--json", "-level", "1", "-f", str(tmp_path / "l1"), str(tree)
    )
    assert level1.returncode == 1 and b"left by a restore that is no longer running" in level1.stderr
    assert json.loads(level1.stdout)["pending_included"] == [str(tree / "marked")]


def test_the_manual_names_the_mark_the_code_sets():
    """The name is spelled once in the code (MARK_XATTR); the help and man pages must say the same."""
    man = Path(__file__).parent.parent / "man"
    for page in ("ndmptools-dump.1", "ndmptools-restore.1"):
        assert MARK_XATTR in (man / page).read_text(), page
