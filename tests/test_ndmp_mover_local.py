"""The MOVER in process: the LOCAL socketpair DATA uses, and the pause at the end of a cartridge."""

from __future__ import annotations

import os
import socket

import pytest

from ndmptools.media.base import Position
from ndmptools.media.vtape import SingleTape
from ndmptools.ndmp import messages as m
from ndmptools.ndmp.config import ServeSettings
from ndmptools.ndmp.session import NdmpError, Session
from ndmptools.ndmp.tape import TapImage
from ndmptools.ndmp.wire import read_record, split_record


@pytest.fixture
def session():
    ours, theirs = socket.socketpair()
    theirs.settimeout(20)
    sess = Session(ours, "test", ServeSettings(auth="none"), 1)
    yield sess, theirs
    sess.end()
    ours.close()
    theirs.close()


def next_post(control: socket.socket):
    incoming = split_record(read_record(control))
    definition = m.MESSAGES[incoming.header.message_code]
    return incoming.header.message_code, definition.request.decode(incoming.body)


def test_local_data_socket_needs_a_local_listen(session):
    sess, _ = session
    with pytest.raises(NdmpError) as err:
        sess.mover.local_data_socket()
    assert err.value.code == m.Error.ILLEGAL_STATE_ERR


def test_backup_through_the_local_socketpair_pauses_at_end_of_medium(session, tmp_path):
    sess, control = session
    record = 8192
    first = tmp_path / "one.tap"
    sess.tape.open(str(first), m.TAPE_RDWR_MODE)
    sess.tape.device.close()
    sess.tape.device = TapImage(str(first), True, capacity=3 * (record + 8) + 4)  # three records fit
    sess.mover.set_record_size(record)
    sess.mover.listen(m.MOVER_MODE_READ, m.ADDR_LOCAL)
    data_end = sess.mover.local_data_socket()
    assert sess.mover.state == m.MOVER_STATE_ACTIVE
    stream = os.urandom(5 * record)
    data_end.sendall(stream)
    code, paused = next_post(control)
    assert code == m.Message.NOTIFY_MOVER_PAUSED and paused.reason == m.MOVER_PAUSE_EOM
    assert paused.seek_position == 3 * record
    # the DMA changes cartridges while the mover waits, then goes on
    sess.tape.close()
    second = tmp_path / "two.tap"
    sess.tape.open(str(second), m.TAPE_RDWR_MODE)
    sess.mover.set_window(3 * record, (1 << 64) - 1)
    sess.mover.cont()
    data_end.close()
    code, halted = next_post(control)
    assert code == m.Message.NOTIFY_MOVER_HALTED and halted.reason == m.MOVER_HALT_CONNECT_CLOSED
    assert sess.mover.get_state().bytes_moved == 5 * record
    sess.tape.close()
    got = b""
    for path in (first, second):
        tape = SingleTape(str(path), "r")
        try:
            while chunk := tape.read_record(record):
                got += chunk
        finally:
            tape.close()
    assert got == stream


def test_ending_the_session_aborts_a_moving_mover(session, tmp_path):
    sess, _control = session
    sess.tape.open(str(tmp_path / "abort.tap"), m.TAPE_RDWR_MODE)
    sess.mover.listen(m.MOVER_MODE_READ, m.ADDR_LOCAL)
    data_end = sess.mover.local_data_socket()
    with data_end:
        sess.end()
        assert sess.mover.state == m.MOVER_STATE_HALTED
        assert sess.mover.halt_reason == m.MOVER_HALT_ABORTED
        assert sess.tape.device is None


def test_a_client_that_reads_nothing_is_cut_off(session, monkeypatch):
    import ndmptools.ndmp.session as session_module

    sess, _control = session
    monkeypatch.setattr(session_module, "SEND_TIMEOUT", 0.3)
    sess.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    post = m.log_message_post(entry="x" * 60000)
    with pytest.raises(TimeoutError):
        for _ in range(1000):  # far more than the socket buffers hold
            sess._send(m.MESSAGE_REQUEST, m.Message.LOG_MESSAGE, post, m.log_message_post)
    # the connection is shut down, so the session's own reader ends too
    with pytest.raises(OSError):
        sess.sock.send(b"x")


def test_recover_seeks_on_a_scsi_drive(session):
    """Direct-access reads from a drive: the mover locates records through the st backend (a fake
    driver plays the kernel below the ioctl seam: no tape drive exists here)."""
    from ndmptools.media.st import ScsiTape
    from ndmptools.ndmp.tape import MediumDevice
    from tests.fake_st import FakeCartridge, FakeStDriver

    sess, _control = session
    record = 4096
    image = os.urandom(6 * record)
    cartridge = FakeCartridge(
        items=[b"label", None, *(image[i : i + record] for i in range(0, len(image), record)), None]
    )
    driver = FakeStDriver(cartridge)
    drive = ScsiTape("/dev/nst0", "r", ops=driver)
    drive.seek(Position(1, 0))  # the DMA put the tape at the dump, the second file
    device = MediumDevice(drive, writable=False)
    device.file_num, device.record_num = 1, 0
    sess.tape.device = device
    sess.mover.set_record_size(record)
    sess.mover.set_window(0, len(image))
    sess.mover.listen(m.MOVER_MODE_WRITE, m.ADDR_LOCAL)
    data_end = sess.mover.local_data_socket()
    data_end.settimeout(20)

    def receive(size):
        got = b""
        while len(got) < size:
            got += data_end.recv(size - len(got))
        return got

    with data_end:
        sess.mover.read(4 * record + 10, 3000)
        assert receive(3000) == image[4 * record + 10 : 4 * record + 3010]
        sess.mover.read(record - 5, 10)  # back, across a record boundary
        assert receive(10) == image[record - 5 : record + 5]
        rewinds = sum(call.startswith("op6:") for call in driver.calls)  # MTREW
        sess.mover.read(record, 3 * record)  # on in order, over three records
        assert receive(3 * record) == image[record : 4 * record]
        # at most one locate (a rewind) to get there, not one per record
        assert sum(call.startswith("op6:") for call in driver.calls) - rewinds <= 1
    sess.tape.device = None
    drive.close()
