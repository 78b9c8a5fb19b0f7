"""Full metadata: extended attributes, POSIX ACLs, DOS attributes and streams, flags, project ids.

Checked the way an administrator would: getfattr, getfacl and lsattr on the
source and on what a restore made, with Debian's restore and dump as the
oracle for the format in both directions.
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from tests import debian
from tests.loopfs import ext4, xfs

pytestmark = pytest.mark.root

CAP_V2 = struct.pack("<5I", 0x02000001, 1 << 12, 0, 0, 0)  # cap_net_admin, effective
DOSATTRIB = b"0x21\0"  # read-only, archive: what old Samba writes
STREAM = b"user.DosStream.Zone.Identifier:$DATA"


def _chattr(flags: str, *paths) -> None:
    subprocess.run(["chattr", flags, *map(str, paths)], check=True)


def build_metadata_tree(root: Path) -> Path:
    """A tree with each kind of metadata the issue names (immutable files: see unlock_tree)."""
    root.mkdir()
    f = root / "plain"
    f.write_bytes(b"plain\n")
    os.setxattr(f, "user.comment", b"hello")
    os.setxattr(f, "user.binary", bytes(range(256)))
    os.setxattr(f, "trusted.secret", b"t")
    acl = root / "with-acl"
    acl.write_bytes(b"acl\n")
    subprocess.run(["setfacl", "-m", "u:1000:rw,g:50:r", str(acl)], check=True)
    cap = root / "with-cap"
    cap.write_bytes(b"#!/bin/sh\n")
    os.chown(cap, 1000, 1000)
    os.chmod(cap, 0o755)
    os.setxattr(cap, "security.capability", CAP_V2)  # chown drops it: a restore must set it after
    shared = root / "shared"
    shared.mkdir()
    subprocess.run(
        ["setfacl", "-m", "u:1001:rwx", "-d", "-m", "u:1001:rwx,g::r-x,o::---", str(shared)], check=True
    )
    inherited = shared / "inherited"
    inherited.write_bytes(b"gets the defaults\n")
    stripped = shared / "mode-only"
    stripped.write_bytes(b"no ACL of its own\n")
    subprocess.run(["setfacl", "-b", str(stripped)], check=True)
    os.chmod(stripped, 0o640)
    dos = root / "samba.docx"
    dos.write_bytes(b"PK\3\4")
    os.setxattr(dos, "user.DOSATTRIB", DOSATTRIB)
    os.setxattr(dos, STREAM, b"[ZoneTransfer]\r\nZoneId=3\r\n\0")
    link = root / "link"
    link.symlink_to("plain")
    os.setxattr(link, "trusted.link", b"on the link itself", follow_symlinks=False)
    fifo = root / "fifo"
    os.mkfifo(fifo, 0o640)
    subprocess.run(["setfacl", "-m", "u:1000:r", str(fifo)], check=True)
    (root / "locked").write_bytes(b"immutable\n")
    os.link(root / "locked", root / "locked-too")
    (root / "log").write_bytes(b"append only\n")
    (root / "quiet").write_bytes(b"noatime\n")
    (root / "skipped").mkdir()
    (root / "skipped" / "inside").write_bytes(b"nodump dir\n")
    _chattr("+i", root / "locked")
    _chattr("+a", root / "log")
    _chattr("+A", root / "quiet")
    _chattr("+d", root / "skipped")
    return root


def unlock_tree(root: Path) -> None:
    """Take off what would keep the test's directory from being removed."""
    for name in ("locked", "log"):
        if (root / name).exists():
            subprocess.run(["chattr", "-i", "-a", str(root / name)], check=False)


def _records(output: str) -> dict[str, list[str]]:
    """getfattr/getfacl output: each '# file:' block's lines, by path."""
    found: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("# file: "):
            current = line[len("# file: ") :].removeprefix("")
            found[current] = []
        elif current is not None and line and not line.startswith("#"):
            found[current].append(line)
    return {path: sorted(lines) for path, lines in found.items()}


def xattrs_of(root: Path) -> dict[str, list[str]]:
    """Every extended attribute (ACLs included), as `getfattr -R -d -m - -h -e hex` shows them."""
    done = subprocess.run(
        ["getfattr", "-R", "-d", "-m", "-", "-h", "-e", "hex", "."], cwd=root, capture_output=True, text=True
    )
    return _records(done.stdout)


def acls_of(root: Path) -> dict[str, list[str]]:
    done = subprocess.run(["getfacl", "-R", "-P", "-n", "."], cwd=root, capture_output=True, text=True)
    return _records(done.stdout)


def flags_of(root: Path, *names: str) -> dict[str, str]:
    done = subprocess.run(["lsattr", "-d", *names], cwd=root, capture_output=True, text=True, check=True)
    return {line.split()[1]: line.split()[0] for line in done.stdout.splitlines()}


FLAGGED = ("locked", "locked-too", "log", "quiet", "skipped", "plain")


@pytest.fixture
def tree(tmp_path):
    root = build_metadata_tree(tmp_path / "src")
    yield root
    unlock_tree(root)


def _dump(ndmptools, source: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return ndmptools(
        "dump", "-level", "0", "--snapshot-provider", "none", "-f", str(out), *extra, str(source)
    )


def test_every_kind_round_trips(tmp_path, tree, ndmptools):
    out = tmp_path / "meta.dump"
    done = _dump(ndmptools, tree, out)
    assert done.returncode == 0, done.stderr.decode()
    target = tmp_path / "back"
    try:
        done = ndmptools("restore", "-f", str(out), "-D", str(target))
        assert done.returncode == 0, done.stderr.decode()
        assert xattrs_of(target) == xattrs_of(tree)
        assert acls_of(target) == acls_of(tree)
        assert flags_of(target, *FLAGGED) == flags_of(tree, *FLAGGED)
        assert os.getxattr(target / "with-cap", "security.capability") == CAP_V2
        assert os.stat(target / "with-cap").st_uid == 1000
        assert os.stat(target / "locked").st_ino == os.stat(target / "locked-too").st_ino
        assert b"Linux cannot set them" in done.stderr  # birth times: said, not pretended
    finally:
        unlock_tree(target)


def test_the_restore_mark_is_never_on_media(tmp_path, tree, ndmptools):
    (tree / "marked").write_bytes(b"x")
    os.setxattr(tree / "marked", "user.ndmptools.restoring", b"not a real mark")
    out = tmp_path / "m.dump"
    assert _dump(ndmptools, tree, out).returncode == 1  # warned: a mark it cannot read, dumped as it is
    target = tmp_path / "back"
    try:
        ndmptools.ok("restore", "-f", str(out), "-D", str(target))
        assert "user.ndmptools.restoring" not in os.listxattr(target / "marked")
    finally:
        unlock_tree(target)


@pytest.mark.debian
def test_debian_restore_restores_ndmptools_attributes(tmp_path, tree, ndmptools):
    out = tmp_path / "meta.dump"
    _dump(ndmptools, tree, out)
    target = tmp_path / "debian"
    target.mkdir()
    try:
        done = debian.restore(["-x", "-a", "-y", "-f", str(out)], cwd=str(target))
        assert done.returncode == 0, done.stderr
        back, want = xattrs_of(target), xattrs_of(tree)
        back.pop(".", None), want.pop(".", None)
        assert back == want
        assert acls_of(target)["with-acl"] == acls_of(tree)["with-acl"]
        assert acls_of(target)["shared"] == acls_of(tree)["shared"]
        assert flags_of(target, "locked", "log", "quiet") == flags_of(tree, "locked", "log", "quiet")
    finally:
        unlock_tree(target)


@pytest.mark.debian
def test_debian_compare_agrees_with_an_ndmptools_dump(tmp_path, tree, ndmptools):
    """Linux restore -C compares each file's attributes with those on media."""
    out = tmp_path / "meta.dump"
    _dump(ndmptools, tree, out)
    done = debian.restore(["-C", "-D", str(tree), "-f", str(out)], cwd=str(tmp_path))
    assert "EA" not in done.stderr and "EA" not in done.stdout, done.stderr + done.stdout


@pytest.mark.debian
def test_ndmptools_restores_the_attributes_of_a_debian_dump(tmp_path, ndmptools):
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_bytes(b"x\n")
    os.setxattr(source / "f", "user.comment", b"from Debian")
    os.setxattr(source / "f", "trusted.t", b"trusted")
    subprocess.run(["setfacl", "-m", "u:1000:rw,g:50:r", str(source / "f")], check=True)
    (source / "d").mkdir()
    subprocess.run(["setfacl", "-d", "-m", "u:7:rx", str(source / "d")], check=True)
    os.setxattr(source / "d", "user.dir", b"on a directory")
    dumped = debian.debian_dump_of(str(source), str(tmp_path))
    target = tmp_path / "back"
    ndmptools.ok("restore", "-f", dumped, "-D", str(target))
    back, want = xattrs_of(target), xattrs_of(source)
    assert back["f"] == want["f"]
    assert back["d"] == want["d"]
    assert acls_of(target)["f"] == acls_of(source)["f"]
    assert acls_of(target)["d"] == acls_of(source)["d"]


def test_a_1024_entry_acl_and_attributes_past_4_kib(tmp_path, ndmptools):
    """ext4 with ea_inode holds values no attribute block could; each goes to media whole."""
    with ext4(tmp_path, "64M", name="big", features="ea_inode") as fs:
        source = fs / "src"
        source.mkdir()
        f = source / "crowded"
        f.write_bytes(b"many readers\n")
        spec = ",".join(f"u:{20000 + i}:r" for i in range(1019))  # with the 4 unnamed and a group: 1,024
        subprocess.run(["setfacl", "-m", spec + ",g:50:rw", str(f)], check=True)
        assert (len(os.getxattr(f, "system.posix_acl_access")) - 4) // 8 == 1024
        for i in range(3):  # three of nearly 4 KiB (ext4 keeps each in an inode): three areas on media
            os.setxattr(f, f"user.note{i}", bytes([65 + i]) * 4000)
        os.setxattr(f, "user.large", os.urandom(20000))
        (source / "next").write_bytes(b"the file after it on media\n")
        out = tmp_path / "big.dump"
        done = _dump(ndmptools, source, out)
        assert done.returncode == 1, done.stderr.decode()  # finished, with warnings
        warned = done.stderr.decode()
        assert "its ACL of 1024 entries" in warned and "user.large" in warned
        assert "other restorers may refuse it" in warned
        target = fs / "back"
        ndmptools.ok("restore", "--force", "-f", str(out), "-D", str(target))
        assert xattrs_of(target) == xattrs_of(source)
        assert acls_of(target) == acls_of(source)
        # Linux restore 0.4b47 takes the areas of up to 4 KiB, and refuses the larger ones, as warned.
        theirs = fs / "debian"
        theirs.mkdir()
        done = debian.restore(["-x", "-a", "-y", "-f", str(out)], cwd=str(theirs))
        assert "EA size too big" in done.stderr
        names = set(os.listxattr(theirs / "crowded"))
        assert {"user.note0", "user.note1", "user.note2"} <= names
        assert not names & {"user.large", "system.posix_acl_access"}
        assert (theirs / "next").read_bytes() == b"the file after it on media\n"


def test_project_ids_are_restored_at_a_file_system_root_only(tmp_path, ndmptools):
    with xfs(tmp_path, "source") as source:
        (source / "quota").mkdir()
        (source / "quota" / "file").write_bytes(b"counted in project 42\n")
        subprocess.run(
            ["chattr", "-p", "42", str(source / "quota"), str(source / "quota" / "file")], check=True
        )
        out = tmp_path / "p.dump"
        ndmptools.ok("dump", "-level", "0", "--snapshot-provider", "none", "-f", str(out), str(source))
        with xfs(tmp_path, "target") as target:
            ndmptools.ok("restore", "-f", str(out), "-D", str(target))
            shown = subprocess.run(
                ["lsattr", "-p", "-d", "quota", "quota/file"], cwd=target, capture_output=True, text=True
            ).stdout
            assert [line.split()[0] for line in shown.splitlines()] == ["42", "42"]
            below = target / "below"
            done = ndmptools.ok("restore", "-f", str(out), "-D", str(below))
            assert b"not the root of a file system" in done.stderr
            shown = subprocess.run(
                ["lsattr", "-p", "-d", "quota/file"], cwd=below, capture_output=True, text=True
            ).stdout
            assert shown.split()[0] == "0"


def test_a_file_with_mode_bits_only_gets_the_target_defaults(tmp_path, ndmptools):
    source = tmp_path / "src"
    source.mkdir()
    (source / "plain").write_bytes(b"mode bits only\n")
    os.chmod(source / "plain", 0o640)
    (source / "own-acl").write_bytes(b"has its own\n")
    subprocess.run(["setfacl", "-m", "u:1000:rw", str(source / "own-acl")], check=True)
    out = tmp_path / "r.dump"
    _dump(ndmptools, source, out)
    target = tmp_path / "target"
    target.mkdir()
    subprocess.run(["setfacl", "-d", "-m", "u:1234:rwx,g::rwx,o::rwx", str(target)], check=True)
    ndmptools.ok("restore", "-f", str(out), "-D", str(target))
    got = acls_of(target)
    # What a new file of mode 0640 gets under those defaults: the mask and others cut by the mode.
    assert got["plain"] == sorted(
        [
            "user::rw-",
            "user:1234:rwx\t#effective:r--",
            "group::rwx\t#effective:r--",
            "mask::r--",
            "other::---",
        ]
    )
    assert got["own-acl"] == acls_of(source)["own-acl"]


def test_restore_r_carries_attribute_changes_of_an_incremental(tmp_path, ndmptools):
    """A changed attribute moves ctime: the file is on the level 1, with its new attributes."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_bytes(b"same data\n")
    os.setxattr(source / "f", "user.state", b"before")
    (source / "d").mkdir()
    state = str(tmp_path / "state")

    def dump(level: int, out: str) -> None:
        ndmptools.ok(
            "--state-dir", state, "dump", "-level", str(level), "--snapshot-provider", "none",
            "-f", str(tmp_path / out), str(source),
        )  # fmt: skip

    dump(0, "l0")
    os.setxattr(source / "f", "user.state", b"after")
    subprocess.run(["setfacl", "-m", "u:1000:r", str(source / "f")], check=True)
    os.setxattr(source / "d", "user.new", b"on the directory")
    dump(1, "l1")
    target = tmp_path / "target"
    for out in ("l0", "l1"):
        ndmptools.ok(
            "--state-dir", state, "restore", "-q", "-r", "-f", str(tmp_path / out), "-D", str(target)
        )
    back = xattrs_of(target)
    back.pop(".", None)
    assert {k: v for k, v in back.items() if k != "restoresymtable"} == {
        k: v for k, v in xattrs_of(source).items() if k != "."
    }


@pytest.mark.debian
def test_an_nfs4_acl_passes_through_and_blocks_nothing(tmp_path, ndmptools):
    """This kernel has no NFS to read one from, so the dump is made by hand, as a dump of NFS would be.

    An ext4 target cannot hold system.nfs4_acl: ndmptools says so and restores the rest; Linux
    restore, which has no index for it, still sets the other attributes (they come first).
    """
    from tests.craft import DT_REG, craft, directory, regular

    nfs4 = b"\0\0\0\1" + bytes(36)  # one ACE; opaque to everyone but an NFS server
    image = tmp_path / "nfs.dump"
    image.write_bytes(
        craft(
            [directory(2, 2, (3, DT_REG, b"shared.txt")), regular(3, b"from an NFS export\n")],
            attributes={3: [(b"system.nfs4_acl", nfs4), (b"user.origin", b"filer")]},
        )
    )
    target = tmp_path / "ours"
    done = ndmptools("restore", "-f", str(image), "-D", str(target))
    assert done.returncode == 1, done.stderr  # restored, with a warning
    assert b"system.nfs4_acl could not be set" in done.stderr
    assert os.getxattr(target / "shared.txt", "user.origin") == b"filer"
    theirs = tmp_path / "debian"
    theirs.mkdir()
    debian.restore(["-x", "-a", "-y", "-f", str(image)], cwd=str(theirs))
    assert os.getxattr(theirs / "shared.txt", "user.origin") == b"filer"
