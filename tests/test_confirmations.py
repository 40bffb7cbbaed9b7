"""Confirmation mails reach people even when the relay is briefly away or a pooled connection
died: checked connections, one immediate retry, then kept in ``mail_outbox`` and retried."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from datetime import date

import httpx
import pytest
from sqlalchemy import select, update

from newsletter.audience.importer import import_csv
from newsletter.compose.issuefiles import build_and_write
from newsletter.compose.select import ComposeOptions
from newsletter.config import Settings, with_changes
from newsletter.core.clock import now
from newsletter.core.tokens import Signer
from newsletter.delivery.smtp import SMTPConfig, SMTPTransport
from newsletter.delivery.smtpwire import PipelinedSession
from newsletter.storage.db import Database, mail_outbox, subscribers
from newsletter.web.app import create_app
from newsletter.web.common import RateLimit
from tests.conftest import REPO, RecordingHandler, SMTPServer, start_smtp, stop_smtp
from tests.test_web import serve

SIGNER = Signer(b"web-test-secret-0123456789abcdef")


def _until(condition: Callable[[], object], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def site(
    settings: Settings, db: Database, smtp_server: SMTPServer
) -> Iterator[tuple[httpx.Client, Database, SMTPServer]]:
    settings = with_changes(settings, sender={"base_url": "https://news.example.org"})
    build_and_write(settings.issue_config(), ComposeOptions(date(2026, 11, 16)))
    import_csv(db, REPO / "subscribers" / "weekly.csv", "weekly", settings.vocabulary())
    transport = SMTPTransport(SMTPConfig("127.0.0.1", smtp_server.port, "none", timeout=5))
    app = create_app(settings, db, SIGNER, transport, rate=RateLimit(50, 600), retry_every=0.2)
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client, db, smtp_server


def _kept(db: Database) -> list[dict[str, object]]:
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(mail_outbox))]


def test_a_confirmation_the_relay_refuses_for_now_is_kept_and_retried(site) -> None:  # type: ignore[no-untyped-def]
    client, db, server = site
    ok = client.post("/subscribe", data={"email": "first@example.org"})
    assert _until(lambda: server.handler.received("first@example.org"))
    server.handler.rules["later@example.org"] = "450"
    refused = client.post("/subscribe", data={"email": "later@example.org", "name": "Mallory"})
    # The visitor is told the same thing whatever happened to the mail.
    assert refused.status_code == ok.status_code == 200
    assert refused.text.replace("later@", "first@") == ok.text
    assert _until(lambda: _kept(db)), "the refused confirmation was not kept"
    (kept,) = _kept(db)
    assert kept["attempts"] == 1 and "450" in str(kept["last_error"])
    assert server.handler.received("later@example.org") == []
    server.handler.rules.clear()  # the relay is back; the retry is due (time has passed)
    with db.connect() as conn, conn.begin():
        conn.execute(update(mail_outbox).values(next_attempt_at=now()))
    assert _until(lambda: server.handler.received("later@example.org"))
    assert _until(lambda: not _kept(db))
    (raw,) = server.handler.received("later@example.org")
    assert re.search(rb"https://news\.example\.org/confirm/[A-Za-z0-9_-]+", raw)
    assert b"Mallory" not in raw  # nothing a visitor typed goes into the mail
    with db.connect() as conn:
        status = conn.execute(
            select(subscribers.c.status).where(subscribers.c.email == "later@example.org")
        ).scalar()
    assert status == "unconfirmed"


@pytest.fixture
def closing_server() -> Iterator[SMTPServer]:
    """aiosmtpd closing connections idle for 0.3 s (a relay's idle timeout, shortened)."""
    controller, server = start_smtp(RecordingHandler(), timeout=0.3)
    try:
        yield server
    finally:
        stop_smtp(controller)


def test_a_pooled_connection_the_server_closed_is_replaced_before_use(
    closing_server: SMTPServer,
) -> None:
    async def go() -> tuple[str, str, bool]:
        transport = SMTPTransport(
            SMTPConfig("127.0.0.1", closing_server.port, "none", timeout=5, check_idle_after=0.1)
        )
        await transport.open()
        try:
            message = b"Subject: one\r\n\r\nhello\r\n"
            first = await transport.send("a@example.org", "b@example.org", message)
            (_, session), *_ = transport._idle
            assert isinstance(session, PipelinedSession)
            async with asyncio.timeout(10):  # until the server drops the idle connection
                while session.usable:
                    await asyncio.sleep(0.02)
            second = await transport.send("a@example.org", "c@example.org", message)
            return first.state, second.state, transport._idle[0][1] is not session
        finally:
            await transport.close()

    first, second, replaced = asyncio.run(go())
    assert (first, second, replaced) == ("sent", "sent", True)
    assert len(closing_server.handler.messages) == 2


def test_a_pooled_connection_idle_a_while_is_checked_and_kept_when_alive(
    smtp_server: SMTPServer,
) -> None:
    async def go() -> bool:
        transport = SMTPTransport(
            SMTPConfig("127.0.0.1", smtp_server.port, "none", timeout=5, check_idle_after=0.0)
        )
        await transport.open()
        try:
            (_, session), *_ = transport._idle
            state = (await transport.send("a@example.org", "b@example.org", b"\r\nhi\r\n")).state
            return state == "sent" and transport._idle[0][1] is session
        finally:
            await transport.close()

    assert asyncio.run(go())
