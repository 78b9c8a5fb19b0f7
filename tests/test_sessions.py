"""Session limits: the memory table, the settings file, and slots held by real processes.

The overlapping sessions are real ``ndmptools`` processes: a dump whose output is a FIFO nobody
reads yet, or a restore whose input is a FIFO nobody writes yet, holds its slot until the test
opens the other end; a refused one ends at once with exit code 12.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ndmptools.engine import sessions
from ndmptools.engine.errors import UsageError
from ndmptools.errors import EXIT_CODES, MediaError, SessionLimitReached, StateError
from tests.trees import build_tree_from_spec

GIB = 1 << 20  # in KiB, as /proc/meminfo counts


# -- the memory table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memtotal_kib", "expected"),
    [
        (1 * GIB, 4),
        (15 * GIB, 4),  # exactly 15 GiB: a 15 GiB machine
        (15 * GIB + 1, 16),  # rounds up to 16: a 16 GiB machine whose kernel keeps some
        (int(15.6 * GIB), 16),
        (16 * GIB, 16),
        (23 * GIB, 16),
        (23 * GIB + 1, 32),  # rounds up to 24
        (24683568, 32),  # this machine: 23.54 GiB of MemTotal, 24 GiB installed
        (24 * GIB, 32),
        (24 * GIB + 1, 32),
        (512 * GIB, 32),
    ],
)
def test_the_memory_table(memtotal_kib, expected):
    assert sessions.limit_for_memory(memtotal_kib) == expected


def test_memtotal_is_read_in_kib(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemFree:  100 kB\nMemTotal:       24683568 kB\nBuffers: 1 kB\n")
    assert sessions.read_memtotal_kib(str(meminfo)) == 24683568
    assert sessions.memory_gib(24683568) == 24
    meminfo.write_text("MemFree:  100 kB\n")
    with pytest.raises(StateError, match="MemTotal"):
        sessions.read_memtotal_kib(str(meminfo))
    assert sessions.read_memtotal_kib() > 0  # this machine's, for real


def test_the_exit_code_is_documented():
    assert (SessionLimitReached.exit_code, dict(EXIT_CODES)[12]) == (12, dict(EXIT_CODES)[12])
    assert "session limit" in dict(EXIT_CODES)[12]


# -- the settings file --------------------------------------------------------------------------


def test_a_lower_limit_from_the_config(tmp_path):
    (tmp_path / "config.toml").write_text("max_sessions = 3\n")
    limit = sessions.session_limit(str(tmp_path), memtotal_kib=20 * GIB)
    assert (limit.value, limit.source, limit.memory_limit) == (3, "config", 16)
    assert "max_sessions = 3" in limit.describe() and str(tmp_path / "config.toml") in limit.describe()


def test_no_config_is_the_memory_limit(tmp_path):
    limit = sessions.session_limit(str(tmp_path), memtotal_kib=8 * GIB)
    assert (limit.value, limit.source) == (4, "memory")
    assert limit.describe() == "4 (from memory: 8 GiB)"


def test_a_higher_limit_needs_force(tmp_path):
    (tmp_path / "config.toml").write_text("max_sessions = 20\n")
    with pytest.raises(UsageError, match=r"max_sessions = 20 .* above the 16 .*--force-sessions"):
        sessions.session_limit(str(tmp_path), memtotal_kib=20 * GIB)
    limit = sessions.session_limit(str(tmp_path), force=True, memtotal_kib=20 * GIB)
    assert (limit.value, limit.source) == (20, "--force")
    assert "from --force" in limit.describe()
    shown, note = sessions.listed_limit(str(tmp_path), memtotal_kib=20 * GIB)
    assert shown.value == 16 and "--force-sessions" in note
    # force with a config below the memory's limit changes nothing
    (tmp_path / "config.toml").write_text("max_sessions = 2\n")
    assert sessions.session_limit(str(tmp_path), force=True, memtotal_kib=20 * GIB).source == "config"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("max_sessions = 0\n", "must be a whole number"),
        ("max_sessions = true\n", "must be a whole number"),
        ("max_sessions = '4'\n", "must be a whole number"),
        ("max_session = 4\n", "unknown setting 'max_session'"),
        ("max_sessions = \n", "is not TOML"),
        (b"\xff\xfe\n", "is not TOML"),  # not UTF-8 text
    ],
)
def test_a_bad_config_is_refused_in_one_line(tmp_path, text, complaint):
    (tmp_path / "config.toml").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(UsageError, match=complaint) as refused:
        sessions.session_limit(str(tmp_path))
    assert "\n" not in str(refused.value) and "config.toml" in str(refused.value)


# -- slots in one process -----------------------------------------------------------------------


def low_limit(value: int) -> sessions.Limit:
    return sessions.Limit(value, "config", 24, 32, "(test)", value)


def test_slots_are_counted_and_released(tmp_path):
    state = str(tmp_path)
    assert sessions.running(state) == []
    with sessions.hold(kind="dump", path="/a", state_dir=state, limit=low_limit(2)) as first:
        assert len(first.id) == 8
        with sessions.hold(kind="restore", path="/b", state_dir=state, limit=low_limit(2)):
            with pytest.raises(SessionLimitReached) as refused:
                sessions.acquire("dump", "/c", state_dir=state, limit=low_limit(2))
            message = str(refused.value)
            assert "2 of 2 in use" in message and "max_sessions = 2" in message
            assert f"dump /a (pid {os.getpid()})" in message and "restore /b" in message
            assert "\n" not in message
            assert [r.kind for r in sessions.running(state)] == ["dump", "restore"]
        assert [r.path for r in sessions.running(state)] == ["/a"]
    assert sessions.running(state) == []


def test_two_slots_are_taken_all_or_none(tmp_path):
    state = str(tmp_path)
    with sessions.hold(kind="dump", path="/a", state_dir=state, limit=low_limit(2)):
        with pytest.raises(SessionLimitReached, match="ndmpcopy of /x needs 2 sessions"):
            sessions.acquire("ndmpcopy", "/x", slots=2, state_dir=state, limit=low_limit(2))
        assert [r.kind for r in sessions.running(state)] == ["dump"]  # no half-taken copy
    with sessions.hold(kind="ndmpcopy", path="/x", slots=2, state_dir=state, limit=low_limit(2)) as copy:
        (listed,) = sessions.running(state)
        assert (listed.id, listed.slots) == (copy.id, 2)
        with pytest.raises(SessionLimitReached):
            sessions.acquire("dump", "/a", state_dir=state, limit=low_limit(2))
    # more slots than the limit: no waiting can help, so none is done
    started = time.monotonic()
    with pytest.raises(SessionLimitReached, match="needs 2 sessions at once"):
        sessions.acquire("ndmpcopy", "/x", slots=2, wait=math.inf, state_dir=state, limit=low_limit(1))
    assert time.monotonic() - started < 1


def test_two_waiting_copies_both_get_through(tmp_path):
    """Copies waiting for two slots each hold none meanwhile: they take turns, neither blocks for good."""
    state = str(tmp_path)
    done: list[str] = []
    inside: list[int] = []
    lock = threading.Lock()

    def copy(name: str) -> None:
        with sessions.hold(kind="ndmpcopy", path=name, slots=2, wait=20, state_dir=state, limit=low_limit(3)):
            with lock:
                inside.append(len([r for r in sessions.running(state) if r.kind == "ndmpcopy"]))
            time.sleep(0.4)
            done.append(name)

    with sessions.hold(kind="dump", path="/a", state_dir=state, limit=low_limit(3)):
        threads = [threading.Thread(target=copy, args=(f"/c{i}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join(20)
    assert sorted(done) == ["/c0", "/c1", "/c2"]
    assert inside == [1, 1, 1]  # 2 + 2 > 3: never two copies at once


def test_bytes_so_far_are_written_now_and_then(tmp_path, monkeypatch):
    state = str(tmp_path)
    with sessions.hold(kind="dump", path="/a", state_dir=state, limit=low_limit(2)) as session:
        for _ in range(1000):
            session.add_bytes(1024)
        assert sessions.running(state)[0].bytes == 0  # not flushed within the first second
        monkeypatch.setattr(session, "_next_flush", 0.0)
        for _ in range(sessions.CLOCK_EVERY):  # small counts look at the clock only now and then
            session.add_bytes(1024)
        assert 1000 * 1024 < sessions.running(state)[0].bytes <= (1000 + sessions.CLOCK_EVERY) * 1024
        monkeypatch.setattr(session, "_next_flush", 0.0)
        session.add_bytes(sessions.CLOCK_BYTES)  # a big one looks at once
        assert sessions.running(state)[0].bytes == (1000 + sessions.CLOCK_EVERY) * 1024 + sessions.CLOCK_BYTES


def test_an_unknown_kind_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no session kind"):
        sessions.acquire("backup", "/a", state_dir=str(tmp_path))


# -- real processes -----------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    build_tree_from_spec(str(root), {"a": b"alpha\n", "big": os.urandom(3 << 20), "sub": {"b": b"b" * 9000}})
    return root


class Sessions:
    """Real ndmptools processes with one state directory; every one still running is killed at the end."""

    def __init__(self, tmp_path) -> None:
        self.tmp = tmp_path
        self.state = str(tmp_path / "state")
        os.makedirs(self.state, exist_ok=True)
        self.processes: list[subprocess.Popen] = []
        self.fifos = 0

    def config(self, text: str) -> None:
        with open(os.path.join(self.state, "config.toml"), "w") as f:
            f.write(text)

    def start(self, *args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "ndmptools", "--state-dir", self.state, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.processes.append(process)
        return process

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "ndmptools", "--state-dir", self.state, *args],
            capture_output=True,
            timeout=60,
        )

    def fifo(self) -> str:
        self.fifos += 1
        path = str(self.tmp / f"fifo{self.fifos}")
        os.mkfifo(path)
        return path

    def running(self) -> list[sessions.SessionRecord]:
        return sessions.running(self.state)

    def until(self, condition, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out; running: {self.running()}"
            time.sleep(0.05)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()
            process.stderr.close()


@pytest.fixture
def procs(tmp_path):
    running = Sessions(tmp_path)
    yield running
    running.close()


def open_reading(fifo: str, timeout: float = 30):
    """The reading end of a FIFO, once its writer opens it; fails (never hangs) if none comes."""
    opened: list = []
    opener = threading.Thread(target=lambda: opened.append(open(fifo, "rb")), daemon=True)  # noqa: SIM115
    opener.start()
    opener.join(timeout)
    assert opened, f"no writer opened {fifo}"
    return opened[0]


def drain(fifo: str) -> None:
    """Read a FIFO a dump writes to, to its end (the dump then completes)."""
    with open_reading(fifo) as f:
        while f.read(1 << 16):
            pass


def test_one_more_than_the_limit_is_refused(procs, tree, tmp_path):
    """Limit 3 from the config, four sessions started at once: exactly one is refused."""
    procs.config("max_sessions = 3\n")
    dumped = tmp_path / "dumped"
    assert procs.run("dump", "-f", str(dumped), str(tree)).returncode == 0
    outputs = [procs.fifo() for _ in range(3)]
    restore_input = procs.fifo()
    started = [procs.start("dump", "-f", fifo, str(tree)) for fifo in outputs]
    started.append(procs.start("restore", "-f", restore_input, "-D", str(tmp_path / "r")))
    procs.until(lambda: sum(p.poll() is not None for p in started) >= 1)
    time.sleep(0.5)  # the three others stay in, each blocked on its FIFO
    ended = [p for p in started if p.poll() is not None]
    assert len(ended) == 1, [p.args for p in ended]
    (refused,) = ended
    stderr = refused.stderr.read().decode()
    assert refused.returncode == 12, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("ndmptools: error: the session limit is reached: 3 of 3 in use")
    assert "max_sessions = 3" in line and "--wait" in line
    holders = [r for r in procs.running()]
    assert len(holders) == 3
    for holder in holders:
        assert f"{holder.kind} {holder.path} (pid {holder.pid})" in line
    assert {r.pid for r in holders} == {p.pid for p in started if p is not refused}

    listed = procs.run("--json", "sessions")
    document = json.loads(listed.stdout)
    assert (document["limit"], document["limit_source"], document["in_use"]) == (3, "config", 3)
    assert sorted(s["pid"] for s in document["sessions"]) == sorted(r.pid for r in holders)
    assert {s["kind"] for s in document["sessions"]} <= {"dump", "restore"}
    table = procs.run("sessions").stdout.decode()
    assert "3 of 3 sessions in use (limit from the config: max_sessions = 3" in table
    for holder in holders:
        assert holder.id in table and str(holder.pid) in table

    # let the others finish: their dumps' FIFOs read, the restore's fed with the dump made first
    # (the refused one's FIFO has no other end: opening it would block)
    readers = [
        threading.Thread(target=drain, args=(fifo,), daemon=True)
        for fifo, process in zip(outputs, started, strict=False)
        if process is not refused
    ]
    for reader in readers:
        reader.start()
    if started[-1] is not refused:  # the restore may close its input once it has read the dump's end
        with contextlib.suppress(BrokenPipeError), open(restore_input, "wb") as f:
            f.write(dumped.read_bytes())
    for reader in readers:
        reader.join(60)
    for process in started:
        if process is not refused:
            assert process.wait(60) == 0, process.stderr.read().decode()
    assert procs.running() == []
    if started[-1] is not refused:
        assert (tmp_path / "r" / "sub" / "b").read_bytes() == b"b" * 9000


def test_a_killed_session_frees_its_slot(procs, tree, tmp_path):
    procs.config("max_sessions = 1\n")
    holder = procs.start("dump", "-f", procs.fifo(), str(tree))
    procs.until(lambda: len(procs.running()) == 1)
    refused = procs.run("dump", "-f", str(tmp_path / "d"), str(tree))
    assert refused.returncode == 12
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    assert procs.running() == []  # the kernel let go of its lock: no clean-up ran
    assert procs.run("dump", "-f", str(tmp_path / "d"), str(tree)).returncode == 0


def test_wait_takes_the_slot_when_one_frees(procs, tree, tmp_path):
    procs.config("max_sessions = 1\n")
    fifo = procs.fifo()
    holder = procs.start("dump", "-f", fifo, str(tree))
    procs.until(lambda: len(procs.running()) == 1)
    started = time.monotonic()
    timed_out = procs.run("dump", "--wait=0.5", "-f", str(tmp_path / "d0"), str(tree))
    assert timed_out.returncode == 12
    assert "(waited 0.5 s)" in timed_out.stderr.decode() and time.monotonic() - started >= 0.5
    waiter = procs.start("dump", "--wait", "-f", str(tmp_path / "d"), str(tree))
    time.sleep(1.5)
    assert waiter.poll() is None and [r.pid for r in procs.running()] == [holder.pid]
    drain(fifo)
    assert holder.wait(30) == 0
    assert waiter.wait(30) == 0, waiter.stderr.read().decode()
    assert "waiting for a session, until one frees: 1 of 1 in use" in waiter.stderr.read().decode()
    # restore -t and -C hold a session as well; a listing from the file history does not
    holder = procs.start("dump", "-f", procs.fifo(), str(tree))
    procs.until(lambda: len(procs.running()) == 1)
    for args in (["-t"], ["-C", "-D", str(tree)], ["-D", str(tmp_path / "r")]):
        done = procs.run("restore", *args, "-f", str(tmp_path / "d"))
        assert done.returncode == 12, (args, done.stderr)
    assert procs.run("restore", "-t", "--catalog", "-f", str(tmp_path / "d")).returncode == 0


def test_bytes_so_far_show_while_a_dump_runs(procs, tree):
    fifo = procs.fifo()
    procs.start("dump", "-f", fifo, str(tree))
    with open_reading(fifo) as f:
        f.read(256 << 10)
        time.sleep(1.2)  # the dump is blocked on the full pipe past its next flush
        f.read(256 << 10)
        procs.until(lambda: procs.running() and procs.running()[0].bytes > 0)
        (listed,) = procs.running()
        assert 0 < listed.bytes <= (3 << 20) + (1 << 20)
        while f.read(1 << 16):
            pass


def test_a_config_above_the_memory_needs_force_sessions(procs, tree, tmp_path):
    procs.config("max_sessions = 1000\n")
    refused = procs.run("dump", "-f", str(tmp_path / "d"), str(tree))
    assert refused.returncode == 2
    assert "max_sessions = 1000" in refused.stderr.decode() and "--force-sessions" in refused.stderr.decode()
    forced = procs.run("dump", "--force-sessions", "-f", str(tmp_path / "d"), str(tree))
    assert forced.returncode == 0, forced.stderr
    restored = procs.run("restore", "--force-sessions", "-f", str(tmp_path / "d"), "-D", str(tmp_path / "r"))
    assert restored.returncode == 0, restored.stderr
    listed = procs.run("sessions").stdout.decode()
    assert "0 of " in listed and "sessions started with --force-sessions use it" in listed


def test_one_session_per_medium_written(tmp_path):
    """A medium a dump writes is no one else's meanwhile; media only read are shared."""
    state = str(tmp_path)
    tape = str(tmp_path / "home.dump")
    with sessions.hold(
        kind="dump", path="/a", state_dir=state, media=[tape], writing=True, limit=low_limit(5)
    ):
        for writing in (True, False):
            with pytest.raises(MediaError, match=r"home.dump is in use by the dump of /a \(pid \d+, session"):
                sessions.acquire(
                    "restore", "/r", state_dir=state, media=[tape], writing=writing, limit=low_limit(5)
                )
        # the same file however it is spelled; another file, stdout and vtape libraries elsewhere are free
        with pytest.raises(MediaError):
            sessions.acquire(
                "dump",
                "/b",
                state_dir=state,
                media=[f"{tmp_path}/./home.dump"],
                writing=True,
                limit=low_limit(5),
            )
        for other in ("-", str(tmp_path / "other.dump"), f"vtape:{tmp_path}/lib"):
            sessions.acquire(
                "dump", "/c", state_dir=state, media=[other], writing=True, limit=low_limit(5)
            ).release()
        assert len(sessions.running(state)) == 1  # the refused took no slot
    with sessions.hold(kind="restore", path="/r", state_dir=state, media=[tape], limit=low_limit(5)):
        sessions.acquire("list", tape, state_dir=state, media=[tape], limit=low_limit(5)).release()
        with pytest.raises(MediaError, match="in use by the restore of /r"):
            sessions.acquire("dump", "/a", state_dir=state, media=[tape], writing=True, limit=low_limit(5))


def test_a_local_ndmpcopy_holds_two_sessions(procs, tree, tmp_path):
    """Limit 2: a copy here takes both slots, so a dump beside it is refused; with one held, so is it."""
    procs.config("max_sessions = 2\n")
    fifo = procs.fifo()
    dump = procs.start("dump", "-f", fifo, str(tree))
    procs.until(lambda: len(procs.running()) == 1)
    refused = procs.run("ndmpcopy", "--snapshot-provider", "none", str(tree), str(tmp_path / "copy"))
    assert refused.returncode == 12, refused.stderr.decode()
    line = refused.stderr.decode().strip().splitlines()[-1]
    assert "1 of 2 in use" in line and f"dump {tree} (pid {dump.pid})" in line
    assert not (tmp_path / "copy").exists()
    drain(fifo)
    assert dump.wait(60) == 0

    copied = procs.run("ndmpcopy", "--snapshot-provider", "none", str(tree), str(tmp_path / "copy"))
    assert copied.returncode in (0, 1), copied.stderr.decode()
    assert (tmp_path / "copy" / "sub" / "b").read_bytes() == b"b" * 9000
    assert procs.running() == []


def test_a_copy_counts_its_sides_that_run_here():
    from ndmptools.engine.copy import local_sides
    from ndmptools.engine.options import CopyOptions

    assert local_sides(CopyOptions("/a", "/b")) == 2
    assert local_sides(CopyOptions("host:/a", "/b")) == 1
    assert local_sides(CopyOptions("/a", "user@host:/b")) == 1
    assert local_sides(CopyOptions("h1:/a", "h2:/b")) == 1
