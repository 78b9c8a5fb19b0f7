"""Virtual tapes in the SIMH .tap format, and libraries of cartridges."""

from __future__ import annotations

import os
import struct

import pytest

from ndmptools.errors import MediaError
from ndmptools.media.base import EndOfMedium, Position, RecordTooLarge
from ndmptools.media.vtape import SingleTape, VirtualLibrary, VirtualTape, parse_size

KiB = 1024


def w(n: int) -> bytes:
    return struct.pack("<I", n)


def test_records_are_framed_by_their_length_and_marks_are_words(tmp_path):
    path = str(tmp_path / "t.tap")
    tape = VirtualTape(path, "w")
    tape.write_record(b"a" * 1024)
    tape.write_record(b"b" * 2048)
    tape.write_filemark()
    tape.write_record(b"c" * 1024)
    tape.close()  # a written tape ends with a tape mark, then the end-of-medium word
    expected = (
        w(1024)
        + b"a" * 1024
        + w(1024)
        + w(2048)
        + b"b" * 2048
        + w(2048)
        + w(0)
        + w(1024)
        + b"c" * 1024
        + w(1024)
        + w(0)
        + w(0xFFFFFFFF)
    )
    with open(path, "rb") as f:
        assert f.read() == expected


def test_reading_a_tape_written_elsewhere(tmp_path):
    # An odd-length record padded to even, an erase gap, two tape marks, no end-of-medium word.
    path = tmp_path / "other.tap"
    path.write_bytes(w(3) + b"xyz\0" + w(3) + w(0xFFFFFFFE) + w(4) + b"abcd" + w(4) + w(0) + w(0))
    tape = VirtualTape(str(path), "r")
    assert tape.read_record(100) == b"xyz"
    assert tape.read_record(100) == b"abcd"
    assert tape.tell() == Position(0, 2)
    assert tape.read_record(100) == b""  # tape mark
    assert tape.tell() == Position(1, 0)
    assert tape.read_record(100) == b""  # the second one: nothing more
    assert tape.read_record(100) == b""  # the end of the file
    with pytest.raises(RecordTooLarge, match="records of 0 KiB"):
        tape.rewind()
        tape.read_record(2)


def test_a_damaged_frame_is_an_error(tmp_path):
    path = tmp_path / "bad.tap"
    path.write_bytes(w(8) + b"12345678" + w(9))
    with pytest.raises(MediaError, match="damaged record frame"):
        VirtualTape(str(path), "r").read_record(100)


def test_capacity_gives_an_early_warning_then_the_end(tmp_path):
    tape = VirtualTape(str(tmp_path / "c.tap"), "w", capacity=100 * KiB)  # warns 10 KiB before its end
    written = 0
    while not tape.early_warning:
        tape.write_record(b"r" * 10 * KiB)
        written += 1
    assert written == 9  # 9 records and their frames pass 90 KiB
    with pytest.raises(EndOfMedium):
        tape.write_record(b"r" * 10 * KiB)
    tape.write_record(b"r" * 1 * KiB)  # what still fits, fits
    tape.close()


def test_positions_files_and_append(tmp_path):
    path = str(tmp_path / "p.tap")
    tape = VirtualTape(path, "w")
    for file_number in range(3):
        for record in range(file_number + 1):
            tape.write_record(bytes([file_number]) * 1024 + bytes([record]) * 1024)
        tape.write_filemark()
    tape.close()
    tape = VirtualTape(path, "w")
    tape.seek_end_of_data()
    assert tape.tell() == Position(3, 0)
    tape.write_record(b"\3" * 2048)
    tape.close()
    tape = VirtualTape(path, "r")
    tape.seek(Position(2, 1))
    assert tape.read_record(4096) == b"\2" * 1024 + b"\1" * 1024
    tape.space_files(1)
    assert tape.read_record(4096) == b"\3" * 2048
    tape.space_files(-2)  # back to the start of the file two before this one
    assert tape.tell() == Position(1, 0)
    assert tape.read_record(4096) == b"\1" * 1024 + b"\0" * 1024
    with pytest.raises(MediaError, match="holds 4 dumps"):
        tape.space_files(10)


def test_writing_in_the_middle_ends_the_tape_there(tmp_path):
    path = str(tmp_path / "m.tap")
    tape = VirtualTape(path, "w")
    for n in range(5):
        tape.write_record(bytes([n]) * 1024)
        tape.write_filemark()
    tape.close()
    tape = VirtualTape(path, "w")
    tape.space_files(2)
    tape.write_record(b"new" * 100)
    tape.close()
    tape = VirtualTape(path, "r")
    tape.space_files(2)
    assert tape.read_record(4096) == b"new" * 100
    assert tape.read_record(4096) == b""
    assert tape.read_record(4096) == b""  # nothing of the old files 3 and 4 is left


def test_a_library_loads_cartridges_in_turn(tmp_path):
    library = VirtualLibrary(str(tmp_path / "lib"), "w", capacity=64 * KiB)
    assert library.name.endswith("000001.tap")
    library.write_record(b"1" * KiB)
    assert library.next_volume(2, "test")
    library.write_record(b"2" * KiB)
    library.close()
    assert sorted(os.listdir(tmp_path / "lib")) == ["000001.tap", "000002.tap"]
    again = VirtualLibrary(str(tmp_path / "lib"), "w")  # a new dump takes a blank cartridge
    assert again.name.endswith("000003.tap")
    again.close()
    appending = VirtualLibrary(str(tmp_path / "lib"), "w", append=True)  # after the last dump written
    assert appending.name.endswith("000002.tap") and appending.tell() == Position(1, 0)
    appending.close()
    reading = VirtualLibrary(str(tmp_path / "lib"), "r")
    assert reading.read_record(KiB) == b"1" * KiB
    assert reading.next_volume(2, "test") and reading.read_record(KiB) == b"2" * KiB
    assert reading.next_volume(3, "test")  # the blank one
    assert not reading.next_volume(4, "test")
    started = VirtualLibrary(str(tmp_path / "lib"), "r", start="000002.tap")
    assert started.read_record(KiB) == b"2" * KiB


def test_a_lone_tape_asks_for_the_next_one(tmp_path):
    (tmp_path / "one.tap").write_bytes(w(4) + b"frst" + w(4) + w(0))
    (tmp_path / "two.tap").write_bytes(w(4) + b"next" + w(4) + w(0))
    asked = []
    tape = SingleTape(
        str(tmp_path / "one.tap"), "r", prompt=lambda m: asked.append(m) or str(tmp_path / "two.tap")
    )
    assert tape.next_volume(2, "the dump of /x")
    assert "Volume 2 of the dump of /x" in asked[0]
    assert tape.read_record(100) == b"next"
    assert not SingleTape(str(tmp_path / "two.tap"), "r").next_volume(2, "d")


@pytest.mark.parametrize(
    ("text", "value"),
    [("400M", 400 << 20), ("2G", 2 << 30), ("512k", 512 << 10), ("1000", 1000), ("3MiB", 3 << 20)],
)
def test_sizes(text, value):
    assert parse_size(text) == value
