"""The NDMP codec: XDR primitives, the v4 bodies, record marking, the MD5 rule, the config file."""

from __future__ import annotations

import hashlib
import os
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ndmptools.ndmp import messages as m
from ndmptools.ndmp.config import ServeConfigError, ServeSettings, load_credentials, parse_listen
from ndmptools.ndmp.connect import md5_digest
from ndmptools.ndmp.wire import RecordTooLong, frame, read_record, split_record
from ndmptools.ndmp.xdr import XdrError


def test_header_is_six_big_endian_words():
    head = m.header(
        sequence=7, time_stamp=9, message_type=1, message_code=0x303, reply_sequence=6, error_code=4
    )
    assert m.header.encode(head) == struct.pack(">6I", 7, 9, 1, 0x303, 6, 4)
    assert m.HEADER_SIZE == 24


def test_strings_and_opaques_pad_to_four_bytes():
    body = m.tape_open_request(device="abcde", mode=1)
    assert m.tape_open_request.encode(body) == struct.pack(">I", 5) + b"abcde\0\0\0" + struct.pack(">I", 1)
    write = m.tape_write_request(data_out=b"\x01\x02")
    assert m.tape_write_request.encode(write) == struct.pack(">I", 2) + b"\x01\x02\0\0"


def test_u_quad_is_high_word_first():
    body = m.mover_set_window_request(offset=(1 << 32) + 2, length=3)
    assert m.mover_set_window_request.encode(body) == struct.pack(">IIII", 1, 2, 0, 3)


def test_unions_carry_their_arm():
    tcp = m.addr(m.ADDR_TCP, [m.tcp_addr(ip_addr=0x7F000001, port=10000)])
    data = m.addr.encode(tcp)
    assert data == struct.pack(">IIIII", 1, 1, 0x7F000001, 10000, 0)
    assert m.addr.decode(data) == tcp
    assert m.addr.encode(m.addr(m.ADDR_LOCAL)) == struct.pack(">I", 0)
    with pytest.raises(XdrError):
        m.addr.decode(struct.pack(">I", 2))  # RESERVED has no arm


def test_every_body_round_trips_its_defaults():
    for definition in m.MESSAGES.values():
        for kind in (definition.request, definition.reply):
            if kind is not None:
                value = kind()
                assert kind.decode(kind.encode(value)) == value, kind.name


def test_lengths_beyond_the_buffer_do_not_decode():
    # A string claiming 4 GiB, an array claiming a billion entries: refused before allocating.
    with pytest.raises(XdrError):
        m.tape_open_request.decode(struct.pack(">I", 0xFFFFFFF0) + b"ab")
    with pytest.raises(XdrError):
        m.data_start_backup_request.decode(struct.pack(">II", 0, 1_000_000_000))
    with pytest.raises(XdrError):
        m.tape_mtio_request.decode(b"\0\0\0")  # truncated
    with pytest.raises(XdrError):
        m.connect_open_request.decode(struct.pack(">I", 0x10000))  # a u_short out of range


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_fail_cleanly(data):
    for definition in m.MESSAGES.values():
        for kind in (definition.request, definition.reply):
            if kind is None:
                continue
            try:
                value = kind.decode(data)
            except XdrError:
                continue
            assert kind.encode(value) == data[: len(kind.encode(value))]


def test_record_marking_joins_fragments_and_caps_the_size():
    left, right = socket.socketpair()
    with left, right:
        payload = os.urandom(3000)
        # two fragments: the first without the last-fragment bit
        left.sendall(
            struct.pack(">I", 1000) + payload[:1000] + struct.pack(">I", 0x80000000 | 2000) + payload[1000:]
        )
        assert read_record(right) == payload
        left.sendall(frame(b"x" * 100))
        assert read_record(right) == b"x" * 100
        left.sendall(struct.pack(">I", 0x80000000 | 5000))
        with pytest.raises(RecordTooLong):
            read_record(right, max_size=4096)
    with pytest.raises(XdrError):
        split_record(b"short")


def test_md5_digest_follows_the_ndmp_layout():
    challenge = bytes(range(64))
    password = "secret"
    message = bytearray(128)
    message[0:6] = b"secret"
    message[58:122] = challenge
    message[122:128] = b"secret"
    assert md5_digest(challenge, password) == hashlib.md5(bytes(message)).digest()
    # ndmjob uses the first 32 bytes of a longer password
    long_password = "p" * 40
    assert md5_digest(challenge, long_password) == md5_digest(challenge, "p" * 32)
    with pytest.raises(ValueError):
        md5_digest(b"short", password)


def test_credentials_file_must_be_private(tmp_path):
    path = tmp_path / "serve.conf"
    path.write_text("[user ndmp]\npassword = pw1\n[user other]\npassword = pw2\n")
    path.chmod(0o600)
    assert load_credentials(str(path)) == {"ndmp": "pw1", "other": "pw2"}
    path.chmod(0o640)
    with pytest.raises(ServeConfigError, match="group or others"):
        load_credentials(str(path))
    path.chmod(0o600)
    path.write_text("[user ndmp]\npassword =\n")
    with pytest.raises(ServeConfigError, match="no password"):
        load_credentials(str(path))
    path.write_text("[users]\nndmp = x\n")
    with pytest.raises(ServeConfigError, match="user NAME"):
        load_credentials(str(path))
    with pytest.raises(ServeConfigError, match="cannot open"):
        load_credentials(str(tmp_path / "missing.conf"))


def test_settings_refuse_remote_and_passwordless_auth():
    ServeSettings(auth="none").check()
    with pytest.raises(ServeConfigError, match="no default password"):
        ServeSettings(auth="md5").check()
    with pytest.raises(ServeConfigError, match="--allow-remote"):
        ServeSettings(host="0.0.0.0", auth="none").check()
    ServeSettings(host="0.0.0.0", auth="none", allow_remote=True).check()
    ServeSettings(host="::1", auth="none").check()
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:10001") == ("::1", 10001)
    assert parse_listen(":10002") == ("127.0.0.1", 10002)
    with pytest.raises(ServeConfigError):
        parse_listen("127.0.0.1:http")


def test_a_record_cut_short_times_out():
    from ndmptools.ndmp.wire import RecordTimeout

    left, right = socket.socketpair()
    with left, right:
        left.sendall(struct.pack(">I", 0x80000000 | 100) + b"only part")
        with pytest.raises(RecordTimeout):
            read_record(right, record_timeout=0.2)
