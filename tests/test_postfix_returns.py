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
