"""The pipelined SMTP session (RFC 2920): used when offered, correct on failures and odd replies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from newsletter.delivery.smtp import SMTPConfig, SMTPTransport
from newsletter.delivery.smtpwire import NOT_SENT, PipelinedSession, Reply
from tests.conftest import RecordingHandler, SMTPServer, start_smtp, stop_smtp

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: t\r\n\r\nhello\r\n"


def _config(server: SMTPServer, **kw: object) -> SMTPConfig:
    return SMTPConfig(server.host, server.port, "none", timeout=2.0, **kw)  # type: ignore[arg-type]


async def _send_all(
    config: SMTPConfig, items: list[tuple[str, bytes]]
) -> tuple[list[str], list[type]]:
    transport = SMTPTransport(config)
    await transport.open()
    kinds = [type(c) for _, c in transport._idle]
    try:
        states = [(await transport.send("a@example.org", to, m)).state for to, m in items]
    finally:
        await transport.close()
    return states, kinds


@pytest.mark.parametrize(
    ("offered", "wanted", "expected"),
    [(True, True, PipelinedSession), (False, True, None), (True, False, None)],
)
def test_pipelining_is_used_only_when_offered_and_wanted(
    offered: bool, wanted: bool, expected: type | None
) -> None:
    controller, server = start_smtp(RecordingHandler(pipelining=offered))
    try:
        states, kinds = asyncio.run(
            _send_all(_config(server, pipelining=wanted), [("b@example.org", MESSAGE)])
        )
    finally:
        stop_smtp(controller)
    assert states == ["sent"] and len(server.handler.messages) == 1
    assert (kinds[0] is PipelinedSession) == (expected is PipelinedSession)


def test_rejected_recipient_is_reset_and_the_connection_carries_on(smtp_server: SMTPServer) -> None:
    smtp_server.handler.rules = {"gone@example.org": "550", "busy@example.org": "450"}
    items = [
        ("gone@example.org", MESSAGE),
        ("b@example.org", MESSAGE),
        ("busy@example.org", MESSAGE),
        ("c@example.org", MESSAGE),
    ]

    async def go() -> tuple[list[str], int]:
        transport = SMTPTransport(_config(smtp_server))
        await transport.open()
        first = transport._idle[0][1]
        try:
            states = [(await transport.send("a@example.org", to, m)).state for to, m in items]
            return states, sum(1 for _, c in transport._idle if c is first)
        finally:
            await transport.close()

    states, same = asyncio.run(go())
    assert states == ["failed", "sent", "deferred", "sent"]
    assert same == 1  # one connection did it all
    assert [rcpt for rcpt, _, _ in smtp_server.handler.messages] == [
        "b@example.org",
        "c@example.org",
    ]


def test_lines_starting_with_a_dot_arrive_intact(smtp_server: SMTPServer) -> None:
    body = b"From: a@example.org\r\nTo: b@example.org\r\n\r\n.\r\n..two\r\n.end\r\n"
    states, _ = asyncio.run(_send_all(_config(smtp_server), [("b@example.org", body)]))
    assert states == ["sent"]
    received = smtp_server.handler.messages[0][1]
    assert received.replace(b"\r\n", b"\n").endswith(b"\n.\n..two\n.end\n")


def test_crlf_in_an_envelope_address_is_refused_before_anything_is_sent(
    smtp_server: SMTPServer,
) -> None:
    states, _ = asyncio.run(
        _send_all(_config(smtp_server), [("b@example.org>\r\nRCPT TO:<x@evil.example", MESSAGE)])
    )
    assert states == ["failed"] and smtp_server.handler.messages == []


# -- a scripted server: replies cut at odd places, multi-line replies, silence --------------------


class Scripted:
    """A real TCP server that answers each client write with canned bytes, in small pieces."""

    def __init__(self, replies: list[bytes], chunk: int = 3, linger: float = 0.0) -> None:
        self.replies = replies
        self.linger = linger
        self.chunk = chunk
        self.received: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for reply in self.replies:
                data = await reader.read(65536)
                if not data:
                    break
                self.received.append(data)
                for i in range(0, len(reply), self.chunk):
                    writer.write(reply[i : i + self.chunk])
                    await writer.drain()
                    await asyncio.sleep(0)
            await asyncio.sleep(self.linger)  # a silent server: reads nothing, says nothing
        finally:
            writer.close()


async def _session_against(
    script: Scripted, timeout: float = 1.0
) -> tuple[list[tuple[int, str]], str]:
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    session = PipelinedSession(transport, timeout)  # type: ignore[arg-type]
    try:
        results = []
        for _ in range(2):
            reply = await session.send(
                b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\n", b"hi\r\n.\r\n"
            )
            results.append((reply.code, reply.text))
        return results, session.lost
    finally:
        await session.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(script.linger + 0.05)  # let the handler finish and close its side


def test_replies_split_across_reads_and_multiline_replies_are_parsed() -> None:
    script = Scripted(
        [
            b"250 ok\r\n250-first line\r\n250 second line\r\n354 go on\r\n",
            b"250 2.0.0 queued as A\r\n",
            b"250 ok\r\n550-5.1.1 no such user\r\n550 5.1.1 really\r\n503 no valid recipients\r\n",
            b"250 reset\r\n",
        ]
    )
    results, lost = asyncio.run(_session_against(script))
    assert results == [(250, "2.0.0 queued as A"), (550, "5.1.1 no such user\n5.1.1 really")]
    assert lost == ""
    assert script.received[0] == b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"
    assert script.received[3] == b"RSET\r\n"


def test_a_silent_server_times_out_and_the_session_is_lost() -> None:
    script = Scripted([b"250 ok\r\n250 ok\r\n354 go on\r\n"], linger=0.8)  # then silence
    results, lost = asyncio.run(_session_against(script, timeout=0.3))
    assert results[0][0] == 0 and "timed out" in results[0][1]
    assert results[1][0] == NOT_SENT and "timed out" in lost  # never began: not its fault


def test_a_garbage_reply_loses_the_session_instead_of_guessing() -> None:
    script = Scripted([b"hello there\r\n"])
    results, lost = asyncio.run(_session_against(script))
    assert results[0][0] == 0 and "malformed reply" in lost


@pytest.fixture
def serial_server() -> Iterator[SMTPServer]:
    controller, server = start_smtp(RecordingHandler(pipelining=False))
    try:
        yield server
    finally:
        stop_smtp(controller)


def test_serial_path_also_refuses_crlf_in_addresses(serial_server: SMTPServer) -> None:
    states, _ = asyncio.run(
        _send_all(_config(serial_server), [("b@example.org>\r\nRCPT TO:<x@evil.example", MESSAGE)])
    )
    assert states == ["failed"] and serial_server.handler.messages == []


def _batch_send(server: SMTPServer, recipients: list[str]) -> list[tuple[str, bool]]:
    async def go() -> list[tuple[str, bool]]:
        transport = SMTPTransport(_config(server))
        await transport.open()
        try:
            out = await transport.send_many("a@example.org", [(r, MESSAGE) for r in recipients])
            return [(d.state, d.tried) for d in out]
        finally:
            await transport.close()

    return asyncio.run(go())


def test_a_batch_carries_on_past_rejections_on_one_connection(smtp_server: SMTPServer) -> None:
    smtp_server.handler.rules = {"r2@example.org": "550", "r4@example.org": "450"}
    got = _batch_send(smtp_server, [f"r{i}@example.org" for i in range(1, 7)])
    assert [state for state, _ in got] == ["sent", "failed", "sent", "deferred", "sent", "sent"]
    assert [m[0] for m in smtp_server.handler.messages] == [
        "r1@example.org",
        "r3@example.org",
        "r5@example.org",
        "r6@example.org",
    ]


def test_a_dropped_connection_charges_only_the_message_it_happened_to(
    smtp_server: SMTPServer,
) -> None:
    smtp_server.handler.rules = {"r3@example.org": "drop"}
    got = _batch_send(smtp_server, [f"r{i}@example.org" for i in range(1, 6)])
    assert got == [
        ("sent", True),
        ("sent", True),
        ("deferred", True),  # its transaction was cut
        ("deferred", False),  # never began: given back untried
        ("deferred", False),
    ]


def test_each_message_goes_out_with_the_next_envelope() -> None:
    script = Scripted(
        [
            b"250 ok\r\n250 ok\r\n354 go on\r\n",
            b"250 queued\r\n250 ok\r\n250 ok\r\n354 go on\r\n",
            b"250 queued\r\n",
        ],
        chunk=1000,
    )

    async def go() -> list[Reply]:
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await asyncio.get_running_loop().create_connection(
            asyncio.Protocol, "127.0.0.1", port
        )
        session = PipelinedSession(transport, 2.0)  # type: ignore[arg-type]
        envelope = b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\n"
        try:
            return await session.send_many(
                [(envelope, b"one\r\n.\r\n"), (envelope, b"two\r\n.\r\n")]
            )
        finally:
            await session.close()
            server.close()
            await server.wait_closed()
            await asyncio.sleep(0.05)

    replies = asyncio.run(go())
    assert [r.code for r in replies] == [250, 250]
    envelope = b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"
    assert script.received[:3] == [envelope, b"one\r\n.\r\n" + envelope, b"two\r\n.\r\n"]
