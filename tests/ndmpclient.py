"""Test helpers for the NDMP server: start `ndmptools serve` as a real process, and talk to it.

``ServeProcess`` runs ``python -m ndmptools serve --listen 127.0.0.1:0`` and
reads the port it got from its first line on stderr; leaving the ``with``
kills it (and its stderr is kept for the test to read). ``Client`` is a
small blocking NDMP client over the codec in ndmptools.ndmp (requests,
replies, and the posts the server sends in between).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from ndmptools.ndmp import messages as m
from ndmptools.ndmp.connect import md5_digest
from ndmptools.ndmp.wire import encode_message, frame, read_record, split_record

NDMJOB = "/usr/lib/amanda/ndmjob"
_READY = re.compile(r"serving NDMP v4 on ([0-9.]+):(\d+)")


def write_credentials(directory: str, user: str = "ndmp", password: str = "s3cret-pw") -> str:
    path = os.path.join(directory, "serve.conf")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"[user {user}]\npassword = {password}\n")
    return path


class ServeProcess:
    """`ndmptools serve` in a subprocess on a free loopback port; killed on exit."""

    def __init__(
        self,
        *args: str,
        auth: str = "none",
        credentials: str | None = None,
        env=None,
        machine_sessions: int | None = 64,
    ) -> None:
        """``machine_sessions``: the state directory's max_sessions (forced past the memory's
        limit, so that a small CI machine serves the tests' bursts); None: the memory's own."""
        self.args = ["--listen", "127.0.0.1:0", "--auth", auth, *args]
        if credentials:
            self.args += ["--credentials", credentials]
        self.env = dict(env or {})
        self._own_state: str | None = None
        if "NDMPTOOLS_STATE_DIR" not in self.env:  # never the machine's /var/lib/ndmptools
            self._own_state = tempfile.mkdtemp(prefix="ndmp-serve-state-")
            self.env["NDMPTOOLS_STATE_DIR"] = self._own_state
        self.state_dir = self.env["NDMPTOOLS_STATE_DIR"]
        if machine_sessions is not None:
            os.makedirs(self.state_dir, exist_ok=True)
            with open(os.path.join(self.state_dir, "config.toml"), "w") as handle:
                handle.write(f"max_sessions = {machine_sessions}\n")
            self.args.append("--force-sessions")
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in __exit__
        self.stderr_text = ""

    def __enter__(self) -> ServeProcess:
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ndmptools", "-v", "serve", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = self.read_stderr()
            found = _READY.search(text)
            if found:
                self.port = int(found.group(2))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ndmptools serve did not start: {self.read_stderr()}")

    def read_stderr(self) -> str:
        self._stderr.seek(0)
        self.stderr_text = self._stderr.read().decode("utf-8", "replace")
        return self.stderr_text

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.read_stderr()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._stderr.close()
        if self._own_state is not None:
            shutil.rmtree(self._own_state, ignore_errors=True)


class Client:
    """A blocking NDMP client: ``call`` sends a request and returns (reply header, reply body)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 20) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sequence = 0
        self.posts: list[tuple[int, object]] = []
        self.lock = threading.Lock()
        head, body = self.receive()
        assert head.message_code == m.Message.NOTIFY_CONNECTION_STATUS, head
        self.greeting = body

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_raw(self, payload: bytes) -> None:
        self.sock.sendall(payload)

    def send(self, code: int, body=None, message_type: int = m.MESSAGE_REQUEST) -> int:
        self.sequence += 1
        definition = m.MESSAGES[code]
        self.sock.sendall(frame(encode_message(self.sequence, message_type, code, body, definition.request)))
        return self.sequence

    def receive(self):
        """The next message: (header, decoded body or None)."""
        incoming = split_record(read_record(self.sock))
        head = incoming.header
        definition = m.MESSAGES.get(head.message_code)
        kind = None
        if definition is not None:
            kind = definition.request if head.message_type == m.MESSAGE_REQUEST else definition.reply
        if head.error_code or kind is None:
            return head, None
        return head, kind.decode(incoming.body)

    def call(self, code: int, body=None):
        sequence = self.send(code, body)
        while True:
            head, reply = self.receive()
            if head.message_type == m.MESSAGE_REPLY and head.reply_sequence == sequence:
                return head, reply
            self.posts.append((head.message_code, reply))

    def wait_post(self, code: int, timeout: float = 20):
        """The first post of ``code`` (from those already received, else the next ones)."""
        for index, (seen, _body) in enumerate(self.posts):
            if seen == code:
                return self.posts.pop(index)[1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            head, body = self.receive()
            if head.message_code == code and head.message_type == m.MESSAGE_REQUEST:
                return body
            self.posts.append((head.message_code, body))
        raise TimeoutError(f"no {m.message_name(code)}")

    def auth_md5(self, user: str, password: str):
        _, attr = self.call(
            m.Message.CONFIG_GET_AUTH_ATTR, m.config_get_auth_attr_request(auth_type=m.AUTH_MD5)
        )
        digest = md5_digest(attr.server_attr.challenge, password)
        return self.call(
            m.Message.CONNECT_CLIENT_AUTH,
            m.connect_client_auth_request(
                auth_data=m.auth_data(m.AUTH_MD5, m.auth_md5(auth_id=user, auth_digest=digest))
            ),
        )

    def auth_text(self, user: str, password: str):
        return self.call(
            m.Message.CONNECT_CLIENT_AUTH,
            m.connect_client_auth_request(
                auth_data=m.auth_data(m.AUTH_TEXT, m.auth_text(auth_id=user, auth_password=password))
            ),
        )

    def auth_none(self):
        return self.call(
            m.Message.CONNECT_CLIENT_AUTH, m.connect_client_auth_request(auth_data=m.auth_data(m.AUTH_NONE))
        )

    def open(self):
        return self.call(m.Message.CONNECT_OPEN, m.connect_open_request(protocol_version=4))
