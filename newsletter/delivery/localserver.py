"""A small local SMTP server (aiosmtpd) that stores what it receives in a Maildir.

Used by ``newsletter demo`` so that the sample issue travels over real SMTP without leaving the
machine. It binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import itertools
import mailbox
import os
import socket
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from newsletter.core.files import private_dir, write_private
from newsletter.errors import ServerError


class MaildirHandler:
    def __init__(self, path: Path) -> None:
        self.path = path
        open_maildir(path)
        self.received = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """Offer PIPELINING, as real servers do (aiosmtpd reads pipelined commands fine but
        does not say so), so the demo takes the same path as a send to Postfix or Gmail."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", *responses[-1:]]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        try:
            store(self.path, envelope.original_content or envelope.content)
        except OSError as exc:
            return f"451 4.3.0 cannot store the message: {exc.strerror}"
        self.received += 1
        return "250 2.0.0 stored"


def open_maildir(path: Path) -> mailbox.Maildir:
    """A Maildir at ``path`` with its tmp/new/cur folders (0700), whether or not it exists."""
    for sub in ("tmp", "new", "cur"):
        private_dir(path / sub)
    return mailbox.Maildir(path, create=False)


_counter = itertools.count()
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")


def store(path: Path, message: bytes) -> str:
    """Deliver ``message`` into the Maildir at ``path`` as a 0600 file (the Maildir way: written
    in ``tmp/``, then moved to ``new/``); returns its key."""
    stamp = time.time()
    key = f"{int(stamp)}.M{int(stamp % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}.{_HOST}"
    write_private(path / "new" / key, message, tmp=path / "tmp" / key, sync=False)
    return key


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalSMTPServer:
    """``with LocalSMTPServer(outbox) as server: ... server.port``"""

    def __init__(self, outbox: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = MaildirHandler(outbox)
        self.host = host
        self.port = port or free_port(host)
        self._controller = Controller(self.handler, hostname=host, port=self.port)

    def __enter__(self) -> LocalSMTPServer:
        try:
            self._controller.start()
        except (OSError, RuntimeError) as exc:
            raise ServerError(
                f"cannot start the local SMTP server on {self.host}:{self.port}: {exc}",
                host=self.host,
                port=self.port,
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
