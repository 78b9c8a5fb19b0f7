"""`ndmptools serve` as a real process on loopback: CONNECT, CONFIG, TAPE and MOVER over the wire."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time

import pytest

from ndmptools.media.vtape import SingleTape
from ndmptools.ndmp import messages as m
from ndmptools.ndmp.wire import PeerClosed
from tests.ndmpclient import Client, ServeProcess, write_credentials

M = m.Message
E = m.Error
PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("serve")
    with ServeProcess(auth="md5", credentials=write_credentials(str(directory), password=PASSWORD)) as proc:
        yield proc
    # SIGTERM ends the server cleanly: exit 0, no traceback, every session ended
    assert proc.proc.returncode == 0, proc.stderr_text
    assert "Traceback" not in proc.stderr_text


@pytest.fixture
def client(server):
    with Client(server.port) as conn:
        conn.open()
        _, reply = conn.auth_md5("ndmp", PASSWORD)
        assert reply.error == E.NO_ERR
        yield conn


def error_of(result):
    head, body = result
    return head.error_code or body.error


def test_greeting_and_md5_auth(server):
    with Client(server.port) as conn:
        assert conn.greeting.reason == m.CONNECTED and conn.greeting.protocol_version == 4
        assert (
            error_of(conn.call(M.CONNECT_OPEN, m.connect_open_request(protocol_version=3)))
            == E.ILLEGAL_ARGS_ERR
        )
        assert error_of(conn.open()) == E.NO_ERR
        # before auth: only CONNECT and a few CONFIG requests
        head, _ = conn.call(M.CONFIG_GET_HOST_INFO)
        assert head.error_code == E.NOT_AUTHORIZED_ERR
        head, _ = conn.call(M.TAPE_OPEN, m.tape_open_request(device="/tmp/x.tap", mode=1))
        assert head.error_code == E.NOT_AUTHORIZED_ERR
        _, info = conn.call(M.CONFIG_GET_SERVER_INFO)
        assert info.auth_type == [m.AUTH_MD5]
        # text and none are not accepted by an md5 server; a wrong digest is refused
        assert error_of(conn.auth_text("ndmp", PASSWORD)) == E.NOT_AUTHORIZED_ERR
        assert error_of(conn.auth_md5("ndmp", "wrong")) == E.NOT_AUTHORIZED_ERR
        assert error_of(conn.auth_md5("ndmp", PASSWORD)) == E.NO_ERR
        _, host = conn.call(M.CONFIG_GET_HOST_INFO)
        assert host.hostname == socket.gethostname() and host.os_type == "Linux"


def test_md5_challenge_is_good_once(server):
    with Client(server.port) as conn:
        conn.open()
        _, attr = conn.call(M.CONFIG_GET_AUTH_ATTR, m.config_get_auth_attr_request(auth_type=m.AUTH_MD5))
        challenge = attr.server_attr.challenge
        assert len(challenge) == 64
        from ndmptools.ndmp.connect import md5_digest

        body = m.connect_client_auth_request(
            auth_data=m.auth_data(
                m.AUTH_MD5, m.auth_md5(auth_id="ndmp", auth_digest=md5_digest(challenge, PASSWORD))
            )
        )
        assert error_of(conn.call(M.CONNECT_CLIENT_AUTH, body)) == E.NO_ERR
    with Client(server.port) as conn:  # replaying that digest on a new connection gets nowhere
        assert error_of(conn.call(M.CONNECT_CLIENT_AUTH, body)) == E.NOT_AUTHORIZED_ERR


def test_three_failed_logins_close_the_connection(server):
    with Client(server.port) as conn:
        for _ in range(3):
            assert error_of(conn.auth_md5("ndmp", "guess")) == E.NOT_AUTHORIZED_ERR
        conn.sock.settimeout(5)
        with pytest.raises((PeerClosed, OSError)):
            conn.call(M.CONFIG_GET_SERVER_INFO)


def test_unknown_and_post_messages_are_not_supported(client):
    client.sequence += 1
    from ndmptools.ndmp.wire import encode_message, frame

    client.send_raw(frame(encode_message(client.sequence, m.MESSAGE_REQUEST, 0x7777, None)))
    head, _ = client.receive()
    assert head.error_code == E.NOT_SUPPORTED_ERR and head.reply_sequence == client.sequence
    head, _ = client.call(M.NOTIFY_DATA_HALTED, m.notify_data_halted_post(reason=1))
    assert head.error_code == E.NOT_SUPPORTED_ERR
    head, _ = client.call(M.SCSI_OPEN, m.scsi_open_request(device="/dev/sg0"))
    assert head.error_code == E.NOT_SUPPORTED_ERR


def test_config_describes_dump(client):
    _, butype = client.call(M.CONFIG_GET_BUTYPE_INFO)
    (dump,) = butype.butype_info
    assert dump.butype_name == "dump"
    assert {p.name for p in dump.default_env} >= {"LEVEL", "HIST", "FILESYSTEM"}
    assert dump.attrs & m.BUTYPE_RECOVER_DIRECT and dump.attrs & m.BUTYPE_BACKUP_INCREMENTAL
    _, types = client.call(M.CONFIG_GET_CONNECTION_TYPE)
    assert types.addr_types == [m.ADDR_LOCAL, m.ADDR_TCP]
    _, fs = client.call(M.CONFIG_GET_FS_INFO)
    assert any(info.fs_logical_device == "/" for info in fs.fs_info)
    assert error_of(client.call(M.CONFIG_GET_TAPE_INFO)) == E.NO_ERR


# -- TAPE: the parts of ndmjob's test-tape its own client cannot reach ----------------------------


class TapeCalls:
    def __init__(self, client, path):
        self.c, self.path = client, path

    def open(self, mode, device=None):
        return error_of(self.c.call(M.TAPE_OPEN, m.tape_open_request(device=device or self.path, mode=mode)))

    def close(self):
        return error_of(self.c.call(M.TAPE_CLOSE))

    def mtio(self, op, count):
        head, body = self.c.call(M.TAPE_MTIO, m.tape_mtio_request(tape_op=op, count=count))
        return (head.error_code or body.error), (body.resid_count if body else None)

    def write(self, data):
        head, body = self.c.call(M.TAPE_WRITE, m.tape_write_request(data_out=data))
        return head.error_code or body.error

    def read(self, count):
        head, body = self.c.call(M.TAPE_READ, m.tape_read_request(count=count))
        return (head.error_code or body.error), (body.data_in if body else None)

    def where(self):
        _, state = self.c.call(M.TAPE_GET_STATE)
        blockno = None if state.unsupported & m.TAPE_STATE_BLOCKNO_UNS else state.blockno
        return state.file_num, blockno


def fill(size, record, file):
    return bytes((record * 7 + file * 13 + i) & 0xFF for i in range(size))


SERIES = [(1, 512), (100, 1024), (1, 512), (100, 139), (1, 512), (99, 10240), (1, 512), (3, 32768), (1, 512)]


def test_tape_series_as_ndmjob_runs_it(client, tmp_path):
    t = TapeCalls(client, str(tmp_path / "series.tap"))
    assert t.close() == E.DEV_NOT_OPEN_ERR
    assert t.open(m.TAPE_READ_MODE) == E.NO_DEVICE_ERR  # no such image yet
    assert t.open(123) == E.ILLEGAL_ARGS_ERR
    assert t.open(m.TAPE_RDWR_MODE) == E.NO_ERR
    assert t.open(m.TAPE_READ_MODE) == E.DEVICE_OPENED_ERR
    # zero-length write and read: NDMP v4 says NO_ERR (ndmjob's own client cannot send the write)
    assert t.write(b"") == E.NO_ERR
    assert t.read(0) == (E.NO_ERR, b"")
    assert t.read(0x80000000)[0] == E.ILLEGAL_ARGS_ERR
    # basic write/read
    assert t.write(b"\x55" * 1024) == E.NO_ERR
    assert t.mtio(m.MTIO_EOF, 1) == (E.NO_ERR, 0)
    assert t.mtio(m.MTIO_REW, 1) == (E.NO_ERR, 0)
    assert t.read(2048) == (E.NO_ERR, b"\x55" * 1024)  # oversize read: the record
    assert t.read(1024)[0] == E.EOF_ERR
    assert t.mtio(m.MTIO_REW, 1)[0] == E.NO_ERR
    assert t.read(512) == (E.NO_ERR, b"\x55" * 512)  # undersize read: the record's start, record consumed
    assert t.read(512)[0] == E.EOF_ERR
    assert t.close() == E.NO_ERR
    assert t.open(m.TAPE_READ_MODE) == E.NO_ERR
    assert t.write(b"x" * 10) == E.PERMISSION_ERR
    assert t.mtio(m.MTIO_EOF, 1)[0] == E.PERMISSION_ERR
    assert t.close() == E.NO_ERR

    # T-BWR: residues at the start and at the end of data
    assert t.open(m.TAPE_RDWR_MODE) == E.NO_ERR
    assert t.mtio(m.MTIO_BSR, 100) == (E.NO_ERR, 100)
    assert t.mtio(m.MTIO_BSF, 100) == (E.NO_ERR, 100)
    assert t.mtio(m.MTIO_EOF, 1) == (E.NO_ERR, 0)
    assert t.mtio(m.MTIO_BSF, 100) == (E.NO_ERR, 99)
    assert t.mtio(m.MTIO_FSF, 100) == (E.NO_ERR, 99)
    assert t.read(65536)[0] == E.EOM_ERR
    assert t.mtio(m.MTIO_REW, 1)[0] == E.NO_ERR
    assert t.write(b"y" * 512) == E.NO_ERR  # writing at the start ends the tape there: no filemark
    assert t.mtio(m.MTIO_BSR, 100) == (E.NO_ERR, 99)
    assert t.mtio(m.MTIO_FSR, 100) == (E.NO_ERR, 99)
    assert t.mtio(m.MTIO_FSR, 100) == (E.NO_ERR, 100)
    assert t.mtio(m.MTIO_FSF, 100) == (E.NO_ERR, 100)

    # T-WRITE
    assert t.mtio(m.MTIO_REW, 1)[0] == E.NO_ERR
    for file, (count, size) in enumerate(SERIES):
        for record in range(count):
            assert t.write(fill(size, record, file)) == E.NO_ERR
            assert t.where() == (file, record + 1)
        assert t.mtio(m.MTIO_EOF, 1)[0] == E.NO_ERR
        assert t.where() == (file + 1, 0)
    assert t.close() == E.NO_ERR

    # T-READ: a filemark stops a read and stays ahead until FSF
    assert t.open(m.TAPE_READ_MODE) == E.NO_ERR
    for file, (count, size) in enumerate(SERIES):
        for record in range(count):
            assert t.read(size) == (E.NO_ERR, fill(size, record, file))
            assert t.where() == (file, record + 1)
        assert t.read(size)[0] == E.EOF_ERR
        assert t.where() == (file, None)
        assert t.mtio(m.MTIO_FSF, 1) == (E.NO_ERR, 0)
        assert t.where() == (file + 1, 0)

    # T-MTIO: FSR/BSR stop at filemarks and report what they did not space
    for file, (count, size) in enumerate(SERIES):
        assert t.mtio(m.MTIO_REW, 1) == (E.NO_ERR, 0)
        assert t.mtio(m.MTIO_FSF, file) == (E.NO_ERR, 0)
        assert t.where() == (file, 0)
        assert t.mtio(m.MTIO_FSR, 1_000_000) == (E.NO_ERR, 1_000_000 - count)
        assert t.where() == (file, count)
        assert t.mtio(m.MTIO_BSR, 1_000_000) == (E.NO_ERR, 1_000_000 - count)
        assert t.where() == (file, 0)
        assert t.mtio(m.MTIO_FSR, count // 2) == (E.NO_ERR, 0)
        assert t.read(size) == (E.NO_ERR, fill(size, count // 2, file))
        if count // 2 + 1 > 1:
            assert t.mtio(m.MTIO_BSR, 2) == (E.NO_ERR, 0)
            assert t.read(size) == (E.NO_ERR, fill(size, count // 2 - 1, file))
    assert t.close() == E.NO_ERR

    # The image is a SIMH virtual tape the media backend reads alike.
    tape = SingleTape(t.path, "r")
    try:
        assert tape.read_record(65536) == fill(512, 0, 0)
        assert tape.read_record(65536) == b""  # the filemark
        assert tape.read_record(65536) == fill(1024, 0, 1)
    finally:
        tape.close()


def test_a_tape_is_held_by_one_session(server, client, tmp_path):
    path = str(tmp_path / "busy.tap")
    assert error_of(client.call(M.TAPE_OPEN, m.tape_open_request(device=path, mode=1))) == E.NO_ERR
    with Client(server.port) as other:
        other.open()
        other.auth_md5("ndmp", PASSWORD)
        assert (
            error_of(other.call(M.TAPE_OPEN, m.tape_open_request(device=path, mode=0))) == E.DEVICE_BUSY_ERR
        )
    assert error_of(client.call(M.TAPE_CLOSE)) == E.NO_ERR


# -- MOVER: the data path over TCP ----------------------------------------------------------------


def tcp_address(addr):
    (first,) = addr.tcp_addr
    return socket.inet_ntoa(struct.pack(">I", first.ip_addr)), first.port


def test_mover_backup_over_tcp_pauses_at_the_window_end(client, tmp_path):
    path = str(tmp_path / "backup.tap")
    record = 10240
    assert error_of(client.call(M.TAPE_OPEN, m.tape_open_request(device=path, mode=1))) == E.NO_ERR
    assert error_of(client.call(M.MOVER_SET_RECORD_SIZE, m.mover_set_record_size_request(len=record))) == 0
    window = m.mover_set_window_request(offset=0, length=2 * record)
    assert error_of(client.call(M.MOVER_SET_WINDOW, window)) == E.NO_ERR
    _, listen = client.call(
        M.MOVER_LISTEN, m.mover_listen_request(mode=m.MOVER_MODE_READ, addr_type=m.ADDR_TCP)
    )
    assert listen.error == E.NO_ERR
    stream = os.urandom(3 * record + 1000)
    with socket.create_connection(tcp_address(listen.connect_addr)) as data:
        data.sendall(stream)
        paused = client.wait_post(M.NOTIFY_MOVER_PAUSED)
        assert paused.reason == m.MOVER_PAUSE_EOW and paused.seek_position == 2 * record
        _, state = client.call(M.MOVER_GET_STATE)
        assert state.state == m.MOVER_STATE_PAUSED and state.bytes_moved == 2 * record
        # while paused the DMA may work the tape; then the next window, and on
        assert (
            error_of(
                client.call(
                    M.MOVER_SET_WINDOW, m.mover_set_window_request(offset=2 * record, length=2**64 - 1)
                )
            )
            == 0
        )
        assert error_of(client.call(M.MOVER_CONTINUE)) == E.NO_ERR
        data.shutdown(socket.SHUT_WR)
        halted = client.wait_post(M.NOTIFY_MOVER_HALTED)
    assert halted.reason == m.MOVER_HALT_CONNECT_CLOSED
    _, state = client.call(M.MOVER_GET_STATE)
    assert state.state == m.MOVER_STATE_HALTED and state.record_num == 4
    assert error_of(client.call(M.MOVER_STOP)) == E.NO_ERR
    assert error_of(client.call(M.TAPE_MTIO, m.tape_mtio_request(tape_op=m.MTIO_EOF, count=1))) == 0
    assert error_of(client.call(M.TAPE_CLOSE)) == E.NO_ERR
    tape = SingleTape(path, "r")
    try:
        records = [tape.read_record(record) for _ in range(4)]
        assert tape.read_record(record) == b""
    finally:
        tape.close()
    assert all(len(r) == record for r in records)
    assert b"".join(records) == stream + b"\0" * (4 * record - len(stream))  # the last record padded


def test_mover_recover_serves_the_reads_the_dma_asks_for(client, tmp_path):
    path = str(tmp_path / "recover.tap")
    record = 4096
    image = os.urandom(8 * record)
    t = TapeCalls(client, path)
    assert t.open(m.TAPE_RDWR_MODE) == E.NO_ERR
    for start in range(0, len(image), record):
        assert t.write(image[start : start + record]) == E.NO_ERR
    assert t.mtio(m.MTIO_EOF, 1)[0] == E.NO_ERR
    assert t.mtio(m.MTIO_REW, 1)[0] == E.NO_ERR
    assert error_of(client.call(M.MOVER_SET_RECORD_SIZE, m.mover_set_record_size_request(len=record))) == 0
    assert (
        error_of(client.call(M.MOVER_SET_WINDOW, m.mover_set_window_request(offset=0, length=len(image))))
        == 0
    )
    _, listen = client.call(
        M.MOVER_LISTEN, m.mover_listen_request(mode=m.MOVER_MODE_WRITE, addr_type=m.ADDR_TCP)
    )
    assert listen.error == E.NO_ERR
    assert t.mtio(m.MTIO_REW, 1)[0] == E.ILLEGAL_STATE_ERR  # the mover owns the tape now
    with socket.create_connection(tcp_address(listen.connect_addr)) as data:
        data.settimeout(20)

        def receive(size):
            got = b""
            while len(got) < size:
                chunk = data.recv(size - len(got))
                assert chunk
                got += chunk
            return got

        # a direct-access read in the middle, then one before it (the mover goes back)
        assert (
            error_of(client.call(M.MOVER_READ, m.mover_read_request(offset=5 * record + 100, length=6000)))
            == 0
        )
        assert receive(6000) == image[5 * record + 100 : 5 * record + 6100]
        assert error_of(client.call(M.MOVER_READ, m.mover_read_request(offset=10, length=5000))) == 0
        assert receive(5000) == image[10:5010]
        # outside the window: the mover pauses for the DMA to seek
        assert error_of(client.call(M.MOVER_READ, m.mover_read_request(offset=len(image), length=10))) == 0
        paused = client.wait_post(M.NOTIFY_MOVER_PAUSED)
        assert paused.reason == m.MOVER_PAUSE_SEEK and paused.seek_position == len(image)
        assert error_of(client.call(M.MOVER_ABORT)) == E.NO_ERR
        halted = client.wait_post(M.NOTIFY_MOVER_HALTED)
        assert halted.reason == m.MOVER_HALT_ABORTED
    assert error_of(client.call(M.MOVER_STOP)) == E.NO_ERR
    assert t.close() == E.NO_ERR


def test_mover_connect_to_a_listening_data_end(client, tmp_path):
    path = str(tmp_path / "connect.tap")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        assert error_of(client.call(M.TAPE_OPEN, m.tape_open_request(device=path, mode=1))) == 0
        port = listener.getsockname()[1]
        address = m.addr(m.ADDR_TCP, [m.tcp_addr(ip_addr=0x7F000001, port=port)])
        assert (
            error_of(
                client.call(M.MOVER_CONNECT, m.mover_connect_request(mode=m.MOVER_MODE_READ, addr=address))
            )
            == 0
        )
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"z" * 20480)
        halted = client.wait_post(M.NOTIFY_MOVER_HALTED)
        assert halted.reason == m.MOVER_HALT_CONNECT_CLOSED
    _, state = client.call(M.MOVER_GET_STATE)
    assert state.bytes_moved == 20480
    closed = m.addr(m.ADDR_TCP, [m.tcp_addr(ip_addr=0x7F000001, port=port)])
    assert error_of(client.call(M.MOVER_STOP)) == 0
    assert (
        error_of(client.call(M.MOVER_CONNECT, m.mover_connect_request(mode=0, addr=closed))) == E.CONNECT_ERR
    )
    assert error_of(client.call(M.TAPE_CLOSE)) == 0


def test_connect_close_says_shutdown(server):
    with Client(server.port) as conn:
        conn.send(M.CONNECT_CLOSE)
        head, body = conn.receive()
        assert head.message_code == M.NOTIFY_CONNECTION_STATUS and body.reason == m.SHUTDOWN
        assert conn.sock.recv(1) == b""


def test_session_limit_refuses_the_extra_connections(tmp_path):
    from ndmptools.ndmp.wire import read_record, split_record

    with ServeProcess("--max-sessions", "2") as proc:
        burst = [socket.create_connection(("127.0.0.1", proc.port), timeout=10) for _ in range(6)]
        try:
            reasons = []
            for sock in burst:
                incoming = split_record(read_record(sock))
                reasons.append(m.notify_connection_status_post.decode(incoming.body).reason)
            assert sorted(reasons) == [m.CONNECTED] * 2 + [m.REFUSED] * 4
        finally:
            for sock in burst:
                sock.close()
        # the slots come back when those sessions end
        deadline = time.monotonic() + 10
        while True:
            with Client(proc.port) as again:
                if again.greeting.reason == m.CONNECTED:
                    assert error_of(again.call(M.CONFIG_GET_SERVER_INFO)) == 0
                    break
            assert time.monotonic() < deadline, "the slots were not given back"
            time.sleep(0.1)


def test_each_connection_is_one_of_the_machines_sessions(tmp_path):
    """With max_sessions = 2, two NDMP connections fill the machine: a third and a dump are refused."""
    from ndmptools.engine import sessions

    state = str(tmp_path / "state")
    with ServeProcess(env={"NDMPTOOLS_STATE_DIR": state}, machine_sessions=2) as proc:
        first, second = Client(proc.port), Client(proc.port)
        try:
            assert first.greeting.reason == second.greeting.reason == m.CONNECTED
            held = sessions.running(state)
            assert [r.kind for r in held] == ["ndmp", "ndmp"]
            assert all(r.path.startswith("NDMP connection from 127.0.0.1:") for r in held)
            with Client(proc.port) as third:
                assert third.greeting.reason == m.REFUSED
                assert "the session limit is reached: 2 of 2 in use" in third.greeting.text_reason
            tree = tmp_path / "tree"
            tree.mkdir()
            (tree / "a").write_bytes(b"a")
            dump = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ndmptools",
                    "--state-dir",
                    state,
                    "dump",
                    "-f",
                    str(tmp_path / "d"),
                    str(tree),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert dump.returncode == 12, dump.stderr
            assert "ndmp NDMP connection from 127.0.0.1:" in dump.stderr
        finally:
            first.close()
        deadline = time.monotonic() + 10
        while len(sessions.running(state)) != 1:  # the closed connection gives its slot back
            assert time.monotonic() < deadline, sessions.running(state)
            time.sleep(0.05)
        with Client(proc.port) as again:
            assert again.greeting.reason == m.CONNECTED
            assert error_of(again.call(M.CONFIG_GET_SERVER_INFO)) == 0
        second.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--listen", "0.0.0.0:0", "--auth", "none"], "--allow-remote"),
        (["--listen", "0.0.0.0:0", "--credentials", "/nonexistent/serve.conf"], "--allow-remote"),
        (
            ["--listen", "127.0.0.1:0", "--auth", "md5", "--credentials", "/nonexistent/serve.conf"],
            "cannot open",
        ),
        (["--listen", "127.0.0.1:99999", "--auth", "none"], "port"),
        (["--listen", "127.0.0.1:\u0663", "--auth", "none"], "port"),  # an Arabic-Indic digit
    ],
)
def test_serve_refuses_bad_settings_in_one_line(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "ndmptools", "serve", *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_refuses_a_readable_credentials_file(tmp_path):
    path = write_credentials(str(tmp_path))
    os.chmod(path, 0o644)
    result = subprocess.run(
        [sys.executable, "-m", "ndmptools", "serve", "--listen", "127.0.0.1:0", "--credentials", path],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "chmod 600" in result.stderr


def test_a_cartridge_library_behind_the_tape_service(client, tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    t = TapeCalls(client, f"vtape:{library}")
    assert t.open(m.TAPE_RDWR_MODE) == E.NO_ERR
    for record in range(3):
        assert t.write(fill(2048, record, 0)) == E.NO_ERR
    assert t.mtio(m.MTIO_EOF, 1)[0] == E.NO_ERR
    assert t.write(fill(2048, 0, 1)) == E.NO_ERR
    assert t.mtio(m.MTIO_EOF, 1)[0] == E.NO_ERR
    assert t.mtio(m.MTIO_REW, 1)[0] == E.NO_ERR
    for record in range(3):
        assert t.read(4096) == (E.NO_ERR, fill(2048, record, 0))
    assert t.read(4096)[0] == E.EOF_ERR
    assert t.where() == (0, None)  # still before the filemark, as NDMP v4 has it
    assert t.mtio(m.MTIO_FSF, 1) == (E.NO_ERR, 0)
    assert t.read(4096) == (E.NO_ERR, fill(2048, 0, 1))
    assert t.mtio(m.MTIO_BSR, 1)[0] == E.NOT_SUPPORTED_ERR  # record spacing is for .tap images
    assert t.close() == E.NO_ERR
    assert sorted(os.listdir(library))  # the cartridge the library made
