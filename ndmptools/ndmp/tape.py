"""The TAPE service: a medium opened by name (a -f spec) and driven record by record."""

from __future__ import annotations

import threading


class Tape:
    """The session's tape: at most one medium open at a time, shared with the MOVER."""

    def __init__(self, session) -> None:
        self.session = session
        self.medium = None
        self.device: str | None = None
        self.mode: int | None = None
        self.lock = threading.Lock()  # the mover writes while the DMA may ask for the state

    def end_session(self) -> None:
        medium, self.medium = self.medium, None
        if medium is not None:
            medium.close()


HANDLERS: dict = {}
