"""The SCSI tape backend, driven through a fake st driver at the system-call seam."""

from __future__ import annotations

import os

import pytest

from ndmptools.engine.dump import run_dump
from ndmptools.engine.options import DumpOptions, RestoreOptions
from ndmptools.engine.progress import RunContext
from ndmptools.engine.restore import run_restore
from ndmptools.engine.treediff import compare_trees
from ndmptools.errors import FormatError, MediaError
from ndmptools.media.base import EndOfMedium, Position, RecordTooLarge
from ndmptools.media.st import ScsiTape
from tests.fake_st import FILEMARK, FakeCartridge, FakeStDriver

KiB = 1024


def _tape(driver, mode="r", prompt=None) -> ScsiTape:
    return ScsiTape("/dev/nst0", mode, ops=driver, prompt=prompt)


def test_records_filemarks_and_the_end_of_data():
    driver = FakeStDriver(FakeCartridge())
    tape = _tape(driver, "w")
    assert driver.calls[:2] == ["open", "op20:0"]  # variable block mode (MTSETBLK 0)
    tape.write_record(b"a" * 2048)
    tape.write_record(b"b" * 1024)
    tape.write_filemark()
    tape.write_record(b"c" * 4096)
    tape.close()  # the driver writes the last filemark
    assert driver.loaded.items == [b"a" * 2048, b"b" * 1024, FILEMARK, b"c" * 4096, FILEMARK]
    tape = _tape(driver)  # a non-rewinding node: still at the end of what was written
    assert tape.read_record(256 * KiB) == b""
    tape.rewind()
    assert tape.read_record(256 * KiB) == b"a" * 2048
    assert tape.tell() == Position(0, 1)
    assert tape.read_record(256 * KiB) == b"b" * 1024
    assert tape.read_record(256 * KiB) == b""  # the filemark
    assert tape.read_record(256 * KiB) == b"c" * 4096
    assert [tape.read_record(256 * KiB) for _ in range(3)] == [b"", b"", b""]  # EOD, and EIO past it
    tape.seek(Position(1, 0))
    assert tape.read_record(256 * KiB) == b"c" * 4096


def test_a_record_larger_than_the_buffer_names_both_sizes():
    driver = FakeStDriver(FakeCartridge(items=[b"x" * 512 * KiB]), max_block=1024 * KiB)
    with pytest.raises(RecordTooLarge) as err:
        _tape(driver).read_record(64 * KiB)
    assert err.value.record_size == 512 * KiB and err.value.limit == 64 * KiB
    assert "512 KiB" in err.value.message and "64 KiB" in err.value.message


def test_block_limits_come_from_the_drive_within_the_host_adapter():
    assert _tape(FakeStDriver(FakeCartridge(), max_block=128 * KiB)).max_record_size == 128 * KiB
    capped = ScsiTape(
        "/dev/nst0", "r", ops=FakeStDriver(FakeCartridge(), max_block=1024 * KiB), host_limit=512 * KiB
    )
    assert capped.max_record_size == 512 * KiB


@pytest.mark.parametrize(
    ("driver", "mode", "words"),
    [
        (FakeStDriver(None), "r", "there is no tape in /dev/nst0"),
        (FakeStDriver(FakeCartridge(), busy=True), "r", "is busy"),
        (FakeStDriver(FakeCartridge(write_protected=True)), "w", "write-protected"),
    ],
)
def test_drive_states_get_a_clear_line(driver, mode, words):
    with pytest.raises(MediaError, match=words):
        _tape(driver, mode)


def test_early_warning_then_the_end_of_the_tape():
    driver = FakeStDriver(FakeCartridge(capacity=10 * KiB, early_warning_at=7 * KiB))
    tape = _tape(driver, "w")
    for _ in range(3):
        tape.write_record(b"r" * 2 * KiB)
    assert not tape.early_warning
    tape.write_record(b"r" * 2 * KiB)  # crosses the early warning: written, and the drive says so
    assert tape.early_warning
    with pytest.raises(EndOfMedium):  # the next write is refused once, as the st driver does
        tape.write_record(b"r" * 2 * KiB)


def test_a_blocking_factor_the_drive_cannot_take_is_refused(tmp_path, small_tree):
    driver = FakeStDriver(FakeCartridge(), max_block=128 * KiB)
    with pytest.raises(MediaError, match=r"blocking factor 256 \(256 KiB records\).*128 KiB.*-b 128"):
        run_dump(
            DumpOptions(path=small_tree, file="/dev/nst0", blocking_factor=256),
            lambda: _tape(driver, "w"),
            RunContext(),
        )
    assert driver.loaded.items == []


def _fill_tree(root, files: int, size: int) -> None:
    os.makedirs(root)
    for i in range(files):
        with open(os.path.join(root, f"file-{i:03d}"), "wb") as f:
            f.write(os.urandom(size))


def test_a_dump_spans_tapes_the_operator_loads_and_restores_from_them(tmp_path):
    tree = str(tmp_path / "tree")
    _fill_tree(tree, 12, 70 * KiB)  # about 850 KiB on tapes that warn after 300 KiB
    cartridges = [FakeCartridge(capacity=400 * KiB, early_warning_at=300 * KiB) for _ in range(4)]
    writer = FakeStDriver(cartridges[0], shelf=cartridges[1:])
    result = run_dump(
        DumpOptions(path=tree, file="/dev/nst0", blocking_factor=16),
        lambda: _tape(writer, "w", prompt=writer.load_next),
        RunContext(),
    )
    assert result.volumes == 3
    used = [c for c in cartridges if c.items]
    assert len(used) == 3 and all(c.items[-1] is FILEMARK for c in used)
    reader = FakeStDriver(cartridges[0], shelf=cartridges[1:3])
    run = RunContext()
    run_restore(
        RestoreOptions(file="/dev/nst0", target=str(tmp_path / "r")),
        _tape(reader, prompt=reader.load_next),
        run,
    )
    assert run.stats.warnings == []
    assert compare_trees(tree, str(tmp_path / "r"))[1] == []


def test_without_a_prompt_the_end_of_the_tape_fails_cleanly(tmp_path):
    tree = str(tmp_path / "tree")
    _fill_tree(tree, 6, 70 * KiB)
    driver = FakeStDriver(FakeCartridge(capacity=400 * KiB, early_warning_at=300 * KiB))
    with pytest.raises(MediaError, match="end of tape, and no volume 2"):
        run_dump(
            DumpOptions(path=tree, file="/dev/nst0", blocking_factor=16),
            lambda: _tape(driver, "w"),
            RunContext(),
        )


def test_restore_refuses_a_volume_of_another_dump_or_out_of_order(tmp_path):
    tree = str(tmp_path / "tree")
    _fill_tree(tree, 12, 70 * KiB)
    first = [FakeCartridge(capacity=400 * KiB, early_warning_at=300 * KiB) for _ in range(3)]
    writer = FakeStDriver(first[0], shelf=first[1:])
    run_dump(
        DumpOptions(path=tree, file="/dev/nst0", blocking_factor=16),
        lambda: _tape(writer, "w", prompt=writer.load_next),
        RunContext(),
    )
    os.utime(tree)  # another dump of the same tree, a second later
    import time

    time.sleep(1.1)
    other = [FakeCartridge(capacity=400 * KiB, early_warning_at=300 * KiB) for _ in range(3)]
    writer = FakeStDriver(other[0], shelf=other[1:])
    run_dump(
        DumpOptions(path=tree, file="/dev/nst0", blocking_factor=16),
        lambda: _tape(writer, "w", prompt=writer.load_next),
        RunContext(),
    )
    for shelf, words in [
        ([other[1]], "belongs to another dump"),
        ([first[2]], "volume 3 was loaded but volume 2"),
    ]:
        reader = FakeStDriver(first[0], shelf=shelf)
        with pytest.raises(FormatError, match=words):
            run_restore(
                RestoreOptions(file="/dev/nst0", target=str(tmp_path / "r")),
                _tape(reader, prompt=reader.load_next),
                RunContext(),
            )


def test_append_and_restore_by_file_number(tmp_path):
    from tests.trees import build_tree_from_spec

    trees = []
    for n in range(3):
        trees.append(str(tmp_path / f"tree{n}"))
        build_tree_from_spec(trees[-1], {f"only-in-{n}": bytes([n]) * 3000})
    cartridge = FakeCartridge()
    for n, tree in enumerate(trees):
        driver = FakeStDriver(cartridge)

        def opener(driver=driver, n=n):
            tape = _tape(driver, "w")
            if n:
                tape.seek_end_of_data()
            return tape

        run_dump(
            DumpOptions(path=tree, file="/dev/nst0", blocking_factor=8, append=bool(n)), opener, RunContext()
        )
    assert cartridge.items.count(FILEMARK) == 3
    from ndmptools.media import _go_to_file

    driver = FakeStDriver(cartridge)
    tape = _tape(driver)
    _go_to_file(tape, 2)
    run_restore(RestoreOptions(file="/dev/nst0", target=str(tmp_path / "r")), tape, RunContext())
    assert os.listdir(tmp_path / "r") == ["only-in-1"]
