"""Transports: where messages go. The sender talks to them only through :class:`Transport`.

* :class:`~newsletter.delivery.smtp.SMTPTransport`: a pool of reused connections (one per
  concurrent worker), set up by aiosmtplib (STARTTLS or implicit TLS with certificate
  verification on by default, AUTH), then pipelined (:mod:`newsletter.delivery.smtpwire`) where
  the server offers it.
* :class:`MaildirTransport`: a local Maildir outbox, the default when no SMTP host is set.

``send`` returns a :class:`Delivery` (partial failure is data); it raises
:class:`TransportError` only when sending cannot go on at all (authentication refused, TLS
misconfigured).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from newsletter.core.states import SendState

State = Literal[SendState.SENT, SendState.DEFERRED, SendState.FAILED]


@dataclass(frozen=True)
class Delivery:
    state: State
    code: int | None
    reply: str
    connection_error: bool = False  # no SMTP answer at all: refused, dropped, timed out
    tried: bool = True  # False: the connection was lost before this message's turn came
    relay: str = ""  # which of several relays (``[[relays]]``) took it


def classify(code: int, message: str) -> Delivery:
    reply = f"{code} {message}".strip()[:500]
    if 200 <= code < 300:
        return Delivery(SendState.SENT, code, reply)
    if 400 <= code < 500:
        return Delivery(SendState.DEFERRED, code, reply)
    return Delivery(SendState.FAILED, code, reply)


Outgoing = tuple[str, bytes] | tuple[str, bytes, str]
"""(recipient, message) or (recipient, message, envelope sender): one message of a batch."""

Notify = Callable[[int, Delivery], None]
"""Called with (index in the batch, outcome) as soon as a message's fate is known."""


class Transport(Protocol):
    name: str

    async def open(self) -> None: ...

    async def send(self, sender: str, recipient: str, message: bytes) -> Delivery: ...

    async def send_many(
        self, sender: str, batch: Sequence[Outgoing], notify: Notify | None = None
    ) -> list[Delivery]:
        """(recipient, message[, envelope sender]) items, sent in order; one Delivery each, also given to
        ``notify`` as it comes."""
        ...

    async def close(self) -> None: ...


class MaildirTransport:
    """Writes each message into a local Maildir (``new/``); never fails but on a full disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"maildir:{path}"
        self._opened = False

    async def open(self) -> None:
        from newsletter.delivery.localserver import open_maildir

        open_maildir(self.path)
        self._opened = True

    async def send(self, sender: str, recipient: str, message: bytes) -> Delivery:
        from newsletter.delivery.localserver import store

        try:
            if not self._opened:
                await self.open()
            key = store(self.path, message)  # 0600: it holds a subscriber's address and links
        except OSError as exc:
            return Delivery(
                SendState.DEFERRED, None, f"cannot write to {self.path}: {exc.strerror}"
            )
        return Delivery(SendState.SENT, 250, f"250 stored as {key}")

    async def send_many(
        self, sender: str, batch: Sequence[Outgoing], notify: Notify | None = None
    ) -> list[Delivery]:
        out = []
        for i, item in enumerate(batch):
            envelope = item[2] if len(item) > 2 else sender
            out.append(delivery := await self.send(envelope, item[0], item[1]))
            if notify is not None:
                notify(i, delivery)
        return out

    async def close(self) -> None:
        self._opened = False
