"""Dumps from snapshots: btrfs for real on a loop device; LVM and ZFS for real where the kernel can,
and always through a stand-in at the command seam that checks their command lines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from ndmptools.engine.dump import run_dump
from ndmptools.engine.fsinfo import FileSystemInfo
from ndmptools.engine.options import DumpOptions
from ndmptools.engine.progress import RunContext
from ndmptools.engine.treediff import compare_trees
from ndmptools.errors import SnapshotError
from ndmptools.media import open_path
from ndmptools.snapshot import SnapshotNames, choose_provider
from ndmptools.snapshot.base import Commands
from ndmptools.snapshot.lvm import LvmProvider
from ndmptools.snapshot.zfs import ZfsProvider
from tests.btrfs import btrfs_subvolume

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def btrfs(tmp_path_factory):
    """A btrfs file system on a loop device with a subvolume 'vol' to dump."""
    with btrfs_subvolume(tmp_path_factory.mktemp("btrfs")) as vol:
        (vol / "sub").mkdir()
        (vol / "f").write_bytes(b"first\n")
        (vol / "sub" / "g").write_bytes(os.urandom(200_000))
        yield vol


def snapshots_of(vol) -> list[str]:
    container = vol / ".snapshot"
    return sorted(os.listdir(container)) if container.exists() else []


def test_a_dump_takes_a_snapshot_and_removes_it(btrfs, tmp_path, ndmptools):
    state = str(tmp_path / "state")
    done = ndmptools("--state-dir", state, "dump", "--json", "-f", str(tmp_path / "d"), str(btrfs))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["snapshot"] == "snapshot_for_backup.0"
    assert snapshots_of(btrfs) == []
    assert b"live tree" not in done.stderr
    ndmptools.ok("restore", "-f", str(tmp_path / "d"), "-D", str(tmp_path / "r"))
    assert sorted(os.listdir(tmp_path / "r")) == ["f", "sub"]  # not the .snapshot directory
    assert compare_trees(str(btrfs / "sub"), str(tmp_path / "r" / "sub"))[1] == []
    second = ndmptools("--state-dir", state, "dump", "--json", "-f", str(tmp_path / "d2"), str(btrfs / "sub"))
    assert json.loads(second.stdout)["snapshot"] == "snapshot_for_backup.1"  # counting up, a subtree too
    ndmptools.ok("restore", "-f", str(tmp_path / "d2"), "-D", str(tmp_path / "r2"))
    assert os.listdir(tmp_path / "r2") == ["g"]


def test_the_count_starts_again_after_a_reboot(btrfs, tmp_path):
    state = str(tmp_path / "state")
    names = SnapshotNames(state)
    assert [names.reserve() for _ in range(3)] == [f"snapshot_for_backup.{n}" for n in range(3)]
    counter = os.path.join(state, SnapshotNames.FILE)
    with open(counter) as f:
        saved = json.load(f)
    saved["boot_id"] = "a-boot-before-this-one"
    with open(counter, "w") as f:
        json.dump(saved, f)
    assert names.reserve() == "snapshot_for_backup.0"


def test_a_name_left_over_is_skipped(btrfs, tmp_path):
    state = str(tmp_path / "state")
    subprocess.run(
        [
            "btrfs",
            "subvolume",
            "snapshot",
            "-r",
            str(btrfs),
            str(btrfs / ".snapshot" / "snapshot_for_backup.0"),
        ],
        check=True,
        capture_output=True,
    )
    try:
        run = RunContext()
        result = run_dump(
            DumpOptions(path=str(btrfs), file=str(tmp_path / "d"), state_dir=state),
            lambda: open_path(str(tmp_path / "d"), "w"),
            run,
        )
        assert result.snapshot == "snapshot_for_backup.1"
        assert snapshots_of(btrfs) == ["snapshot_for_backup.0"]  # not ours to remove
    finally:
        subprocess.run(
            ["btrfs", "subvolume", "delete", str(btrfs / ".snapshot" / "snapshot_for_backup.0")],
            check=True,
            capture_output=True,
        )


def test_a_named_snapshot_is_used_and_kept(btrfs, tmp_path, ndmptools):
    mine = btrfs / ".snapshot" / "before-change"
    subprocess.run(
        ["btrfs", "subvolume", "snapshot", "-r", str(btrfs), str(mine)], check=True, capture_output=True
    )
    try:
        (btrfs / "f").write_bytes(b"changed after the snapshot\n")
        ndmptools.ok("dump", "--snapshot", "before-change", "-f", str(tmp_path / "d"), str(btrfs))
        assert snapshots_of(btrfs) == ["before-change"]
        ndmptools.ok("restore", "-f", str(tmp_path / "d"), "-D", str(tmp_path / "r"))
        assert (tmp_path / "r" / "f").read_bytes() == b"first\n"
        done = ndmptools("dump", "--snapshot", "no-such", "-f", str(tmp_path / "x"), str(btrfs))
        assert done.returncode == 10 and b"there is no snapshot no-such" in done.stderr
    finally:
        (btrfs / "f").write_bytes(b"first\n")
        subprocess.run(["btrfs", "subvolume", "delete", str(mine)], check=True, capture_output=True)


def _blocked_dump(state: str, fifo, path, *extra: str) -> subprocess.Popen:
    """A dump that has taken its snapshot and mapped the tree, and waits for someone to read its output."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ndmptools",
            "--state-dir",
            state,
            "dump",
            "--json",
            *extra,
            "-f",
            str(fifo),
            str(path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _drain(fifo, into) -> threading.Thread:
    def read() -> None:
        with open(fifo, "rb") as source, open(into, "wb") as sink:
            shutil.copyfileobj(source, sink)

    thread = threading.Thread(target=read)
    thread.start()
    return thread


def _wait_for_snapshots(vol, count: int) -> list[str]:
    for _ in range(100):
        found = snapshots_of(vol)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"expected {count} snapshots, found {snapshots_of(vol)}")


def test_two_dumps_at_once_get_two_snapshots(btrfs, tmp_path):
    state = str(tmp_path / "state")
    fifos = [tmp_path / "one", tmp_path / "two"]
    for fifo in fifos:
        os.mkfifo(fifo)
    dumps = [_blocked_dump(state, fifo, btrfs, "--no-update") for fifo in fifos]
    assert _wait_for_snapshots(btrfs, 2) == ["snapshot_for_backup.0", "snapshot_for_backup.1"]
    readers = [_drain(fifo, tmp_path / f"{fifo.name}.dump") for fifo in fifos]
    results = [json.loads(d.communicate(timeout=60)[0]) for d in dumps]
    for reader in readers:
        reader.join()
    assert sorted(r["snapshot"] for r in results) == ["snapshot_for_backup.0", "snapshot_for_backup.1"]
    assert snapshots_of(btrfs) == []


def test_an_incremental_catches_a_file_written_during_the_previous_dump(btrfs, tmp_path, ndmptools):
    state = str(tmp_path / "state")
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    level0 = _blocked_dump(state, fifo, btrfs)
    _wait_for_snapshots(btrfs, 1)
    (btrfs / "written-during-the-dump").write_bytes(b"after the snapshot\n")  # the dump is still running
    reader = _drain(fifo, tmp_path / "level0")
    assert level0.wait(timeout=60) == 0
    reader.join()
    listing0 = ndmptools.ok("restore", "-t", "--json", "-f", str(tmp_path / "level0")).stdout
    assert "written-during-the-dump" not in {e["path"] for e in json.loads(listing0)}
    ndmptools.ok("--state-dir", state, "dump", "-level", "1", "-f", str(tmp_path / "level1"), str(btrfs))
    listing1 = ndmptools.ok("restore", "-t", "--json", "-f", str(tmp_path / "level1")).stdout
    assert "written-during-the-dump" in {e["path"] for e in json.loads(listing1)}
    os.unlink(btrfs / "written-during-the-dump")


def test_a_failed_dump_leaves_no_snapshot(btrfs, tmp_path, ndmptools):
    done = ndmptools("dump", "-f", "/proc/cannot-write-here", str(btrfs))
    assert done.returncode == 5
    assert snapshots_of(btrfs) == []


def test_a_snapshot_that_cannot_be_made_is_one_line_and_leaves_nothing(btrfs, tmp_path, ndmptools):
    container = btrfs / ".snapshot"
    if container.exists():
        container.rmdir()
    container.write_bytes(b"a file where the snapshots would go")
    try:
        done = ndmptools("dump", "-f", str(tmp_path / "d"), str(btrfs))
        assert done.returncode == 10
        assert done.stderr.decode().strip().startswith("ndmptools: error: cannot make")
        assert not (tmp_path / "d").exists()
    finally:
        container.unlink()


def test_a_provider_that_cannot_snapshot_the_path_is_refused(tmp_path, ndmptools, small_tree):
    done = ndmptools("dump", "--snapshot-provider", "btrfs", "-f", str(tmp_path / "d"), small_tree)
    assert done.returncode == 10
    assert b"which the btrfs provider cannot snapshot" in done.stderr


def test_the_live_tree_reports_what_changes_while_it_is_read(tmp_path):
    tree = tmp_path / "live"
    tree.mkdir()
    (tree / "growing").write_bytes(b"x" * (4 << 20))
    run = RunContext()
    image = str(tmp_path / "d")

    def output():
        """The real file medium; each record it writes is followed by a write to the live file."""
        medium = open_path(image, "w")
        write = medium.write_record

        def write_and_grow(record):
            write(record)
            with open(tree / "growing", "ab") as f:
                f.write(b"y" * 512)

        medium.write_record = write_and_grow
        return medium

    result = run_dump(
        DumpOptions(path=str(tree), file=image, snapshot_provider="none", update=False), output, run
    )
    assert any("growing changed while it was being dumped" in w for w in run.stats.warnings), (
        run.stats.warnings
    )
    assert run.stats.notes and "live tree" in run.stats.notes[0]
    assert result.snapshot == "(the live tree)"


# -- LVM and ZFS: a stand-in at the command seam, and the real thing where the kernel can -------------


class StandIn(Commands):
    """Answers lvs/lvcreate/zfs like the real tools and does what they would to the files it is given."""

    def __init__(self, origin: str, zfs_mount: str | None = None, fail: dict[str, str] | None = None) -> None:
        self.origin = origin  # the tree the volume or dataset holds
        self.zfs_mount = zfs_mount
        self.fail = fail or {}
        self.calls: list[list[str]] = []

    def run(self, argv) -> subprocess.CompletedProcess:
        argv = list(argv)
        self.calls.append(argv)
        if argv[0] in self.fail:
            return subprocess.CompletedProcess(argv, 5, "", self.fail[argv[0]])
        if argv[0] == "lvs" and "lv_size" in " ".join(argv):
            return subprocess.CompletedProcess(argv, 0, "  vg0 home 1073741824\n", "")
        if argv[0] == "mount":  # the snapshot volume, read-only: here, the origin's tree bound read-only
            subprocess.run(["mount", "--bind", "-o", "ro", self.origin, argv[-1]], check=True)
        if argv[0] == "umount":
            subprocess.run(["umount", argv[-1]], check=True)
        if argv[0] == "zfs" and argv[1] == "snapshot":
            shutil.copytree(
                self.origin,
                os.path.join(self.zfs_mount, ".zfs", "snapshot", argv[2].split("@")[1]),
                symlinks=True,
            )
        if argv[0] == "zfs" and argv[1] == "destroy":
            shutil.rmtree(os.path.join(self.zfs_mount, ".zfs", "snapshot", argv[2].split("@")[1]))
        return subprocess.CompletedProcess(argv, 0, "", "")


LVM_FS = FileSystemInfo(mount_point="/srv", device="/dev/mapper/vg0-home", fstype="ext4")


def test_lvm_command_lines_at_the_seam(tmp_path, small_tree):
    stand_in = StandIn(small_tree)
    provider = LvmProvider(stand_in, mount_base=str(tmp_path / "mounts"))
    assert provider.supports(LVM_FS, "/srv/data")
    snapshot = provider.create("/srv", LVM_FS, "snapshot_for_backup.0", 1)
    mount_point = str(tmp_path / "mounts" / "snapshot_for_backup.0")
    try:
        assert snapshot.path == mount_point
        assert compare_trees(small_tree, snapshot.path)[1] == []
    finally:
        provider.delete(snapshot)
    assert stand_in.calls == [
        [
            "lvs",
            "--noheadings",
            "--nosuffix",
            "--units",
            "b",
            "-o",
            "vg_name,lv_name,lv_size",
            "/dev/mapper/vg0-home",
        ],
        [
            "lvs",
            "--noheadings",
            "--nosuffix",
            "--units",
            "b",
            "-o",
            "vg_name,lv_name,lv_size",
            "/dev/mapper/vg0-home",
        ],
        ["lvcreate", "-s", "-n", "snapshot_for_backup.0", "-L", "107374080b", "vg0/home"],
        ["mount", "-o", "ro", "/dev/vg0/snapshot_for_backup.0", mount_point],
        ["umount", mount_point],
        ["lvremove", "-f", "vg0/snapshot_for_backup.0"],
    ]


def test_lvm_failures_leave_no_snapshot_behind(tmp_path, small_tree):
    full = StandIn(
        small_tree, fail={"lvcreate": '  Volume group "vg0" has insufficient free space (12 extents).'}
    )
    with pytest.raises(SnapshotError, match="no space for the snapshot"):
        LvmProvider(full, mount_base=str(tmp_path)).create("/srv", LVM_FS, "snapshot_for_backup.0", 1)
    assert [c[0] for c in full.calls] == ["lvs", "lvcreate"]
    unmountable = StandIn(small_tree, fail={"mount": "mount: wrong fs type, bad option"})
    with pytest.raises(SnapshotError, match=r"mounting /dev/vg0/snapshot_for_backup\.0 failed"):
        LvmProvider(unmountable, mount_base=str(tmp_path)).create("/srv", LVM_FS, "snapshot_for_backup.0", 1)
    assert unmountable.calls[-1] == ["lvremove", "-f", "vg0/snapshot_for_backup.0"]  # no orphan


def test_a_whole_dump_through_the_zfs_provider(tmp_path, small_tree):
    mount = tmp_path / "tank-home"
    shutil.copytree(small_tree, mount, symlinks=True)
    stand_in = StandIn(str(mount), zfs_mount=str(mount))
    provider = ZfsProvider(stand_in)
    fs = FileSystemInfo(mount_point=str(mount), device="tank/home", fstype="zfs")
    assert (
        provider.supports(fs, str(mount)) and choose_provider(fs, str(mount), commands=stand_in).name == "zfs"
    )
    snapshot = provider.create(str(mount / "sub"), fs, "snapshot_for_backup.3", 1)
    assert snapshot.path == str(mount / ".zfs" / "snapshot" / "snapshot_for_backup.3" / "sub")
    assert compare_trees(str(mount / "sub"), snapshot.path)[1] == []
    provider.delete(snapshot)
    assert stand_in.calls == [
        ["zfs", "snapshot", "tank/home@snapshot_for_backup.3"],
        ["zfs", "destroy", "tank/home@snapshot_for_backup.3"],
    ]
    failing = StandIn(
        str(mount), zfs_mount=str(mount), fail={"zfs": "cannot create snapshot 'tank/home@x': out of space"}
    )
    with pytest.raises(SnapshotError, match="no space for the snapshot"):
        ZfsProvider(failing).create(str(mount), fs, "x", 1)


def _lvm_works() -> bool:
    return (
        shutil.which("lvcreate") is not None
        and os.path.exists("/dev/mapper/control")
        and subprocess.run(["dmsetup", "targets"], capture_output=True, text=True).stdout.find("snapshot")
        >= 0
    )


@pytest.mark.real_provider("lvm")
@pytest.mark.skipif(
    not _lvm_works(),
    reason="skipped-for-real: no device-mapper snapshot target in this "
    "kernel (LVM command lines are checked at the seam instead)",
)
def test_lvm_for_real(tmp_path, ndmptools):
    image = tmp_path / "pv.img"
    subprocess.run(["truncate", "-s", "200M", str(image)], check=True)
    loop = subprocess.run(
        ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    vg = f"ndmpt{os.getpid()}"
    try:
        subprocess.run(["vgcreate", vg, loop], check=True, capture_output=True)
        subprocess.run(["lvcreate", "-n", "data", "-L", "100M", vg], check=True, capture_output=True)
        subprocess.run(["mkfs.ext4", "-q", f"/dev/{vg}/data"], check=True)
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        subprocess.run(["mount", f"/dev/{vg}/data", str(mnt)], check=True)
        try:
            (mnt / "file").write_bytes(b"on lvm\n")
            done = ndmptools("dump", "--json", "-f", str(tmp_path / "d"), str(mnt))
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["snapshot"].startswith("snapshot_for_backup.")
            ndmptools.ok("restore", "-f", str(tmp_path / "d"), "-D", str(tmp_path / "r"))
            assert (tmp_path / "r" / "file").read_bytes() == b"on lvm\n"
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
        lvs = subprocess.run(
            ["lvs", "--noheadings", "-o", "lv_name", vg], capture_output=True, text=True
        ).stdout
        assert lvs.split() == ["data"]  # the snapshot volume is gone
    finally:
        subprocess.run(["vgremove", "-f", vg], capture_output=True)
        subprocess.run(["losetup", "-d", loop], check=False)


def _zfs_works() -> bool:
    return shutil.which("zpool") is not None and os.path.exists("/dev/zfs")


@pytest.mark.real_provider("zfs")
@pytest.mark.skipif(
    not _zfs_works(),
    reason="skipped-for-real: no ZFS module in this kernel (ZFS command "
    "lines are checked at the seam instead)",
)
def test_zfs_for_real(tmp_path, ndmptools):
    image = tmp_path / "pool.img"
    subprocess.run(["truncate", "-s", "256M", str(image)], check=True)
    pool = f"ndmpt{os.getpid()}"
    subprocess.run(["zpool", "create", "-m", str(tmp_path / "pool"), pool, str(image)], check=True)
    try:
        (tmp_path / "pool" / "file").write_bytes(b"on zfs\n")
        done = ndmptools("dump", "--json", "-f", str(tmp_path / "d"), str(tmp_path / "pool"))
        assert done.returncode == 0, done.stderr
        ndmptools.ok("restore", "-f", str(tmp_path / "d"), "-D", str(tmp_path / "r"))
        assert (tmp_path / "r" / "file").read_bytes() == b"on zfs\n"
        snaps = subprocess.run(
            ["zfs", "list", "-H", "-t", "snapshot", "-o", "name"], capture_output=True, text=True
        ).stdout
        assert pool not in snaps
    finally:
        subprocess.run(["zpool", "destroy", "-f", pool], check=False)
