"""hypothesis against `ndmptools serve`: malformed, oversized, truncated and out-of-order records.

Each example is a connection of its own that sends garbage (raw bytes,
random bodies under real headers, lengths past the cap, records cut short,
well-formed requests in any order, before and after authenticating), while
one good session keeps working beside them. The server must answer with
NDMP errors or close the connection, never fail inside a handler (no
traceback in its log), never stop serving, and never disturb the good session.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndmptools.ndmp import messages as m
from ndmptools.ndmp import xdr
from ndmptools.ndmp.connect import md5_digest
from ndmptools.ndmp.wire import encode_message, frame
from tests.ndmpclient import Client, ServeProcess, write_credentials

M = m.Message
PASSWORD = "fuzz-pw"
# Requests that would start real work (a backup of some path, a restore somewhere) are left to
# the DATA tests: here they get random bytes only, which do not decode into a sensible job.
NOT_BUILT = {M.DATA_START_BACKUP, M.DATA_START_RECOVER, M.DATA_START_RECOVER_FILEHIST}
SAFE_TEXT = st.text(st.sampled_from("abcxyz09._-"), max_size=12)


def values_of(kind: xdr.XdrType, field: str = "") -> st.SearchStrategy:
    """A strategy for well-formed values of an XDR type (names stay relative, addresses loopback)."""
    if isinstance(kind, xdr.Enum):
        return st.one_of(st.sampled_from(sorted(kind.values.values())), st.integers(0, 2**32 - 1))
    if isinstance(kind, xdr.String):
        return SAFE_TEXT
    if isinstance(kind, xdr.FixedOpaque):
        return st.binary(min_size=kind.size, max_size=kind.size)
    if isinstance(kind, xdr.Opaque):
        return st.binary(max_size=64)
    if isinstance(kind, xdr.Array):
        return st.lists(values_of(kind.element), max_size=3)
    if isinstance(kind, xdr.Struct):
        fields = {name: values_of(sub, name) for name, sub in kind.fields}
        if kind.name == "tcp_addr":
            fields["ip_addr"] = st.just(0x7F000001)
        return st.fixed_dictionaries(fields)
    if isinstance(kind, xdr.Union):
        arms = []
        for switch, (_name, arm) in kind.arms.items():
            if arm is None:
                arms.append(st.just(kind(switch)))
            else:
                arms.append(values_of(arm).map(lambda value, s=switch: kind(s, value)))
        return st.one_of(arms)
    if kind is xdr.UShort:
        return st.integers(0, 0xFFFF)
    if kind is xdr.Short:
        return st.integers(-0x8000, 0x7FFF)
    if kind is xdr.UChar:
        return st.integers(0, 0xFF)
    if kind is xdr.UHyper:
        return st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 1 << 20))
    if kind is xdr.Bool:
        return st.booleans()
    if field == "count":
        return st.integers(0, 1 << 16)
    return st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 1 << 16))


def request_records() -> st.SearchStrategy:
    """One request record: a real header and a well-formed body of that message (or none)."""
    codes = sorted(code for code, d in m.MESSAGES.items() if code not in NOT_BUILT)

    def build(code):
        definition = m.MESSAGES[code]
        body = st.just(None) if definition.request is None else values_of(definition.request)
        return st.tuples(st.just(code), body)

    return st.sampled_from(codes).flatmap(build)


def encode(code, body, sequence, message_type=m.MESSAGE_REQUEST):
    kind = m.MESSAGES[code].request
    return frame(encode_message(sequence, message_type, code, body, kind if body is not None else None))


garbage = st.one_of(
    st.binary(max_size=300).map(lambda b: ("raw", b)),
    st.binary(max_size=300).map(lambda b: ("framed", frame(b))),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.binary(max_size=200)).map(
        lambda t: ("header+junk", frame(struct.pack(">6I", 1, 0, t[0] & 3, t[1], 0, 0) + t[2]))
    ),
    st.sampled_from(sorted(m.MESSAGES)).flatmap(
        lambda code: st.binary(max_size=120).map(
            lambda b: ("junk body", frame(struct.pack(">6I", 1, 0, 0, code, 0, 0) + b))
        )
    ),
    st.integers(0x00400001, 0x7FFFFFFF).map(
        lambda n: ("oversized", struct.pack(">I", 0x80000000 | n) + b"x" * 64)
    ),
    st.integers(0x00100000, 0x7FFFFFFF).map(lambda n: ("many fragments", struct.pack(">I", n) + b"y" * 32)),
    st.tuples(request_records(), st.integers(1, 200)).map(
        lambda t: ("truncated", encode(t[0][0], t[0][1], 1)[: t[1]])
    ),
    st.tuples(request_records(), st.just(1)).map(lambda t: ("reply-typed", encode(t[0][0], t[0][1], 5, 1))),
)

sessions = st.tuples(
    st.booleans(),  # authenticate first
    st.lists(st.one_of(request_records().map(lambda r: ("request", r)), garbage), min_size=1, max_size=8),
)


class GoodSession(threading.Thread):
    """A session that authenticates and keeps doing real work until told to stop."""

    def __init__(self, port: int, tape: str) -> None:
        super().__init__(daemon=True)
        self.port, self.tape = port, tape
        self.stop = threading.Event()
        self.rounds = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with Client(self.port) as c:
                c.open()
                _, attr = c.call(M.CONFIG_GET_AUTH_ATTR, m.config_get_auth_attr_request(auth_type=m.AUTH_MD5))
                auth = m.auth_md5(
                    auth_id="ndmp", auth_digest=md5_digest(attr.server_attr.challenge, PASSWORD)
                )
                _, reply = c.call(
                    M.CONNECT_CLIENT_AUTH,
                    m.connect_client_auth_request(auth_data=m.auth_data(m.AUTH_MD5, auth)),
                )
                assert reply.error == 0
                _, reply = c.call(M.TAPE_OPEN, m.tape_open_request(device=self.tape, mode=m.TAPE_RDWR_MODE))
                assert reply.error == 0
                while not self.stop.is_set():
                    payload = os.urandom(4096)
                    _, host = c.call(M.CONFIG_GET_HOST_INFO)
                    assert host.error == 0 and host.hostname
                    assert c.call(M.TAPE_MTIO, m.tape_mtio_request(tape_op=m.MTIO_REW, count=1))[1].error == 0
                    assert c.call(M.TAPE_WRITE, m.tape_write_request(data_out=payload))[1].count == 4096
                    assert c.call(M.TAPE_MTIO, m.tape_mtio_request(tape_op=m.MTIO_REW, count=1))[1].error == 0
                    assert c.call(M.TAPE_READ, m.tape_read_request(count=8192))[1].data_in == payload
                    assert c.call(M.MOVER_GET_STATE)[1].state == m.MOVER_STATE_IDLE
                    self.rounds += 1
        except BaseException as err:  # reported by the test
            self.failure = err


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz")
    credentials = write_credentials(str(directory), password=PASSWORD)
    workdir = directory / "cwd"  # relative tape names the fuzzer makes land here
    workdir.mkdir()
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with ServeProcess("--max-sessions", "64", auth="md5", credentials=credentials) as proc:
            good = GoodSession(proc.port, str(directory / "good.tap"))
            good.start()
            yield proc, good
            good.stop.set()
            good.join(timeout=30)
    finally:
        os.chdir(cwd)


def authenticate(sock: socket.socket) -> None:
    client = Client.__new__(Client)
    client.sock, client.sequence, client.posts = sock, 100, []
    _, attr = client.call(M.CONFIG_GET_AUTH_ATTR, m.config_get_auth_attr_request(auth_type=m.AUTH_MD5))
    auth = m.auth_md5(auth_id="ndmp", auth_digest=md5_digest(attr.server_attr.challenge, PASSWORD))
    client.call(M.CONNECT_CLIENT_AUTH, m.connect_client_auth_request(auth_data=m.auth_data(m.AUTH_MD5, auth)))


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(session=sessions)
def test_garbage_never_breaks_the_server_or_the_good_session(fuzzed_server, session):
    proc, good = fuzzed_server
    authenticated, items = session
    sock = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
    with sock:
        sock.recv(4096)  # the greeting
        if authenticated:
            authenticate(sock)
        try:
            for number, (kind, item) in enumerate(items, start=1):
                if kind == "request":
                    code, body = item
                    sock.sendall(encode(code, body, 1000 + number))
                else:
                    sock.sendall(item)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):  # replies, until the server closes its end
                pass
        except OSError:
            pass  # the server closed on us mid-way: allowed
    assert proc.alive(), proc.read_stderr()
    assert good.failure is None, good.failure


def test_after_the_fuzzing(fuzzed_server):
    proc, good = fuzzed_server
    assert proc.alive()
    assert good.is_alive() and good.failure is None and good.rounds > 0
    with Client(proc.port) as fresh:  # and it still takes new sessions
        assert fresh.call(M.CONFIG_GET_SERVER_INFO)[1].vendor_name == "ndmptools"
    log = proc.read_stderr()
    assert "Traceback" not in log and "failed" not in log.replace("authentication failed", ""), log[-4000:]
