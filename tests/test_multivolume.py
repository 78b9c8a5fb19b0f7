"""Dumps that span volumes, dumps that share a tape, and records of the wrong size."""

from __future__ import annotations

import os
import struct

import pytest

from ndmptools.engine.treediff import CompareRules, compare_trees
from tests.debian import restore as debian_restore

KiB = 1024


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("mv") / "tree"
    (root / "sub").mkdir(parents=True)
    for i in range(14):
        (root / "sub" / f"file-{i:02d}").write_bytes(os.urandom(70 * KiB + i * 333))
    (root / "small").write_bytes(b"small\n")
    (root / "sparse").write_bytes(b"")
    with open(root / "sparse", "r+b") as f:
        f.truncate(5 << 20)
        f.seek(3 << 20)
        f.write(b"island")
    os.link(root / "sub" / "file-00", root / "hard")
    os.symlink("sub/file-01", root / "link")
    return str(root)


@pytest.fixture(scope="module")
def library(big_tree, tmp_path_factory, ndmptools_module):
    lib = tmp_path_factory.mktemp("lib") / "cartridges"
    done = ndmptools_module.ok(
        "dump", "--json", "-f", f"vtape:{lib}", "--capacity", "400K", "-b", "16", big_tree
    )
    import json

    assert json.loads(done.stdout)["volumes"] == 3
    return str(lib)


@pytest.fixture(scope="module")
def ndmptools_module():
    from tests.conftest import Ndmptools

    return Ndmptools()


def _records(tap: str) -> list[bytes]:
    """The records of a .tap file, in order, without their frames."""
    with open(tap, "rb") as f:
        data = f.read()
    records, offset = [], 0
    while offset + 4 <= len(data):
        (word,) = struct.unpack_from("<I", data, offset)
        if word == 0xFFFFFFFF:
            break
        if word == 0:
            offset += 4
            continue
        records.append(data[offset + 4 : offset + 4 + word])
        offset += 8 + word + (word & 1)
    return records


@pytest.fixture(scope="module")
def volume_files(library, tmp_path_factory) -> list[str]:
    """The library's cartridges as plain files, one per volume (what Debian restore -M reads)."""
    base = tmp_path_factory.mktemp("files")
    paths = []
    for n, cartridge in enumerate(sorted(os.listdir(library)), start=1):
        path = str(base / f"vol{n:03d}")
        with open(path, "wb") as f:
            f.write(b"".join(_records(os.path.join(library, cartridge))))
        paths.append(path)
    return paths


def test_three_volumes_in_a_library_restore_byte_identical(big_tree, library, ndmptools, tmp_path):
    assert sorted(os.listdir(library)) == ["000001.tap", "000002.tap", "000003.tap"]
    assert all(os.path.getsize(os.path.join(library, c)) <= 400 * KiB for c in os.listdir(library))
    ndmptools.ok("restore", "-f", f"vtape:{library}", "-D", str(tmp_path / "r"))
    assert compare_trees(big_tree, str(tmp_path / "r"))[1] == []


def test_each_volume_starts_with_its_own_volume_header(volume_files):
    for number, path in enumerate(volume_files, start=1):
        with open(path, "rb") as f:
            block = f.read(1024)
        c_type, _date, _ddate, volume, tapea = struct.unpack_from("<iiiiI", block)
        firstrec = struct.unpack_from("<i", block, 892)[0]
        assert (c_type, volume) == (1, number)
        assert (
            firstrec
            == tapea
            == (0 if number == 1 else sum(os.path.getsize(p) for p in volume_files[: number - 1]) // 1024)
        )


@pytest.mark.root
@pytest.mark.debian
def test_debian_restore_reads_the_volumes_as_files(big_tree, volume_files, tmp_path):
    target = tmp_path / "debian"
    target.mkdir()
    prefix = volume_files[0][:-3]
    done = debian_restore(["-x", "-a", "-y", "-M", "-f", prefix], cwd=str(target))
    assert done.returncode == 0, done.stderr
    assert compare_trees(big_tree, str(target), CompareRules(time_resolution_ns=1000))[1] == []
    compared = debian_restore(["-C", "-a", "-y", "-M", "-D", big_tree, "-f", prefix], cwd=str(tmp_path))
    assert compared.returncode == 0, compared.stdout + compared.stderr


def test_ndmptools_reads_volumes_given_as_files(big_tree, volume_files, ndmptools, tmp_path):
    args = [a for path in volume_files for a in ("-f", path)]
    ndmptools.ok("restore", *args, "-D", str(tmp_path / "r"))
    assert compare_trees(big_tree, str(tmp_path / "r"))[1] == []


def test_a_missing_volume_is_named(volume_files, ndmptools, tmp_path):
    done = ndmptools(
        "restore", "--no-prompt", "-f", volume_files[0], "-f", volume_files[1], "-D", str(tmp_path / "r")
    )
    assert done.returncode == 5
    assert b"continues on volume 3" in done.stderr and b"Traceback" not in done.stderr


def test_volumes_out_of_order_or_from_another_dump_are_refused(volume_files, ndmptools, tmp_path, small_tree):
    done = ndmptools("restore", "-f", volume_files[0], "-f", volume_files[2], "-D", str(tmp_path / "r"))
    assert done.returncode == 6
    assert b"volume 3 was loaded but volume 2 comes next" in done.stderr
    other = tmp_path / "other.dump"
    ndmptools.ok("dump", "-f", str(other), small_tree)
    done = ndmptools("restore", "-f", volume_files[0], "-f", str(other), "-D", str(tmp_path / "r2"))
    assert done.returncode == 6
    assert b"belongs to another dump" in done.stderr or b"volume 1 was loaded" in done.stderr


def test_dumps_appended_to_one_tape_and_picked_by_number(tmp_path, ndmptools):
    from tests.trees import build_tree_from_spec

    tape = str(tmp_path / "shared.tap")
    for n in range(3):
        tree = tmp_path / f"t{n}"
        build_tree_from_spec(str(tree), {f"dump-{n}": bytes([n]) * 5000})
        ndmptools.ok("dump", *(["--append"] if n else []), "-f", tape, str(tree))
    for n in range(3):
        ndmptools.ok("restore", "-f", tape, "-s", str(n + 1), "-D", str(tmp_path / f"r{n}"))
        assert os.listdir(tmp_path / f"r{n}") == [f"dump-{n}"]
    done = ndmptools("restore", "-f", tape, "-s", "9", "-D", str(tmp_path / "none"))
    assert done.returncode == 5 and b"holds 3 dumps" in done.stderr
    done = ndmptools("dump", "--append", "-f", str(tmp_path / "plain.dump"), str(tmp_path / "t0"))
    assert done.returncode == 5 and b"cannot be appended" in done.stderr


def _write_tap(path, records: list[bytes]) -> None:
    with open(path, "wb") as f:
        for record in records:
            f.write(struct.pack("<I", len(record)) + record + struct.pack("<I", len(record)))
        f.write(struct.pack("<I", 0) + struct.pack("<I", 0xFFFFFFFF))


def test_a_record_size_mismatch_is_a_clear_error(tmp_path, ndmptools, small_tree):
    tape = str(tmp_path / "t.tap")
    ndmptools.ok("dump", "-b", "16", "-f", tape, small_tree)
    data = b"".join(_records(tape))
    _write_tap(
        tape, [data[i : i + 8 * KiB] for i in range(0, len(data), 8 * KiB)]
    )  # same bytes, 8 KiB records
    done = ndmptools("restore", "-f", tape, "-D", str(tmp_path / "r"))
    assert done.returncode == 6
    line = done.stderr.decode().strip()
    assert "record-size mismatch" in line and "16 KiB" in line and "8192 bytes" in line


def test_records_too_large_for_the_reader_name_both_sizes(tmp_path, ndmptools):
    tape = str(tmp_path / "big.tap")
    _write_tap(tape, [b"\0" * 512 * KiB])
    done = ndmptools("restore", "-f", tape, "-D", str(tmp_path / "r"))
    assert done.returncode == 5
    assert b"records of 512 KiB" in done.stderr and b"at most 257 KiB" in done.stderr


def test_capacity_is_for_virtual_tapes(tmp_path, ndmptools, small_tree):
    done = ndmptools("dump", "--capacity", "1M", "-f", str(tmp_path / "x.dump"), small_tree)
    assert done.returncode == 5 and b"--capacity is for virtual tapes" in done.stderr
    done = ndmptools("dump", "--capacity", "lots", "-f", str(tmp_path / "x.tap"), small_tree)
    assert done.returncode == 2 and b"not a size" in done.stderr
