"""Real returned mail: `newsletter send` through a private Postfix that relays to an aiosmtpd
server refusing three recipients; Postfix writes the delivery status notifications itself and
delivers them, by VERP, to a Maildir; `newsletter bounces import` then acts on each."""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.delivery.localserver import free_port
from tests.conftest import REPO, SAMPLE_DATE, SMTPServer
from tests.dovecot import Dovecot
from tests.dovecot import unavailable as dovecot_unavailable
from tests.postfix import Postfix, unavailable

REASON = unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture
def postfix(smtp_server: SMTPServer) -> Iterator[Postfix]:
    instance = Postfix(smtp_server.port, free_port())
    try:
        yield instance
    finally:
        instance.stop()


def test_returns_written_by_postfix_are_read_and_acted_on(
    cli, smtp_server: SMTPServer, postfix: Postfix
) -> None:  # type: ignore[no-untyped-def]
    rules = smtp_server.handler.rules
    rules["aigerim@example.org"] = (
        "550 5.1.1 <aigerim@example.org>: Recipient address rejected: User unknown"
    )
    rules["bakyt@example.org"] = (
        "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"
    )
    rules["dilnoza@example.org"] = "552 5.2.2 <dilnoza@example.org>: Mailbox full"
    env = {
        "NEWSLETTER_SECURITY__SECRET_KEY": "postfix-returns-secret-0123456789",
        "NEWSLETTER_SMTP__HOST": "127.0.0.1",
        "NEWSLETTER_SMTP__PORT": str(postfix.smtpd_port),
        "NEWSLETTER_SMTP__SECURITY": "none",
        "NEWSLETTER_BOUNCES__RETURN_PATH": "bounces@news.example.org",
    }
    assert cli("build", "--date", SAMPLE_DATE).code == 0
    weekly = str(REPO / "subscribers/weekly.csv")
    assert cli("subscribers", "import", weekly, "--list", "weekly", env=env).code == 0
    sent = cli("send", SAMPLE_DATE, "--list", "weekly", env=env)
    assert sent.code == 0 and "17 sent" in sent.stdout, sent.stdout + sent.stderr
    returns = postfix.wait_for_returns(3)
    for path in returns:  # Postfix's own DSN, to the message's VERP address
        notice = email.message_from_bytes(path.read_bytes())
        assert notice.get_content_type() == "multipart/report"
        assert notice["Delivered-To"].startswith("bounces+")
    imported = cli("bounces", "import", str(postfix.box), "--json", env=env)
    assert imported.code == 0, imported.stderr
    tally = json.loads(imported.stdout)
    assert tally["kinds"] == {"hard": 1, "sender": 1, "soft": 1}
    assert tally["status_changes"] == {"bounced": 1} and tally["problems"] == []

    def status(address: str) -> str:
        shown = cli("subscribers", "show", address, "--json", env=env)
        return str(json.loads(shown.stdout)["status"])

    assert status("aigerim@example.org") == "bounced"
    assert status("bakyt@example.org") == "active"  # aimed at the sender: the alarm, not them
    assert status("dilnoza@example.org") == "active"  # mailbox full: one soft bounce of three
    assert "sender alarm: ALARM" in cli("status", SAMPLE_DATE, env=env).stdout


def test_the_corpus_holds_returns_written_by_a_real_postfix() -> None:
    real = sorted((Path(__file__).parent / "returns" / "corpus").glob("*postfix-real-*.eml"))
    assert len(real) >= 5
    for path in real:
        assert b"This is the mail system at host mx.news.example.org." in path.read_bytes()


DOVECOT_REASON = dovecot_unavailable()


@pytest.fixture
def imap_server() -> Iterator[Dovecot]:
    if DOVECOT_REASON:
        pytest.skip(DOVECOT_REASON)
    server = Dovecot()
    try:
        yield server
    finally:
        server.stop()


def test_returns_in_an_imap_mailbox_are_fetched_over_tls_and_moved(
    cli, smtp_server: SMTPServer, postfix: Postfix, imap_server: Dovecot
) -> None:  # type: ignore[no-untyped-def]
    """Postfix's returns, put into a real IMAP mailbox (Dovecot, IMAPS with a test CA), are
    fetched, acted on and moved to the processed folder; a second fetch finds nothing; a wrong
    password and an untrusted certificate are one clear line each, the password never shown."""
    import imaplib
    import ssl

    from tests.dovecot import PASSWORD, USER

    smtp_server.handler.rules["aigerim@example.org"] = (
        "550 5.1.1 <aigerim@example.org>: User unknown"
    )
    smtp_server.handler.rules["bakyt@example.org"] = "552 5.2.2 Mailbox full"
    env = {
        "NEWSLETTER_SECURITY__SECRET_KEY": "imap-returns-secret-0123456789",
        "NEWSLETTER_SMTP__HOST": "127.0.0.1",
        "NEWSLETTER_SMTP__PORT": str(postfix.smtpd_port),
        "NEWSLETTER_SMTP__SECURITY": "none",
        "NEWSLETTER_BOUNCES__RETURN_PATH": "bounces@news.example.org",
        "NEWSLETTER_BOUNCES__IMAP_HOST": "127.0.0.1",
        "NEWSLETTER_BOUNCES__IMAP_PORT": str(imap_server.port),
        "NEWSLETTER_BOUNCES__IMAP_USERNAME": USER,
        "NEWSLETTER_BOUNCES__IMAP_PASSWORD": PASSWORD,
        "NEWSLETTER_BOUNCES__IMAP_CA_FILE": str(imap_server.ca_file),
    }
    assert cli("build", "--date", SAMPLE_DATE).code == 0
    weekly = str(REPO / "subscribers/weekly.csv")
    assert cli("subscribers", "import", weekly, "--list", "weekly", env=env).code == 0
    assert cli("send", SAMPLE_DATE, "--list", "weekly", env=env).code == 0
    context = ssl.create_default_context(cafile=str(imap_server.ca_file))
    with imaplib.IMAP4_SSL("127.0.0.1", imap_server.port, ssl_context=context, timeout=10) as box:
        box.login(USER, PASSWORD)
        for path in postfix.wait_for_returns(2):
            assert box.append("INBOX", None, None, path.read_bytes())[0] == "OK"
        box.append("INBOX", None, None, b"From: x@y\r\nSubject: hi\r\n\r\nnot a bounce\r\n")
    fetched = cli("bounces", "fetch", "--json", env=env)
    assert fetched.code == 0, fetched.stderr
    tally = json.loads(fetched.stdout)
    assert tally["read"] == 3 and tally["moved"] == 3
    assert tally["kinds"] == {"hard": 1, "soft": 1, "ignored": 1}
    assert PASSWORD not in fetched.stdout + fetched.stderr
    again = json.loads(cli("bounces", "fetch", "--json", env=env).stdout)
    assert again["read"] == 0
    with imaplib.IMAP4_SSL("127.0.0.1", imap_server.port, ssl_context=context, timeout=10) as box:
        box.login(USER, PASSWORD)
        assert box.select('"Processed"')[1] == [b"3"]
    shown = json.loads(cli("subscribers", "show", "aigerim@example.org", "--json", env=env).stdout)
    assert shown["status"] == "bounced"
    wrong = cli("bounces", "fetch", env={**env, "NEWSLETTER_BOUNCES__IMAP_PASSWORD": "wrong-pw-x"})
    assert wrong.code == 1 and "login refused for 'bounces'" in wrong.stderr
    assert "wrong-pw-x" not in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    untrusted = cli("bounces", "fetch", env={**env, "NEWSLETTER_BOUNCES__IMAP_CA_FILE": ""})
    assert untrusted.code == 1 and "certificate is not trusted" in untrusted.stderr


def test_the_scheduler_fetches_returns_on_its_own(
    workspace: Path, imap_server: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    """With bounces.fetch_every_minutes the scheduler holds a job that reads the mailbox; one
    round that fails (a wrong password) is logged and the scheduler goes on."""
    import imaplib
    import logging
    import ssl

    from newsletter.config import load_settings
    from newsletter.schedule.service import FETCH_JOB, SchedulerService
    from newsletter.storage.db import Database
    from tests.dovecot import PASSWORD, USER

    imap = {
        "imap_host": "127.0.0.1",
        "imap_port": imap_server.port,
        "imap_username": USER,
        "imap_password": PASSWORD,
        "imap_ca_file": str(imap_server.ca_file),
        "fetch_every_minutes": 5,
    }
    settings = load_settings(
        workspace / "newsletter.toml",
        security={"secret_key": "scheduled-fetch-secret-0123456789"},
        schedules=[{"name": "weekly", "cron": "0 6 * * 1", "lists": ["weekly"]}],
        bounces=imap,
    )
    context = ssl.create_default_context(cafile=str(imap_server.ca_file))
    with imaplib.IMAP4_SSL("127.0.0.1", imap_server.port, ssl_context=context, timeout=10) as box:
        box.login(USER, PASSWORD)
        box.append("INBOX", None, None, b"From: x@y\r\nSubject: hello\r\n\r\nnot a bounce\r\n")
    db = Database(settings.database_url)
    from newsletter.audience.importer import import_csv

    import_csv(db, REPO / "subscribers" / "weekly.csv", "weekly", settings.vocabulary())
    service = SchedulerService(settings, db)
    service.start()
    try:
        assert service._scheduler is not None and service._scheduler.get_job(FETCH_JOB)
        service.fetch_returns()
    finally:
        service.stop()
    with imaplib.IMAP4_SSL("127.0.0.1", imap_server.port, ssl_context=context, timeout=10) as box:
        box.login(USER, PASSWORD)
        assert box.select('"Processed"')[1] == [b"1"]
    wrong = SchedulerService(
        load_settings(
            workspace / "newsletter.toml",
            security={"secret_key": "scheduled-fetch-secret-0123456789"},
            bounces={**imap, "imap_password": "not-the-password"},
        ),
        db,
    )
    with caplog.at_level(logging.WARNING, logger="newsletter.schedule.service"):
        wrong.fetch_returns()  # logged, not raised
    assert "fetching returned mail failed" in caplog.text and "login refused" in caplog.text
    assert "not-the-password" not in caplog.text
    db.dispose()
