"""Many sessions at once: 16 dumps, then 8 dumps beside 8 restores, as separate real processes.

They share one state directory (the dump history, the catalog, the snapshot counter, the session
slots) and one btrfs on a loop device, so that each dump takes a snapshot of its own. Afterwards
the history must read as if they had run one by one: every dump recorded once and completed,
each with its own snapshot name, no snapshot left, the chains readable, the file history of
each dump whole, and every restore equal to its source.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ndmptools.engine import sessions
from ndmptools.engine.treediff import compare_trees
from tests.btrfs import btrfs_subvolume
from tests.trees import build_tree_from_spec

pytestmark = pytest.mark.root

VOLUMES = 4
AT_ONCE = 16


def spec(n: int) -> dict:
    return {
        "readme": f"volume {n}\n".encode(),
        "data": {f"f{i}": os.urandom(1000 * (i + 1)) for i in range(6)},
        "deep": {"er": {"est": {"leaf": bytes([n]) * 20000}}},
        "link": ("link", "readme"),
    }


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """A btrfs with four subvolumes of small trees."""
    with btrfs_subvolume(tmp_path_factory.mktemp("busy"), "v0") as first:
        found = [first]
        for n in range(1, VOLUMES):
            path = first.parent / f"v{n}"
            subprocess.run(["btrfs", "subvolume", "create", str(path)], check=True, capture_output=True)
            found.append(path)
        for n, path in enumerate(found):
            build_tree_from_spec(str(path), spec(n))
        yield found


class Batch:
    """Commands started at once, each its own process, each blocked on a FIFO until ``release``.

    A dump writes to a FIFO the test has not opened yet, a restore reads from one: both hold
    their session (and a dump its snapshot) while blocked, so all of them run at the same time.
    """

    def __init__(self, state: str, tmp) -> None:
        self.state, self.tmp = state, tmp
        self.processes: list[subprocess.Popen] = []
        self.feeders: list[threading.Thread] = []
        self.copies: list[tuple[str, object]] = []  # (FIFO, what to do with it)

    def _fifo(self) -> str:
        path = str(self.tmp / f"fifo{len(self.copies)}")
        os.mkfifo(path)
        return path

    def start(self, args: list[str]) -> None:
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "ndmptools", "--state-dir", self.state, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )

    def dump(self, volume, output, *options: str) -> None:
        fifo = self._fifo()
        self.copies.append((fifo, ("read", output)))
        self.start(["--json", "dump", "--force-sessions", *options, "-f", fifo, str(volume)])

    def restore(self, dumped, target) -> None:
        fifo = self._fifo()
        self.copies.append((fifo, ("write", dumped)))
        self.start(["restore", "--force-sessions", "-f", fifo, "-D", str(target)])

    def wait_until_all_hold_a_session(self, timeout: float = 60) -> list:
        deadline = time.monotonic() + timeout
        while True:
            held = sessions.running(self.state)
            if len(held) == len(self.processes):
                return held
            ended = [p for p in self.processes if p.poll() is not None]
            assert not ended, [p.stderr.read().decode() for p in ended]
            assert time.monotonic() < deadline, f"only {len(held)} of {len(self.processes)} sessions"
            time.sleep(0.05)

    def release(self, timeout: float = 120) -> list[tuple[int, str, str]]:
        """Open the other end of every FIFO at once; (exit code, stdout, stderr) of each process."""

        def copy(fifo: str, job) -> None:
            how, path = job
            if how == "read":
                with open(fifo, "rb") as source, open(path, "wb") as sink:
                    shutil.copyfileobj(source, sink)
            else:  # a restore may close its input once it has read the end of the dump
                with (
                    contextlib.suppress(BrokenPipeError),
                    open(fifo, "wb") as sink,
                    open(path, "rb") as source,
                ):
                    shutil.copyfileobj(source, sink)

        for fifo, job in self.copies:
            feeder = threading.Thread(target=copy, args=(fifo, job), daemon=True)
            feeder.start()
            self.feeders.append(feeder)
        results = []
        deadline = time.monotonic() + timeout
        for process in self.processes:
            out, err = process.communicate(timeout=max(deadline - time.monotonic(), 1))
            results.append((process.returncode, out.decode(), err.decode()))
        for feeder in self.feeders:
            feeder.join(max(deadline - time.monotonic(), 1))
        return results

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def batches(tmp_path):
    made: list[Batch] = []

    def make(state: str, name: str) -> Batch:
        directory = tmp_path / name
        directory.mkdir()
        made.append(Batch(state, directory))
        return made[-1]

    yield make
    for batch in made:
        batch.close()


def snapshots_now(volume) -> list[str]:
    listed = subprocess.run(["btrfs", "subvolume", "list", str(volume)], capture_output=True, check=True)
    return [
        line.rsplit("/", 1)[-1]
        for line in listed.stdout.decode().splitlines()
        if "snapshot_for_backup" in line
    ]


def sql(state: str, query: str, *params):
    import sqlite3

    with sqlite3.connect(os.path.join(state, "ndmptools.db")) as db:
        return db.execute(query, params).fetchall()


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most (start, end) intervals that overlap at one moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def same_tree(source, restored) -> list[str]:
    """Differences between a volume and its restore (the snapshots' directory is not dumped)."""
    problems = []
    names = sorted(n for n in os.listdir(source) if n != ".snapshot")
    if sorted(os.listdir(restored)) != names:
        problems.append(f"{restored}: {sorted(os.listdir(restored))} != {names}")
    for name in names:
        a, b = os.path.join(source, name), os.path.join(restored, name)
        if os.path.isdir(a) and not os.path.islink(a):
            problems += compare_trees(a, b)[1]
        elif os.path.islink(a):
            problems += [] if os.readlink(a) == os.readlink(b) else [f"{name}: link"]
        elif Path(a).read_bytes() != Path(b).read_bytes():
            problems.append(f"{name}: content")
    return problems


def test_sixteen_sessions_at_once_keep_the_history_consistent(volumes, tmp_path, batches):
    state = str(tmp_path / "state")
    os.makedirs(state)
    # 16 at once on any machine: memory may allow only 4 (under 16 GiB), so the limit is forced
    with open(os.path.join(state, "config.toml"), "w") as f:
        f.write(f"max_sessions = {32}\n")
    out = tmp_path / "out"
    out.mkdir()

    # 16 level-0 dumps at once, four of each volume: four snapshots of one subvolume at a time
    first = [(n % VOLUMES, out / f"l0-{n}.dump") for n in range(AT_ONCE)]
    batch = batches(state, "first")
    for v, output in first:
        batch.dump(volumes[v], output)
    held = batch.wait_until_all_hold_a_session()
    assert {r.kind for r in held} == {"dump"} and len({r.id for r in held}) == AT_ONCE
    assert {r.pid for r in held} == {p.pid for p in batch.processes}
    listed = subprocess.run(
        [sys.executable, "-m", "ndmptools", "--state-dir", state, "--json", "sessions"], capture_output=True
    )
    assert json.loads(listed.stdout)["in_use"] == AT_ONCE
    taken = snapshots_now(volumes[0])  # each blocked dump holds the snapshot it took
    assert len(taken) == AT_ONCE and len(set(taken)) == AT_ONCE, taken
    results = batch.release()
    for code, _, err in results:
        assert code == 0, err
        assert "error" not in err and "warning" not in err, err
    level0 = [json.loads(stdout) for _, stdout, _ in results]

    # then 8 level-1 dumps beside 8 restores of the level 0s, all at once
    second = [(n % VOLUMES, out / f"l1-{n}.dump") for n in range(AT_ONCE // 2)]
    restores = [(n % VOLUMES, first[n][1], tmp_path / f"r{n}") for n in range(AT_ONCE // 2)]
    batch = batches(state, "second")
    for v, output in second:
        batch.dump(volumes[v], output, "-level", "1")
    for _, dumped, target in restores:
        batch.restore(dumped, target)
    held = batch.wait_until_all_hold_a_session()
    assert sorted(r.kind for r in held) == ["dump"] * 8 + ["restore"] * 8
    results = batch.release()
    for code, _, err in results:
        assert code == 0, err
        assert "error" not in err and "warning" not in err, err
    level1 = [json.loads(stdout) for _, stdout, _ in results[: len(second)]]
    assert sessions.running(state) == []

    # every restore equals its source
    for v, _, restored in restores:
        assert same_tree(volumes[v], restored) == []

    # the history: 24 dumps, each once, each completed, each from its own snapshot, none left
    dumps = sql(state, "SELECT id, dumped_path, level, status, base_id, file_history FROM dumps ORDER BY id")
    assert len(dumps) == AT_ONCE + AT_ONCE // 2
    assert {row[3] for row in dumps} == {"completed"}
    assert sorted(row[1] for row in dumps) == sorted(
        [str(volumes[v]) for v, _ in first] + [str(volumes[v]) for v, _ in second]
    )
    names = [d["snapshot"] for d in level0 + level1]
    assert len(set(names)) == len(names) and all(n.startswith("snapshot_for_backup.") for n in names)
    assert snapshots_now(volumes[0]) == []
    for volume in volumes:
        assert not (volume / ".snapshot").exists() or os.listdir(volume / ".snapshot") == []
    by_id = {row[0]: row for row in dumps}
    for row in dumps:
        if row[2] == 1:  # based on a completed level 0 of its own volume
            base = by_id[row[4]]
            assert (base[1], base[2], base[3]) == (row[1], 0, "completed")
    # the file history of every dump is whole: a level 0 of a volume has as many directories as another
    dirs = dict(sql(state, "SELECT dump_id, COUNT(*) FROM catalog_dirs GROUP BY dump_id"))
    for row in dumps:
        assert row[5] == 1 and dirs.get(row[0], 0) >= 1
    for volume in volumes:
        counts = {dirs[row[0]] for row in dumps if row[1] == str(volume) and row[2] == 0}
        assert counts == {5}  # the root, data, deep, deep/er, deep/er/est
    # the chains read back through the CLI
    for volume in volumes:
        shown = subprocess.run(
            [sys.executable, "-m", "ndmptools", "--state-dir", state, "--json", "chain", "show", str(volume)],
            capture_output=True,
        )
        assert shown.returncode == 0, shown.stderr
        assert len(json.loads(shown.stdout)["dumps"]) == 6
    # they did run at once: many dumps were between start and finish at the same moment
    spans = sql(state, "SELECT started, finished FROM dumps WHERE level = 0")
    assert most_at_once(spans) == AT_ONCE, spans
    assert sql(state, "PRAGMA journal_mode") == [("wal",)]
    slots = Path(state, "sessions").glob("slot.*")
    assert all(slot.stat().st_size == 0 for slot in slots)  # every record cleared on release


HOLD_THE_WRITE_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def holding_the_write_lock(path: str, seconds: float) -> subprocess.Popen:
    """Another process in a write transaction on the state database for ``seconds``."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_WRITE_LOCK, path, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline() == "held\n"
    return holder


def test_a_busy_database_is_waited_for_then_retried(tmp_path, monkeypatch):
    """A writer that finds the database locked waits (busy timeout), then tries again, then says so."""
    from ndmptools.errors import StateError
    from ndmptools.state.db import StateDB
    from ndmptools.state.history import History

    state = str(tmp_path / "state")
    StateDB(state).close()  # made, migrated, in WAL mode
    monkeypatch.setattr(StateDB, "BUSY_TIMEOUT_SECONDS", 0.1)  # each try waits this long for the lock
    db = StateDB(state)
    holder = holding_the_write_lock(db.path, 1.0)
    try:
        reader = StateDB(state)  # opening and reading do not wait for the writer (WAL)
        assert History(reader).get(1) is None
        reader.close()
        assert holder.poll() is None  # still in its transaction
        started = time.monotonic()
        with db.transaction() as conn:  # BEGIN IMMEDIATE: the retries outlast the other writer
            conn.execute("INSERT INTO meta (key, value) VALUES ('probe', 'x')")
        assert time.monotonic() - started >= 0.3
    finally:
        holder.wait(10)
    holder = holding_the_write_lock(db.path, 5)
    try:
        with pytest.raises(StateError, match="is busy: database is locked"), db.transaction():
            pass
    finally:
        holder.kill()
        holder.wait()
        db.close()
