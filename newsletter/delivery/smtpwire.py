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
from collections.abc import Callable
from typing import NamedTuple

MAX_REPLY = 64 * 1024  # bytes of reply text without a line end before we give up on the server


class Reply(NamedTuple):
    code: int  # NO_REPLY or NOT_SENT: no reply at all (``text`` says why)
    text: str


NO_REPLY = 0  # the connection was lost (or timed out) during this message's transaction
NOT_SENT = -1  # the connection was lost before this message's transaction began


def _ok(reply: Reply, *codes: int) -> bool:
    return reply.code in codes


class PipelinedSession(asyncio.Protocol):
    """An SMTP connection after its set-up, running one message transaction at a time."""

    def __init__(
        self, transport: asyncio.Transport, timeout: float, smtputf8: bool = False
    ) -> None:
        self._transport = transport
        self.smtputf8 = smtputf8  # the server offers SMTPUTF8 (RFC 6531)
        self.idle_since = 0.0  # loop time when the pool last put it aside
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._lines: list[bytes] = []  # the lines so far of a multi-line reply
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._want = 0
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._transport.is_closing():
            self._transport.abort()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _timed_out(self) -> None:
        self._lose(f"timed out: no reply from the server in {self._timeout:g} s")

    def _watch(self) -> None:
        """Once a second or so: lose the session if a reply is overdue.

        One timer per session rather than one per wait (a timer per wait cost ~2 % of a send).
        """
        self._timer = None
        if self._waiter is None or self.lost:
            return
        late = self._loop.time() - self._deadline
        if late >= 0:
            self._timed_out()
        else:
            self._timer = self._loop.call_later(min(1.0, -late), self._watch)

    async def _expect(self, n: int) -> list[Reply] | None:
        """The next ``n`` replies, or None when the connection was lost before they came."""
        if len(self._replies) < n and not self.lost:
            self._want = n
            waiter = self._waiter = self._loop.create_future()
            self._deadline = self._loop.time() + self._timeout
            if self._timer is None:
                self._timer = self._loop.call_later(min(1.0, self._timeout), self._watch)
            try:
                await waiter
            finally:
                self._waiter = None
        if len(self._replies) < n:
            return None
        return [self._replies.popleft() for _ in range(n)]

    def _write(self, data: bytes) -> None:
        if data and not self.lost:
            self._transport.write(data)

    def _connection_failure(self) -> Reply:
        return Reply(NO_REPLY, self.lost)

    # -- the interface -------------------------------------------------------------------------
    async def send(self, envelope: bytes, message: bytes) -> Reply:
        """One transaction. ``envelope`` is ``MAIL FROM:<..>\r\nRCPT TO:<..>\r\n``;
        ``message`` is dot-stuffed and ends with ``\r\n.\r\n``."""
        return (await self.send_many([(envelope, message)]))[0]

    async def send_many(
        self,
        items: list[tuple[bytes, bytes]],
        on_reply: Callable[[int, Reply], None] | None = None,
    ) -> list[Reply]:
        """Transactions back to back, one reply each (in order).

        Each message goes out in one write together with the next envelope: RFC 2920 lets
        message content open a command group, so in a run of messages each costs one round
        trip (the final reply of one and the envelope replies of the next arrive together).
        When the connection is lost, the message whose transaction it was gets ``NO_REPLY``
        and the ones after it ``NOT_SENT``: they were not tried and owe nothing to the loss.
        ``on_reply(i, reply)`` is called as each message's reply arrives, so that its outcome
        can be recorded before the rest of the run is done.
        """
        results: list[Reply] = []
        if items:
            self._write(items[0][0] + b"DATA\r\n")
        for i, (_, message) in enumerate(items):
            if self.lost:  # this one's transaction never began
                break
            following = items[i + 1][0] + b"DATA\r\n" if i + 1 < len(items) else b""
            reply = await self._transaction(message, following) or self._connection_failure()
            results.append(reply)
            if on_reply is not None:
                on_reply(i, reply)
        untried = Reply(NOT_SENT, f"not sent: {self.lost}")
        for i in range(len(results), len(items)):
            results.append(untried)
            if on_reply is not None:
                on_reply(i, untried)
        return results

    async def check(self) -> bool:
        """NOOP round trip: is the server still there? (for a connection idle a while)"""
        if not self.usable:
            return False
        self._write(b"NOOP\r\n")
        saved, self._timeout = self._timeout, min(self._timeout, 5.0)
        try:
            replies = await self._expect(1)
        finally:
            self._timeout = saved
        return replies is not None and replies[0].code == 250 and self.usable

    def abort(self) -> None:
        """Drop the connection at once (its state is unknown after an unexpected error)."""
        self._lose("aborted")

    async def _transaction(self, message: bytes, following: bytes) -> Reply | None:
        """The rest of a transaction whose envelope is on its way; None if the connection
        was lost before its outcome was known. ``following`` (the next envelope, if any) goes
        out with the message."""
        replies = await self._expect(3)
        if replies is None:
            return None
        mail, rcpt, data = replies
        bad = next(
            (
                r
                for r, ok in ((mail, (250,)), (rcpt, (250, 251)), (data, (354,)))
                if not _ok(r, *ok)
            ),
            None,
        )
        if _ok(data, 354):
            # RFC 2920: a server that took DATA after a failed envelope gets an empty message.
            self._write((message if bad is None else b".\r\n") + following)
            final = await self._expect(1)
            if final is None:
                return None
            return self._result(final[0] if bad is None else bad)
        if bad is None:  # pragma: no cover - without a 354 one of the three replies is bad
            bad = data
        if _ok(mail, 250):  # the transaction is open: reset it before the next one
            self._write(b"RSET\r\n" + following)
            await self._expect(1)  # if the connection goes now, this outcome stands all the same
        else:
            self._write(following)
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
