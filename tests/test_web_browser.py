"""A real headless Chromium follows the links of a delivered message to the running web app."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from newsletter import audience
from newsletter.audience.importer import import_csv
from newsletter.audience.segments import edition_urls
from newsletter.compose.issuefiles import build_and_write, load_issue
from newsletter.compose.select import ComposeOptions
from newsletter.config import Settings, with_changes
from newsletter.core.tokens import Signer
from newsletter.delivery.factory import make_limits, send_setup
from newsletter.delivery.localserver import free_port
from newsletter.delivery.options import SendOptions
from newsletter.delivery.sender import Sender
from newsletter.delivery.smtp import SMTPConfig, SMTPTransport
from newsletter.delivery.transports import MaildirTransport
from newsletter.storage.db import Database
from newsletter.web.app import create_app
from tests.conftest import REPO, SMTPServer

SIGNER = Signer(b"browser-test-secret-0123456789ab")
pytestmark = pytest.mark.browser


@pytest.fixture
def delivered(
    settings: Settings, tmp_path: Path, smtp_server: SMTPServer
) -> Iterator[tuple[str, Database, SMTPServer]]:
    port = free_port()
    settings = with_changes(settings, sender={"base_url": f"http://127.0.0.1:{port}"})
    db = Database(f"sqlite:///{tmp_path / 'web.db'}")
    build_and_write(settings.issue_config(), ComposeOptions(date(2026, 11, 16)))
    import_csv(db, REPO / "subscribers" / "weekly.csv", "weekly", settings.vocabulary())
    transport = SMTPTransport(SMTPConfig("127.0.0.1", smtp_server.port, "none"))
    asyncio.run(
        Sender(send_setup(settings), db, transport, SIGNER, limits=make_limits(settings)).run(
            SendOptions("2026-11-16", "weekly")
        )
    )
    app = create_app(settings, db, SIGNER, MaildirTransport(tmp_path / "outbox"))
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield settings.sender.base_url, db, smtp_server
    finally:
        server.should_exit = True
        thread.join(10)
        db.dispose()


def _links(raw: bytes) -> tuple[str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    unsubscribe = re.search(r'href="(http://127\.0\.0\.1:\d+/u/[\w-]+)"', html).group(1)  # type: ignore[union-attr]
    preferences = re.search(r'href="(http://127\.0\.0\.1:\d+/p/[\w-]+)"', html).group(1)  # type: ignore[union-attr]
    return unsubscribe, preferences


def test_unsubscribe_link_from_a_delivered_message(delivered, browser) -> None:  # type: ignore[no-untyped-def]
    _, db, smtp = delivered
    (raw,) = smtp.handler.received("bakyt@example.org")
    unsubscribe, _ = _links(raw)
    page = browser.new_page()
    page.goto(unsubscribe)
    with db.connect() as conn:
        assert (
            audience.get(conn, "bakyt@example.org").status == "active"
        )  # opening the link is not enough
    page.click("button:has-text('Unsubscribe')")
    page.locator("h1", has_text="You are unsubscribed").wait_for()
    with db.connect() as conn:
        assert audience.get(conn, "bakyt@example.org").status == "unsubscribed"


def test_changing_preferences_changes_the_next_edition(
    delivered, browser, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    _, db, smtp = delivered
    (raw,) = smtp.handler.received("nodira@example.org")
    _, preferences = _links(raw)
    page = browser.new_page()
    page.goto(preferences)
    assert page.is_checked("input[value=Uzbekistan]")
    page.uncheck("input[value=Uzbekistan]")
    page.check("input[value=Kazakhstan]")
    page.click("button:has-text('Save')")
    page.locator("[role=status]", has_text="saved").wait_for()
    with db.connect() as conn:
        interests = audience.get(conn, "nodira@example.org").interests
    assert interests == "Kazakhstan"
    issue = load_issue(settings.issues_dir, "2026-11-16")
    countries = {
        a.country
        for a in issue.articles
        if a.url in edition_urls(issue, interests, settings.vocabulary())
    }
    assert countries == {"Kazakhstan", "Regional"}
    page.screenshot(path=str(Path(settings.workspace) / "preferences.png"), full_page=True)
