"""Debian's dump/restore 0.4b47 as the format oracle, in both directions."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess

import pytest

from ndmptools.engine.treediff import CompareRules, compare_trees
from tests.debian import debian_dump_of, restore
from tests.trees import build_sample_tree

pytestmark = [pytest.mark.root, pytest.mark.debian]


def _our_listing(ndmptools, image: str) -> dict[str, int]:
    entries = json.loads(ndmptools.ok("restore", "-t", "--json", "-f", image).stdout)
    return {e["path"]: e["inode"] for e in entries}


def _debian_listing(image: str, cwd: str) -> dict[str, int]:
    done = subprocess.run(["restore", "-t", "-f", image], cwd=cwd, capture_output=True, check=True)
    found = {}
    for line in done.stdout.split(b"\n"):
        ino, tab, path = line.strip().partition(b"\t")
        if tab and ino.isdigit():
            name = path.decode("utf-8", "surrogateescape")
            found["." if name == "." else name.removeprefix("./")] = int(ino)
    return found


DEBIAN_NAME_LIMIT = 252  # Debian restore mangles longer names, even from its own dumps
DEBIAN_MINOR_LIMIT = (1 << 19) - 1  # its mknod() takes the device word as a signed int


@pytest.fixture(scope="module")
def our_image(tmp_path_factory, ndmptools):
    """The sample tree (names Debian restore can handle) and ndmptools' dump of it."""
    base = tmp_path_factory.mktemp("ours")
    tree = build_sample_tree(
        str(base / "tree"), longest_name=DEBIAN_NAME_LIMIT, huge_minor=DEBIAN_MINOR_LIMIT
    )
    image = str(base / "ours.dump")
    ndmptools.ok("dump", "-f", image, tree)
    return tree, image


def test_debian_restore_lists_our_image(our_image, ndmptools, tmp_path):
    _, sample_dump = our_image
    ours = _our_listing(ndmptools, sample_dump)
    theirs = _debian_listing(sample_dump, str(tmp_path))
    assert theirs == ours
    assert len(ours) > 330


def test_debian_restore_extracts_our_image(our_image, tmp_path):
    sample_tree, sample_dump = our_image
    target = tmp_path / "debian-x"
    target.mkdir()
    done = restore(["-x", "-a", "-y", "-f", sample_dump], cwd=str(target))
    assert done.returncode == 0, done.stderr
    # Debian restore sets times with utimes(): microseconds.
    count, problems = compare_trees(sample_tree, str(target), CompareRules(time_resolution_ns=1000))
    assert not problems, "\n".join(problems[:40])
    assert count > 330


def test_debian_restore_compares_our_image_with_the_tree(our_image, tmp_path):
    sample_tree, sample_dump = our_image
    done = restore(["-C", "-a", "-y", "-D", sample_tree, "-f", sample_dump], cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "compare errors" not in done.stdout + done.stderr


@pytest.fixture
def short_dir():
    """A directory whose path fits c_filesys and restore's -D (63 bytes)."""
    import tempfile

    path = tempfile.mkdtemp(prefix="ndt", dir="/tmp")
    yield path
    shutil.rmtree(path)


def test_debian_restore_compare_finds_the_directory_named_in_the_header(short_dir, ndmptools):
    # Without -D, Linux restore -C changes into the directory named in c_filesys: the dumped path.
    from tests.conftest import SMALL_SPEC
    from tests.trees import build_tree_from_spec

    tree = os.path.join(short_dir, "t")
    build_tree_from_spec(tree, SMALL_SPEC)
    image = os.path.join(short_dir, "s.dump")
    ndmptools.ok("dump", "-f", image, tree)
    done = restore(["-C", "-a", "-y", "-f", image], cwd=short_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"filesys = {tree}\n" in done.stdout


def test_debian_restore_compare_sees_a_changed_file(short_dir, ndmptools):
    from tests.trees import build_tree_from_spec

    tree = os.path.join(short_dir, "t")
    build_tree_from_spec(tree, {"f": b"before", "g": b"same"})
    image = os.path.join(short_dir, "c.dump")
    ndmptools.ok("dump", "-f", image, tree)
    with open(os.path.join(tree, "f"), "wb") as f:
        f.write(b"after!")
    done = restore(["-C", "-a", "-y", "-f", image], cwd=short_dir)
    assert done.returncode != 0
    assert "compare errors" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def debian_image(tmp_path_factory):
    """A tree, and the dump Debian's dump wrote of an ext4 image of that same tree."""
    base = tmp_path_factory.mktemp("debian")
    tree = build_sample_tree(
        str(base / "tree"),
        sockets=False,
        longest_name=DEBIAN_NAME_LIMIT,
        huge_minor=DEBIAN_MINOR_LIMIT,
        linked_symlink=False,
    )
    return str(tree), debian_dump_of(str(tree), str(base))


def test_ndmptools_restores_a_debian_dump(debian_image, ndmptools, tmp_path):
    tree, image = debian_image
    target = tmp_path / "r"
    ndmptools.ok("restore", "-f", image, "-D", str(target))
    # Debian's dump writes whole seconds; everything else must be exact. mke2fs added lost+found
    # to the image, which gave its root a new mtime: those two differences are the image's own.
    count, problems = compare_trees(tree, str(target), CompareRules(time_resolution_ns=10**9))
    expected = {f"lost+found: only in {target}"}
    problems = [p for p in problems if p not in expected and not p.startswith(".: mtime")]
    assert not problems, "\n".join(problems[:40])
    assert count > 330


def test_ndmptools_lists_a_debian_dump_as_debian_restore_does(debian_image, ndmptools, tmp_path):
    _, image = debian_image
    assert _our_listing(ndmptools, image) == _debian_listing(image, str(tmp_path))


def test_header_fields_are_filled_as_debian_dump_fills_them(tmp_path, ndmptools):
    from tests.trees import build_tree_from_spec

    tree = tmp_path / "tree"
    build_tree_from_spec(str(tree), {"f": b"x"})
    image = tmp_path / "fs.img"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "backup-label", "-d", str(tree), str(image), "32M"],
        check=True,
    )
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        subprocess.run(
            ["dump", "-0", "-q", "-f", str(tmp_path / "debian.dump"), str(mnt)],
            check=True,
            capture_output=True,
        )
        ndmptools.ok("dump", "-f", str(tmp_path / "ours.dump"), str(mnt))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)

    def fields(path):
        with open(path, "rb") as f:
            block = f.read(1024)
        text = lambda a, b: block[a:b].split(b"\0")[0]  # noqa: E731
        return {
            "label": text(676, 692),
            "level": struct.unpack_from("<i", block, 692)[0],
            "filesys": text(696, 760),
            "dev": text(760, 824),
            "host": text(824, 888),
            "flags": struct.unpack_from("<i", block, 888)[0],
            "volume": struct.unpack_from("<i", block, 12)[0],
        }

    ours, theirs = fields(tmp_path / "ours.dump"), fields(tmp_path / "debian.dump")
    assert ours == theirs
    assert ours["label"] == b"backup-label" and ours["host"] == os.uname().nodename.encode()[:63]
