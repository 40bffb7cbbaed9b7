"""Sending over SMTP to a real aiosmtpd server: editions, exactly once, failures, pauses."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select, update

from newsletter import audience
from newsletter.audience.importer import import_csv
from newsletter.audience.segments import edition_urls
from newsletter.compose.issuefiles import build_and_write
from newsletter.compose.select import ComposeOptions
from newsletter.config import Settings, with_changes
from newsletter.core.tokens import Purpose, Signer
from newsletter.delivery import sendlog
from newsletter.delivery.factory import make_dkim, make_limits, make_transport, send_setup
from newsletter.delivery.options import SendOptions, SendSummary
from newsletter.delivery.sender import Sender
from newsletter.errors import MessageError
from newsletter.storage.db import Database, send_log, subscribers
from tests.conftest import REPO, SMTPServer

DAY = "2026-11-16"
SIGNER = Signer(b"test-secret-key-0123456789abcdef")


@pytest.fixture
def world(
    settings: Settings, db: Database, smtp_server: SMTPServer
) -> tuple[Settings, Database, SMTPServer]:
    build_and_write(settings.issue_config(), ComposeOptions(date(2026, 11, 16)))
    import_csv(db, REPO / "subscribers" / "weekly.csv", "weekly", settings.vocabulary())
    settings = with_changes(
        settings,
        smtp={
            "host": "127.0.0.1",
            "port": smtp_server.port,
            "security": "none",
            "timeout": 2.0,
            "backoff": 0.05,
        },
    )
    return settings, db, smtp_server


def send(
    settings: Settings, db: Database, options: SendOptions | None = None, **limits: object
) -> SendSummary:
    sender = Sender(
        send_setup(settings),
        db,
        make_transport(settings),
        SIGNER,
        limits=replace(make_limits(settings), **limits),
        dkim=make_dkim(settings),
    )
    return asyncio.run(sender.run(options or SendOptions(DAY, "weekly")))


def _parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def _active(db: Database) -> dict[str, tuple[int, str, str]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(
                subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.interests
            ).where(subscribers.c.status == "active")
        )
        return {r.email: (r.id, r.name, r.interests) for r in rows}


@pytest.mark.parametrize("smtp_server", ["pipelining", "serial"], indirect=True)
def test_every_subscriber_gets_their_own_edition_exactly_once(world, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    settings, db, server = world
    summary = send(settings, db)
    active = _active(db)
    assert (summary.sent, summary.skipped, summary.failed) == (
        17,
        1,
        0,
    )  # astro@: nothing this week
    assert summary.outcome == "complete" and summary.variants == 14
    from newsletter.compose.issuefiles import load_issue

    issue = load_issue(settings.issues_dir, DAY)
    vocab = settings.vocabulary()
    for address, (_sid, _name, interests) in active.items():
        got = server.handler.received(address)
        urls = edition_urls(issue, interests, vocab)
        if not urls:
            assert got == []
            continue
        assert len(got) == 1, address
        html = _parse(got[0]).get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert sorted(re.findall(r'<h3 class="headline"[^>]*><a href="([^"]+)"', html)) == sorted(
            urls
        )
    again = send(settings, db)
    assert (again.queued_now, again.sent) == (0, 0) and len(server.handler.messages) == 17


def test_messages_have_the_required_structure_and_one_click_headers(
    world, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    settings, db, server = world
    send(settings, db)
    sid, name, _ = _active(db)["dilnoza@example.org"]
    (raw,) = server.handler.received("dilnoza@example.org")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert all(b < 128 for b in raw), "8-bit data on the wire"
    msg = _parse(raw)
    for header in (
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    ):
        assert msg[header], header
    assert msg["To"] == f"{name} <dilnoza@example.org>"
    assert msg["Subject"] == "Central Asia Weekly — 16 November 2026"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    https, mailto = re.match(
        r"<(https://[^>]+)>, <(mailto:[^>]+)>", msg["List-Unsubscribe"]
    ).groups()  # type: ignore[union-attr]
    token = https.rsplit("/", 1)[1]
    assert SIGNER.read(token, Purpose.SUBSCRIBER) == sid
    assert token in mailto
    text, html = parts[0].get_content(), parts[1].get_content()
    assert https in text and f'href="{https}"' in html
    assert https.replace("/u/", "/p/") in text and https.replace("/u/", "/p/") in html
    assert "%%" not in text + html
    assert msg["Message-ID"] == f"<{DAY}.{sid}.{SIGNER.message_id_tag(DAY, sid)}@news.example.org>"


def test_dkim_signature_verifies_with_dkimpy(world, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dkim = pytest.importorskip("dkim")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "dkim.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    settings, db, server = world
    settings = with_changes(
        settings,
        dkim={
            "domain": "news.example.org",
            "selector": "weekly",
            "private_key_file": str(tmp_path / "dkim.pem"),
        },
    )
    send(settings, db)
    assert len(server.handler.messages) == 17

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"weekly._domainkey.news.example.org."
        return record

    for _rcpt, raw, _ in server.handler.messages:
        assert dkim.verify(raw, dnsfunc=dns), "DKIM signature does not verify"
        signature = _parse(raw)["DKIM-Signature"]
        names = re.search(r"h=([^;]+)", signature).group(1).replace(" ", "").split(":")  # type: ignore[union-attr]
        assert {
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
        } <= set(names)
        # Over-signed: named once more than they occur, so that an added one breaks it.
        assert names.count("from") == 2 and names.count("subject") == 2
        assert "c=relaxed/relaxed" in signature and "a=rsa-sha256" in signature
    raw = server.handler.messages[0][1]
    assert not dkim.verify(raw.replace(b"Kazakhstan", b"Kazakstan", 1), dnsfunc=dns)
    for added in (b"Subject: You won a prize\r\n", b"From: ceo@bank.example\r\n"):
        head, _, body = raw.partition(b"\r\n\r\n")
        assert not dkim.verify(head + b"\r\n" + added + b"\r\n" + body, dnsfunc=dns)
        assert not dkim.verify(added + raw, dnsfunc=dns)


def test_crlf_in_a_stored_name_is_cleaned_not_injected(world, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    settings, db, server = world
    with db.connect() as conn, conn.begin():
        conn.execute(
            update(subscribers)
            .where(subscribers.c.email == "bakyt@example.org")
            .values(name="Bakyt\r\nBcc: victim@example.org")
        )
    summary = send(settings, db)
    assert summary.failed == 0 and summary.sent == 17
    assert not server.handler.received("victim@example.org")
    (raw,) = server.handler.received("bakyt@example.org")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Bcc"] is None
    assert str(message["To"]) == '"Bakyt  Bcc: victim@example.org" <bakyt@example.org>'


def test_non_ascii_names_are_encoded_words(world, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    settings, db, server = world
    send(settings, db)
    (raw,) = server.handler.received("zarina@example.org")
    assert b"To: Zarina Rahimova <zarina@example.org>" in raw
    from newsletter.delivery.envelope import address_header

    encoded = address_header("Зарина Рахимова", "zarina@example.org")
    assert encoded.isascii() and "=?utf-8?" in encoded
    assert _parse(f"To: {encoded}\r\n\r\n".encode())["To"] == "Зарина Рахимова <zarina@example.org>"


@pytest.mark.parametrize("smtp_server", ["pipelining", "serial"], indirect=True)
def test_4xx_is_retried_with_backoff_then_left_deferred(world, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    settings, db, server = world
    server.handler.rules = {"bakyt@example.org": "450", "lena@example.org": "450-once"}
    summary = send(settings, db, retries=3)
    assert summary.sent == 16 and summary.deferred == 1
    assert len(server.handler.received("lena@example.org")) == 1  # second try went through
    with db.connect() as conn:
        row = conn.execute(
            select(send_log)
            .join(subscribers, subscribers.c.id == send_log.c.subscriber_id)
            .where(subscribers.c.email == "bakyt@example.org")
        ).one()
    assert (row.state, row.attempts, row.last_code) == ("deferred", 3, 450)
    assert summary.outcome == "incomplete"
    server.handler.rules = {}
    later = send(settings, db)
    assert later.sent == 1 and later.outcome == "complete"
    assert len(server.handler.received("bakyt@example.org")) == 1


@pytest.mark.parametrize("smtp_server", ["pipelining", "serial"], indirect=True)
def test_5xx_fails_and_repeated_hard_bounces_mark_the_subscriber_bounced(
    world, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    settings, db, server = world
    server.handler.rules = {"oliver@example.org": "550"}
    summary = send(settings, db, bounce_limit=1)
    assert summary.failed == 1 and summary.bounced == 1 and summary.outcome == "failures"
    with db.connect() as conn:
        assert audience.get(conn, "oliver@example.org").status == "bounced"
        assert sendlog.failures(conn, DAY)[0]["last_reply"].startswith("550 5.1.1")


@pytest.mark.parametrize("smtp_server", ["pipelining", "serial"], indirect=True)
def test_timeouts_and_dropped_connections_are_deferred_not_lost(world, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    settings, db, server = world
    settings = with_changes(settings, smtp={"timeout": 0.5})
    server.handler.slow_seconds = 1.5
    server.handler.rules = {"priya@example.org": "slow", "yuki@example.org": "drop"}
    summary = send(settings, db, retries=2)
    assert summary.deferred == 2 and summary.sent == 15
    with db.connect() as conn:
        replies = {f["email"]: f["last_reply"] for f in sendlog.failures(conn, DAY)}
    assert "timed out" in replies["priya@example.org"].lower()
    assert "yuki@example.org" in replies
    server.handler.rules = {}
    settings = with_changes(settings, smtp={"timeout": 5})
    assert send(settings, db).sent == 2
    assert len(server.handler.received("yuki@example.org")) == 1


def test_server_down_pauses_and_a_later_run_resumes(
    world, settings: Settings, closed_port: int
) -> None:  # type: ignore[no-untyped-def]
    settings, db, _server = world
    real_port = settings.smtp.port
    settings = with_changes(settings, smtp={"port": closed_port})
    summary = send(settings, db, pause_after_errors=3, retries=5)
    assert summary.outcome == "paused" and "connection failures in a row" in (summary.paused or "")
    assert summary.sent == 0 and summary.remaining == 17
    settings = with_changes(settings, smtp={"port": real_port})
    resumed = send(settings, db)
    assert resumed.sent == 17 and resumed.outcome == "complete"


def test_unsubscribe_during_a_send_stops_mail_from_that_moment(world, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    settings, db, server = world
    first = send(settings, db, SendOptions(DAY, "weekly", limit=5))
    assert first.sent == 5 and first.outcome == "incomplete"
    with db.connect() as conn, conn.begin():
        pending = (
            conn.execute(
                select(subscribers.c.email)
                .join(send_log, send_log.c.subscriber_id == subscribers.c.id)
                .where(send_log.c.state == "queued")
                .order_by(send_log.c.id)
            )
            .scalars()
            .all()
        )
        audience.unsubscribe(conn, pending[0])
    rest = send(settings, db)
    assert server.handler.received(pending[0]) == []
    assert rest.sent == 11 and rest.skipped >= 1


def test_under_a_rate_limit_an_unsubscribe_mid_send_takes_effect_within_a_second_or_two(
    world, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    """At 5 messages/s the 17 messages take ~3.4 s. When the second one arrives, everybody
    not yet mailed unsubscribes: only the few claimed in the last second may still go."""
    settings, db, server = world
    unsubscribed: list[str] = []

    def on_message(_recipient: str) -> None:
        if len(server.handler.messages) != 2:
            return
        mailed = {rcpt.lower() for rcpt, _, _ in server.handler.messages}
        with db.connect() as conn, conn.begin():
            for email in _active(db):
                if email.lower() not in mailed:
                    audience.unsubscribe(conn, email)
                    unsubscribed.append(email.lower())

    server.handler.on_message = on_message
    summary = send(settings, db, rate_per_second=5.0)
    after = [rcpt for rcpt, _, _ in server.handler.messages[2:]]
    assert unsubscribed and len(after) <= 6, after  # a claim is ~1 s of sending (5) + 1 waiting
    assert summary.skipped >= 17 - 2 - 6
    with db.connect() as conn:
        skipped = conn.execute(
            select(send_log.c.last_reply).where(send_log.c.state == "skipped")
        ).scalars()
        assert "subscriber is unsubscribed" in set(skipped)


def test_rate_limit_spaces_messages(world, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    settings, db, server = world
    send(settings, db, rate_per_second=20.0)
    stamps = sorted(t for _, _, t in server.handler.messages)
    assert len(stamps) == 17
    assert stamps[-1] - stamps[0] >= (17 - 1) / 20 * 0.9


def test_dry_run_sends_nothing_and_to_sends_one_copy_per_variant(world, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    settings, db, server = world
    dry = send(settings, db, SendOptions(DAY, "weekly", dry_run=True))
    assert dry.queued_now == 17 and dry.variants == 14 and server.handler.messages == []
    test = send(settings, db, SendOptions(DAY, "weekly", to="editor@example.org"))
    copies = server.handler.received("editor@example.org")
    assert test.test_copies == 14 and len(copies) == 14
    with db.connect() as conn:
        assert sum(sendlog.counts(conn, DAY).values()) == 0
    # Each copy its own Message-ID and a subject naming its edition, so that none is hidden.
    parsed = [email.message_from_bytes(c, policy=email.policy.default) for c in copies]
    assert len({m["Message-ID"] for m in parsed}) == 14
    subjects = [str(m["Subject"]) for m in parsed]
    assert all(s.startswith("[Test: ") for s in subjects) and len(set(subjects)) == 14
    assert any(s.startswith("[Test: Kazakhstan]") for s in subjects)
    assert any(s.startswith("[Test: full edition]") for s in subjects)


def test_a_test_copy_of_one_variant_and_an_unknown_variant(world, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    settings, db, server = world
    dry = send(settings, db, SendOptions(DAY, "weekly", dry_run=True))
    assert dry.variants == 14
    from newsletter.audience.segments import plan_list
    from newsletter.compose.issuefiles import load_issue

    with db.connect() as conn:
        plan = plan_list(
            conn, load_issue(settings.issues_dir, DAY), "weekly", settings.vocabulary()
        )
    one = plan.variants[3].id
    test = send(settings, db, SendOptions(DAY, "weekly", to="editor@example.org", variant=one))
    assert test.test_copies == 1 and len(server.handler.received("editor@example.org")) == 1
    with pytest.raises(MessageError, match="no variant 'nope'"):
        send(settings, db, SendOptions(DAY, "weekly", to="editor@example.org", variant="nope"))


def test_without_an_smtp_host_messages_go_to_the_maildir_outbox(world, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    settings, db, _ = world
    settings = with_changes(settings, smtp={"host": ""})
    summary = send(settings, db)
    assert summary.sent == 17 and summary.transport.startswith("maildir:")
    assert len(list((settings.path("outbox") / "new").iterdir())) == 17


def test_times_written_by_the_send_loop_read_back_like_any_other(world, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """The send loop writes the log through the driver; its times must be stored exactly as
    SQLAlchemy stores them elsewhere (same text on SQLite), or comparisons would go wrong."""
    settings, db, server = world
    server.handler.rules = {"bakyt@example.org": "450"}
    send(settings, db, retries=2)
    with db.connect() as conn:
        rows = conn.execute(
            select(send_log).where(send_log.c.state.in_(["sent", "deferred"]))
        ).all()
        assert rows and all(r.updated_at >= r.queued_at for r in rows)
        assert all(
            r.sent_at is not None and r.sent_at.tzinfo is not None
            for r in rows
            if r.state == "sent"
        )
        if db.backend == "sqlite":
            raw = conn.exec_driver_sql(
                "SELECT queued_at, updated_at, sent_at FROM send_log WHERE state = 'sent'"
            ).all()
            shapes = {re.sub(r"\d", "9", value) for row in raw for value in row}
            assert shapes == {"9999-99-99 99:99:99.999999"}, shapes


def test_a_list_larger_than_the_first_queued_is_sent_whole_as_its_rest_is_queued(  # type: ignore[no-untyped-def]
    world, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send queues its first subscribers and starts; the rest is queued beside the sending:
    everyone still gets their edition once, and the progress total is the list's."""
    from newsletter.delivery import sender as sender_module

    monkeypatch.setattr(sender_module, "FIRST_QUEUED", 4)
    monkeypatch.setattr(sender_module, "REST_CHUNK", 5)  # the rest in chunks of 5
    settings, db, server = world
    totals: list[int] = []
    sender = Sender(
        send_setup(settings),
        db,
        make_transport(settings),
        SIGNER,
        limits=replace(make_limits(settings), batch=3),
        progress=lambda done, total: totals.append(total),
    )
    summary = asyncio.run(sender.run(SendOptions(DAY, "weekly")))
    assert (summary.queued_now, summary.sent, summary.skipped) == (18, 17, 1)
    assert summary.outcome == "complete" and totals[-1] == 18 and totals == sorted(totals)
    received = [m[0] for m in server.handler.messages]
    assert len(received) == len(set(received)) == 17
