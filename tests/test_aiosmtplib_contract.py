"""What the pipelined session takes for granted of aiosmtplib (pyproject caps it to the major
version tested here). After aiosmtplib has connected, said EHLO and (maybe) started TLS and logged
in, ``transports.SMTPTransport`` takes the connection over: it reads ``client.transport`` and
``client.supports_extension``, detaches aiosmtplib by setting ``client.protocol`` and
``client.transport`` to None, and speaks SMTP itself. If a new aiosmtplib changes any of that,
these tests fail before a send does."""

from __future__ import annotations

import asyncio
from importlib.metadata import version

import aiosmtplib

from newsletter.delivery.smtpwire import PipelinedSession
from tests.conftest import SMTPServer


def test_the_installed_aiosmtplib_is_the_major_version_we_test() -> None:
    assert version("aiosmtplib").split(".")[0] == "5"


def test_after_ehlo_the_client_exposes_its_transport_and_extensions(
    smtp_server: SMTPServer,
) -> None:
    async def go() -> tuple[bool, bool, bool]:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port, start_tls=False)
        await client.connect()
        await client.ehlo()
        try:
            return (
                isinstance(client.transport, asyncio.Transport),
                client.protocol is not None,
                client.supports_extension("pipelining"),
            )
        finally:
            client.close()

    assert asyncio.run(go()) == (True, True, True)


def test_a_detached_connection_carries_our_own_pipelined_transaction(
    smtp_server: SMTPServer,
) -> None:
    async def go() -> int:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port, start_tls=False)
        await client.connect()
        await client.ehlo()
        transport = client.transport
        assert isinstance(transport, asyncio.Transport)
        client.protocol, client.transport = None, None  # what SMTPTransport does
        session = PipelinedSession(transport, 5.0)
        envelope = b"MAIL FROM:<news@example.org>\r\nRCPT TO:<reader@example.org>\r\n"
        body = b"Subject: contract\r\n\r\nHello.\r\n.\r\n"
        reply = await session.send(envelope, body)
        await session.close()
        client.close()  # aiosmtplib must not touch the detached connection any more
        return reply.code

    assert asyncio.run(go()) == 250
    assert len(smtp_server.handler.received("reader@example.org")) == 1
