"""The SMTP transport: a pool of connections set up by aiosmtplib, pipelined where offered.

``send_many`` never raises for one message: each gets a :class:`Delivery` (also handed to
``notify`` the moment its reply arrives). It raises :class:`TransportError` only when sending
cannot go on at all (login refused, TLS misconfigured). An unexpected exception from inside
(a bug, a fault) drops the connection it happened on and propagates: the send loop fails the
message whose turn it was and gives the others back.

Addresses go on the wire with IDNA 2008 domains; a local part outside ASCII uses SMTPUTF8
(RFC 6531) when the server offers it, and fails that recipient alone when it does not.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import aiosmtplib

from newsletter.core.states import SendState
from newsletter.delivery.envelope import wire_address
from newsletter.delivery.message import WireSafe
from newsletter.delivery.smtpwire import NOT_SENT, PipelinedSession, Reply
from newsletter.delivery.transports import Delivery, Notify, Outgoing, classify
from newsletter.errors import MessageError, TransportError

CHECK_IDLE_AFTER = 5.0  # seconds: a pooled connection idle longer is checked (NOOP) before use
NO_SMTPUTF8 = "the server does not offer SMTPUTF8, which this address needs"

Connection = aiosmtplib.SMTP | PipelinedSession


@dataclass(frozen=True)
class SMTPConfig:
    host: str
    port: int
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str = ""
    password: str = ""
    timeout: float = 30.0
    verify: bool = True
    ca_file: str = ""
    local_hostname: str | None = None
    pipelining: bool = True
    check_idle_after: float = CHECK_IDLE_AFTER  # seconds in the pool before a NOOP check


class _Item(NamedTuple):
    position: int  # in the batch
    mail_from: bytes  # the whole MAIL command line
    rcpt: bytes  # the address in RCPT TO
    utf8: bool  # needs SMTPUTF8
    data: bytes  # dot-stuffed, terminated


def _failed(reason: str) -> Delivery:
    return Delivery(SendState.FAILED, None, reason[:500])


def _connection_error(reason: str, tried: bool = True) -> Delivery:
    return Delivery(SendState.DEFERRED, None, reason[:500], connection_error=True, tried=tried)


def _from_reply(reply: Reply) -> Delivery:
    if reply.code > 0:
        return classify(reply.code, reply.text)
    return _connection_error(reply.text, tried=reply.code != NOT_SENT)


class SMTPTransport:
    """Pooled SMTP connections (one per concurrent worker); a failed one is dropped and replaced.

    aiosmtplib connects, sets TLS up and logs in. When the server offers PIPELINING (and
    ``pipelining`` is on), each connection is then handed to a
    :class:`~newsletter.smtpwire.PipelinedSession` (two writes per message); otherwise the
    messages go one command per round trip through aiosmtplib. A connection that sat in the
    pool for more than :data:`CHECK_IDLE_AFTER` seconds is checked with NOOP before it is used
    (servers close idle connections; a confirmation mail sent minutes after the last one would
    otherwise meet a dead one).
    """

    def __init__(self, config: SMTPConfig) -> None:
        self.config = config
        self.name = f"smtp://{config.host}:{config.port}"
        self._idle: list[tuple[float, Connection]] = []

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.config.security == "none":
            return None
        context = ssl.create_default_context(cafile=self.config.ca_file or None)
        if not self.config.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _connect(self) -> Connection:
        cfg = self.config
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            timeout=cfg.timeout,
            use_tls=cfg.security == "tls",
            start_tls=cfg.security == "starttls",
            tls_context=self._tls_context(),
            local_hostname=cfg.local_hostname,
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
            if cfg.username:
                await client.login(cfg.username, cfg.password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise TransportError(
                f"{self.name}: the server refused the login of {cfg.username!r} ({exc.code} {exc.message})"
            ) from None
        except aiosmtplib.SMTPException as exc:
            client.close()
            if isinstance(exc, aiosmtplib.SMTPResponseException) and "TLS" in exc.message.upper():
                raise TransportError(f"{self.name}: {exc.message}") from None
            raise
        except ssl.SSLError as exc:
            client.close()
            raise TransportError(f"{self.name}: TLS failed: {exc.reason or exc}") from None
        transport = client.transport
        if (
            cfg.pipelining
            and client.supports_extension("pipelining")
            and isinstance(transport, asyncio.Transport)
        ):
            utf8 = client.supports_extension("smtputf8")
            # From here on the connection is ours: aiosmtplib's protocol no longer sees it.
            client.protocol, client.transport = None, None
            return PipelinedSession(transport, cfg.timeout, smtputf8=utf8)
        return client

    async def open(self) -> None:
        """Connect once up front, so that a refused login or bad TLS stops the send at once.

        A server that cannot be reached is not fatal here: each send then reports a connection
        error, and the sender pauses after too many in a row.
        """
        try:
            self._put_back(await self._connect())
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            return

    def _put_back(self, connection: Connection) -> None:
        self._idle.append((asyncio.get_running_loop().time(), connection))

    async def send(self, sender: str, recipient: str, message: bytes) -> Delivery:
        return (await self.send_many(sender, [(recipient, message)]))[0]

    async def send_many(
        self, sender: str, batch: Sequence[Outgoing], notify: Notify | None = None
    ) -> list[Delivery]:
        """Messages on one connection, pipelined back to back where the server allows it. An
        item may name its own envelope sender (VERP); else ``sender`` is used."""
        results: list[Delivery | None] = [None] * len(batch)

        def report(i: int, delivery: Delivery) -> None:
            results[i] = delivery
            if notify is not None:
                notify(i, delivery)

        ready: list[_Item] = []
        for i, item in enumerate(batch):
            recipient, message = item[0], item[1]
            try:
                from_address, from_utf8 = wire_address(item[2] if len(item) > 2 else sender)
            except MessageError as exc:
                report(i, _failed(f"bad sender address: {exc}"))
                continue
            try:
                address, utf8 = wire_address(recipient)
            except MessageError as exc:
                report(i, _failed(str(exc)))
                continue
            utf8 = utf8 or from_utf8
            mail = b"MAIL FROM:<%s>%s\r\n" % (from_address.encode(), b" SMTPUTF8" if utf8 else b"")
            ready.append(_Item(i, mail, address.encode(), utf8, _data(message)))
        if ready:
            await self._deliver(ready, report)
        return [d if d is not None else _failed("no outcome") for d in results]

    async def _deliver(self, ready: list[_Item], report: Notify) -> None:
        connection = await self._take()
        if isinstance(connection, Delivery):
            for item in ready:
                report(item.position, connection)
            return
        if isinstance(connection, PipelinedSession):
            await self._pipelined(connection, ready, report)
            return
        self._put_back(connection)  # no PIPELINING: one message at a time
        for item in ready:
            client = await self._take()
            if isinstance(client, Delivery):
                report(item.position, client)
            elif isinstance(client, PipelinedSession):
                await self._pipelined(client, [item], report)
            else:
                report(item.position, await self._send_serial(client, item))

    async def _pipelined(
        self, session: PipelinedSession, items: list[_Item], report: Notify
    ) -> None:
        sendable = []
        for item in items:
            if item.utf8 and not session.smtputf8:
                report(item.position, _failed(NO_SMTPUTF8))
            else:
                sendable.append(item)
        envelopes = [
            (item.mail_from + b"RCPT TO:<%s>\r\n" % item.rcpt, item.data) for item in sendable
        ]
        try:
            await session.send_many(
                envelopes, lambda k, reply: report(sendable[k].position, _from_reply(reply))
            )
        except BaseException:
            session.abort()
            raise
        if session.usable:
            self._put_back(session)
        else:
            await session.close()

    async def _take(self) -> Connection | Delivery:
        """An idle connection (checked if it idled a while), a new one, or the Delivery that
        says why there is none."""
        now = asyncio.get_running_loop().time()
        while self._idle:
            since, connection = self._idle.pop()
            known_dead = not (
                connection.usable
                if isinstance(connection, PipelinedSession)
                else connection.is_connected
            )
            if not known_dead and (
                now - since < self.config.check_idle_after or await self._alive(connection)
            ):
                return connection
            await self._discard(connection)
        try:
            return await self._connect()
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            return _connection_error(f"connection failed: {exc}")

    @staticmethod
    async def _alive(connection: Connection) -> bool:
        if isinstance(connection, PipelinedSession):
            return await connection.check()
        try:
            return connection.is_connected and (await connection.noop()).code == 250
        except (aiosmtplib.SMTPException, OSError):
            return False

    @staticmethod
    async def _discard(connection: Connection) -> None:
        if isinstance(connection, PipelinedSession):
            connection.abort()
        else:
            connection.close()

    async def _send_serial(self, client: aiosmtplib.SMTP, item: _Item) -> Delivery:
        if item.utf8 and not client.supports_extension("smtputf8"):
            self._put_back(client)
            return _failed(NO_SMTPUTF8)
        keep = False
        try:
            delivery = await self._transaction(client, item)
            keep = True
            return delivery
        except aiosmtplib.SMTPServerDisconnected as exc:
            return _connection_error(f"connection dropped: {exc}")
        except aiosmtplib.SMTPTimeoutError as exc:
            return _connection_error(f"timed out: {exc}")
        except aiosmtplib.SMTPResponseException as exc:
            keep = exc.code != 421
            return classify(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return _connection_error(f"{type(exc).__name__}: {exc}")
        finally:
            if keep and client.is_connected:
                self._put_back(client)
            else:
                client.close()

    async def _transaction(self, client: aiosmtplib.SMTP, item: _Item) -> Delivery:
        """MAIL, RCPT, DATA on a connection without PIPELINING, one command per round trip.

        aiosmtplib's ``sendmail`` re-parses both addresses and runs two regular expressions over
        every message (line endings, dot-stuffing): measured at ~0.8 ms of a 40 KB message, more
        than everything else the sender does. Our messages already have CRLF line ends and
        checked addresses; ``item.data`` is dot-stuffed and terminated.
        """
        timeout = self.config.timeout
        response = await client.execute_command(
            b"MAIL", item.mail_from[5:].rstrip(b"\r\n"), timeout=timeout
        )
        if response.code != 250:
            await self._reset(client)
            return classify(response.code, response.message)
        response = await client.execute_command(
            b"RCPT", b"TO:<" + item.rcpt + b">", timeout=timeout
        )
        if response.code not in (250, 251):
            await self._reset(client)
            return classify(response.code, response.message)
        response = await client.execute_command(b"DATA", timeout=timeout)
        if response.code != 354:
            await self._reset(client)
            return classify(response.code, response.message)
        protocol = client.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("connection lost before the message")
        protocol.write(item.data)
        response = await protocol.read_response(timeout=timeout)
        return classify(response.code, response.message)

    @staticmethod
    async def _reset(client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            await client.execute_command(b"RSET")

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, connection in idle:
            if isinstance(connection, PipelinedSession):
                await connection.close()
                continue
            try:
                await connection.quit()
            except (aiosmtplib.SMTPException, OSError):
                connection.close()


_DOT = re.compile(rb"(?m)^\.")


def _data(message: bytes) -> bytes:
    """The message as DATA carries it: dot-stuffed (RFC 5321, 4.5.2) and ended by "." alone.

    Searching 20 KB of short lines for a leading "." costs ~15 us, as much as the rest of a
    transaction: messages built by :class:`~newsletter.message.MessageTemplate` are
    :class:`~newsletter.message.WireSafe` (they never need stuffing) and skip it.
    """
    if not isinstance(message, WireSafe) and (message.startswith(b".") or b"\n." in message):
        message = _DOT.sub(b"..", message)
    return message + (b".\r\n" if message.endswith(b"\r\n") else b"\r\n.\r\n")
