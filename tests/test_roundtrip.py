"""Round trips through ndmptools dump and ndmptools restore, compared entry by entry."""

from __future__ import annotations

import os

import pytest

from ndmptools.engine.treediff import CompareRules, compare_trees
from tests.trees import GiB

pytestmark = pytest.mark.root


def assert_same(source: str, restored: str, rules: CompareRules | None = None) -> None:
    count, problems = compare_trees(source, restored, rules or CompareRules())
    assert not problems, "\n".join(problems[:40])
    assert count > 1


def test_every_entry_type_round_trips(sample_tree, sample_dump, ndmptools, tmp_path):
    target = tmp_path / "restored"
    done = ndmptools.ok("restore", "-f", sample_dump, "-D", str(target))
    assert b"restore:" in done.stderr
    # nanosecond times, atime too: dump reads with O_NOATIME and restore sets both
    assert_same(sample_tree, str(target), CompareRules(compare_atime=True))


def test_holes_stay_holes_on_media_and_after_restore(sample_tree, sample_dump, tmp_path, ndmptools):
    # The 5 GiB file holds 16 bytes of data: on media it costs a few headers, not gigabytes.
    assert os.path.getsize(sample_dump) < 64 << 20
    target = tmp_path / "r"
    ndmptools.ok("restore", "-f", sample_dump, "-D", str(target), "over-4GiB", "sparse-middle")
    big = os.stat(target / "over-4GiB")
    assert big.st_size == 5 * GiB + 123
    assert big.st_blocks * 512 < 1 << 20
    with open(target / "over-4GiB", "rb") as f:
        f.seek(4 * GiB + 512 * 1024 + 7)
        assert f.read(12) == b"beyond 4 GiB"
        f.seek(5 * GiB + 100)
        assert f.read(4) == b"tail"


@pytest.mark.parametrize("blocking_factor", [4, 64, 256])
def test_blocking_factors_round_trip(blocking_factor, tmp_path, ndmptools, small_tree):
    image = tmp_path / "b.dump"
    ndmptools.ok("dump", "-b", str(blocking_factor), "-f", str(image), small_tree)
    assert image.stat().st_size % (blocking_factor * 1024) == 0
    ndmptools.ok("restore", "-f", str(image), "-D", str(tmp_path / "r"))
    assert_same(small_tree, str(tmp_path / "r"))


@pytest.mark.parametrize("value", ["3", "257", "0", "-1", "many"])
def test_blocking_factor_out_of_range_is_refused(value, tmp_path, ndmptools, small_tree):
    done = ndmptools("dump", "-b", value, "-f", str(tmp_path / "x.dump"), small_tree)
    assert done.returncode == 2
    assert b"blocking-factor" in done.stderr
    assert b"Traceback" not in done.stderr
    assert not (tmp_path / "x.dump").exists()


def test_long_option_spellings(tmp_path, ndmptools, small_tree):
    image = tmp_path / "long.dump"
    ndmptools.ok("dump", "--level", "0", "--file", str(image), "--blocking-factor", "8", small_tree)
    ndmptools.ok("restore", "--file", str(image), "--target", str(tmp_path / "r"))
    assert_same(small_tree, str(tmp_path / "r"))


def test_stdout_and_stdin(tmp_path, ndmptools, small_tree):
    dumped = ndmptools.ok("dump", "-f", "-", small_tree)
    assert len(dumped.stdout) % (64 * 1024) == 0
    assert dumped.stdout[24:28] == (60012).to_bytes(4, "little")
    ndmptools.ok("restore", "-f", "-", "-D", str(tmp_path / "r"), input=dumped.stdout)
    assert_same(small_tree, str(tmp_path / "r"))


def test_subtree_is_the_root_of_the_dump(sample_tree, tmp_path, ndmptools):
    image = tmp_path / "sub.dump"
    ndmptools.ok("dump", "-f", str(image), os.path.join(sample_tree, "dir"))
    ndmptools.ok("restore", "-f", str(image), "-D", str(tmp_path / "r"))
    assert_same(os.path.join(sample_tree, "dir"), str(tmp_path / "r"))


def test_single_file_dump(sample_tree, tmp_path, ndmptools):
    image = tmp_path / "one.dump"
    ndmptools.ok("dump", "-f", str(image), os.path.join(sample_tree, "dir", "medium"))
    ndmptools.ok("restore", "-f", str(image), "-D", str(tmp_path / "r"))
    assert sorted(os.listdir(tmp_path / "r")) == ["medium"]
    _, problems = compare_trees(os.path.join(sample_tree, "dir"), str(tmp_path / "r"))
    # The dump's root is the file's directory (its attributes), holding that one file.
    assert [p for p in problems if p.startswith(("medium", ".:"))] == []
    assert any(p.startswith("hard-a: only in") for p in problems)


def test_restore_named_paths_only(sample_tree, sample_dump, tmp_path, ndmptools):
    target = tmp_path / "r"
    os.makedirs(target)
    os.chmod(target, 0o751)
    ndmptools.ok("restore", "-f", sample_dump, "-D", str(target), "dir/sub", "./one-byte", "/hard-c")
    found = sorted(
        os.path.relpath(os.path.join(d, n), target)
        for d, dirs, files in os.walk(target)
        for n in dirs + files
    )
    assert "one-byte" in found and "hard-c" in found and "dir/sub/three-headers" in found
    assert "dir/medium" not in found and "many" not in found
    assert os.stat(target).st_mode & 0o7777 == 0o751  # a partial restore leaves the target alone
    assert os.stat(target / "dir").st_mode & 0o7777 == 0o2755  # parents get their attributes
    # hard-c and dir/sub/hard-b are one inode on media and become one inode again
    assert os.stat(target / "hard-c").st_ino == os.stat(target / "dir" / "sub" / "hard-b").st_ino


def test_failed_dump_leaves_no_output_and_keeps_the_old_one(tmp_path, ndmptools, small_tree):
    image = tmp_path / "keep.dump"
    image.write_bytes(b"previous good dump")
    done = ndmptools("dump", "-f", str(image), str(tmp_path / "does-not-exist"))
    assert done.returncode == 4
    assert image.read_bytes() == b"previous good dump"
    assert sorted(os.listdir(tmp_path)) == ["keep.dump"]


def test_times_the_format_cannot_hold_are_clamped_with_a_warning(tmp_path, ndmptools):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "from-1960").write_bytes(b"old")
    os.utime(tree / "from-1960", ns=(-315_619_200 * 10**9, -315_619_200 * 10**9))
    done = ndmptools("dump", "-f", str(tmp_path / "d"), str(tree))
    assert done.returncode == 1
    assert b"from-1960: a time outside 1970-2106" in done.stderr
    ndmptools.ok("restore", "-f", str(tmp_path / "d"), "-D", str(tmp_path / "r"))
    assert os.stat(tmp_path / "r" / "from-1960").st_mtime_ns == 0


def test_owners_are_left_alone_when_not_root(tmp_path, monkeypatch):
    # A restore by an ordinary user cannot give files away: it must not even try.
    import ndmptools.engine.metadata as metadata
    from ndmptools.engine.options import RestoreOptions
    from ndmptools.engine.progress import RunContext
    from ndmptools.engine.restore import run_restore
    from ndmptools.media import open_path
    from tests.craft import DT_REG, craft, directory, regular

    image = tmp_path / "d"
    crafted = craft([directory(2, 2, (3, DT_REG, b"f")), regular(3, b"x")])
    image.write_bytes(crafted)
    calls = []
    monkeypatch.setattr(metadata, "RESTORES_OWNERS", False)
    monkeypatch.setattr(os, "fchown", lambda *a: calls.append(a))
    with open_path(str(image), "r") as medium:
        run_restore(RestoreOptions(file=str(image), target=str(tmp_path / "r")), medium, RunContext())
    assert calls == []
    assert (tmp_path / "r" / "f").read_bytes() == b"x"


def test_a_directory_of_more_than_512_blocks(tmp_path, ndmptools):
    # 30,000 entries make a directory of about 1.2 MiB: its blocks need TS_ADDR headers too.
    tree = tmp_path / "t"
    (tree / "big").mkdir(parents=True)
    for i in range(30_000):
        (tree / "big" / f"entry-number-{i:06d}").touch()
    image = tmp_path / "d"
    ndmptools.ok("dump", "-q", "-f", str(image), str(tree))
    listing = ndmptools.ok("restore", "-t", "--json", "-f", str(image)).stdout
    import json

    sizes = {e["path"]: e["size"] for e in json.loads(listing)}
    assert sizes["big"] > 512 * 1024 and len(sizes) == 30_002
    ndmptools.ok("restore", "-q", "-f", str(image), "-D", str(tmp_path / "r"))
    assert len(os.listdir(tmp_path / "r" / "big")) == 30_000


def test_a_full_target_is_refused_or_with_force_stops_without_a_partial_file(tmp_path, ndmptools):
    # tmpfs here; tests/test_restore_rules.py has the same on ext4, for space and for inodes.
    import subprocess

    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "a-too-big").write_bytes(os.urandom(3 << 20))
    for i in range(5):
        (tree / f"b-small-{i}").write_bytes(os.urandom(20_000))
    image = tmp_path / "d"
    ndmptools.ok("dump", "-q", "-f", str(image), str(tree))
    target = tmp_path / "small-fs"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
    try:
        done = ndmptools("restore", "-f", str(image), "-D", str(target))
        assert done.returncode == 7 and b"not enough room to restore into" in done.stderr
        assert os.listdir(target) == []
        done = ndmptools("restore", "--force", "-f", str(image), "-D", str(target))
        assert done.returncode == 7, done.stderr
        assert b"the target is full (No space left on device, at a-too-big)" in done.stderr
        said = done.stderr.decode()
        assert "0 entries restored, 6 not restored: a-too-big, b-small-0, b-small-1 and 3 more" in said
        assert os.listdir(target) == []  # no partial file left looking whole, no empty ones either
    finally:
        subprocess.run(["umount", str(target)], check=True)
