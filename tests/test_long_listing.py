"""`restore -t --long`: mode, owner, times, chattr flags, ACLs and Samba's DOS attributes.

A tree as a Samba share leaves it (user.DOSATTRIB in the forms Samba 3.0,
4.0-4.8 and today write, alternate data streams in user.DosStream.*, POSIX
ACLs, chattr +i/+a/+A, a foreign owner) is dumped with its file history,
then listed from the media and from the catalog, each field checked against
the tree itself (lstat, statx's birth time); a catalog written before it kept
birth times still lists, and a DOSATTRIB of garbage lists as unreadable.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import struct
import subprocess
import time

import pytest

from ndmptools.engine.statx import birth_time_ns
from tests.conftest import StateRun
from tests.debian import debian_dump_of
from tests.test_dosattrib import NEW_YEAR_NS, NEW_YEAR_NTTIME, samba3_string, version3, version5

pytestmark = pytest.mark.root  # chattr +i, foreign owners


@pytest.fixture
def share(tmp_path):
    """The tree; its immutable and append-only files are made ordinary again afterwards."""
    src = tmp_path / "src"
    docs = src / "docs"
    docs.mkdir(parents=True)
    report, old, noatime, garbage, plain = (
        docs / "report.txt",
        docs / "old.doc",
        src / "noatime.bin",
        src / "garbage",
        src / "plain",
    )
    for path, data in (
        (report, b"quarterly\n"),
        (old, b"x" * 3000),
        (noatime, b"n"),
        (garbage, b""),
        (plain, b"p"),
    ):
        path.write_bytes(data)
    os.symlink("plain", src / "link")
    os.setxattr(docs, "user.DOSATTRIB", version5(0x10, NEW_YEAR_NTTIME))  # a directory, as Samba writes today
    os.setxattr(report, "user.DOSATTRIB", samba3_string(0x21))  # read-only, archive
    os.setxattr(report, "user.DosStream.x:$DATA", b"stream data\0")
    os.setxattr(report, "user.DosStream.Zone.Identifier:$DATA", b"[ZoneTransfer]\r\nZoneId=3\r\n\0")
    os.setxattr(old, "user.DOSATTRIB", version3(0x22, NEW_YEAR_NTTIME))  # hidden, archive
    os.setxattr(garbage, "user.DOSATTRIB", b"\xff\xfe\x00\x07\x07junk")
    subprocess.run(["setfacl", "-d", "-m", "u:1234:rx", str(docs)], check=True)
    subprocess.run(["setfacl", "-m", "u:1234:r", str(report)], check=True)
    os.chown(old, 4321, 8765)
    subprocess.run(["chattr", "+i", str(report)], check=True)
    subprocess.run(["chattr", "+a", str(old)], check=True)
    subprocess.run(["chattr", "+A", str(noatime)], check=True)
    try:
        yield src
    finally:
        subprocess.run(["chattr", "-i", "-a", str(report), str(old)], check=True)


@pytest.fixture
def dumped(share, tmp_path, ndmptools):
    run = StateRun(tmp_path, ndmptools)
    run.ok("dump", "-f", str(tmp_path / "d0"), str(share))
    return run, str(tmp_path / "d0"), share


def _by_path(entries: list[dict]) -> dict[str, dict]:
    return {e["path"]: e for e in entries}


def _when(ns: int) -> list[str]:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ns // 10**9)).split()


def _user(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


ACLS = {"docs", "docs/report.txt"}
FLAGS = {"docs/report.txt": "i", "docs/old.doc": "a", "noatime.bin": "A"}


def test_the_media_list_mode_owner_times_flags_acls_dos_attributes_and_streams(dumped):
    run, dump, src = dumped
    entries = _by_path(run.json("restore", "-t", "--long", "-f", dump))
    assert set(entries) == {
        ".",
        "docs",
        "docs/report.txt",
        "docs/old.doc",
        "noatime.bin",
        "garbage",
        "plain",
        "link",
    }
    for path, entry in entries.items():
        st = os.lstat(src / path)
        assert entry["mode"] == st.st_mode, path
        assert entry["ls_mode"] == stat.filemode(st.st_mode) + ("+" if path in ACLS else ""), path
        shown_by_ls = subprocess.run(["ls", "-ld", str(src / path)], capture_output=True, check=True)
        assert entry["ls_mode"] == shown_by_ls.stdout.decode().split()[0], path  # ls itself agrees
        assert entry["acl"] is (path in ACLS), path
        assert (entry["uid"], entry["gid"], entry["user"]) == (st.st_uid, st.st_gid, _user(st.st_uid)), path
        assert entry["mtime_ns"] == st.st_mtime_ns and entry["mtime"] == st.st_mtime_ns // 10**9, path
        assert entry["birth_ns"] == birth_time_ns(str(src / path)) is not None, path
        if entry["type"] != "symlink":  # a symlink's flags are not read (it cannot be opened)
            assert entry["flag_letters"] == FLAGS.get(path, ""), path
    assert entries["docs/old.doc"]["uid"] == 4321 and entries["docs/old.doc"]["gid"] == 8765

    report, old, docs = entries["docs/report.txt"], entries["docs/old.doc"], entries["docs"]
    assert report["dos"] == {
        "attributes": 0x21,
        "letters": "RA",
        "create_time_ns": None,
        "version": None,
        "problem": None,
    }
    assert (old["dos"]["letters"], old["dos"]["version"], old["dos"]["create_time_ns"]) == (
        "HA",
        3,
        NEW_YEAR_NS,
    )
    assert (docs["dos"]["letters"], docs["dos"]["version"], docs["dos"]["create_time_ns"]) == (
        "D",
        5,
        NEW_YEAR_NS,
    )
    assert entries["garbage"]["dos"]["attributes"] is None and entries["garbage"]["dos"]["problem"]
    assert entries["plain"]["dos"] is None and entries["plain"]["streams"] == 0
    assert report["streams"] == 2 and old["streams"] == 0

    # The text form: one column each, blank where there is nothing to say.
    lines = run.ok("restore", "-t", "-l", "-f", dump).stdout.decode().splitlines()
    assert lines[0].split() == [
        "INODE",
        "TYPE",
        "MODE",
        "UID",
        "GID",
        "SIZE",
        "MTIME",
        "BIRTH",
        "FLAGS",
        "DOS",
        "STREAMS",
        "PATH",
    ]
    shown = {line.split()[-1]: line.split() for line in lines[1:]}
    st = os.lstat(src / "docs" / "report.txt")
    assert shown["docs/report.txt"] == [
        str(report["inode"]),
        "file",
        stat.filemode(st.st_mode) + "+",
        "0",
        "0",
        str(st.st_size),
        *_when(st.st_mtime_ns),
        *_when(report["birth_ns"]),
        "i",
        "RA",
        "2",
        "docs/report.txt",
    ]
    plain = entries["plain"]
    assert shown["plain"] == [
        str(plain["inode"]),
        "file",
        plain["ls_mode"],
        "0",
        "0",
        "1",
        *_when(plain["mtime_ns"]),
        *_when(plain["birth_ns"]),
        "plain",
    ]
    assert shown["garbage"][-2] == "?"  # unreadable, and the listing goes on

    # Under a PATH: the directories' attributes too.
    some = _by_path(run.json("restore", "-t", "--long", "-f", dump, "docs"))
    assert set(some) == {".", "docs", "docs/report.txt", "docs/old.doc"} and some["docs"]["acl"] is True


def test_the_catalog_lists_what_it_keeps_and_nothing_of_the_attributes(dumped):
    run, dump, _ = dumped
    media = _by_path(run.json("restore", "-t", "--long", "-f", dump))
    catalog = _by_path(run.json("restore", "-t", "--catalog", "--long", "-f", dump))
    assert set(catalog) == set(media)
    kept = ("mode", "uid", "gid", "user", "group", "mtime", "mtime_ns", "birth_ns", "flags", "flag_letters")
    for path, entry in catalog.items():
        assert {k: entry[k] for k in kept} == {k: media[path][k] for k in kept}, path
        assert entry["acl"] is entry["dos"] is entry["streams"] is None, path
        assert entry["ls_mode"] == stat.filemode(entry["mode"]), path  # no + : the catalog does not know
        assert entry["volume"] == 1 and entry["record"] >= 0
    lines = run.ok("restore", "-t", "--catalog", "--long", "-f", dump).stdout.decode().splitlines()
    assert lines[0].split()[-2:] == ["PLACE", "PATH"]
    report = next(line.split() for line in lines if line.endswith(" docs/report.txt"))
    assert report[-3] == "i" and report[-2].startswith("1:1:")


def test_without_long_the_listing_is_as_it_was(dumped):
    run, dump, _ = dumped
    media = run.json("restore", "-t", "-f", dump)
    catalog = run.json("restore", "-t", "--catalog", "-f", dump)
    assert all(set(e) == {"path", "inode", "type", "size"} for e in media)
    assert all(
        set(e) == {"path", "inode", "type", "size", "mtime", "volume", "file", "record"} for e in catalog
    )
    text = run.ok("restore", "-t", "-f", dump).stdout.decode().splitlines()
    assert all(len(line.split()) == 4 for line in text) and "INODE" not in text[0]
    refused = run("restore", "--long", "-f", dump, "-D", "/nonexistent")
    assert refused.returncode == 2 and b"--long goes with -t" in refused.stderr


def test_a_catalog_without_birth_times_still_lists_long(dumped):
    """The blobs and rows as ndmptools wrote them before schema 6: no birth time, flags or owner."""
    run, dump, _ = dumped
    new, old = struct.Struct("<IHIqIIqIII"), struct.Struct("<IHIqII")
    for first, blob in run.sql("SELECT first_ino, inodes FROM catalog_inodes"):
        assert blob[:1] == b"N"
        rows = [row[:6] for row in new.iter_unpack(blob[1:])]
        run.sql(
            "UPDATE catalog_inodes SET inodes = ? WHERE first_ino = ?",
            b"n" + b"".join(old.pack(*r) for r in rows),
            first,
        )
    run.sql("UPDATE catalog_dirs SET birth_ns = NULL, flags = NULL, uid = NULL, gid = NULL")
    media = _by_path(run.json("restore", "-t", "--long", "-f", dump))
    catalog = _by_path(run.json("restore", "-t", "--catalog", "--long", "-f", dump))
    assert set(catalog) == set(media)
    for path, entry in catalog.items():
        assert (entry["mode"], entry["size"], entry["mtime_ns"]) == (
            media[path]["mode"],
            media[path]["size"],
            media[path]["mtime_ns"],
        )
        assert entry["birth_ns"] is entry["flags"] is entry["uid"] is entry["user"] is None, path
    text = run.ok("restore", "-t", "--catalog", "-l", "-f", dump).stdout.decode().splitlines()
    assert len(text) == len(catalog) + 1
    plain = json.dumps(run.json("restore", "-t", "--catalog", "-f", dump))
    assert "birth" not in plain


@pytest.mark.debian
def test_a_dump_debian_dump_wrote_lists_its_dos_attributes_acls_and_streams_and_no_birth(tmp_path, ndmptools):
    """Debian's dump keeps the attributes (in ext4's in-inode form) but has no birth time to give."""
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "f").write_bytes(b"x")
    os.setxattr(tree / "f", "user.DOSATTRIB", version5(0x21, NEW_YEAR_NTTIME))
    os.setxattr(tree / "f", "user.DosStream.s:$DATA", b"abc\0")
    os.setxattr(tree / "d", "user.DOSATTRIB", samba3_string(0x12))
    subprocess.run(["setfacl", "-m", "u:1234:r", str(tree / "f")], check=True)
    image = debian_dump_of(str(tree), str(tmp_path), size="16M")
    entries = _by_path(json.loads(ndmptools.ok("--json", "restore", "-t", "--long", "-f", image).stdout))
    f, d = entries["f"], entries["d"]
    mode = stat.filemode(os.lstat(tree / "f").st_mode) + "+"
    assert (f["dos"]["letters"], f["dos"]["create_time_ns"], f["streams"], f["ls_mode"]) == (
        "RA",
        NEW_YEAR_NS,
        1,
        mode,
    )
    assert d["dos"]["letters"] == "HD" and d["acl"] is False
    assert all(e["birth_ns"] is None for e in entries.values())
    text = ndmptools.ok("restore", "-t", "--long", "-f", image).stdout.decode().splitlines()
    line = next(line for line in text if line.endswith(" f")).split()
    assert line == [
        str(f["inode"]),
        "file",
        mode,
        "0",
        "0",
        "1",
        *_when(f["mtime_ns"]),
        "RA",
        "1",
        "f",
    ]
