"""File history (HIST=Y), `restore -t --catalog`, `chain find`, and direct access restore (DAR).

The catalog is checked against what the media hold (ndmptools' own listing of
the same dump), and every direct-access restore against the tree it came
from, byte for byte, on files, pipes, virtual tape libraries spanning
cartridges, the st driver (through the fake at the ioctl seam, with and
without MTSEEK), a catalog that lies, and a dump that was killed and restarted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import struct
import subprocess

import pytest

from ndmptools.engine.dump import run_dump
from ndmptools.engine.options import DumpOptions, RestoreOptions
from ndmptools.engine.progress import RunContext
from ndmptools.engine.restore import run_restore
from ndmptools.engine.treediff import compare_trees
from ndmptools.format.constants import DT_DIR, DT_REG, ROOTINO
from ndmptools.format.dirent import pack_directory
from ndmptools.format.reader import DumpReader
from ndmptools.media import MediaRequest, open_medium
from ndmptools.media.st import MTFSR, MTSEEK, ScsiTape
from ndmptools.state.catalog import CatalogEntry, FileCatalog, InodeRows, pack_inodes, unpack_inodes
from ndmptools.state.db import MIGRATIONS, StateDB
from ndmptools.state.history import History
from tests.conftest import StateRun
from tests.fake_st import FakeCartridge, FakeStDriver
from tests.test_restart import _cli, _killed_dump, _the_one_context, volume  # noqa: F401 - a fixture

KiB = 1024


def _tree(root) -> None:
    """Forty-odd files over a few directories, a big one, a sparse one, links of both kinds."""
    rng = random.Random(7)
    for d in ("etc", "home/alice", "home/bob/notes", "var/log"):
        os.makedirs(root / d)
    for i in range(30):
        (root / "home" / "alice" / f"doc{i:02d}.txt").write_bytes(rng.randbytes(rng.randrange(0, 60_000)))
    for i in range(10):
        (root / "var" / "log" / f"syslog.{i}").write_bytes(rng.randbytes(20_000))
    (root / "etc" / "app.conf").write_bytes(b"answer = 42\n")
    (root / "home" / "bob" / "notes" / "plan.md").write_bytes(b"# plan\n")
    (root / "home" / "bob" / "big.bin").write_bytes(rng.randbytes(2_500_000))
    with open(root / "home" / "bob" / "sparse", "wb") as f:
        f.truncate(8 << 20)
        f.seek(6 << 20)
        f.write(b"far out\n")
    os.link(root / "etc" / "app.conf", root / "home" / "alice" / "app.conf")
    os.symlink("../etc/app.conf", root / "home" / "conf-link")


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    _tree(root)
    return root


class Run(StateRun):
    """The command with its own history, and a look into the catalog's rows."""

    def _batch(self, ino: int) -> tuple[int, list[list[int]]]:
        """The first inode of the catalog batch holding ``ino``, and the batch's rows."""
        [(first, blob)] = self.sql(
            "SELECT first_ino, inodes FROM catalog_inodes WHERE first_ino <= ? AND last_ino >= ?", ino, ino
        )
        return first, [list(row) for row in unpack_inodes(blob)]

    def inode(self, ino: int) -> list[int]:
        """(ino, mode, size, mtime_ns, tapea, blocks, birth_ns, flags, uid, gid) of a non-directory."""
        [row] = [row for row in self._batch(ino)[1] if row[0] == ino]
        return row

    def set_inode(self, ino: int, *, tapea: int) -> None:
        """Give the catalog's record of ``ino`` another place (a catalog that lies)."""
        first, rows = self._batch(ino)
        for row in rows:
            if row[0] == ino:
                row[4] = tapea
        self.sql("UPDATE catalog_inodes SET inodes = ? WHERE first_ino = ?", pack_inodes(rows), first)


@pytest.fixture
def run(tmp_path, ndmptools) -> Run:
    return Run(tmp_path, ndmptools)


def _listing(entries) -> set:
    return {(e["path"], e["inode"], e["type"], e["size"]) for e in entries}


def _same_file(a, b) -> None:
    with open(a, "rb") as first, open(b, "rb") as second:
        assert first.read() == second.read(), (a, b)


class _Blocks:
    """A data sink that keeps which 1 KiB blocks of an inode come with data (holes do not)."""

    def __init__(self) -> None:
        self.blocks: set[int] = set()

    def data(self, offset: int, pieces) -> None:
        end = offset + sum(len(p) for p in pieces)
        self.blocks.update(range(offset // KiB, -(-end // KiB)))

    def hole(self, offset: int, length: int) -> None:
        pass


def _on_media(spec: str) -> dict[int, tuple[int, int]]:
    """Each inode's c_tapea (of its first header) and data blocks, read from the media front to back."""
    found = {}
    with open_medium(MediaRequest(specs=(spec,), mode="r")) as medium:
        reader = DumpReader(medium, pytest.fail)
        reader.read_volume_start()
        while (header := reader.next_inode()) is not None:
            blocks = _Blocks()
            reader.read_data(header, blocks)
            reader.read_attributes(header.inumber)
            found[header.inumber] = (header.tapea, len(blocks.blocks))
    return found


def _catalog(state) -> list[CatalogEntry]:
    """The entries of the last dump with a file history in ``state``, from its catalog."""
    db = StateDB(str(state))
    try:
        [(dump_id,)] = db.conn.execute("SELECT MAX(id) FROM dumps WHERE file_history").fetchall()
        return list(FileCatalog(db).entries(dump_id))
    finally:
        db.close()


def _check_places(state, spec: str) -> list[CatalogEntry]:
    """Every entry of the catalog is where the media have it, with as many blocks; nothing is left out."""
    media = _on_media(spec)
    entries = _catalog(state)
    for entry in entries:
        assert (entry.tapea & 0xFFFFFFFF, entry.blocks) == media[entry.ino], entry
    assert {e.ino for e in entries} == set(media)
    return entries


# -- the file history --------------------------------------------------------------------------


def test_the_catalog_lists_what_the_media_hold_at_level_0_and_1(tree, tmp_path, run):
    run.ok("dump", "-f", str(tmp_path / "d0"), str(tree))
    media = run.json("restore", "-t", "-f", str(tmp_path / "d0"))
    catalog = run.json("restore", "-t", "--catalog", "-f", str(tmp_path / "d0"))
    assert _listing(catalog) == _listing(media) and len(media) > 50
    assert {e["path"] for e in catalog} >= {"etc/app.conf", "home/alice/app.conf", "home/conf-link"}
    assert all(e["volume"] == 1 and e["file"] == 1 and e["record"] >= 0 for e in catalog)
    assert os.path.getsize(tmp_path / "d0") > 0

    (tree / "home" / "bob" / "notes" / "plan.md").write_bytes(b"# plan, revised\n")
    (tree / "var" / "log" / "syslog.0").unlink()
    (tree / "home" / "carol").mkdir()
    (tree / "home" / "carol" / "new").write_bytes(b"new\n")
    run.ok("dump", "-level", "1", "-f", str(tmp_path / "d1"), str(tree))
    media = run.json("restore", "-t", "-f", str(tmp_path / "d1"))
    catalog = run.json("restore", "-t", "--catalog", "-f", str(tmp_path / "d1"))
    assert _listing(catalog) == _listing(media)
    paths = {e["path"] for e in catalog}
    assert {"home/bob/notes/plan.md", "home/carol/new"} <= paths
    assert "home/alice/doc00.txt" not in paths  # unchanged: not on this dump's media

    # Only what is asked for, and the text form carries the place.
    some = run.json("restore", "-t", "--catalog", "-f", str(tmp_path / "d0"), "home/bob")
    assert {e["path"] for e in some} == {
        "home/bob",
        "home/bob/notes",
        "home/bob/notes/plan.md",
        "home/bob/big.bin",
        "home/bob/sparse",
    }
    text = run.ok("restore", "-t", "--catalog", "-f", str(tmp_path / "d0"), "etc").stdout.decode()
    assert "1:1:" in text and "etc/app.conf" in text


def test_each_entry_has_its_place_and_its_blocks_on_media(tree, tmp_path, run):
    run.ok("dump", "-f", str(tmp_path / "d0"), str(tree))
    entries = {e.path: e for e in _check_places(run.state, str(tmp_path / "d0"))}
    assert entries[b"home/bob/big.bin"].blocks == -(-2_500_000 // KiB)
    assert 1 <= entries[b"home/bob/sparse"].blocks <= 8  # 8 bytes of data in 8 MiB: the rest are holes
    assert entries[b"home/bob/sparse"].size == 8 << 20
    assert entries[b"home/conf-link"].blocks == 1 and entries[b"etc"].blocks >= 1
    first, second = entries[b"etc/app.conf"], entries[b"home/alice/app.conf"]
    assert first.ino == second.ino and first.tapea == second.tapea and first.blocks == second.blocks == 1

    # An incremental: only what is on its media, at its places.
    (tree / "home" / "bob" / "big.bin").write_bytes(b"small now")
    (tree / "var" / "log" / "new").write_bytes(bytes(3000))
    run.ok("dump", "-level", "1", "-f", str(tmp_path / "d1"), str(tree))
    entries = {e.path: e for e in _check_places(run.state, str(tmp_path / "d1"))}
    assert entries[b"home/bob/big.bin"].blocks == 1 and entries[b"var/log/new"].blocks == 3
    assert b"home/alice/doc00.txt" not in entries and b"home/alice" not in entries


def _inodes(*rows) -> InodeRows:
    batch = InodeRows()
    for row in rows:
        batch.append(*row)
    return batch


def test_the_catalog_finds_names_through_their_directories(tmp_path):
    """The state layer alone: batches, names without inodes, hard links, select, find, and a trim."""
    db = StateDB(str(tmp_path / "state"))
    history = History(db)
    dump_id = history.start(
        identity="uuid:x",
        fs_path="/",
        dumped_path="/x",
        level=0,
        dump_date_ns=0,
        base_id=None,
        read_only=False,
        label="none",
        blocking_factor=64,
        file_history=True,
    )
    catalog = FileCatalog(db)
    root = pack_directory(
        [
            (ROOTINO, DT_DIR, b"."),
            (ROOTINO, DT_DIR, b".."),
            (3, DT_DIR, b"d"),
            (4, DT_REG, b"a"),
            (9, DT_REG, b"gone"),
            (8, DT_DIR, b"unchanged"),
        ]
    )
    sub = pack_directory(
        [
            (3, DT_DIR, b"."),
            (ROOTINO, DT_DIR, b".."),
            (5, DT_REG, b"b"),
            (4, DT_REG, b"a2"),
            (6, DT_REG, b"c"),
            (7, DT_REG, b"huge"),
        ]
    )
    big, old = 1 << 40, -5_000_000_000  # sizes past 4 GiB, a time before 1970
    catalog.add(
        dump_id,
        [
            (b"", ROOTINO, 0o40755, len(root), 0, 10, 1, root, None, 0, 0, 0),
            (b"d", 3, 0o40700, len(sub), 1, 12, 1, sub, 5, 0x10, 1000, 100),
        ],
        _inodes((4, 0o100644, big, old, 20, 7, old, 0x20, 1000, 1000)),
    )
    # The third inode of this batch is too big for narrow rows: the two before it are widened.
    catalog.add(
        dump_id,
        [],
        _inodes(
            (5, 0o100600, 3, 2, 30, 1, 2, 0x10, 1, 2),
            (6, 0o10644, 0, 3, 31, 0, None, 0, 0, 0),
            (7, 0o100644, 1 << 33, 4, 32, 9, 4, 0, 0xFFFFFFFE, 0xFFFFFFFE),
        ),
    )
    entries = list(catalog.entries(dump_id))
    paths = [e.path for e in entries]
    assert paths == [b"", b"d", b"a", b"d/a2", b"d/b", b"d/c", b"d/huge"]  # no 'gone', no 'unchanged'
    assert catalog.count(dump_id) == 7
    assert entries[0] == CatalogEntry(b"", ROOTINO, 0o40755, len(root), 0, 10, 1, None, 0, 0, 0)
    assert entries[1] == CatalogEntry(b"d", 3, 0o40700, len(sub), 1, 12, 1, 5, 0x10, 1000, 100)
    assert entries[2] == CatalogEntry(b"a", 4, 0o100644, big, old, 20, 7, old, 0x20, 1000, 1000)
    assert entries[3].ino == 4 and entries[3].tapea == 20  # the same inode under a second name
    assert entries[4] == CatalogEntry(b"d/b", 5, 0o100600, 3, 2, 30, 1, 2, 0x10, 1, 2)  # widened
    assert entries[5] == CatalogEntry(b"d/c", 6, 0o10644, 0, 3, 31, 0, None, 0, 0, 0)
    assert entries[6] == CatalogEntry(b"d/huge", 7, 0o100644, 1 << 33, 4, 32, 9, 4, 0, 0xFFFFFFFE, 0xFFFFFFFE)
    assert [e.path for e in catalog.select(dump_id, [b"d/b"])] == [b"", b"d", b"d/b"]
    assert [e.path for e in catalog.select(dump_id, [b"d"])] == [
        b"",
        b"d",
        b"d/a2",
        b"d/b",
        b"d/c",
        b"d/huge",
    ]
    assert [e.path for e in catalog.select(dump_id, [b"gone", b"unchanged", b"no/such"])] == [b""]
    assert [(i, e.path) for i, e in catalog.find([dump_id], "a*")] == [(dump_id, b"a"), (dump_id, b"d/a2")]
    assert [e.path for _, e in catalog.find([dump_id], "d/*")] == [b"d/a2", b"d/b", b"d/c", b"d/huge"]
    # A restart from inode 6: its place and those above go, in the middle of a batch; 5 stays.
    catalog.forget_inodes_from(dump_id, 6)
    assert [e.path for e in catalog.entries(dump_id)] == [b"", b"d", b"a", b"d/a2", b"d/b"]
    catalog.add(
        dump_id,
        [],
        _inodes((6, 0o10644, 0, 3, 99, 0, 3, 0, 0, 0), (7, 0o100644, 1 << 33, 4, 100, 9, 4, 0, 0, 0)),
    )
    places = [(e.path, e.tapea) for e in catalog.select(dump_id, [b"d"])]
    assert places[-3:] == [(b"d/b", 30), (b"d/c", 99), (b"d/huge", 100)]
    history.fail(dump_id)
    assert catalog.count(dump_id) == 0
    db.close()


def test_a_history_of_the_old_schema_is_migrated_and_its_dumps_lose_their_file_history(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "ndmptools.db") as db:  # a database as schema 3 left it
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for script in MIGRATIONS[:3]:
            db.executescript(script)
        db.execute("INSERT INTO meta VALUES ('schema_version', '3')")
        db.execute(
            "INSERT INTO dumps (id, identity, fs_path, dumped_path, level, dump_date_ns, status, read_only, "
            "started, file_history) VALUES (1, 'uuid:x', '/', '/x', 0, 0, 'completed', 0, 0, 1)"
        )
        db.execute("INSERT INTO catalog_names VALUES (1, x'', 2)")
        db.execute("INSERT INTO catalog_inodes VALUES (1, 2, 16877, 0, 0, 10)")
    db = StateDB(str(state))
    assert db.version == len(MIGRATIONS) == 6
    history = History(db)
    assert history.get(1).file_history is False  # its rows are gone: it has no file history now
    assert FileCatalog(db).count(1) == 0
    tables = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert {"catalog_dirs", "catalog_inodes"} <= tables and "catalog_names" not in tables
    db.close()


def test_a_catalog_of_schema_5_lists_its_entries_without_birth_flags_or_owner(tmp_path):
    """Rows written before schema 6 (layouts n and w, directories without the new columns) still read."""
    state = tmp_path / "state"
    state.mkdir()
    root = pack_directory([(ROOTINO, DT_DIR, b"."), (ROOTINO, DT_DIR, b".."), (3, DT_REG, b"a")])
    root += pack_directory([(5, DT_REG, b"b"), (6, DT_REG, b"big")])
    narrow, wide = struct.Struct("<IHIqII"), struct.Struct("<IHQqQQ")  # the layouts schema 5 wrote
    with sqlite3.connect(state / "ndmptools.db") as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for script in MIGRATIONS[:5]:
            db.executescript(script)
        db.execute("INSERT INTO meta VALUES ('schema_version', '5')")
        db.execute(
            "INSERT INTO dumps (id, identity, fs_path, dumped_path, level, dump_date_ns, status, read_only, "
            "started, file_history) VALUES (1, 'uuid:x', '/', '/x', 0, 0, 'completed', 0, 0, 1)"
        )
        db.execute("INSERT INTO catalog_dirs VALUES (1, x'', 2, 16877, 1024, 7, 10, 1, ?)", (root,))
        rows = b"n" + narrow.pack(3, 0o100644, 5, 8, 20, 1) + narrow.pack(5, 0o100600, 6, 9, 21, 1)
        db.execute("INSERT INTO catalog_inodes VALUES (1, 3, 5, ?)", (rows,))
        db.execute(
            "INSERT INTO catalog_inodes VALUES (1, 6, 6, ?)",
            (b"w" + wide.pack(6, 0o100644, 1 << 33, 9, 22, 9),),
        )
    db = StateDB(str(state))
    assert db.version == 6
    catalog = FileCatalog(db)
    entries = list(catalog.entries(1))
    assert entries == [
        CatalogEntry(b"", ROOTINO, 0o40755, 1024, 7, 10, 1),
        CatalogEntry(b"a", 3, 0o100644, 5, 8, 20, 1),
        CatalogEntry(b"b", 5, 0o100600, 6, 9, 21, 1),
        CatalogEntry(b"big", 6, 0o100644, 1 << 33, 9, 22, 9),
    ]
    assert all(e.birth_ns is e.flags is e.uid is e.gid is None for e in entries)
    # A restart trims an old batch in its own layout: nothing in it turns into an owner of 0.
    catalog.forget_inodes_from(1, 5)
    [(blob,)] = db.conn.execute("SELECT inodes FROM catalog_inodes WHERE first_ino = 3").fetchall()
    assert bytes(blob) == b"n" + narrow.pack(3, 0o100644, 5, 8, 20, 1)
    assert unpack_inodes(blob) == [(3, 0o100644, 5, 8, 20, 1, None, None, None, None)]
    db.close()


def test_no_history_keeps_nothing_and_says_so(tree, tmp_path, run):
    run.ok("dump", "--no-history", "-f", str(tmp_path / "d0"), str(tree))
    assert run.sql("SELECT COUNT(*) FROM catalog_dirs") == [(0,)]
    assert run.sql("SELECT COUNT(*) FROM catalog_inodes") == [(0,)]
    refused = run("restore", "-t", "--catalog", "-f", str(tmp_path / "d0"))
    assert refused.returncode == 9
    assert refused.stderr.decode().count("\n") == 1 and b"no dump with a file history" in refused.stderr
    found = run("chain", "find", "*.conf", str(tree))
    assert found.returncode == 1 and b"1 dump(s)" in found.stderr and b"not searched" in found.stderr
    # A restore of PATHs without a file history reads the whole dump, and says so.
    done = run.json("restore", "-f", str(tmp_path / "d0"), "--target", str(tmp_path / "r"), "etc")
    assert done["direct"] is False
    _same_file(tree / "etc" / "app.conf", tmp_path / "r" / "etc" / "app.conf")


def test_a_failed_dump_leaves_no_file_history(tree, tmp_path, run):
    failed = run("dump", "--no-prompt", "--capacity", "1M", "-f", str(tmp_path / "small.tap"), str(tree))
    assert failed.returncode == 5, failed.stderr
    assert run.sql("SELECT status FROM dumps") == [("failed",)]
    assert run.sql("SELECT COUNT(*) FROM catalog_dirs") == [(0,)]
    assert run.sql("SELECT COUNT(*) FROM catalog_inodes") == [(0,)]


def test_a_dump_that_is_no_base_still_has_its_file_history(tree, tmp_path, run):
    run.ok("dump", "--no-update", "-f", str(tmp_path / "d0"), str(tree))
    assert run("dump", "-level", "1", "-f", str(tmp_path / "d1"), str(tree)).returncode == 9
    found = run.json("chain", "find", "plan.md", str(tree))
    assert [m["path"] for m in found["matches"]] == ["home/bob/notes/plan.md"]


def test_chain_find_names_the_dumps_that_hold_a_path(tree, tmp_path, run):
    run.ok("dump", "-f", str(tmp_path / "d0"), str(tree))
    (tree / "etc" / "app.conf").write_bytes(b"answer = 43\n")
    run.ok("dump", "-level", "1", "-f", str(tmp_path / "d1"), str(tree))
    found = run.json("chain", "find", "app.conf", str(tree))
    by_level = sorted((m["level"], m["path"]) for m in found["matches"])
    # Two names of one changed inode, in both dumps; the level 1 holds it because it changed.
    assert by_level == [
        (0, "etc/app.conf"),
        (0, "home/alice/app.conf"),
        (1, "etc/app.conf"),
        (1, "home/alice/app.conf"),
    ]
    assert {m["media"] for m in found["matches"]} == {str(tmp_path / "d0"), str(tmp_path / "d1")}
    # With a '/', the pattern is the whole path; '*' crosses directories.
    found = run.json("chain", "find", "home/*/plan.md", str(tree))
    assert [(m["level"], m["path"]) for m in found["matches"]] == [(0, "home/bob/notes/plan.md")]
    found = run.json("chain", "find", "doc0[0-2].txt", str(tree))
    assert sorted(m["path"] for m in found["matches"]) == [f"home/alice/doc0{i}.txt" for i in range(3)]
    none = run("chain", "find", "*.nothing", str(tree))
    assert none.returncode == 1 and b"Nothing matching" in none.stdout
    table = run.ok("chain", "find", "plan.md", str(tree)).stdout.decode()
    assert "home/bob/notes/plan.md" in table and "Level" in table


# -- direct access restore ----------------------------------------------------------------------


def test_direct_access_from_a_file_reads_a_sliver_and_restores_the_same(tree, tmp_path, run):
    dump = tmp_path / "d0"
    run.ok("dump", "-b", "16", "-f", str(dump), str(tree))
    size = os.path.getsize(dump)
    paths = ["home/bob/notes", "etc/app.conf", "home/bob/sparse"]
    direct = run.json("restore", "-f", str(dump), "--target", str(tmp_path / "dar"), *paths)
    scan = run.json("restore", "--no-direct", "-f", str(dump), "--target", str(tmp_path / "scan"), *paths)
    assert direct["direct"] is True and scan["direct"] is False
    assert direct["restored"] == scan["restored"] == 3 and direct["warnings"] == []
    assert direct["media_bytes"] < size / 5 and scan["media_bytes"] >= size
    for top in ("home", "etc"):  # the target's own times are its own in a partial restore
        assert compare_trees(str(tmp_path / "scan" / top), str(tmp_path / "dar" / top))[1] == []
    for p in ("home/bob/notes/plan.md", "etc/app.conf", "home/bob/sparse"):
        _same_file(tree / p, tmp_path / "dar" / p)
    assert not (tmp_path / "dar" / "home" / "alice").exists()
    # Through a pipe there is no seeking: it reads on to each place, and gets the same.
    with open(dump, "rb") as stdin:
        piped = subprocess.run(
            [
                *run.ndmptools_args(),
                "--json",
                "restore",
                "-f",
                "-",
                "--target",
                str(tmp_path / "pipe"),
                *paths,
            ],
            stdin=stdin,
            capture_output=True,
        )
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["direct"] is True
    for top in ("home", "etc"):
        assert compare_trees(str(tmp_path / "scan" / top), str(tmp_path / "pipe" / top))[1] == []


def test_direct_access_across_the_cartridges_of_a_library(tree, tmp_path, run):
    library = f"vtape:{tmp_path / 'lib'}"
    run.ok("dump", "-b", "16", "--capacity", "1M", "-f", library, str(tree))
    cartridges = sorted(os.listdir(tmp_path / "lib"))
    assert len(cartridges) >= 4
    scan = run.json("restore", "-t", "-f", library)
    records = sum(os.path.getsize(tmp_path / "lib" / c) for c in cartridges) // (16 * KiB)
    places = {e["path"]: e for e in run.json("restore", "-t", "--catalog", "-f", library)}
    assert places["home/bob/big.bin"]["volume"] < places["var/log/syslog.9"]["volume"]
    assert _listing(places.values()) == _listing(scan)
    # A small file on the last cartridges, and a big one that spans several.
    done = run.json(
        "restore", "-f", library, "--target", str(tmp_path / "r"), "var/log/syslog.9", "home/bob/big.bin"
    )
    assert done["direct"] is True and done["warnings"] == [] and done["restored"] == 2
    _same_file(tree / "var/log/syslog.9", tmp_path / "r" / "var/log/syslog.9")
    _same_file(tree / "home/bob/big.bin", tmp_path / "r" / "home/bob/big.bin")
    big_records = 2_500_000 // (16 * KiB)
    assert done["media_reads"] < big_records + 30 < records  # the big file, and little else
    alone = run.json("restore", "-f", library, "--target", str(tmp_path / "r2"), "var/log/syslog.9")
    assert alone["media_reads"] < 15 and alone["warnings"] == []
    _same_file(tree / "var/log/syslog.9", tmp_path / "r2" / "var/log/syslog.9")


@pytest.mark.parametrize("locate", [True, False], ids=["mtseek", "record-spacing"])
def test_direct_access_on_a_tape_drive_locates_or_spaces(tree, tmp_path, locate):
    db = StateDB(str(tmp_path / "state"))
    history = History(db)
    cartridge = FakeCartridge()
    writer = FakeStDriver(cartridge)
    run_dump(
        DumpOptions(path=str(tree), file="/dev/nst0", blocking_factor=16, state_dir=str(tmp_path / "state")),
        lambda: ScsiTape("/dev/nst0", "w", ops=writer),
        RunContext(),
        history,
    )
    reader = FakeStDriver(cartridge, locate=locate)
    tape = ScsiTape("/dev/nst0", "r", ops=reader)
    tape.seek_distance = 16 * KiB  # a real drive streams 64 MiB rather than locate: this dump is 4 MiB
    run = RunContext()
    result = run_restore(
        RestoreOptions(file="/dev/nst0", target=str(tmp_path / "r"), paths=("var/log/syslog.7", "etc")),
        tape,
        run,
        history,
    )
    db.close()
    assert result.direct and run.stats.warnings == [] and result.restored == 2
    _same_file(tree / "var/log/syslog.7", tmp_path / "r" / "var/log/syslog.7")
    _same_file(tree / "etc/app.conf", tmp_path / "r" / "etc/app.conf")
    records = sum(1 for item in cartridge.items if item is not None)
    assert result.media_reads < records / 3
    moves = [c for c in reader.calls if c.startswith(f"op{MTSEEK}:" if locate else f"op{MTFSR}:")]
    assert moves, reader.calls


def test_a_file_history_that_does_not_match_the_media_restores_nothing_wrong(tree, tmp_path, run):
    dump = tmp_path / "d0"
    run.ok("dump", "-f", str(dump), str(tree))
    places = {e["path"]: e for e in run.json("restore", "-t", "--catalog", "-f", str(dump))}
    wrong = places["home/alice/doc05.txt"]["inode"]
    elsewhere = run.inode(places["var/log/syslog.3"]["inode"])[4]
    run.set_inode(wrong, tapea=elsewhere)
    done = run("--json", "restore", "-f", str(dump), "--target", str(tmp_path / "r"), "home/alice/doc05.txt")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["restored"] == 0 and result["not_restored"] == 1
    assert "not found where the file history places it" in result["warnings"][0]
    assert not (tmp_path / "r" / "home" / "alice" / "doc05.txt").exists()
    scan = run.json(
        "restore", "--no-direct", "-f", str(dump), "--target", str(tmp_path / "s"), "home/alice/doc05.txt"
    )
    assert scan["warnings"] == []
    _same_file(tree / "home/alice/doc05.txt", tmp_path / "s" / "home/alice/doc05.txt")


@pytest.mark.root
def test_a_restarted_dump_has_a_whole_file_history_and_direct_access_works(volume, tmp_path):  # noqa: F811
    state = tmp_path / "state"
    library = ["--capacity", "1M", "-f", f"vtape:{tmp_path / 'lib'}"]
    killed = _killed_dump(state, 175, True, "-b", "16", "--checkpoint-interval", "0", *library, str(volume))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    context = _the_one_context(state)
    restarted = _cli(state, "dump", "--restart", context["context_id"], *library)
    assert restarted.returncode == 0, restarted.stderr
    spec = f"vtape:{tmp_path / 'lib'}"
    media = json.loads(_cli(state, "--json", "restore", "-t", "-f", spec).stdout)
    catalog = json.loads(_cli(state, "--json", "restore", "-t", "--catalog", "-f", spec).stdout)
    assert _listing(catalog) == _listing(media)
    paths = ["a/f00", "a/f39", "c/big", "c/sparse", "c/second-name", "a/deep"]
    done = _cli(state, "--json", "restore", "-f", spec, "--target", str(tmp_path / "r"), *paths)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["direct"] is True
    for p in ("a/f00", "a/f39", "c/big", "c/sparse", "c/second-name", "a/deep/tiny"):
        _same_file(volume / p, tmp_path / "r" / p)


@pytest.mark.root
def test_a_restart_drops_the_places_recorded_after_its_checkpoint(volume, tmp_path, monkeypatch):  # noqa: F811
    """Batches of three inodes, checkpoints only at changes of cartridge, a kill in mid-cartridge.

    The killed run wrote places to the catalog past its last checkpoint, on a
    cartridge the restart cuts back; the restart writes those inodes again on
    a new one, and the catalog must hold the new places only.
    """
    monkeypatch.setenv("FAULT_HISTORY_BATCH", "3")
    state = tmp_path / "state"
    spec = f"vtape:{tmp_path / 'lib'}"
    library = ["--capacity", "1M", "-f", spec]
    killed = _killed_dump(
        state, 100, False, "-b", "16", "--checkpoint-interval", "3600", *library, str(volume)
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    context = _the_one_context(state)
    with sqlite3.connect(state / "ndmptools.db") as db:
        [(checkpoint,)] = db.execute("SELECT checkpoint FROM contexts").fetchall()
        [(recorded,)] = db.execute("SELECT MAX(last_ino) FROM catalog_inodes").fetchall()
    resume = json.loads(checkpoint)["resume"]
    assert resume["kind"] == "file"
    assert recorded > resume["ino"] + 3  # places on the part of the cartridge that goes
    restarted = _cli(state, "dump", "--restart", context["context_id"], *library)
    assert restarted.returncode == 0, restarted.stderr

    media = json.loads(_cli(state, "--json", "restore", "-t", "-f", spec).stdout)
    catalog = json.loads(_cli(state, "--json", "restore", "-t", "--catalog", "-f", spec).stdout)
    assert _listing(catalog) == _listing(media)
    _check_places(state, spec)
    past = [e["path"] for e in catalog if e["type"] == "file" and e["inode"] >= resume["ino"]]
    assert len(past) > 5
    done = _cli(state, "--json", "restore", "-f", spec, "--target", str(tmp_path / "r"), *past)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["direct"] is True and result["warnings"] == [] and result["restored"] == len(past)
    for p in past:
        _same_file(volume / p, tmp_path / "r" / p)
