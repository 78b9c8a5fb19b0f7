"""The short cuts the benchmarks asked for keep their meaning.

- Pass IV opens what pass I saw as a regular file without a stat first: a
  name that is something else by then (a symlink, a FIFO, a directory) is
  dumped as what it is now, or reported, as before (Debian's restore reads it).
- The inode number map is sorted in runs and merged: the same map as one sort.
- A whole restore's check for room sums the catalog's inode rows: the same
  figure as summing every entry.
"""

from __future__ import annotations

import os
import random
import stat
from array import array

from ndmptools.engine.dump import run_dump
from ndmptools.engine.options import DumpOptions
from ndmptools.engine.progress import NullReporter, RunContext
from ndmptools.engine.restore import space
from ndmptools.media import open_path
from ndmptools.state.catalog import FileCatalog
from ndmptools.state.db import StateDB
from ndmptools.state.history import History, InodeNumbers
from tests.debian import restore as debian_restore


class _ChangeAtPassFour(NullReporter):
    """Replaces entries of the tree when pass IV starts: after pass I saw them as regular files."""

    def __init__(self, change) -> None:
        self.change = change

    def phase(self, name: str, total_bytes: int | None = None) -> None:
        if name.startswith("pass IV"):
            self.change()


def test_a_regular_file_replaced_before_pass_four_is_dumped_as_what_it_is(tmp_path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    for name in ("to-link", "to-fifo", "to-dir", "kept", "gone"):
        (tree / name).write_bytes(name.encode() * 100)

    def change() -> None:
        for name in ("to-link", "to-fifo", "to-dir", "gone"):
            (tree / name).unlink()
        (tree / "to-link").symlink_to("kept")
        os.mkfifo(tree / "to-fifo")
        (tree / "to-dir").mkdir()

    image = str(tmp_path / "d")
    run = RunContext(_ChangeAtPassFour(change))
    run_dump(DumpOptions(path=str(tree), file=image, update=False), lambda: open_path(image, "w"), run)
    said = "\n".join(run.stats.warnings)
    assert "to-dir became a directory during the dump; not dumped" in said
    assert "gone vanished before it could be dumped" in said

    target = tmp_path / "r"
    target.mkdir()
    done = debian_restore(["-r", "-y", "-f", image], cwd=str(target))
    assert done.returncode == 0, done.stderr
    assert os.readlink(target / "to-link") == "kept"
    assert stat.S_ISFIFO(os.lstat(target / "to-fifo").st_mode)
    assert (target / "kept").read_bytes() == b"kept" * 100
    assert not (target / "gone").exists() and not (target / "to-dir").exists()


def test_the_inode_map_sorted_in_runs_is_the_map_sorted_at_once(monkeypatch) -> None:
    monkeypatch.setattr(InodeNumbers, "SORT_RUN", 1000)
    rng = random.Random(5)
    count = 4500  # five runs, the last one short
    fs = array("Q", (rng.randrange(3000) | (rng.choice((0, 1)) << 62) for _ in range(count)))
    media = array("I", (rng.randrange(1 << 31) for _ in range(count)))
    numbers = InodeNumbers.from_pairs(fs, media)
    expected: dict[int, int] = {}
    for f, m in sorted(zip(fs, media, strict=True)):
        expected.setdefault(f, m)  # a hard link's names: the lowest media inode
    assert list(numbers.fs_inodes) == list(expected)
    assert list(numbers.media_inodes) == list(expected.values())
    assert InodeNumbers.from_pairs(array("Q"), array("I")).fs_inodes == array("Q")


def test_the_room_a_whole_restore_needs_is_the_sum_of_its_entries(tmp_path) -> None:
    tree = tmp_path / "t"
    (tree / "d").mkdir(parents=True)
    for i in range(50):
        (tree / "d" / f"f{i}").write_bytes(os.urandom(i * 300))
    os.link(tree / "d" / "f49", tree / "twice")
    (tree / "link").symlink_to("d/f1")
    with open(tree / "sparse", "wb") as f:
        f.truncate(8 << 20)
        f.seek(4 << 20)
        f.write(b"x" * 5000)
    image = str(tmp_path / "d.dump")
    db = StateDB(str(tmp_path / "state"))
    try:
        run_dump(
            DumpOptions(path=str(tree), file=image), lambda: open_path(image, "w"), RunContext(), History(db)
        )
        (dump_id,) = db.conn.execute("SELECT id FROM dumps").fetchone()
        catalog = FileCatalog(db)
        by_entries = space.data_from_entries(catalog.entries(dump_id), 4096)
        by_inodes = space.data_from_inodes(catalog.inode_sizes(dump_id), 4096)
    finally:
        db.close()
    assert by_inodes == by_entries > 50 * 24 * 300
