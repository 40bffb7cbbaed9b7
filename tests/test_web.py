"""The subscriber pages over HTTP: every route, forged and expired tokens, replays, wrong methods,
oversized bodies, hostile input; and the audit trail."""

from __future__ import annotations

import asyncio
import re
from datetime import date
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from newsletter import audience
from newsletter.audience.importer import import_csv
from newsletter.compose.issuefiles import build_and_write
from newsletter.compose.select import ComposeOptions
from newsletter.config import Settings, with_changes
from newsletter.core.tokens import Purpose, Signer
from newsletter.delivery.transports import MaildirTransport
from newsletter.storage.db import Database, events, subscribers
from newsletter.web.app import RateLimit, create_app
from tests.conftest import REPO, serve

SIGNER = Signer(b"web-test-secret-0123456789abcdef")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_changes(settings, sender={"base_url": "https://news.example.org"})


@pytest.fixture
def web(settings: Settings, db: Database, tmp_path: Path):  # type: ignore[no-untyped-def]
    build_and_write(settings.issue_config(), ComposeOptions(date(2026, 11, 16)))
    import_csv(db, REPO / "subscribers" / "weekly.csv", "weekly", settings.vocabulary())
    outbox = tmp_path / "outbox"
    app = create_app(settings, db, SIGNER, MaildirTransport(outbox), rate=RateLimit(3, 600))
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client, db, outbox


def _sid(db: Database, email: str) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(select(subscribers.c.id).where(subscribers.c.email == email)).scalar_one()
        )


def _status(db: Database, email: str) -> str:
    with db.connect() as conn:
        return audience.get(conn, email).status


def _events(db: Database) -> list[str]:
    with db.connect() as conn:
        return [r.kind for r in conn.execute(select(events.c.kind).order_by(events.c.id))]


def test_one_click_post_unsubscribes_at_once_and_is_idempotent(web) -> None:  # type: ignore[no-untyped-def]
    client, db, _ = web
    token = SIGNER.make(Purpose.SUBSCRIBER, _sid(db, "bakyt@example.org"))
    for _ in range(2):  # a replayed one-click POST changes nothing more and still answers 200
        response = client.post(
            f"/u/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert response.status_code == 200 and "set-cookie" not in response.headers
        assert "You are unsubscribed" in response.text
    assert _status(db, "bakyt@example.org") == "unsubscribed"
    assert _events(db)[-2:] == ["web.unsubscribe", "web.unsubscribe.repeat"]


def test_get_on_the_unsubscribe_link_only_shows_a_button(web) -> None:  # type: ignore[no-untyped-def]
    client, db, _ = web
    token = SIGNER.make(Purpose.SUBSCRIBER, _sid(db, "lena@example.org"))
    response = client.get(f"/u/{token}")
    assert response.status_code == 200 and '<form method="post"' in response.text
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert _status(db, "lena@example.org") == "active"


@pytest.mark.parametrize("path", ["/u/{t}", "/p/{t}", "/confirm/{t}"])
def test_forged_truncated_and_other_purpose_tokens_are_refused_with_a_page(web, path: str) -> None:  # type: ignore[no-untyped-def]
    client, db, _ = web
    good = SIGNER.make(
        Purpose.SUBSCRIBER if "confirm" not in path else Purpose.CONFIRM,
        _sid(db, "lena@example.org"),
    )
    forged = good[:-1] + ("A" if good[-1] != "A" else "B")
    other = Signer(b"another-key-entirely-0123456789").make(Purpose.SUBSCRIBER, 1)
    wrong_purpose = SIGNER.make(Purpose.CONFIRM if "confirm" not in path else Purpose.SUBSCRIBER, 1)
    for token in (forged, good[:20], other, wrong_purpose, "x" * 5, "%00%2e%2e"):
        for method in ("GET", "POST"):
            response = client.request(method, path.format(t=token))
            assert response.status_code in (400, 404), (token, method)
            assert "Traceback" not in response.text
    assert _status(db, "lena@example.org") == "active"


def test_expired_confirmation_link_says_so(web) -> None:  # type: ignore[no-untyped-def]
    client, db, _ = web
    token = SIGNER.make(Purpose.CONFIRM, _sid(db, "pending@example.org"), ttl=10, now=1_000_000.0)
    response = client.post(f"/confirm/{token}")
    assert response.status_code == 400 and "expired" in response.text
    assert _status(db, "pending@example.org") == "unconfirmed"


def test_wrong_methods_and_oversized_bodies(web) -> None:  # type: ignore[no-untyped-def]
    client, db, _ = web
    token = SIGNER.make(Purpose.SUBSCRIBER, _sid(db, "lena@example.org"))
    assert client.delete(f"/u/{token}").status_code == 405
    assert client.put("/subscribe").status_code == 405
    assert client.post("/archive").status_code == 405
    big = client.post(
        f"/u/{token}",
        content=b"x" * 100_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 413 and _status(db, "lena@example.org") == "active"


def test_preferences_change_interests_and_lists(web) -> None:  # type: ignore[no-untyped-def]
    client, db, _ = web
    token = SIGNER.make(Purpose.SUBSCRIBER, _sid(db, "james@example.org"))
    page = client.get(f"/p/{token}")
    assert page.status_code == 200 and 'value="Uzbekistan"' in page.text
    saved = client.post(
        f"/p/{token}", data={"interest": ["Uzbekistan", "energy"], "list": ["weekly"]}
    )
    assert saved.status_code == 200 and "saved" in saved.text
    with db.connect() as conn:
        sub = audience.get(conn, "james@example.org")
    assert (sub.interests, sub.lists) == ("Uzbekistan;energy", ["weekly"])
    bad = client.post(f"/p/{token}", data={"interest": ["<script>alert(1)</script>"]})
    assert bad.status_code == 400 and "<script>alert(1)</script>" not in bad.text
    assert "&lt;script&gt;" in bad.text
    assert "web.preferences" in _events(db)


def test_an_unsubscribed_person_can_subscribe_again_from_preferences(web) -> None:  # type: ignore[no-untyped-def]
    client, db, _ = web
    token = SIGNER.make(Purpose.SUBSCRIBER, _sid(db, "former@example.org"))
    assert "Receive Central Asia Weekly again" in client.get(f"/p/{token}").text
    client.post(f"/p/{token}", data={"resubscribe": "1", "list": ["weekly"]})
    assert _status(db, "former@example.org") == "active"


def test_subscribe_is_double_opt_in_and_does_not_reveal_membership(web) -> None:  # type: ignore[no-untyped-def]
    client, db, outbox = web
    new = client.post(
        "/subscribe",
        data={
            "email": "Newcomer@Example.org",
            "name": "New <b>Comer</b>",
            "interest": ["Kazakhstan"],
        },
    )
    known = client.post("/subscribe", data={"email": "lena@example.org", "name": "x"})
    strip = lambda text: re.sub(r"[\w.+-]+@[\w.-]+", "ADDRESS", text)  # noqa: E731
    assert new.status_code == known.status_code == 200 and strip(new.text) == strip(known.text)
    assert _status(db, "newcomer@example.org") == "unconfirmed"
    mails = list((outbox / "new").iterdir())
    assert len(mails) == 1, "only the new address gets a confirmation"
    body = mails[0].read_text()
    link = re.search(r"https://news\.example\.org(/confirm/[\w-]+)", body).group(1)  # type: ignore[union-attr]
    assert "Comer" not in body  # nothing a visitor typed goes into the mail (it comes from us)
    page = client.get(link)
    assert (
        page.status_code == 200 and _status(db, "newcomer@example.org") == "unconfirmed"
    )  # GET: no change
    assert "New &lt;b&gt;" not in page.text
    assert client.post(link).status_code == 200
    assert _status(db, "newcomer@example.org") == "active"
    assert client.post(link).status_code == 200  # replay: still fine


def test_subscribe_rejects_bad_input_with_the_form_escaped(web) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = web
    response = client.post("/subscribe", data={"email": '"><script>alert(1)</script>'})
    assert response.status_code == 400 and "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;" in response.text or "&#34;&gt;&lt;script&gt;" in response.text


def test_subscribe_refuses_a_name_with_a_control_character(web) -> None:  # type: ignore[no-untyped-def]
    client, db, _outbox = web
    response = client.post("/subscribe", data={"email": "vt@example.org", "name": "A\x1fB"})
    assert response.status_code == 400
    assert "the name contains a control character (U+001F)" in response.text
    with db.connect() as conn:
        assert (
            conn.execute(
                select(subscribers.c.id).where(subscribers.c.email == "vt@example.org")
            ).first()
            is None
        )


def test_subscribe_has_a_per_ip_rate_limit(web) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = web
    codes = [
        client.post("/subscribe", data={"email": f"r{i}@example.org"}).status_code for i in range(5)
    ]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]


def test_archive_lists_issues_and_serves_the_web_version_without_tokens(web) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = web
    index = client.get("/archive")
    assert index.status_code == 200 and "/archive/2026-11-16" in index.text
    issue = client.get("/archive/2026-11-16")
    assert issue.status_code == 200 and "Central Asia Weekly" in issue.text
    assert "%%" not in issue.text and "/u/" not in issue.text
    assert client.get("/archive/2026-13-45").status_code == 404
    assert client.get("/archive/..%2f..%2fnewsletter.toml").status_code == 404
    feed = client.get("/archive/feed.xml")
    assert feed.status_code == 200 and feed.headers["content-type"].startswith(
        "application/atom+xml"
    )
    assert "<entry>" in feed.text and "https://news.example.org/archive/2026-11-16" in feed.text


def test_unsubscribe_through_the_endpoint_during_a_send_stops_mail_from_then_on(
    web,
    settings: Settings,
    smtp_server,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from newsletter.delivery.factory import make_limits, send_setup
    from newsletter.delivery.options import SendOptions
    from newsletter.delivery.sender import Sender
    from newsletter.delivery.smtp import SMTPConfig, SMTPTransport

    client, db, _ = web
    transport = lambda: SMTPTransport(SMTPConfig("127.0.0.1", smtp_server.port, "none"))  # noqa: E731

    def send(**options: object) -> object:
        sender = Sender(send_setup(settings), db, transport(), SIGNER, limits=make_limits(settings))
        return asyncio.run(sender.run(SendOptions("2026-11-16", "weekly", **options)))  # type: ignore[arg-type]

    send(limit=4)
    sent = {rcpt for rcpt, _, _ in smtp_server.handler.messages}
    target = next(
        e for e in ("zarina@example.org", "yuki@example.org", "ulan@example.org") if e not in sent
    )
    token = SIGNER.make(Purpose.SUBSCRIBER, _sid(db, target))
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    send()
    assert smtp_server.handler.received(target) == []
