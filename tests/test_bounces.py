"""Returned mail closes the loop: the corpus of returns (tests/returns/) classified with its
agreement reported; the policy (hard, soft in a row, aimed at the sender, complaints, mailto
unsubscribes); and end to end: a send to a real SMTP server with VERP, returns made from what
it received, `newsletter bounces import` from a Maildir, an mbox and a pipe, then the next
send skips them."""

from __future__ import annotations

import email
import json
import mailbox
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from newsletter.audience.importer import import_csv
from newsletter.core.clock import now
from newsletter.core.states import ReturnKind
from newsletter.core.tokens import Signer
from newsletter.inbound.apply import Policy, apply, source_key
from newsletter.inbound.classify import Mailroom, Return, classify
from newsletter.inbound.service import read_returns, report
from newsletter.storage.db import Database, events, lists, send_log, subscribers
from tests.conftest import REPO, SAMPLE_DATE, SMTPServer
from tests.returns.make_corpus import KEY as CORPUS_KEY
from tests.returns.make_corpus import SUBSCRIBERS as CORPUS_SUBSCRIBERS

RETURNS = Path(__file__).parent / "returns"
ROOM = Mailroom(
    Signer(CORPUS_KEY),
    return_path="bounces@news.example.org",
    unsubscribe_address="unsubscribe@news.example.org",
)


def _load_corpus_subscribers(db: Database) -> None:
    with db.connect() as conn, conn.begin():
        for address in CORPUS_SUBSCRIBERS:
            conn.execute(
                insert(subscribers).values(
                    email=address,
                    email_key=address,
                    name="",
                    status="active",
                    interests="",
                    attributes={},
                    created_at=now(),
                    updated_at=now(),
                )
            )


def _status(db: Database, address: str) -> str:
    with db.connect() as conn:
        return str(
            conn.execute(
                select(subscribers.c.status).where(subscribers.c.email == address)
            ).scalar_one()
        )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_corpus_of_returns_is_classified_and_tied_to_the_right_subscriber(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = json.loads((RETURNS / "expected.json").read_text())
    assert len(expected) >= 60
    formats = {name.split("-")[1] for name in expected}
    assert (
        len(
            formats
            & {
                "exchange",
                "gmail",
                "ses",
                "courier",
                "domino",
                "postfix",
                "exim",
                "qmail",
                "sendmail",
                "yahoo",
            }
        )
        >= 8
    )
    _load_corpus_subscribers(db)
    misses = []
    kinds: dict[str, int] = {}
    for name, want in sorted(expected.items()):
        raw = (RETURNS / "corpus" / name).read_bytes()
        with db.connect() as conn, conn.begin():
            decisions = [
                apply(conn, v, source="import", key=source_key(raw), policy=Policy(soft_limit=99))
                for v in classify(raw, ROOM)
            ]
        got = decisions[0]
        who = got.email or None
        kinds[str(got.kind)] = kinds.get(str(got.kind), 0) + 1
        right_kind = got.kind == want["kind"]
        right_who = who == want["subscriber"] or want["kind"] in ("ignored", "autoreply")
        if not (right_kind and right_who):
            misses.append(f"{name}: want {want}, got {got.kind} for {who} ({got.reason})")
    agreement = 1 - len(misses) / len(expected)
    with capsys.disabled():
        print(f"\nreturns corpus: {len(expected)} messages, agreement {agreement:.1%}, {kinds}")
    assert misses == [], "\n".join(misses)


def _sent(db: Database, address: str, *issues: str) -> int:
    with db.connect() as conn, conn.begin():
        sid = int(
            conn.execute(
                select(subscribers.c.id).where(subscribers.c.email == address)
            ).scalar_one()
        )
        list_id = conn.execute(select(lists.c.id)).scalar()
        if list_id is None:
            list_id = conn.execute(
                insert(lists).values(name="weekly", created_at=now())
            ).inserted_primary_key[0]  # type: ignore[index]
        for issue in issues:
            conn.execute(
                insert(send_log).values(
                    issue=issue,
                    list_id=list_id,
                    subscriber_id=sid,
                    state="sent",
                    variant="",
                    attempts=1,
                    last_reply="250",
                    queued_at=now(),
                    updated_at=now(),
                    sent_at=now(),
                )
            )
    return sid


def _soft(sid: int, issue: str, n: int) -> tuple[Return, str]:
    from newsletter.core.verp import Reference

    ret = Return(
        ReturnKind.SOFT,
        "mailbox full",
        status="5.2.2",
        form="dsn",
        ref=Reference(issue, sid),
        message_id=f"<soft{n}@x>",
    )
    return ret, f"key-{n}"


def test_soft_bounces_suppress_only_after_three_issues_in_a_row(db: Database) -> None:
    _load_corpus_subscribers(db)
    address = CORPUS_SUBSCRIBERS[0]
    sid = _sent(db, address, "2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23")
    policy = Policy(soft_limit=3)

    def bounce(issue: str, n: int) -> str:
        ret, key = _soft(sid, issue, n)
        with db.connect() as conn, conn.begin():
            return apply(conn, ret, source="import", key=key, policy=policy).status_now

    assert bounce("2026-11-02", 1) == ""
    assert bounce("2026-11-09", 2) == ""
    # 2026-11-16 was delivered (no bounce came back): the run starts again
    assert bounce("2026-11-23", 3) == ""
    assert _status(db, address) == "active"
    assert bounce("2026-11-23", 3) == ""  # the same return again: nothing more
    sid2 = _sent(db, CORPUS_SUBSCRIBERS[1], "2026-11-02", "2026-11-09", "2026-11-16")
    for n, issue in enumerate(("2026-11-02", "2026-11-09"), start=10):
        ret, key = _soft(sid2, issue, n)
        with db.connect() as conn, conn.begin():
            assert apply(conn, ret, source="import", key=key, policy=policy).status_now == ""
    ret, key = _soft(sid2, "2026-11-16", 12)
    with db.connect() as conn, conn.begin():
        assert apply(conn, ret, source="import", key=key, policy=policy).status_now == "bounced"
    with db.connect() as conn:
        details = [
            r.detail
            for r in conn.execute(
                select(events).where(events.c.subscriber_id == sid2, events.c.kind == "bounce.soft")
            )
        ]
    assert details[-1].endswith("in a row=3/3") and "status=5.2.2" in details[-1]


def test_hard_complaint_unsubscribe_and_sender_refusals(db: Database) -> None:
    _load_corpus_subscribers(db)
    expected = json.loads((RETURNS / "expected.json").read_text())
    pick = {
        "hard": next(n for n, w in expected.items() if "gmail-5.1.1" in n),
        "sender": next(n for n, w in expected.items() if "gmail-5.7.26" in n),
        "complaint": next(n for n, w in expected.items() if n.endswith("arf-2-verp.eml")),
        "unsubscribe": next(n for n, w in expected.items() if "mailto-unsubscribe-1" in n),
        "forged": next(n for n, w in expected.items() if "forged-verp" in n),
    }
    items = [(name, (RETURNS / "corpus" / name).read_bytes()) for name in pick.values()]
    tally = read_returns(db, items, ROOM, Policy())
    assert tally.changed == {"bounced": 1, "complained": 1, "unsubscribed": 1}
    assert tally.kinds["sender"] == 1
    assert len(tally.problems) == 1 and "forged bounce reference" in tally.problems[0]
    assert "nothing changed" in tally.problems[0]
    assert _status(db, "bakyt@gmail.com") == "bounced"  # hard, before the sender refusal
    assert _status(db, "priya@aol.com") == "complained"
    assert _status(db, "rustam@icloud.com") == "unsubscribed"
    assert _status(db, "aigerim@mail.kz") == "active"  # the forged return changed nothing
    again = read_returns(db, items, ROOM, Policy())
    assert again.repeats == 4 and not again.changed  # reading them again changes nothing
    with db.connect() as conn:
        data = report(conn, "2026-11-16")
    kinds = {row["kind"]: row["n"] for row in data["by_kind"]}
    assert kinds == {"hard": 1, "sender": 1, "complaint": 1}  # the mailto names no issue
    assert data["sender_alarm"]["refused"] == 1
    with db.connect() as conn:
        everything = {row["kind"]: row["n"] for row in report(conn)["by_kind"]}
    assert everything == {"hard": 1, "sender": 1, "complaint": 1, "unsubscribe": 1}


CLI_KEY = {"NEWSLETTER_SECURITY__SECRET_KEY": "bounce-cli-secret-0123456789"}


def _dsn(to: str, recipient: str, status: str, diagnostic: str, original: bytes) -> bytes:
    headers = original.split(b"\r\n\r\n", 1)[0].decode()
    return (
        f"Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.remote.example (Mail Delivery System)\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn-{recipient}>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.remote.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--B--\r\n"
    ).encode()


def _arf(original: bytes) -> bytes:
    return (
        b"From: fbl@isp.example\r\nTo: fbl@news.example.org\r\nSubject: complaint\r\n"
        b"Message-ID: <arf-e2e@isp.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="A"\r\n\r\n'
        b"--A\r\nContent-Type: text/plain\r\n\r\nAbuse report\r\n"
        b"--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\r\n"
        b"--A\r\nContent-Type: message/rfc822\r\n\r\n" + original + b"\r\n--A--\r\n"
    )


def test_returns_from_a_real_send_are_read_from_a_maildir_an_mbox_and_a_pipe(
    cli, smtp_server: SMTPServer, workspace: Path
) -> None:  # type: ignore[no-untyped-def]
    env = {
        **CLI_KEY,
        "NEWSLETTER_SMTP__HOST": smtp_server.host,
        "NEWSLETTER_SMTP__PORT": str(smtp_server.port),
        "NEWSLETTER_SMTP__SECURITY": "none",
        "NEWSLETTER_BOUNCES__RETURN_PATH": "bounces@news.example.org",
    }
    assert cli("build", "--date", SAMPLE_DATE).code == 0
    weekly = str(REPO / "subscribers/weekly.csv")
    assert cli("subscribers", "import", weekly, "--list", "weekly", env=env).code == 0
    sent = cli("send", SAMPLE_DATE, "--list", "weekly", env=env)
    assert sent.code == 0, sent.stderr
    handler = smtp_server.handler
    # VERP: every message went out from its own bounces+REF@ address, and names it in a header.
    senders = handler.mail_from
    assert len(senders) == 17 and all(s.startswith("bounces+") for s in senders.values())
    assert len(set(senders.values())) == 17

    def original(address: str) -> bytes:
        (message,) = handler.received(address)
        return message

    ref = email.message_from_bytes(original("aigerim@example.org"))["X-Newsletter-Ref"]
    assert senders["aigerim@example.org"] == f"bounces+{ref}@news.example.org"
    maildir = mailbox.Maildir(workspace / "returns", create=True)
    maildir.add(
        _dsn(
            senders["aigerim@example.org"],
            "aigerim@example.org",
            "5.1.1",
            "550 5.1.1 <aigerim@example.org>: Recipient address rejected: User unknown",
            original("aigerim@example.org"),
        )
    )
    maildir.add(
        _dsn(
            "bounces@news.example.org",
            "bakyt@example.org",
            "5.7.1",
            "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org",
            original("bakyt@example.org"),
        )
    )
    maildir.add(
        b"From: nobody@x\r\nTo: bounces@news.example.org\r\nSubject: hello\r\n\r\nNot a bounce.\r\n"
    )
    box = mailbox.mbox(workspace / "returns.mbox", create=True)
    box.add(_arf(original("dilnoza@example.org")))
    box.add(b"\x00\xff garbage that is not mail \r\n")
    box.close()
    first = cli("bounces", "import", str(workspace / "returns"), env=env)
    assert first.code == 0, first.stderr
    assert "read 3 message(s)" in first.stdout and "1 now bounced" in first.stdout
    second = cli("bounces", "import", str(workspace / "returns.mbox"), env=env)
    assert second.code == 0 and "1 now complained" in second.stdout
    # The List-Unsubscribe mailto, as a mail client sends it, piped in by the MTA.
    header = email.message_from_bytes(original("farrukh@example.org"))["List-Unsubscribe"]
    subject = header.split("subject=")[1].rstrip(">").replace("%20", " ")
    piped = cli(
        "bounces",
        "import",
        "-",
        env={**env, "ORIGINAL_RECIPIENT": "unsubscribe@news.example.org"},
        input=f"From: farrukh@example.org\r\nTo: unsubscribe@news.example.org\r\nSubject: {subject}\r\n\r\n\r\n",
    )
    assert piped.code == 0 and "1 now unsubscribed" in piped.stdout, piped.stderr
    assert (
        cli("bounces", "import", str(workspace / "returns"), env=env).stdout.count("3 seen before")
        == 1
    )
    shown = cli("subscribers", "show", "aigerim@example.org", env=env).stdout
    assert "status: bounced" in shown and "bounce.hard" in shown and "5.1.1" in shown
    bakyt = json.loads(cli("subscribers", "show", "bakyt@example.org", "--json", env=env).stdout)
    assert bakyt["status"] == "active"  # a refusal aimed at the sender: not the address
    assert bakyt["returns"][0]["kind"] == "bounce.sender"
    report = cli("bounces", "report", SAMPLE_DATE, env=env).stdout
    assert "sender alarm: ALARM: 1 refusal(s) aimed at the sender" in report
    assert "unknown user" in report and "example.org" in report
    status = cli("status", SAMPLE_DATE, env=env).stdout
    assert "sender alarm" in status
    # The next issue skips whoever bounced, complained or unsubscribed.
    handler.messages.clear()
    assert cli("build", "--date", "2026-11-23", env=env).code in (0, 3)
    if (workspace / "issues" / "2026-11-23").exists():
        nxt = cli("send", "2026-11-23", "--list", "weekly", env=env)
        assert nxt.code == 0, nxt.stderr
        got = {rcpt for rcpt, _, _ in handler.messages}
        assert got and not got & {
            "aigerim@example.org",
            "dilnoza@example.org",
            "farrukh@example.org",
        }
        assert "bakyt@example.org" in got


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("refused", "pauses"), [(60, True), (8, False)], ids=["12%", "2%"])
def test_a_send_pauses_when_too_many_recent_messages_are_refused_for_good(
    settings, db: Database, smtp_server: SMTPServer, tmp_path: Path, refused: int, pauses: bool
) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    from datetime import date

    from newsletter.cli.common import EXIT_UNDELIVERED
    from newsletter.cli.delivery import report as exit_status
    from newsletter.compose.issuefiles import build_and_write
    from newsletter.compose.select import ComposeOptions
    from newsletter.config import with_changes
    from newsletter.delivery.factory import make_limits, make_transport, send_setup
    from newsletter.delivery.options import SendOptions
    from newsletter.delivery.sender import Sender

    build_and_write(settings.issue_config(), ComposeOptions(date(2026, 11, 16)))
    people = tmp_path / "people.csv"
    rows = [f"r{i:03d}@example.org,R,Regional" for i in range(500)]
    people.write_text("email,name,interests\n" + "\n".join(rows) + "\n")
    import_csv(db, people, "weekly", settings.vocabulary())
    for i in range(0, 500, 500 // refused):  # spread through the list
        smtp_server.handler.rules[f"r{i:03d}@example.org"] = "550"
    settings = with_changes(
        settings,
        smtp={"host": "127.0.0.1", "port": smtp_server.port, "security": "none", "backoff": 0.05},
    )
    sender = Sender(
        send_setup(settings),
        db,
        make_transport(settings),
        Signer(b"guard-test-key-0123456789abc"),
        limits=make_limits(settings),
    )
    summary = asyncio.run(asyncio.wait_for(sender.run(SendOptions("2026-11-16", "weekly")), 120))
    if pauses:
        assert summary.paused and "refused permanently" in summary.paused
        assert "over bounces.pause_ratio 5%" in summary.paused
        assert summary.remaining > 0 and exit_status(summary, as_json=True) == EXIT_UNDELIVERED
        assert summary.sent + summary.failed < 500
    else:
        assert not summary.paused and summary.sent + summary.failed == 500


def test_a_mailbox_that_cannot_be_read_is_one_line_and_a_bad_message_fails_alone(
    cli, workspace: Path
) -> None:  # type: ignore[no-untyped-def]
    env = {"NEWSLETTER_SECURITY__SECRET_KEY": "bounce-cli-secret-0123456789"}
    missing = cli("bounces", "import", str(workspace / "no-such-box"), env=env)
    assert missing.code == 1 and missing.stderr.startswith("error: ")
    assert "no-such-box: cannot read" in missing.stderr and len(missing.stderr.splitlines()) == 1
    folder = workspace / "odd"
    folder.mkdir()
    (folder / "a.eml").write_bytes(b"\xff\xfe\x00 binary junk \x00" * 50)
    (folder / "b.eml").write_bytes(
        b"From: x@y\r\nTo: unsubscribe@news.example.org\r\nSubject: unsubscribe "
        + b"A" * 43
        + b"\r\n\r\n"
    )
    result = cli("bounces", "import", str(folder), env=env)
    assert result.code == 0, result.stderr
    assert "read 2 message(s)" in result.stdout and "1 refused" in result.stdout
    assert (
        "b.eml: a mail to the unsubscribe address without a valid token; nothing changed"
        in result.stderr
    )
