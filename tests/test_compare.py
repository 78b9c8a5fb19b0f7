"""restore -C on real trees: a dump against the tree it came from, each change found once, exit code 11.

Debian's restore -C is the oracle: where it finds the tree matching, so must we, and whatever it
reports, we report. The tree is only read: no atime, ctime or byte of it moves.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import tracemalloc

import pytest

from ndmptools.engine.dump import run_dump
from ndmptools.engine.errors import UsageError
from ndmptools.engine.options import CompareOptions, DumpOptions, RestoreOptions
from ndmptools.engine.progress import RunContext
from ndmptools.engine.restore import run_restore
from ndmptools.engine.restore.compare import run_compare
from ndmptools.engine.restore.origin import original_location
from ndmptools.format.reader import DumpReader
from ndmptools.media import open_path
from ndmptools.state.db import StateDB
from ndmptools.state.history import History
from tests.debian import debian_dump_of
from tests.debian import restore as debian_restore
from tests.trees import build_sample_tree, build_tree_from_spec

pytestmark = pytest.mark.root

T_FILE = (1_700_000_000_111_222_333, 1_700_000_001_444_555_666)

SPEC = {
    "a.txt": b"alpha\n",
    "empty": b"",
    "exec": ("mode", 0o755, b"#!/bin/sh\n"),
    "hard1": b"linked",
    "hard2": ("hard", "hard1"),
    "twin1": ("file", b"same bytes", 0o644, T_FILE),
    "twin2": ("file", b"same bytes", 0o644, T_FILE),
    "sparse": ("sparse", 3 << 20, 1 << 20, b"island in the middle"),
    "big": bytes(range(256)) * 4000,
    "sub": {"b.bin": bytes(range(256)) * 40, "deeper": {"c": b"c" * 5000}, "link": ("link", "../a.txt")},
    "emptydir": {},
}


def build(root: str) -> str:
    build_tree_from_spec(root, SPEC)
    os.mknod(os.path.join(root, "dev"), 0o020640, os.makedev(1, 3))
    os.mkfifo(os.path.join(root, "fifo"), 0o600)
    return root


def dump(tree: str, image: str) -> None:
    run = RunContext()
    run_dump(DumpOptions(path=tree, file=image), lambda: open_path(image, "w"), run)
    assert run.stats.warnings == [], run.stats.warnings


def compare(image: str, tree: str | None, paths: tuple[str, ...] = (), history: History | None = None):
    """(differences as (path, kind) pairs, the differences, the run, the result) of run_compare."""
    run = RunContext()
    found = []
    with open_path(image, "r") as medium:
        options = CompareOptions(file=image, tree=tree, paths=paths)
        result = run_compare(options, medium, run, history, found.append)
    return [(d.path, d.kind) for d in found], found, run, result


@contextlib.contextmanager
def times_kept(*paths):
    """Put the times of ``paths`` back after the block: a change must show as itself only."""
    kept = [(p, os.lstat(p)) for p in paths]
    yield
    for p, st in kept:
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


@pytest.fixture
def dumped(tmp_path):
    tree = build(str(tmp_path / "tree"))
    image = str(tmp_path / "tree.dump")
    dump(tree, image)
    return tree, image


def test_an_unchanged_tree_matches(dumped, ndmptools):
    tree, image = dumped
    pairs, _, run, result = compare(image, tree)
    assert pairs == [] and run.stats.warnings == []
    assert result.compared == 18  # every name in the dump, the root included
    done = ndmptools("restore", "-C", "-f", image, "-D", tree)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    assert re.search(rb"^compare: 18 entries, .*, 0 differences$", done.stderr, re.MULTILINE)


def _content(t):
    p = os.path.join(t, "a.txt")
    st = os.stat(p)
    with open(p, "r+b") as f:
        f.write(b"ALPHA\n")  # same size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: only the data tells


def _content_deep_in_a_big_file(t):
    p = os.path.join(t, "big")
    st = os.stat(p)
    with open(p, "r+b") as f:
        f.seek(st.st_size - 3)
        f.write(b"end")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _data_in_a_hole(t):
    p = os.path.join(t, "sparse")
    st = os.stat(p)
    with open(p, "r+b") as f:
        f.seek(2 << 20)
        f.write(b"not a hole any more")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _hole_filled_with_zeros(t):
    # The same bytes, written out in full: the content matches, the holes do not.
    p = os.path.join(t, "sparse")
    st = os.stat(p)
    with open(p, "rb") as f:
        data = f.read()
    with times_kept(t):
        with open(p + ".new", "wb") as f:
            f.write(data)
        os.utime(p + ".new", ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(p + ".new", p)


def _size(t):
    p = os.path.join(t, "a.txt")
    st = os.stat(p)
    with open(p, "ab") as f:
        f.write(b"more")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _mode(t):
    os.chmod(os.path.join(t, "exec"), 0o700)


def _owner(t):
    os.chown(os.path.join(t, "a.txt"), 4321, -1)


def _group(t):
    os.chown(os.path.join(t, "sub", "b.bin"), -1, 4321)


def _mtime(t):
    st = os.stat(os.path.join(t, "a.txt"))
    os.utime(os.path.join(t, "a.txt"), ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))


def _mtime_under_a_second(t):
    st = os.stat(os.path.join(t, "twin1"))
    os.utime(os.path.join(t, "twin1"), ns=(st.st_atime_ns, st.st_mtime_ns + 1000))


def _symlink_target(t):
    link = os.path.join(t, "sub", "link")
    with times_kept(os.path.join(t, "sub"), link):
        os.unlink(link)
        os.symlink("../exec", link)


def _device(t):
    p = os.path.join(t, "dev")
    with times_kept(t, p):
        os.unlink(p)
        os.mknod(p, 0o020640, os.makedev(1, 5))


def _deleted(t):
    with times_kept(t):
        os.unlink(os.path.join(t, "empty"))


def _deleted_directory(t):
    with times_kept(os.path.join(t, "sub")):
        shutil.rmtree(os.path.join(t, "sub", "deeper"))


def _added(t):
    with times_kept(os.path.join(t, "sub")), open(os.path.join(t, "sub", "new"), "wb") as f:
        f.write(b"new")


def _file_to_directory(t):
    p = os.path.join(t, "a.txt")
    with times_kept(t):
        os.unlink(p)
        os.mkdir(p)
        with open(os.path.join(p, "inside"), "wb") as f:
            f.write(b"not compared: the dump has a file here")


def _directory_to_file(t):
    p = os.path.join(t, "emptydir")
    with times_kept(t):
        os.rmdir(p)
        with open(p, "wb") as f:
            f.write(b"was a directory")


def _file_to_symlink(t):
    # The link points at an identical file: it must not be followed.
    p = os.path.join(t, "twin2")
    with times_kept(t):
        os.unlink(p)
        os.symlink("twin1", p)


def _directory_to_symlink(t):
    # An identical directory elsewhere, behind a symlink: never followed, nothing under it compared.
    p = os.path.join(t, "sub")
    elsewhere = os.path.join(os.path.dirname(t), "elsewhere")
    with times_kept(t):
        shutil.copytree(p, elsewhere, symlinks=True, copy_function=shutil.copy2)
        shutil.rmtree(p)
        os.symlink(elsewhere, p)


def _hard_link_broken(t):
    p = os.path.join(t, "hard2")
    with times_kept(t):
        shutil.copy2(p, p + ".copy")
        os.rename(p + ".copy", p)


def _hard_link_made(t):
    with times_kept(t):
        os.unlink(os.path.join(t, "twin2"))
        os.link(os.path.join(t, "twin1"), os.path.join(t, "twin2"))


CHANGES = [
    (_content, [("a.txt", "content")]),
    (_content_deep_in_a_big_file, [("big", "content")]),
    (_data_in_a_hole, [("sparse", "content")]),
    (_hole_filled_with_zeros, [("sparse", "holes")]),
    (_size, [("a.txt", "size")]),
    (_mode, [("exec", "mode")]),
    (_owner, [("a.txt", "owner")]),
    (_group, [("sub/b.bin", "group")]),
    (_mtime, [("a.txt", "mtime")]),
    (_mtime_under_a_second, [("twin1", "mtime")]),
    (_symlink_target, [("sub/link", "symlink")]),
    (_device, [("dev", "device")]),
    (_deleted, [("empty", "only-on-media")]),
    (_deleted_directory, [("sub/deeper", "only-on-media")]),
    (_added, [("sub/new", "only-in-tree")]),
    (_file_to_directory, [("a.txt", "type")]),
    (_directory_to_file, [("emptydir", "type")]),
    (_file_to_symlink, [("twin2", "type")]),
    (_directory_to_symlink, [("sub", "type")]),
    (_hard_link_made, [("twin2", "hardlink")]),
]


@pytest.mark.parametrize(("change", "expected"), CHANGES, ids=[c.__name__.strip("_") for c, _ in CHANGES])
def test_each_change_is_reported_once_with_its_kind(dumped, change, expected):
    tree, image = dumped
    change(tree)
    pairs, _, run, _ = compare(image, tree)
    assert pairs == expected
    assert run.stats.warnings == []


def test_a_broken_hard_link_is_reported_once(dumped):
    tree, image = dumped
    _hard_link_broken(tree)
    pairs, found, run, _ = compare(image, tree)
    assert len(pairs) == 1 and pairs[0][1] == "hardlink" and pairs[0][0] in ("hard1", "hard2")
    other = {"hard1", "hard2"} - {pairs[0][0]}
    assert found[0].media == other.pop() and found[0].tree is None
    assert run.stats.warnings == []


def test_the_values_on_each_side(dumped):
    tree, image = dumped
    _mode(tree)
    _owner(tree)
    _symlink_target(tree)
    _file_to_directory(tree)
    _, found, _, _ = compare(image, tree)
    values = {(d.path, d.kind): (d.media, d.tree) for d in found}
    assert values[("exec", "mode")] == ("755", "700")
    assert values[("sub/link", "symlink")] == ("../a.txt", "../exec")
    assert values[("a.txt", "type")] == ("file", "dir")
    assert ("a.txt", "owner") not in values  # it is a directory now: compared no further
    lines = {d.describe() for d in found}
    assert "exec: mode 755 != 700" in lines
    assert "a.txt: type file != dir" in lines
    assert "sub/link: symlink target '../a.txt' != '../exec'" in lines


def test_the_cli_lists_differences_and_exits_11(dumped, ndmptools):
    tree, image = dumped
    _content(tree)
    _mode(tree)
    _added(tree)
    done = ndmptools("restore", "-C", "-f", image, "-D", tree)
    assert done.returncode == 11, done.stderr
    assert sorted(done.stdout.decode().splitlines()) == [
        "a.txt: content differs",
        "exec: mode 755 != 700",
        "sub/new: only in the tree",
    ]
    assert re.search(rb"^compare: \d+ entries, .*, 3 differences$", done.stderr, re.MULTILINE)
    document = json.loads(ndmptools("--json", "restore", "-C", "-f", image, "-D", tree).stdout)
    assert sorted((d["path"], d["kind"]) for d in document["differences"]) == [
        ("a.txt", "content"),
        ("exec", "mode"),
        ("sub/new", "only-in-tree"),
    ]
    assert {"path", "kind", "media", "tree"} == set(document["differences"][0])
    assert document["counts"]["differences"] == 3
    assert document["counts"]["by_kind"] == {"content": 1, "mode": 1, "only-in-tree": 1}
    assert document["tree"] == tree


def test_paths_limit_the_compare(dumped):
    tree, image = dumped
    _content(tree)  # a.txt
    _group(tree)  # sub/b.bin
    _added(tree)  # sub/new
    with times_kept(tree), open(os.path.join(tree, "top-new"), "wb") as f:
        f.write(b"x")
    assert sorted(compare(image, tree, ("sub",))[0]) == [("sub/b.bin", "group"), ("sub/new", "only-in-tree")]
    assert compare(image, tree, ("a.txt",))[0] == [("a.txt", "content")]
    assert compare(image, tree, ("./sub/deeper",))[0] == []
    pairs, _, _, result = compare(image, tree, ("sub/b.bin", "exec"))
    assert pairs == [("sub/b.bin", "group")] and result.compared == 2


def test_conflicting_options_are_refused(dumped, ndmptools):
    tree, image = dumped
    for extra, option in (
        (["-t"], "-t"),
        (["-r"], "-r"),
        (["--plan", tree], "--plan"),
        (["--catalog"], "--catalog"),
    ):
        done = ndmptools("restore", "-C", *extra, "-f", image, "-D", tree)
        assert done.returncode == 2, (extra, done.stderr)
        said = done.stderr.decode()
        assert f"Error: -C compares a dump with a tree: it does not go with {option}\n" in said
        assert "Traceback" not in said


def test_differences_into_a_closed_pipe_still_exit_11(tmp_path):
    tree = tmp_path / "t"
    build_tree_from_spec(str(tree), {f"file-with-a-rather-long-name-{i:05d}": b"x" for i in range(4000)})
    image = str(tmp_path / "d")
    dump(str(tree), image)
    for name in os.listdir(tree):
        os.chmod(tree / name, 0o600)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ndmptools", "restore", "-C", "-f", image, "-D", str(tree)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.readline().endswith(b": mode 644 != 600\n")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 11  # the reader left, but what it saw was a difference
    assert b"Traceback" not in err and b"Exception ignored" not in err


def test_the_exit_code_is_in_the_help(ndmptools):
    assert re.search(rb"^\s+11\s+differences found", ndmptools.ok("--help").stdout, re.MULTILINE)


def test_a_tree_that_cannot_be_read_is_a_target_error(dumped, ndmptools, tmp_path):
    _, image = dumped
    done = ndmptools("restore", "-C", "-f", image, "-D", str(tmp_path / "missing"))
    assert done.returncode == 7
    assert done.stderr.decode().strip().splitlines()[-1].startswith("ndmptools: error: cannot compare with")
    assert not (tmp_path / "missing").exists()  # never made, as a restore would


def _snapshot_of_times(tree: str) -> dict[str, tuple[int, int]]:
    found = {}
    for top, dirs, files in os.walk(tree):
        for name in ["", *dirs, *files]:
            path = os.path.join(top, name) if name else top
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode):  # readlink may count as an access of a symlink
                found[path] = (st.st_atime_ns, st.st_ctime_ns)
    return found


def test_the_tree_is_only_read(dumped):
    tree, image = dumped
    # Files and directories whose atime is older than their mtime: relatime would move them on a read.
    for top, dirs, files in os.walk(tree):
        for name in [*dirs, *files]:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode):
                os.utime(path, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
    before = _snapshot_of_times(tree)
    assert compare(image, tree)[0] == []
    assert _snapshot_of_times(tree) == before


def test_a_file_is_never_held_whole(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "large").write_bytes(os.urandom(48 << 20))
    image = str(tmp_path / "d")
    dump(str(tree), image)
    tracemalloc.start()
    try:
        pairs = compare(image, str(tree))[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pairs == []
    assert peak < 8 << 20, f"{peak / 2**20:.1f} MiB at the peak for a 48 MiB file"


def _header_offset(image: str, path: bytes) -> int:
    """Where the first header of the inode at ``path`` (a name in the root) is in ``image``."""
    from ndmptools.engine.restore.catalog import read_catalog

    with open_path(image, "r") as medium:
        reader = DumpReader(medium, lambda _m: None)
        catalog = read_catalog(reader, (), RunContext())
        wanted = next(ino for ino, links in catalog.links.items() if links[0].name == path)
        header = catalog.first_file
        while header.inumber != wanted:
            reader.skip_data(header)
            reader.read_attributes(header.inumber)
            header = reader.next_inode()
        return reader.last_offset


def test_a_damaged_dump_gets_the_warnings_a_restore_gives(dumped, tmp_path):
    tree, image = dumped
    with open(image, "rb") as f:
        data = bytearray(f.read())
    data[_header_offset(image, b"exec") + 40] ^= 0xFF
    damaged = str(tmp_path / "damaged.dump")
    with open(damaged, "wb") as f:
        f.write(data)
    restored = RunContext()
    with open_path(damaged, "r") as medium:
        run_restore(RestoreOptions(file=damaged, target=str(tmp_path / "r")), medium, restored)
    pairs, _, run, _ = compare(damaged, tree)
    assert pairs == []  # what is not on media is not compared: the tree is the one dumped
    assert run.stats.warnings == restored.stats.warnings
    assert any("unreadable" in w for w in run.stats.warnings)
    assert "exec: listed in its directory but not on media" in run.stats.warnings


# -- incrementals ----------------------------------------------------------------------------------


def test_an_incremental_compares_only_what_it_holds(tmp_path, ndmptools):
    tree = build(str(tmp_path / "tree"))
    state = str(tmp_path / "state")
    level0, level1 = str(tmp_path / "level0"), str(tmp_path / "level1")
    ndmptools.ok("--state-dir", state, "dump", "-q", "-level", "0", "-f", level0, tree)
    time.sleep(1.05)  # distinct dump dates, as on tapes
    _content(tree)  # a.txt: its ctime moves, so it is in the level 1
    with open(os.path.join(tree, "sub", "new"), "wb") as f:
        f.write(b"new at level 1")
    ndmptools.ok("--state-dir", state, "dump", "-q", "-level", "1", "-f", level1, tree)

    pairs, _, run, result = compare(level1, tree)
    assert pairs == [] and run.stats.warnings == []
    assert result.level == 1
    assert result.compared == 4  # the root, sub (on the way to sub/new), a.txt and sub/new
    assert sorted(compare(level0, tree)[0]) == [
        ("a.txt", "content"),
        ("sub", "mtime"),
        ("sub/new", "only-in-tree"),
    ]

    _mode(tree)  # exec: not on the level 1, so not compared by it
    os.chmod(os.path.join(tree, "sub", "new"), 0o600)
    with times_kept(tree), open(os.path.join(tree, "after"), "wb") as f:
        f.write(b"the root is on every level: its names are all listed there")
    assert sorted(compare(level1, tree)[0]) == [("after", "only-in-tree"), ("sub/new", "mode")]
    assert ("exec", "mode") in compare(level0, tree)[0]


# -- where the dump was taken from -------------------------------------------------------------------


@pytest.fixture
def short_dir():
    """A directory whose path fits c_filesys (63 bytes), as Linux restore needs without -D."""
    path = tempfile.mkdtemp(prefix="ndc", dir="/tmp")
    yield path
    shutil.rmtree(path)


def test_the_original_location_by_default(tmp_path, ndmptools):
    tree = build(str(tmp_path / ("a-directory-with-a-long-name-" * 3) / "tree"))
    assert len(os.fsencode(tree)) > 63  # c_filesys cuts it: only the history knows it in full
    state, other_state = str(tmp_path / "state"), str(tmp_path / "other-state")
    image = str(tmp_path / "d")
    ndmptools.ok("--state-dir", state, "dump", "-q", "-f", image, tree)
    done = ndmptools("--state-dir", state, "restore", "-C", "-f", image)
    assert done.returncode == 0, done.stderr
    assert f"ndmptools: note: comparing with {tree}, where the dump was taken from".encode() in done.stderr
    _mode(tree)
    done = ndmptools("--state-dir", state, "restore", "-C", "-f", image)
    assert (done.returncode, done.stdout) == (11, b"exec: mode 755 != 700\n")
    # Another history does not know the dump, and the header's c_filesys may be cut: -D is asked for.
    done = ndmptools("--state-dir", other_state, "restore", "-C", "-f", image)
    assert done.returncode == 2 and done.stdout == b""
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "may be cut short" in lines[0] and "-D" in lines[0]


def test_the_original_location_from_the_header(short_dir, tmp_path, ndmptools):
    tree = build(os.path.join(short_dir, "t"))
    image = str(tmp_path / "d")
    ndmptools.ok("--state-dir", str(tmp_path / "state"), "dump", "-q", "-f", image, tree)
    done = ndmptools("--state-dir", str(tmp_path / "empty-state"), "restore", "-C", "-f", image)
    assert done.returncode == 0, done.stderr
    assert f"comparing with {tree}, where".encode() in done.stderr


def test_a_single_path_dump_compares_with_the_files_directory(short_dir, tmp_path, ndmptools):
    tree = build(os.path.join(short_dir, "t"))
    state = str(tmp_path / "state")
    image = str(tmp_path / "d")
    ndmptools.ok("--state-dir", state, "dump", "-q", "-f", image, os.path.join(tree, "a.txt"))
    for history in (state, str(tmp_path / "empty-state")):  # by the history, or by c_filesys
        done = ndmptools("--state-dir", history, "restore", "-C", "-f", image)
        assert done.returncode == 0, done.stderr  # the file's neighbours are not in the dump
        assert f"comparing with {tree}, where".encode() in done.stderr
    _content(tree)
    _mode(tree)  # exec: a neighbour, not in the dump
    done = ndmptools("--state-dir", state, "restore", "-C", "-f", image)
    assert (done.returncode, done.stdout) == (11, b"a.txt: content differs\n")
    done = ndmptools("restore", "-C", "-f", image, "-D", tree)
    assert (done.returncode, done.stdout) == (11, b"a.txt: content differs\n")
    os.unlink(os.path.join(tree, "a.txt"))
    done = ndmptools("--state-dir", state, "restore", "-C", "-f", image)
    assert (done.returncode, done.stdout) == (11, b"a.txt: only on media\n")


def test_original_location_for_a_file_that_is_gone(tmp_path, ndmptools):
    tree = build(str(tmp_path / "tree"))
    state = str(tmp_path / "state")
    file_image, dir_image = str(tmp_path / "file.dump"), str(tmp_path / "dir.dump")
    ndmptools.ok("--state-dir", state, "dump", "-q", "-f", file_image, os.path.join(tree, "a.txt"))
    time.sleep(1.05)  # two dumps of one second whose paths c_filesys cuts alike could not be told apart
    ndmptools.ok("--state-dir", state, "dump", "-q", "-f", dir_image, os.path.join(tree, "emptydir"))
    os.unlink(os.path.join(tree, "a.txt"))
    shutil.rmtree(os.path.join(tree, "emptydir"))

    def location(image: str, state_dir: str) -> str:
        history = History(StateDB(state_dir))
        try:
            with open_path(image, "r") as medium:
                return original_location(DumpReader(medium, lambda _m: None).read_volume_start(), history)
        finally:
            history.db.close()

    assert location(file_image, state) == tree  # the file history says it was a file
    assert location(dir_image, state) == os.path.join(tree, "emptydir")
    with pytest.raises(UsageError, match=r"may be cut short|is gone"):
        location(file_image, str(tmp_path / "empty-state"))


# -- Debian's restore -C as the oracle ----------------------------------------------------------------


def _debian_compare(image: str, tree: str, cwd: str) -> tuple[int, set[str]]:
    """Debian's verdict and the paths it names."""
    done = debian_restore(["-C", "-y", "-D", tree, "-f", image], cwd=cwd)
    said = done.stdout + done.stderr
    return done.returncode, set(re.findall(r"(?:^|unable to stat )\./([^:\n]+):", said, re.MULTILINE))


@pytest.mark.debian
def test_debian_restore_and_ndmptools_agree(short_dir, tmp_path):
    tree = build(os.path.join(short_dir, "t"))  # Debian's restore takes a -D of 63 bytes at most
    image = str(tmp_path / "d")
    dump(tree, image)
    code, named = _debian_compare(image, tree, str(tmp_path))
    assert (code, named) == (0, set())
    assert compare(image, tree)[0] == []

    _content(tree)
    _mode(tree)
    _owner(tree)
    _group(tree)
    _symlink_target(tree)
    _deleted(tree)
    _device(tree)
    _file_to_directory(tree)
    code, named = _debian_compare(image, tree, str(tmp_path))
    assert code != 0 and len(named) >= 6, named
    ours = {path for path, _ in compare(image, tree)[0]}
    for path in named:
        parts = path.split("/")
        assert any("/".join(parts[:i]) in ours for i in range(1, len(parts) + 1)), (path, sorted(ours))


@pytest.mark.debian
def test_a_debian_dump_compared_with_its_source_tree(tmp_path):
    limits = {"longest_name": 252, "huge_minor": (1 << 19) - 1}  # what Debian's restore can take
    tree = build_sample_tree(str(tmp_path / "tree"), sockets=False, linked_symlink=False, **limits)
    image = debian_dump_of(tree, str(tmp_path))
    pairs, _, run, result = compare(image, tree)
    # mke2fs put lost+found into the image, which gave its root a new mtime: the image's own changes.
    assert ("lost+found", "only-on-media") in pairs
    assert set(pairs) <= {("lost+found", "only-on-media"), (".", "mtime")}, pairs
    assert run.stats.warnings == []
    assert result.compared > 330
    with open(os.path.join(tree, "dir", "medium"), "r+b") as f:
        f.write(b"changed")
    os.chmod(os.path.join(tree, "setuid"), 0o755)
    pairs = compare(image, tree)[0]
    assert {("dir/medium", "content"), ("setuid", "mode")} <= set(pairs)
