"""Incremental dumps, the dump history, chain show/plan, and restore -r (ours and Debian's)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time

import pytest

from ndmptools.engine.treediff import CompareRules, compare_trees
from tests.debian import restore as debian_restore

pytestmark = pytest.mark.root


class Chain:
    """A tree, a state directory of its own, and the dumps taken of it."""

    def __init__(self, base, ndmptools) -> None:
        self.base = base
        self.tree = base / "tree"
        self.state = str(base / "state")
        self.ndmptools = ndmptools
        self.dumps: list[str] = []
        self.snapshots: list[str] = []

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.ndmptools("--state-dir", self.state, *args, **kw)

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr.decode()
        return done

    def dump(self, level: int, *extra: str) -> str:
        time.sleep(1.05)  # distinct dump dates to the second, as on tapes
        image = str(self.base / f"dump-{len(self.dumps)}-level-{level}")
        self.ok("dump", "-q", "-level", str(level), "-f", image, *extra, str(self.tree))
        self.dumps.append(image)
        snapshot = str(self.base / f"snapshot-{len(self.snapshots)}")
        subprocess.run(["cp", "-a", str(self.tree), snapshot], check=True)
        self.snapshots.append(snapshot)
        return image


def w(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def history_steps(chain: Chain) -> None:
    """Six levels of changes: new, changed, deleted and renamed files and directories, hard links added
    and removed, a file replaced by a directory and a directory by a file, attributes and times."""
    t = chain.tree
    w(t / "a" / "f1", b"version 1\n")
    w(t / "a" / "b" / "f2", b"to be deleted\n")
    w(t / "a" / "big", os.urandom(600_000))
    w(t / "c" / "f3", b"to be renamed\n")
    os.link(t / "a" / "f1", t / "c" / "h1")
    w(t / "d" / "keep", b"never changes\n")
    w(t / "x", b"a file that becomes a directory\n")
    w(t / "y" / "inside", b"a directory that becomes a file\n")
    w(t / "p", b"p\n")
    w(t / "q", b"q\n")
    os.symlink("a/f1", t / "link")
    with open(t / "sparse", "wb") as f:
        f.truncate(3 << 20)
        f.seek(1 << 20)
        f.write(b"island")
    chain.dump(0)

    w(t / "a" / "f1", b"version 2, longer than the first\n")  # changed (both names: a/f1 and c/h1)
    w(t / "a" / "new1", b"new at level 1\n")
    os.unlink(t / "a" / "b" / "f2")
    os.rename(t / "c" / "f3", t / "a" / "f3r")
    os.link(t / "a" / "big", t / "a" / "b" / "big-link")
    chain.dump(1)

    os.rename(t / "a" / "b", t / "c" / "bb")  # a directory moves, with an unchanged file in it
    os.unlink(t / "c" / "h1")  # a hard link removed
    os.chmod(t / "a" / "new1", 0o600)
    os.chown(t / "d" / "keep", 1234, 5678)
    w(t / "e" / "one", b"1\n")
    w(t / "e" / "sub" / "two", b"2\n")
    os.unlink(t / "x")
    w(t / "x" / "now-a-dir", b"x is a directory now\n")
    chain.dump(2)

    shutil.rmtree(t / "y")
    w(t / "y", b"y is a file now\n")
    os.rename(t / "a" / "f1", t / "a" / "f1-renamed")
    w(t / "a" / "f1", b"a new a/f1, another inode\n")
    os.rename(t / "p", t / "tmp-swap")
    os.rename(t / "q", t / "p")
    os.rename(t / "tmp-swap", t / "q")
    os.utime(t / "a" / "big", ns=(1_000_000_000_123_456_789, 1_100_000_000_987_654_321))
    chain.dump(3)

    shutil.rmtree(t / "e")
    os.makedirs(t / "deep" / "er" / "est")
    os.rename(t / "a" / "new1", t / "deep" / "er" / "est" / "moved-new1")
    os.link(t / "d" / "keep", t / "deep" / "keep-link")
    os.unlink(t / "link")
    os.symlink("d/keep", t / "link")
    chain.dump(4)

    with open(t / "a" / "big", "r+b") as f:
        f.truncate(1000)
    os.rename(t / "c" / "bb", t / "c" / "f3")  # a directory takes a name a deleted file had
    w(t / "sparse", b"not sparse any more\n")
    os.unlink(t / "deep" / "keep-link")
    chain.dump(5)


@pytest.fixture(scope="module")
def six_levels(tmp_path_factory):
    from tests.conftest import Ndmptools

    chain = Chain(tmp_path_factory.mktemp("chain"), Ndmptools())
    history_steps(chain)
    return chain


EXACT = CompareRules(compare_holes=False)  # snapshots are cp -a copies: their holes are cp's


def test_restore_r_follows_the_tree_dump_by_dump(six_levels, tmp_path):
    target = str(tmp_path / "restored")
    for image, snapshot in zip(six_levels.dumps, six_levels.snapshots, strict=True):
        six_levels.ok("restore", "-q", "-r", "-f", image, "-D", target)
        _, problems = compare_trees(snapshot, target, EXACT)
        assert not problems, (image, problems)
    _, problems = compare_trees(str(six_levels.tree), target)  # the final tree, holes and all
    assert not problems


def test_debian_restore_r_applies_the_same_chain(six_levels, tmp_path):
    target = tmp_path / "debian"
    target.mkdir()
    for image in six_levels.dumps:
        done = debian_restore(["-r", "-y", "-f", image], cwd=str(target))
        assert done.returncode == 0, done.stdout + done.stderr
    os.unlink(target / "restoresymtable")
    _, problems = compare_trees(
        six_levels.snapshots[-1],
        str(target),
        CompareRules(time_resolution_ns=1000, compare_root=False, compare_holes=False),
    )
    assert not problems


def test_the_plan_applies_the_whole_chain_in_one_run(six_levels, tmp_path):
    target = str(tmp_path / "planned")
    plan = json.loads(six_levels.ok("chain", "plan", str(six_levels.tree), "--json").stdout)
    assert [step["level"] for step in plan] == [0, 1, 2, 3, 4, 5]
    six_levels.ok("restore", "-q", "-r", "--plan", str(six_levels.tree), "-D", target)
    assert compare_trees(str(six_levels.tree), target)[1] == []


def test_a_plan_to_an_earlier_date(six_levels, tmp_path):
    dumps = json.loads(six_levels.ok("chain", "show", str(six_levels.tree), "--json").stdout)["dumps"]
    at = str(dumps[2]["dump_date"])
    plan = json.loads(six_levels.ok("chain", "plan", str(six_levels.tree), "--at", at, "--json").stdout)
    assert [step["level"] for step in plan] == [0, 1, 2]
    target = str(tmp_path / "then")
    six_levels.ok("restore", "-q", "-r", "--plan", str(six_levels.tree), "--at", at, "-D", target)
    assert compare_trees(six_levels.snapshots[2], target, EXACT)[1] == []


def test_out_of_order_and_missing_dumps_are_refused(six_levels, tmp_path):
    target = str(tmp_path / "order")
    done = six_levels.run("restore", "-r", "-f", six_levels.dumps[2], "-D", target)
    assert done.returncode == 9
    line = done.stderr.decode().strip()
    assert "holds no restore of this chain" in line and "level-1 dump" in line and "dump-1-level-1" in line
    six_levels.ok("restore", "-q", "-r", "-f", six_levels.dumps[0], "-D", target)
    done = six_levels.run("restore", "-r", "-f", six_levels.dumps[2], "-D", target)
    assert done.returncode == 9
    assert b"is based on the level-1 dump" in done.stderr and b"apply it first" in done.stderr
    six_levels.ok("restore", "-q", "-r", "-f", six_levels.dumps[1], "-D", target)
    six_levels.ok("restore", "-q", "-r", "-f", six_levels.dumps[2], "-D", target)
    done = six_levels.run("restore", "-r", "-f", six_levels.dumps[1], "-D", target)  # applied already
    assert done.returncode == 9 and b"the chain has moved past it" in done.stderr
    done = six_levels.run("restore", "-r", "-f", six_levels.dumps[0], "-D", target)
    assert done.returncode == 9 and b"already holds a restore" in done.stderr


def test_a_level_0_into_an_emptied_target_starts_afresh(six_levels, tmp_path):
    """What restore -r keeps names the target's inode: emptied (same inode), it holds no restore."""
    target = tmp_path / "r"
    six_levels.ok("restore", "-q", "-r", "-f", six_levels.dumps[0], "-D", str(target))
    six_levels.ok("restore", "-q", "-r", "-f", six_levels.dumps[1], "-D", str(target))
    inode = target.stat().st_ino
    for entry in target.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    assert target.stat().st_ino == inode
    six_levels.ok("restore", "-q", "-r", "-f", six_levels.dumps[0], "-D", str(target))
    six_levels.ok("restore", "-q", "-r", "-f", six_levels.dumps[1], "-D", str(target))
    done = six_levels.run("restore", "-r", "-f", six_levels.dumps[0], "-D", str(target))
    assert done.returncode == 9, done.stderr  # not empty now: a level 0 there is still refused


def test_an_incremental_holds_only_what_changed(six_levels, tmp_path):
    listing = json.loads(six_levels.ok("restore", "-t", "--json", "-f", six_levels.dumps[5]).stdout)
    paths = {entry["path"] for entry in listing}
    assert "a/big" in paths and "sparse" in paths and "c/f3" in paths  # changed
    assert "d/keep" in paths  # a name of it went away: its link count (its inode) changed
    assert "q" not in paths and "x/now-a-dir" not in paths and "a/f1-renamed" not in paths  # unchanged
    # A plain restore of an incremental gives what it holds, without a word about the rest.
    done = six_levels.run("restore", "-f", six_levels.dumps[5], "-D", str(tmp_path / "plain"))
    assert done.returncode == 0 and b"warning" not in done.stderr
    assert (tmp_path / "plain" / "a" / "big").stat().st_size == 1000
    assert "." in paths and "a" in paths  # the root, and the directory leading to a/big


def test_the_seeds_table_from_a_real_history(tmp_path, ndmptools):
    chain = Chain(tmp_path, ndmptools)
    w(chain.tree / "f", b"0")
    for level in (0, 2, 3, 1, 4):
        w(chain.tree / f"at-{level}", str(level).encode())
        chain.dump(level)
    shown = json.loads(chain.ok("chain", "show", str(chain.tree), "--json").stdout)["dumps"]
    from tests.test_levels import SEED

    assert [(d["order"], d["level"], d["increment_chain"], d["base"], d["holds"]) for d in shown] == SEED
    table = chain.ok("chain", "show", str(chain.tree)).stdout.decode()
    assert "Increment chain" in table and "Files on the storage system" in table
    holds = {e["path"] for e in json.loads(chain.ok("restore", "-t", "--json", "-f", chain.dumps[3]).stdout)}
    assert {"at-2", "at-3", "at-1"} <= holds and "at-0" not in holds  # since the level 0, as the table says
    plan = json.loads(chain.ok("chain", "plan", str(chain.tree), "--json").stdout)
    assert [p["level"] for p in plan] == [0, 1, 4]


def test_a_level_without_base_is_refused_or_made_a_level_0(tmp_path, ndmptools):
    chain = Chain(tmp_path, ndmptools)
    w(chain.tree / "f", b"x")
    done = chain.run("dump", "-level", "1", "-f", str(tmp_path / "d"), str(chain.tree))
    assert done.returncode == 9
    assert b"no earlier dump" in done.stderr and b"a level 0 is needed first" in done.stderr
    assert not (tmp_path / "d").exists()
    done = chain.run(
        "dump", "--json", "-level", "1", "--auto-baseline", "-f", str(tmp_path / "d"), str(chain.tree)
    )
    assert done.returncode == 1 and json.loads(done.stdout)["level"] == 0
    assert b"taking a level 0 instead" in done.stderr


def test_no_update_records_nothing(tmp_path, ndmptools):
    chain = Chain(tmp_path, ndmptools)
    w(chain.tree / "f", b"x")
    chain.ok("dump", "--no-update", "-f", str(tmp_path / "d0"), str(chain.tree))
    assert b"No completed dumps" in chain.ok("chain", "show", str(chain.tree)).stdout
    done = chain.run("dump", "-level", "1", "-f", str(tmp_path / "d1"), str(chain.tree))
    assert done.returncode == 9


def test_a_failed_or_killed_dump_is_never_a_base(tmp_path, ndmptools):
    chain = Chain(tmp_path, ndmptools)
    w(chain.tree / "f", b"x")
    chain.dump(0)
    time.sleep(1.05)
    fifo = tmp_path / "stuck"
    os.mkfifo(fifo)
    stuck = subprocess.Popen(
        [
            *ndmptools_command(),
            "--state-dir",
            chain.state,
            "dump",
            "-level",
            "1",
            "-f",
            str(fifo),
            str(chain.tree),
        ],
        stderr=subprocess.PIPE,
    )
    time.sleep(1.5)  # recorded as running, blocked opening the FIFO
    stuck.kill()
    stuck.wait()
    done = chain.run("dump", "-level", "1", "-f", "/proc/not-writable", str(chain.tree))  # fails: media
    assert done.returncode == 5
    shown = chain.ok("chain", "show", str(chain.tree)).stdout.decode()
    assert shown.count("Not a base") == 2 and "is failed" in shown
    chain.dump(2)  # its base is the level 0: neither level 1 ever completed
    shown = json.loads(chain.ok("chain", "show", str(chain.tree), "--json").stdout)
    assert [d["level"] for d in shown["dumps"]] == [0, 2]
    assert shown["dumps"][1]["base_id"] == shown["dumps"][0]["id"]
    assert sorted(d["status"] for d in shown["incomplete"]) == ["failed", "failed"]


def ndmptools_command() -> list[str]:
    import sys

    return [sys.executable, "-m", "ndmptools"]


def test_a_newer_history_schema_refuses_incrementals(tmp_path, ndmptools):
    chain = Chain(tmp_path, ndmptools)
    w(chain.tree / "f", b"x")
    chain.dump(0)
    with sqlite3.connect(os.path.join(chain.state, "ndmptools.db")) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    done = chain.run("dump", "-level", "1", "-f", str(tmp_path / "d1"), str(chain.tree))
    assert done.returncode == 9 and b"written by a newer ndmptools (schema 99)" in done.stderr
    done = chain.run("dump", "-f", str(tmp_path / "d0b"), str(chain.tree))
    assert done.returncode == 1 and b"not recorded" in done.stderr


class LoopFileSystem:
    """An ext4 file system in an image, mounted through a loop device when asked."""

    def __init__(self, base) -> None:
        self.image, self.mnt = base / "fs.img", base / "mnt"
        self.mnt.mkdir()
        self.where: str | None = None
        self.format()

    def format(self) -> None:
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(self.image), "32M"], check=True)

    def mount(self, *options: str, at=None) -> None:
        self.unmount()
        self.where = str(at or self.mnt)
        subprocess.run(["mount", "-o", ",".join(["loop", *options]), str(self.image), self.where], check=True)

    def unmount(self) -> None:
        if self.where is not None:
            subprocess.run(["umount", self.where], check=True)
            self.where = None


@pytest.fixture
def loop_fs(tmp_path):
    fs = LoopFileSystem(tmp_path)
    fs.mount()
    yield fs
    fs.unmount()


def test_read_only_to_read_write_needs_a_level_0(loop_fs, tmp_path, ndmptools):
    (loop_fs.mnt / "f").write_bytes(b"x")
    loop_fs.mount("ro")
    state = str(tmp_path / "state")
    assert (
        ndmptools("--state-dir", state, "dump", "-f", str(tmp_path / "d0"), str(loop_fs.mnt)).returncode == 0
    )
    loop_fs.mount("rw")
    done = ndmptools(
        "--state-dir", state, "dump", "-level", "1", "-f", str(tmp_path / "d1"), str(loop_fs.mnt)
    )
    assert done.returncode == 9 and b"was read-only at its base dump and is read-write now" in done.stderr


def test_the_same_file_system_moved_keeps_its_chain_a_new_one_does_not(loop_fs, tmp_path, ndmptools):
    (loop_fs.mnt / "f").write_bytes(b"x")
    state = str(tmp_path / "state")
    assert (
        ndmptools("--state-dir", state, "dump", "-f", str(tmp_path / "d0"), str(loop_fs.mnt)).returncode == 0
    )
    loop_fs.unmount()
    holder = subprocess.run(
        ["losetup", "-f", "--show", str(tmp_path / "d0")], check=True, capture_output=True, text=True
    ).stdout.strip()  # another loop device takes the old one's place
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    try:
        loop_fs.mount(at=elsewhere)
        time.sleep(1.05)
        (elsewhere / "g").write_bytes(b"new")
        done = ndmptools(
            "--state-dir", state, "dump", "-level", "1", "-f", str(tmp_path / "d1"), str(elsewhere)
        )
        assert done.returncode == 0, done.stderr
    finally:
        loop_fs.unmount()
        subprocess.run(["losetup", "-d", holder], check=True)
    loop_fs.format()  # a new file system in the same place
    loop_fs.mount()
    done = ndmptools(
        "--state-dir", state, "dump", "-level", "1", "-f", str(tmp_path / "d2"), str(loop_fs.mnt)
    )
    assert done.returncode == 9
    assert b"is not the one dumped before" in done.stderr
