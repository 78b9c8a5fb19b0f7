"""What the walk leaves out or does not cross: the nodump flag, and file systems mounted below the path.

nodump (chattr +d) is ignored by a level 0 and honoured from level 1 up, as
Linux dump does by default: a changed file with the flag, and all below a
directory with it, stay in the inode map but are not on media, so restore -r
keeps what an earlier level gave them. A mount point below the dumped path
is backed up as a symbolic link to its path in the live tree, from the live
tree as from a snapshot (which shows no mounts). Debian's restore is the
oracle for every image.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ndmptools.engine.fsinfo import mount_points_below
from ndmptools.engine.statx import STATX_ATTR_NODUMP, inode_attributes
from tests.btrfs import btrfs_subvolume
from tests.conftest import StateRun
from tests.debian import restore as debian_restore
from tests.loopfs import ext4

pytestmark = pytest.mark.root


def listing(run: StateRun, image: Path) -> dict[str, str]:
    """path -> type, as our restore -t lists the dump."""
    done = run.ok("restore", "-t", "--json", "-f", str(image))
    return {entry["path"]: entry["type"] for entry in json.loads(done.stdout)}


def debian_listing(image: Path, cwd: Path) -> set[str]:
    done = debian_restore(["-t", "-f", str(image)], cwd=str(cwd))
    assert done.returncode == 0, done.stderr
    return {line.split("\t", 1)[1].removeprefix("./") for line in done.stdout.splitlines() if "\t" in line}


def debian_apply(image: Path, target: Path) -> subprocess.CompletedProcess:
    target.mkdir(exist_ok=True)
    done = debian_restore(["-r", "-y", "-f", str(image)], cwd=str(target))
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def has_nodump(path: Path) -> bool:
    return bool(inode_attributes(str(path)) & STATX_ATTR_NODUMP)


def test_the_mount_table_is_read_with_its_escapes_and_only_below_the_path(tmp_path):
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "30 22 7:0 / /src rw - ext4 /dev/loop0 rw\n"
        "31 30 7:1 / /src/with\\040space rw - ext4 /dev/loop1 rw\n"
        "32 31 0:40 / /src/with\\040space/deeper rw - tmpfs tmpfs rw\n"
        "33 22 0:41 / /src-other rw - tmpfs tmpfs rw\n"
        "34 30 0:42 / /src/tab\\011and\\134backslash rw - tmpfs tmpfs rw\n"
    )
    assert mount_points_below("/src", str(table)) == [
        "/src/tab\tand\\backslash",
        "/src/with space",
        "/src/with space/deeper",
    ]
    assert mount_points_below("/", str(table)) == [
        "/src",
        "/src-other",
        "/src/tab\tand\\backslash",
        "/src/with space",
        "/src/with space/deeper",
    ]


def test_nodump_is_dumped_at_level_0_and_left_out_from_level_1(tmp_path, ndmptools):
    run = StateRun(tmp_path, ndmptools)
    with ext4(tmp_path, "32M") as fs:
        tree = fs / "tree"
        (tree / "keep").mkdir(parents=True)
        (tree / "nd" / "sub").mkdir(parents=True)
        (tree / "keep" / "plain").write_bytes(b"plain 1\n")
        (tree / "keep" / "nodump-file").write_bytes(b"nodump 1\n")
        (tree / "keep" / "linked").write_bytes(b"linked 1\n")
        os.link(tree / "keep" / "linked", tree / "nd" / "linked-too")  # one name below a nodump directory
        (tree / "nd" / "file").write_bytes(b"below nodump 1\n")
        (tree / "nd" / "sub" / "old").write_bytes(b"deep below nodump\n")
        subprocess.run(["chattr", "+d", str(tree / "nd"), str(tree / "keep" / "nodump-file")], check=True)
        dump = ("dump", "--json", "--snapshot-provider", "none")

        image0 = tmp_path / "level0"
        result = json.loads(run.ok(*dump, "-f", str(image0), str(tree)).stdout)
        assert result["nodump"] == {"files": 0, "directories": 0}
        everything = {
            "keep/plain",
            "keep/nodump-file",
            "keep/linked",
            "nd",
            "nd/file",
            "nd/sub",
            "nd/sub/old",
        }
        assert everything <= set(listing(run, image0))  # a level 0 ignores the flag
        assert everything <= debian_listing(image0, tmp_path)

        time.sleep(1.05)  # the next dump's date is a second later
        (tree / "keep" / "plain").write_bytes(b"plain 2\n")
        (tree / "keep" / "nodump-file").write_bytes(b"nodump 2\n")
        (tree / "keep" / "linked").write_bytes(b"linked 2\n")
        (tree / "nd" / "file").write_bytes(b"below nodump 2\n")
        (tree / "nd" / "sub" / "new").write_bytes(b"made below nodump after the level 0\n")
        assert not has_nodump(tree / "nd" / "sub" / "new")  # excluded by inheritance, not by its own flag
        (tree / "keep" / "new-nodump").write_bytes(b"new, with the flag\n")
        subprocess.run(["chattr", "+d", str(tree / "keep" / "new-nodump")], check=True)

        image1 = tmp_path / "level1"
        done = run(*dump, "-level", "1", "-f", str(image1), str(tree))
        assert done.returncode == 0, done.stderr  # a note, not a warning
        result = json.loads(done.stdout)
        assert result["nodump"] == {"files": 3, "directories": 1}
        assert (
            b"note: left out for the nodump flag (chattr +d): 3 changed files and 1 directory" in done.stderr
        )
        listed = listing(run, image1)
        assert "keep/plain" in listed
        left_out = {"keep/nodump-file", "keep/new-nodump", "keep/linked", "nd", "nd/file", "nd/sub/new"}
        assert not left_out & set(listed)
        debian = debian_listing(image1, tmp_path)
        assert "keep/plain" in debian and not left_out & debian

    # restore -r of both levels: the entries left out keep what the level 0 gave them.
    def check(target: Path) -> None:
        assert (target / "keep" / "plain").read_bytes() == b"plain 2\n"
        assert (target / "keep" / "nodump-file").read_bytes() == b"nodump 1\n"
        assert (target / "keep" / "linked").read_bytes() == b"linked 1\n"
        assert os.stat(target / "keep" / "linked").st_ino == os.stat(target / "nd" / "linked-too").st_ino
        assert (target / "nd" / "file").read_bytes() == b"below nodump 1\n"
        assert (target / "nd" / "sub" / "old").read_bytes() == b"deep below nodump\n"
        assert not (target / "nd" / "sub" / "new").exists()
        assert not (target / "keep" / "new-nodump").exists()

    ours = tmp_path / "ours"
    run.ok("restore", "-q", "-r", "-f", str(image0), "-D", str(ours))
    done = run("restore", "-r", "-f", str(image1), "-D", str(ours))
    assert done.returncode == 0, done.stderr
    assert b"note: new since the dump before, left out of this one (nodump), so not restored: " in done.stderr
    assert b"keep/new-nodump" in done.stderr
    check(ours)
    debian = tmp_path / "debian"
    debian_apply(image0, debian)
    debian_apply(image1, debian)
    check(debian)


def mounted_source(tmp_path: Path):
    """A tree with a small ext4 mounted at ``sub/mnt`` and a file bind-mounted over ``bound``."""
    tree = tmp_path / "tree"
    (tree / "sub" / "mnt").mkdir(parents=True)
    (tree / "sub" / "file").write_bytes(b"on the dumped file system\n")
    (tree / "bound").write_bytes(b"under the bind mount\n")
    return tree


def bind_file(source: Path, over: Path) -> None:
    subprocess.run(["mount", "--bind", str(source), str(over)], check=True)


def test_a_mounted_file_system_is_backed_up_as_a_link_to_its_path(tmp_path, ndmptools):
    run = StateRun(tmp_path, ndmptools)
    tree = mounted_source(tmp_path)
    (tmp_path / "elsewhere").write_bytes(b"bind-mounted from elsewhere\n")
    image = tmp_path / "live.dump"
    with ext4(tmp_path, "16M", name="inner") as inner:
        (inner / "secret").write_bytes(b"inside the mounted file system\n")
        subprocess.run(["mount", "--bind", str(inner), str(tree / "sub" / "mnt")], check=True)
        bind_file(tmp_path / "elsewhere", tree / "bound")
        try:
            done = run("dump", "--json", "--snapshot-provider", "none", "-f", str(image), str(tree))
        finally:
            subprocess.run(["umount", str(tree / "bound")], check=True)
        try:
            # The link stands for the mount point: restore -C finds no difference there.
            compared = run("restore", "-C", "-f", str(image), "-D", str(tree))
        finally:
            subprocess.run(["umount", str(tree / "sub" / "mnt")], check=True)
    assert done.returncode == 0, done.stderr
    # Only the file the bind mount stood on differs (it is left out of the dump), not the link.
    assert compared.stdout == b"bound: only in the tree\n", compared.stdout + compared.stderr
    link = str(tree / "sub" / "mnt")
    assert json.loads(done.stdout)["mount_links"] == [link]
    assert f"backed up as symbolic links to their paths: {link}".encode() in done.stderr
    data = image.read_bytes()
    assert b"inside the mounted" not in data and b"secret" not in data and b"bind-mounted" not in data
    ours = listing(run, image)
    assert ours["sub/mnt"] == "symlink" and "bound" not in ours
    assert not any(path.startswith("sub/mnt/") for path in ours)
    assert debian_listing(image, tmp_path) == {".", "sub", "sub/file", "sub/mnt"}

    restored = tmp_path / "restored"
    run.ok("restore", "-q", "-f", str(image), "-D", str(restored))
    assert os.readlink(restored / "sub" / "mnt") == link
    debian = tmp_path / "debian"
    debian.mkdir()
    done = debian_restore(["-x", "-a", "-y", "-f", str(image)], cwd=str(debian))
    assert done.returncode == 0, done.stderr
    assert os.readlink(debian / "sub" / "mnt") == link
    assert (debian / "sub" / "file").read_bytes() == b"on the dumped file system\n"


def test_from_a_btrfs_snapshot_the_link_names_the_live_path(tmp_path, ndmptools):
    run = StateRun(tmp_path, ndmptools)
    image = tmp_path / "snapshot.dump"
    (tmp_path / "elsewhere").write_bytes(b"bind-mounted from elsewhere\n")
    with btrfs_subvolume(tmp_path) as volume:
        tree = mounted_source(volume)
        mount_point = tree / "sub" / "with space"  # mountinfo writes it as with\040space
        mount_point.mkdir()
        with ext4(tmp_path, "16M", name="inner") as inner:
            (inner / "secret").write_bytes(b"inside the mounted file system\n")
            subprocess.run(["mount", "--bind", str(inner), str(mount_point)], check=True)
            bind_file(tmp_path / "elsewhere", tree / "bound")
            try:
                done = run("dump", "--json", "-f", str(image), str(tree))
            finally:
                subprocess.run(["umount", str(tree / "bound")], check=True)
                subprocess.run(["umount", str(mount_point)], check=True)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["snapshot"].startswith("snapshot_for_backup.")  # read from a snapshot, not live
        assert result["mount_links"] == [str(mount_point)]
    data = image.read_bytes()
    assert b"inside the mounted" not in data and b"under the bind mount" not in data
    ours = listing(run, image)
    assert ours["sub/with space"] == "symlink" and "bound" not in ours
    assert debian_listing(image, tmp_path) == {".", "sub", "sub/file", "sub/mnt", "sub/with space"}
    restored = tmp_path / "restored"
    run.ok("restore", "-q", "-f", str(image), "-D", str(restored))
    assert os.readlink(restored / "sub" / "with space") == str(mount_point)  # not the snapshot's path
    debian = tmp_path / "debian"
    debian.mkdir()
    assert debian_restore(["-x", "-a", "-y", "-f", str(image)], cwd=str(debian)).returncode == 0
    assert os.readlink(debian / "sub" / "with space") == str(mount_point)


def test_a_mount_that_comes_and_goes_along_a_chain(tmp_path, ndmptools):
    """Mounted after the level 0: a new link; unmounted again: the directory under it comes back."""
    run = StateRun(tmp_path, ndmptools)
    tree = mounted_source(tmp_path)
    (tree / "sub" / "mnt" / "under").write_bytes(b"hidden while mounted\n")
    images = []

    def dump(level: int) -> dict[str, str]:
        time.sleep(1.05)
        images.append(tmp_path / f"level{level}")
        run.ok(
            "dump",
            "-q",
            "--snapshot-provider",
            "none",
            "-level",
            str(level),
            "-f",
            str(images[-1]),
            str(tree),
        )
        return listing(run, images[-1])

    assert dump(0)["sub/mnt/under"] == "file"
    with ext4(tmp_path, "16M", name="inner") as inner:
        subprocess.run(["mount", "--bind", str(inner), str(tree / "sub" / "mnt")], check=True)
        try:
            assert dump(1)["sub/mnt"] == "symlink"  # new since the base, its directory with it
        finally:
            subprocess.run(["umount", str(tree / "sub" / "mnt")], check=True)
    assert dump(2)["sub/mnt/under"] == "file"  # back, though its times are older than the base

    ours, debian = tmp_path / "ours", tmp_path / "debian"
    for number, image in enumerate(images):
        run.ok("restore", "-q", "-r", "-f", str(image), "-D", str(ours))
        debian_apply(image, debian)
        for target in (ours, debian):
            if number == 1:
                assert os.readlink(target / "sub" / "mnt") == str(tree / "sub" / "mnt")
            else:
                assert not (target / "sub" / "mnt").is_symlink()
                assert (target / "sub" / "mnt" / "under").read_bytes() == b"hidden while mounted\n"
            assert (target / "sub" / "file").read_bytes() == b"on the dumped file system\n"


def test_a_restart_keeps_the_mount_points_its_dump_saw(tmp_path, ndmptools):
    from tests.test_restart import _cli, _killed_dump, _the_one_context

    state = tmp_path / "state"
    image0, image1 = tmp_path / "vol001", tmp_path / "vol002"
    with btrfs_subvolume(tmp_path) as volume:
        tree = mounted_source(volume)
        (tree / "sub" / "big").write_bytes(os.urandom(400_000))  # pass IV takes many records
        with ext4(tmp_path, "16M", name="inner") as inner:
            subprocess.run(["mount", "--bind", str(inner), str(tree / "sub" / "mnt")], check=True)
            try:
                killed = _killed_dump(
                    state, 40, False, "-b", "4", "--checkpoint-interval", "0", "-f", str(image0), str(tree)
                )
            finally:
                subprocess.run(["umount", str(tree / "sub" / "mnt")], check=True)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        context = _the_one_context(state)["context_id"]
        restarted = _cli(
            state, "dump", "--json", "--restart", context, "-f", str(image1)
        )  # nothing mounted now
        assert restarted.returncode == 0, restarted.stderr
        assert json.loads(restarted.stdout)["mount_links"] == [str(tree / "sub" / "mnt")]
    restored = tmp_path / "restored"
    ndmptools.ok("restore", "-f", str(image0), "-f", str(image1), "-D", str(restored))
    assert os.readlink(restored / "sub" / "mnt") == str(tree / "sub" / "mnt")
    assert len((restored / "sub" / "big").read_bytes()) == 400_000
