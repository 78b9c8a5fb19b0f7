"""restore -C compares extended attributes, POSIX ACLs and chattr flags, on a real ext4.

The tree carries attributes in every namespace root can write (user, trusted, security, the two
ACLs), DOS attributes and streams as Samba stores them, a trusted.* attribute on a symbolic link,
and the flags noatime, nodump and immutable; each change to one of them is one difference of its
kind. Debian's restore -C, which compares attributes and flags too, is the oracle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import pytest

from ndmptools.engine.restore import compare as compare_module
from ndmptools.engine.restore.compare import acl_text, xattr_value_text
from ndmptools.engine.restoremarks import MARK_XATTR
from ndmptools.format.xattr import parse_acl
from tests.debian import DUMP, debian_dump_of
from tests.loopfs import ext4
from tests.test_compare import _debian_compare, compare, dump

pytestmark = pytest.mark.root

DOSATTRIB = bytes.fromhex("3078323000000400040000001100000020000000") + bytes(40)  # Samba's xattr_DOSATTRIB
ZONE = b"[ZoneTransfer]\r\nZoneId=3\r\n\0"


def _chattr(flags: str, *paths: Path) -> None:
    subprocess.run(["chattr", flags, *map(str, paths)], check=True)


def _setfacl(*args: str) -> None:
    subprocess.run(["setfacl", *args], check=True)


def build(tree: Path) -> None:
    """Every kind of attribute the compare reads; the flags last, immutable last of all."""
    tree.mkdir()
    notes = tree / "notes.txt"
    notes.write_bytes(b"some notes\n")
    os.setxattr(notes, "user.comment", b"hello")
    os.setxattr(notes, "user.DOSATTRIB", DOSATTRIB)
    os.setxattr(notes, "user.DosStream.Zone.Identifier:$DATA", ZONE)
    os.setxattr(notes, "security.label", b"confidential")
    (tree / "secret").write_bytes(b"s")
    os.setxattr(tree / "secret", "trusted.keeper", b"backup")
    (tree / "shared").write_bytes(b"shared with 1000\n")
    _setfacl("-m", "u:1000:rw-", str(tree / "shared"))
    project = tree / "project"
    project.mkdir()
    _setfacl("-m", "u:1000:rwx", "-m", "d:u:1000:rwx", "-m", "d:g:100:r-x", str(project))
    os.setxattr(project, "user.purpose", b"builds")
    (project / "inherited").write_bytes(b"its ACL comes from the default ACL\n")
    os.symlink("notes.txt", tree / "link")
    os.setxattr(tree / "link", "trusted.link", b"of a link", follow_symlinks=False)
    for name, flag in (("noatime", "+A"), ("nodump", "+d"), ("frozen", "+i")):
        (tree / name).write_bytes(name.encode())
        _chattr(flag, tree / name)


def _clear_flags(tree: Path) -> None:
    for top, dirs, files in os.walk(tree):
        for name in [*dirs, *files]:
            path = Path(top, name)
            if not path.is_symlink():
                _chattr("-ia", path)


@pytest.fixture
def dressed():
    """(tree, dump of it) on an ext4 of its own, under a short path: Debian's restore takes 63 bytes."""
    base = Path(tempfile.mkdtemp(prefix="ndx", dir="/tmp"))
    try:
        with ext4(base, "32M", name="fs") as mnt:
            tree = mnt / "t"
            build(tree)
            image = str(base / "d")
            dump(str(tree), image)
            try:
                yield tree, image
            finally:
                _clear_flags(tree)
    finally:
        shutil.rmtree(base)


def test_the_tree_dumped_matches(dressed, ndmptools):
    tree, image = dressed
    assert len(os.listxattr(tree / "project" / "inherited")) == 1  # the kernel gave it an access ACL
    pairs, _, run, result = compare(image, str(tree))
    assert pairs == [] and run.stats.warnings == []
    assert result.compared == 10
    done = ndmptools("restore", "-C", "-f", image, "-D", str(tree))
    assert (done.returncode, done.stdout) == (0, b""), done.stderr


def _value_changed(t):
    os.setxattr(t / "notes.txt", "user.comment", b"goodbye")


def _dos_attributes_removed(t):
    os.removexattr(t / "notes.txt", "user.DOSATTRIB")


def _stream_changed(t):
    os.setxattr(t / "notes.txt", "user.DosStream.Zone.Identifier:$DATA", ZONE.replace(b"3", b"4"))


def _security_changed(t):
    os.setxattr(t / "notes.txt", "security.label", b"public")


def _trusted_removed(t):
    os.removexattr(t / "secret", "trusted.keeper")


def _added(t):
    os.setxattr(t / "shared", "user.added", b"later")


def _acl_entry_changed(t):
    _setfacl("-n", "-m", "u:1000:r--", str(t / "shared"))  # -n: the mask, so the mode, stays


def _acl_entry_added(t):
    _setfacl("-n", "-m", "g:100:r--", str(t / "project" / "inherited"))


def _default_acl_changed(t):
    _setfacl("-d", "-x", "g:100", str(t / "project"))


def _directory_attribute_changed(t):
    os.setxattr(t / "project", "user.purpose", b"tests")


def _symlink_attribute_changed(t):
    os.setxattr(t / "link", "trusted.link", b"changed", follow_symlinks=False)


def _flag_dropped(t):
    _chattr("-A", t / "noatime")


def _immutable_dropped(t):
    _chattr("-i", t / "frozen")


def _flag_added(t):
    _chattr("+a", t / "nodump")


def _restore_mark(t):
    os.setxattr(t / "notes.txt", MARK_XATTR, b"ndmptools-restore/1 whatever")  # never a difference


CHANGES = [
    (_value_changed, [("notes.txt", "xattr")]),
    (_dos_attributes_removed, [("notes.txt", "xattr")]),
    (_stream_changed, [("notes.txt", "xattr")]),
    (_security_changed, [("notes.txt", "xattr")]),
    (_trusted_removed, [("secret", "xattr")]),
    (_added, [("shared", "xattr")]),
    (_acl_entry_changed, [("shared", "acl")]),
    (_acl_entry_added, [("project/inherited", "acl")]),
    (_default_acl_changed, [("project", "acl")]),
    (_directory_attribute_changed, [("project", "xattr")]),
    (_symlink_attribute_changed, [("link", "xattr")]),
    (_flag_dropped, [("noatime", "flags")]),
    (_immutable_dropped, [("frozen", "flags")]),
    (_flag_added, [("nodump", "flags")]),
    (_restore_mark, []),
]


@pytest.mark.parametrize(("change", "expected"), CHANGES, ids=[c.__name__.strip("_") for c, _ in CHANGES])
def test_each_change_is_reported_with_its_kind(dressed, change, expected):
    tree, image = dressed
    change(tree)
    pairs, _, run, _ = compare(image, str(tree))
    assert pairs == expected
    assert run.stats.warnings == []


def test_what_differs_is_shown_readably(dressed, ndmptools):
    tree, image = dressed
    _value_changed(tree)
    _dos_attributes_removed(tree)
    _added(tree)
    _acl_entry_changed(tree)
    _default_acl_changed(tree)
    _flag_dropped(tree)
    _flag_added(tree)
    done = ndmptools("restore", "-C", "-f", image, "-D", str(tree))
    assert done.returncode == 11, done.stderr
    dos = f"0x{DOSATTRIB[:32].hex()}... (60 bytes, crc32 {zlib.crc32(DOSATTRIB):08x})"
    assert sorted(done.stdout.decode().splitlines()) == sorted(
        [
            'notes.txt: xattr user.comment "hello" != "goodbye"',
            f"notes.txt: xattr user.DOSATTRIB {dos} only on media",
            'shared: xattr user.added "later" only in the tree',
            "shared: ACL u::rw-,u:1000:rw-,g::r--,m::rw-,o::r-- != u::rw-,u:1000:r--,g::r--,m::rw-,o::r--",
            "project: ACL d:u::rwx,d:u:1000:rwx,d:g::r-x,d:g:100:r-x,d:m::rwx,d:o::r-x"
            " != d:u::rwx,d:u:1000:rwx,d:g::r-x,d:m::rwx,d:o::r-x",
            "noatime: flags A != -",
            "nodump: flags d != ad",
        ]
    )
    document = json.loads(ndmptools("--json", "restore", "-C", "-f", image, "-D", str(tree)).stdout)
    found = {(d["path"], d["kind"], d["media"], d["tree"]) for d in document["differences"]}
    assert ("notes.txt", "xattr", 'user.comment="hello"', 'user.comment="goodbye"') in found
    assert ("shared", "xattr", None, 'user.added="later"') in found
    assert ("noatime", "flags", "A", "") in found
    assert (
        "shared",
        "acl",
        "u::rw-,u:1000:rw-,g::r--,m::rw-,o::r--",
        "u::rw-,u:1000:r--,g::r--,m::rw-,o::r--",
    ) in found
    assert all(set(d) == {"path", "kind", "media", "tree"} for d in document["differences"])
    assert document["counts"]["by_kind"] == {"acl": 2, "flags": 2, "xattr": 3}


def test_values_are_escaped_and_cut():
    assert xattr_value_text(b'say "hi"\n\0') == '"say \\"hi\\"\\n\\0"'
    assert xattr_value_text(b"\xff\x00") == "0xff00"
    assert xattr_value_text(b"") == '""'
    shown = xattr_value_text(b"a" * 1000)
    assert shown.startswith('"' + "a" * 64 + '"... (1,000 bytes, crc32 ')
    assert xattr_value_text(b"a" * 999 + b"b") != shown  # a difference past the cut still shows
    value = bytes.fromhex("0200000001000600ffffffff02000600e803000004000400ffffffff10000600ffffffff")
    assert [e.tag for e in parse_acl(value)] == [1, 2, 4, 16]
    assert acl_text(value) == "u::rw-,u:1000:rw-,g::r--,m::rw-"
    assert acl_text(value, default=True) == "d:u::rw-,d:u:1000:rw-,d:g::r--,d:m::rw-"
    assert acl_text(b"\x01\x00") == "0x0100"  # not an ACL: its bytes


def test_a_file_system_without_extended_attributes_has_none(dressed, tmp_path):
    # ramfs keeps none and lists none, and has no flags: everything the media holds is missing there,
    # but for the flags that say how ext4 stored the files (extents), which a restore does not set.
    tree, image = dressed
    mnt = tmp_path / "ramfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "none", str(mnt)], check=True)
    try:
        copy = mnt / "t"
        shutil.copytree(tree, copy, symlinks=True)  # copy2: data, mode, times (the attributes fail quietly)
        os.utime(copy, ns=(os.stat(tree).st_atime_ns, os.stat(tree).st_mtime_ns))
        pairs, _, run, _ = compare(image, str(copy))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert run.stats.warnings == []
    assert sorted(pairs) == sorted(
        [
            *[("notes.txt", "xattr")] * 4,
            ("secret", "xattr"),
            ("shared", "acl"),
            ("project", "acl"),
            ("project", "acl"),
            ("project", "xattr"),
            ("project/inherited", "acl"),
            ("link", "xattr"),
            ("noatime", "flags"),
            ("nodump", "flags"),
            ("frozen", "flags"),
        ]
    )


def test_without_cap_sys_admin_trusted_attributes_are_not_compared(dressed):
    # An ordinary user lists no trusted.* in the tree: those on media are not differences for it.
    tree, image = dressed
    os.chmod(os.path.dirname(image), 0o755)
    os.chmod(image, 0o644)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    args = [sys.executable, "-m", "ndmptools", "restore", "-C", "-f", image, "-D", str(tree)]
    done = subprocess.run([*nobody, *args], capture_output=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, b""), done.stderr
    _value_changed(tree)
    _trusted_removed(tree)
    done = subprocess.run([*nobody, *args], capture_output=True, timeout=60)
    assert (done.returncode, done.stdout) == (11, b'notes.txt: xattr user.comment "hello" != "goodbye"\n')


def test_no_getxattr_where_neither_side_has_attributes(tmp_path, monkeypatch):
    tree = tmp_path / "plain"
    tree.mkdir()
    for i in range(20):
        (tree / f"f{i}").write_bytes(b"x")
    os.symlink("f0", tree / "link")
    image = str(tmp_path / "d")
    dump(str(tree), image)
    calls = {"listxattr": 0, "getxattr": 0}
    for name in calls:
        real = getattr(os, name)

        def counted(*args, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(*args, **kw)

        monkeypatch.setattr(compare_module.os, name, counted)
    pairs, _, _, result = compare(image, str(tree))
    assert pairs == [] and result.compared == 22
    assert calls == {"listxattr": 22, "getxattr": 0}


@pytest.mark.debian
def test_debian_restore_agrees(dressed, tmp_path):
    # Each file's attributes fit one area, as Linux restore -C needs to count them right.
    tree, image = dressed
    assert _debian_compare(image, str(tree), str(tmp_path)) == (0, set())
    _value_changed(tree)
    _acl_entry_changed(tree)
    _trusted_removed(tree)
    _symlink_attribute_changed(tree)
    _flag_dropped(tree)
    _directory_attribute_changed(tree)
    code, named = _debian_compare(image, str(tree), str(tmp_path))
    ours = {path for path, _ in compare(image, str(tree))[0]}
    assert code != 0
    assert ours == {"notes.txt", "shared", "secret", "link", "noatime", "project"}
    assert named == ours


@pytest.mark.debian
def test_a_debian_dump_of_the_tree_has_its_attributes(dressed, tmp_path):
    # mke2fs -d copies attributes and ACLs into the image Debian's dump reads, but not the flags.
    tree, _ = dressed
    image = debian_dump_of(str(tree), str(tmp_path), size="32M")
    pairs, _, run, _ = compare(image, str(tree))
    assert run.stats.warnings == []
    assert set(pairs) - {(".", "mtime")} == {
        ("lost+found", "only-on-media"),
        ("frozen", "flags"),
        ("noatime", "flags"),
        ("nodump", "flags"),
    }


@pytest.mark.debian
def test_inline_data_is_no_attribute(tmp_path):
    # On an ext4 with inline_data a small directory keeps its entries in the inode, under the entry
    # system.data, which Linux dump copies with the inode's attributes: nothing to compare.
    tree = tmp_path / "tree"
    (tree / "small").mkdir(parents=True)
    os.setxattr(tree / "small", "user.kept", b"yes")
    image = tmp_path / "fs.img"
    subprocess.run(
        [
            "mke2fs",
            "-q",
            "-F",
            "-t",
            "ext4",
            "-O",
            "inline_data",
            "-I",
            "256",
            "-d",
            str(tree),
            str(image),
            "8M",
        ],
        check=True,
        capture_output=True,
    )
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True)
    try:
        subprocess.run(
            [DUMP, "-0", "-q", "-f", str(tmp_path / "d"), loop.stdout.strip()],
            check=True,
            capture_output=True,
        )
    finally:
        subprocess.run(["losetup", "-d", loop.stdout.strip()], check=False)
    with open(tmp_path / "d", "rb") as f:
        assert b"data" in f.read()  # the entry is on media
    pairs, _, run, _ = compare(str(tmp_path / "d"), str(tree))
    assert set(pairs) - {(".", "mtime")} == {("lost+found", "only-on-media")}
    assert run.stats.warnings == []
