"""Message transactions over an established SMTP connection, pipelined (RFC 2920).

aiosmtplib sets each connection up (TCP, implicit TLS or STARTTLS with certificate checks,
EHLO, AUTH): the parts where a library's care matters. When the server offers PIPELINING,
:class:`PipelinedSession` takes the connection's transport over and runs every message in two
writes instead of four round trips:

1. ``MAIL FROM``, ``RCPT TO`` and ``DATA`` in one write, then their three replies;
2. the message and its terminating ``.`` in one write, then the final reply.

Measured against Postfix's smtp-sink (tests/benchmarks/bench_send.py), aiosmtplib's one
command per round trip cost more CPU than everything else the sender does per message; the
sink's own CPU per message falls too, because it reads the envelope in one go.

The session never raises for a message: :meth:`send` returns the reply that decides the
message's fate, or ``Reply(0, why)`` when no reply came. A reply that does not arrive in time,
a dropped connection or a malformed reply marks the session lost (the pool then replaces it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import NamedTuple

MAX_REPLY = 64 * 1024  # bytes of reply text without a line end before we give up on the server


class Reply(NamedTuple):
    code: int  # 0: no reply at all (the connection was lost; ``text`` says why)
    text: str


def _ok(reply: Reply, *codes: int) -> bool:
    return reply.code in codes


class PipelinedSession(asyncio.Protocol):
    """An SMTP connection after its set-up, running one message transaction at a time."""

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._lines: list[bytes] = []  # the lines so far of a multi-line reply
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._want = 0
        self.lost: str = ""  # why this connection cannot be used any more ("" while it can)
        transport.set_protocol(self)

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = bytes(buffer[start:end]).rstrip(b"\r")
            start = end + 1
            if len(line) < 3 or not line[:3].isdigit():
                self._lose(f"malformed reply from the server: {line[:80]!r}")
                return
            if line[3:4] == b"-":
                self._lines.append(line[4:])
                continue
            text = b"\n".join([*self._lines, line[4:]]).decode("utf-8", "replace").strip()
            self._lines.clear()
            self._replies.append(Reply(int(line[:3]), text))
        del buffer[:start]
        if len(buffer) > MAX_REPLY:
            self._lose("the server sent an endless reply")
            return
        waiter = self._waiter
        if waiter is not None and len(self._replies) >= self._want and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._lose("connection closed by the server")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(f"connection dropped: {exc}" if exc else "connection closed by the server")

    # -- internals -----------------------------------------------------------------------------
    def _lose(self, why: str) -> None:
        if not self.lost:
            self.lost = why
        if not self._transport.is_closing():
            self._transport.abort()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _timed_out(self) -> None:
        self._lose(f"timed out: no reply from the server in {self._timeout:g} s")

    async def _expect(self, n: int) -> list[Reply] | None:
        """The next ``n`` replies, or None when the connection was lost before they came."""
        if len(self._replies) < n and not self.lost:
            self._want = n
            waiter = self._waiter = self._loop.create_future()
            timer = self._loop.call_later(self._timeout, self._timed_out)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        if len(self._replies) < n:
            return None
        return [self._replies.popleft() for _ in range(n)]

    def _connection_failure(self) -> Reply:
        return Reply(0, self.lost)

    # -- the interface -------------------------------------------------------------------------
    async def send(self, envelope: bytes, message: bytes) -> Reply:
        """One transaction. ``envelope`` is ``MAIL FROM:<..>\\r\\nRCPT TO:<..>\\r\\n``;
        ``message`` is dot-stuffed and ends with ``\\r\\n.\\r\\n``."""
        if self.lost:
            return self._connection_failure()
        self._transport.write(envelope + b"DATA\r\n")
        replies = await self._expect(3)
        if replies is None:
            return self._connection_failure()
        mail, rcpt, data = replies
        if _ok(data, 354):
            accepted = _ok(mail, 250) and _ok(rcpt, 250, 251)
            # RFC 2920: a server that took DATA after a failed envelope gets an empty message.
            self._transport.write(message if accepted else b".\r\n")
            final = await self._expect(1)
            if final is None:
                return self._connection_failure()
            if accepted:
                return self._result(final[0])
        elif _ok(mail, 250):  # the transaction is open: reset it before the next one
            self._transport.write(b"RSET\r\n")
            await self._expect(1)
        bad = mail if not _ok(mail, 250) else rcpt if not _ok(rcpt, 250, 251) else data
        return self._result(bad)

    def _result(self, reply: Reply) -> Reply:
        if reply.code == 421:  # the server is closing this connection
            self._lose(f"{reply.code} {reply.text}")
        return reply

    @property
    def usable(self) -> bool:
        return not self.lost and not self._transport.is_closing()

    async def close(self) -> None:
        if self.usable:
            self._transport.write(b"QUIT\r\n")
            self._timeout = min(self._timeout, 5.0)
            await self._expect(1)
        if not self._transport.is_closing():
            self._transport.close()
