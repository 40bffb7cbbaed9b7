"""A send survives what one subscriber, one message or one helper can do to it.

Faults are injected for real: addresses and names stored in the database, a transport that
raises in the middle of a send, a DKIM signing process killed with SIGKILL, a database that
refuses writes for a while (a trigger), a server that does or does not offer SMTPUTF8. Every
test runs against aiosmtpd on a free port, on SQLite and on PostgreSQL, and asserts that
everyone else got the issue exactly once, with the exit status ``newsletter send`` would give.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import os
import re
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from newsletter.audience.importer import import_csv
from newsletter.cli.delivery import report
from newsletter.compose.issuefiles import build_and_write
from newsletter.compose.select import ComposeOptions
from newsletter.config import Settings, with_changes
from newsletter.core.tokens import Signer
from newsletter.delivery import recorder, sendlog, supervise
from newsletter.delivery.factory import make_dkim, make_limits, make_transport, send_setup
from newsletter.delivery.options import SendOptions, SendSummary
from newsletter.delivery.sender import Sender
from newsletter.delivery.transports import Delivery, Notify, Outgoing, Transport
from newsletter.storage.db import Database, locks, send_log, subscribers
from tests.conftest import RecordingHandler, SMTPServer, start_smtp, stop_smtp

DAY = "2026-11-16"
SIGNER = Signer(b"test-secret-key-0123456789abcdef")
COUNT = 2000
SMALL = 600  # for the faults that do not need the whole list
UTF8_ADDRESS = "ünicode@example.org"
CONTROL_NAME = (
    "Ctl"
    + "".join(chr(c) for c in [*range(0, 9), *range(10, 32), 0x7F, *range(0x80, 0xA0)])
    + "\u2028\u2029End"
)
LONG_NAME = ("Aigerim Nurlanovna " * 80)[:1500]


def _parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


@pytest.fixture
def dkim_key(tmp_path: Path) -> tuple[Path, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def _verify(raw: bytes, record: bytes) -> bool:
    dkim = pytest.importorskip("dkim")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record

    return bool(dkim.verify(raw, dnsfunc=dns))


def _world(
    settings: Settings,
    db: Database,
    server: SMTPServer,
    tmp_path: Path,
    dkim_file: Path | None,
    count: int = COUNT,
) -> Settings:
    """``count`` readers (one of them with a UTF-8 local part, and two whose names an older
    version stored: one full of control characters, one of 1,500 characters), the issue built."""
    build_and_write(settings.issue_config(), ComposeOptions(date(2026, 11, 16)))
    people = tmp_path / "many.csv"
    # One small edition (the regional section) for all: aiosmtpd reads ~150 KB/s a connection.
    rows = [f"reader{i:04d}@example.org,Reader {i},Regional" for i in range(count - 3)]
    rows += [f"{UTF8_ADDRESS},Ünicode,Regional", "control@example.org,x,Regional"]
    rows += ["long@example.org,y,Regional"]
    people.write_text("email,name,interests\n" + "\n".join(rows) + "\n", encoding="utf-8")
    import_csv(db, people, "weekly", settings.vocabulary())
    # PostgreSQL holds neither NUL nor names over the column's 200 characters (SQLite does).
    control, long = CONTROL_NAME, LONG_NAME
    if db.backend == "postgresql":
        control, long = CONTROL_NAME.replace("\x00", ""), LONG_NAME[:200]
    with db.connect() as conn, conn.begin():
        for address, name in (("control@example.org", control), ("long@example.org", long)):
            conn.execute(
                update(subscribers).where(subscribers.c.email == address).values(name=name)
            )
    changes: dict[str, object] = {
        "smtp": {
            "host": "127.0.0.1",
            "port": server.port,
            "security": "none",
            "timeout": 5.0,
            "backoff": 0.05,
        }
    }
    if dkim_file is not None:
        changes["dkim"] = {
            "domain": "news.example.org",
            "selector": "weekly",
            "private_key_file": str(dkim_file),
        }
    return with_changes(settings, **changes)  # type: ignore[arg-type]


def _send(
    settings: Settings,
    db: Database,
    transport: Transport | None = None,
    **limits: object,
) -> tuple[SendSummary, int]:
    """One send as `newsletter send` runs it; (summary, the exit status it would give)."""
    sender = Sender(
        send_setup(settings),
        db,
        transport or make_transport(settings),
        SIGNER,
        limits=replace(make_limits(settings), **limits),
        dkim=make_dkim(settings),
    )
    summary = asyncio.run(asyncio.wait_for(sender.run(SendOptions(DAY, "weekly")), 120))
    return summary, report(summary, as_json=True)


def _states(db: Database) -> dict[str, tuple[str, str]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(subscribers.c.email, send_log.c.state, send_log.c.last_reply).join(
                send_log, send_log.c.subscriber_id == subscribers.c.id
            )
        )
        return {r.email: (r.state, r.last_reply) for r in rows}


def _everyone_else_once(
    server: SMTPServer, count: int = COUNT, but: Sequence[str] = ()
) -> Counter[str]:
    received = Counter(rcpt.lower() for rcpt, _, _ in server.handler.messages)
    expected = {f"reader{i:04d}@example.org" for i in range(count - 3)}
    missing = expected - set(received)
    assert not missing, f"{len(missing)} readers got nothing, e.g. {sorted(missing)[:3]}"
    twice = {r: n for r, n in received.items() if n > 1 and r not in but}
    assert not twice, f"mailed twice: {sorted(twice)[:5]}"
    return received


@pytest.fixture
def utf8_server(request: pytest.FixtureRequest) -> Iterator[SMTPServer]:
    """aiosmtpd offering SMTPUTF8, or (param False) not offering it."""
    offered = getattr(request, "param", True)
    controller, server = start_smtp(RecordingHandler(), enable_SMTPUTF8=offered)
    try:
        yield server
    finally:
        stop_smtp(controller)


@pytest.mark.parametrize("utf8_server", [True, False], indirect=True, ids=["smtputf8", "ascii"])
def test_odd_addresses_and_names_fail_or_pass_alone_among_2000(
    settings: Settings,
    db: Database,
    utf8_server: SMTPServer,
    tmp_path: Path,
    dkim_key: tuple[Path, bytes],
) -> None:
    offered = _offers_smtputf8(utf8_server)
    if not offered and db.backend != "sqlite":
        pytest.skip("the server side of SMTPUTF8 does not depend on the database: SQLite covers it")
    settings = _world(settings, db, utf8_server, tmp_path, dkim_key[0])
    summary, status = _send(settings, db)
    received = _everyone_else_once(utf8_server)
    states = _states(db)
    if offered:
        assert status == 0 and summary.failed == 0
        (raw,) = [m for r, m, _ in utf8_server.handler.messages if r == UTF8_ADDRESS]
        assert f"To: =?utf-8?q?=C3=9Cnicode?= <{UTF8_ADDRESS}>".encode() in raw
        assert _verify(raw, dkim_key[1])
    else:
        assert status == 5 and summary.failed == 1
        assert states[UTF8_ADDRESS] == (
            "failed",
            "the server does not offer SMTPUTF8, which this address needs",
        )
        assert received[UTF8_ADDRESS] == 0
    for address in ("control@example.org", "long@example.org"):
        assert states[address][0] == "sent"
        (raw,) = utf8_server.handler.received(address)
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert max(len(line) for line in head.split(b"\r\n")) <= 998
        to = next(line for line in head.split(b"\r\n") if line.startswith(b"To:"))
        assert len(to) <= 78, to
        assert _verify(raw, dkim_key[1]), f"DKIM of {address} does not verify"
    control = _parse(utf8_server.handler.received("control@example.org")[0])
    assert re.fullmatch(r"Ctl +End <control@example\.org>", str(control["To"]))
    long = _parse(utf8_server.handler.received("long@example.org")[0])
    stored = LONG_NAME if db.backend == "sqlite" else LONG_NAME[:200]
    assert str(long["To"]) == f"{stored.strip()} <long@example.org>"


def _offers_smtputf8(server: SMTPServer) -> bool:
    import smtplib

    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        return client.has_extn("smtputf8")


class Faulty:
    """A real SMTP transport with a fault: sending to ``poison`` raises RuntimeError after the
    messages before it in the batch went out (a bug in a transport, a library's surprise)."""

    def __init__(self, inner: Transport, poison: str) -> None:
        self.inner, self.poison = inner, poison
        self.name = inner.name

    async def open(self) -> None:
        await self.inner.open()

    async def send(self, sender: str, recipient: str, message: bytes) -> Delivery:
        return (await self.send_many(sender, [(recipient, message)]))[0]

    async def send_many(
        self, sender: str, batch: Sequence[Outgoing], notify: Notify | None = None
    ) -> list[Delivery]:
        cut = next((i for i, item in enumerate(batch) if item[0] == self.poison), None)
        if cut is None:
            return await self.inner.send_many(sender, batch, notify)
        done = await self.inner.send_many(sender, batch[:cut], notify)
        raise RuntimeError(f"injected fault after {len(done)} message(s)")

    async def close(self) -> None:
        await self.inner.close()


def test_a_transport_raising_an_unexpected_error_fails_that_recipient_alone(
    settings: Settings, db: Database, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    settings = _world(settings, db, smtp_server, tmp_path, None, SMALL)
    poison = "reader0377@example.org"
    summary, status = _send(settings, db, Faulty(make_transport(settings), poison))
    assert status == 5 and summary.failed == 1 and summary.paused is None
    state, reply = _states(db)[poison]
    assert state == "failed" and "RuntimeError: injected fault" in reply
    expected_missing = {poison}
    received = Counter(rcpt for rcpt, _, _ in smtp_server.handler.messages)
    assert set(_states(db)) - set(received) == expected_missing
    assert max(received.values()) == 1


def _signing_children() -> list[int]:
    """PIDs of this process's DKIM signing processes."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me and b"newsletter.delivery.signworker" in cmdline:
            found.append(int(entry.name))
    return found


def test_a_killed_signing_process_is_replaced_and_nobody_is_lost(
    settings: Settings,
    db: Database,
    smtp_server: SMTPServer,
    tmp_path: Path,
    dkim_key: tuple[Path, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _world(settings, db, smtp_server, tmp_path, dkim_key[0], SMALL)
    killed: list[int] = []

    def kill_one(recipient: str) -> None:
        if len(smtp_server.handler.messages) == 200 and not killed:
            children = _signing_children()
            assert children, "no signing process found"
            os.kill(children[0], signal.SIGKILL)
            killed.append(children[0])

    smtp_server.handler.on_message = kill_one
    summary, status = _send(settings, db)
    assert killed, "the fault was never injected"
    assert status == 0 and summary.sent == SMALL and summary.failed == 0
    _everyone_else_once(smtp_server, SMALL)
    assert "a DKIM signing process exited" in caplog.text
    record = dkim_key[1]
    for _, raw, _ in smtp_server.handler.messages[195:240]:  # around the kill
        assert _verify(raw, record)


_FAULT_SQL = {
    "sqlite": [
        "CREATE TABLE faults (armed INTEGER NOT NULL)",
        "INSERT INTO faults VALUES (0)",
        "CREATE TRIGGER fail_updates BEFORE UPDATE ON send_log "
        "WHEN (SELECT armed FROM faults) = 1 BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
    ],
    "postgresql": [
        "CREATE TABLE faults (armed INTEGER NOT NULL)",
        "INSERT INTO faults VALUES (0)",
        "CREATE FUNCTION fail_updates() RETURNS trigger AS $$ BEGIN "
        "IF (SELECT armed FROM faults) = 1 THEN RAISE EXCEPTION 'injected fault'; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER fail_updates BEFORE UPDATE ON send_log "
        "FOR EACH ROW EXECUTE FUNCTION fail_updates()",
    ],
}


def _arm(db: Database, armed: int) -> None:
    with db.connect() as conn, conn.begin():
        conn.execute(text("UPDATE faults SET armed = :a"), {"a": armed})


def _install_fault(db: Database) -> None:
    with db.connect() as conn, conn.begin():
        for statement in _FAULT_SQL[db.backend]:
            conn.execute(text(statement))


def _arm_at(db: Database, server: SMTPServer, at: int, seconds: float | None) -> Callable[[], bool]:
    """Arm the fault when the server has ``at`` messages; disarm ``seconds`` later (never when
    None). Returns whether it fired."""
    fired = threading.Event()

    def on_message(recipient: str) -> None:
        if len(server.handler.messages) == at and not fired.is_set():
            fired.set()
            _arm(db, 1)
            if seconds is not None:
                threading.Timer(seconds, _arm, (db, 0)).start()

    server.handler.on_message = on_message
    return fired.is_set


def test_a_database_refusing_writes_for_a_while_loses_nobody(
    settings: Settings,
    db: Database,
    smtp_server: SMTPServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _world(settings, db, smtp_server, tmp_path, None, SMALL)
    _install_fault(db)
    fired = _arm_at(db, smtp_server, 200, seconds=1.5)
    summary, status = _send(settings, db)
    assert fired(), "the fault was never injected"
    assert "injected fault" in caplog.text and "retrying" in caplog.text
    assert status == 0 and summary.sent == SMALL and summary.paused is None
    _everyone_else_once(smtp_server, SMALL)


def test_a_database_that_stays_broken_stops_the_send_with_one_line(
    settings: Settings,
    db: Database,
    smtp_server: SMTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recorder, "RETRY_DELAYS", (0.05, 0.1, 0.2))
    settings = _world(settings, db, smtp_server, tmp_path, None, SMALL)
    _install_fault(db)
    fired = _arm_at(db, smtp_server, 200, seconds=None)
    summary, status = _send(settings, db)
    assert fired()
    assert status == 6
    assert summary.paused is not None and "\n" not in summary.paused
    assert re.search(
        r"cannot (record outcomes|claim messages): injected fault \(tried 4 times\)", summary.paused
    )
    assert "run the same command to resume" in summary.paused
    _arm(db, 0)
    with db.connect() as conn:
        left = conn.execute(
            select(send_log.c.state).where(send_log.c.state.in_(["queued", "sending"]))
        ).all()
    assert left, "nothing was left for the next run"
    if db.backend == "postgresql":  # claims of a sender that may still live wait for the lease
        with db.connect() as conn, conn.begin():
            conn.execute(
                text("UPDATE send_log SET claimed_at = claimed_at - make_interval(secs => :s)"),
                {"s": sendlog.LEASE.total_seconds() + 1},
            )
    # The next run delivers the rest: nobody lost (those whose outcome was never written are
    # the only ones that may be mailed twice).
    summary, status = _send(settings, db)
    assert status == 0
    received = Counter(rcpt for rcpt, _, _ in smtp_server.handler.messages)
    assert len(received) == SMALL


def test_a_sender_that_lost_its_lock_stops(
    settings: Settings,
    db: Database,
    smtp_server: SMTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if db.backend != "sqlite":
        pytest.skip("only SQLite sends hold a lock (PostgreSQL shares sends between senders)")
    monkeypatch.setattr(supervise, "HEARTBEAT_SECONDS", 0.2)
    settings = _world(settings, db, smtp_server, tmp_path, None, SMALL)
    smtp_server.handler.data_delay = 0.01  # a send that lasts a few seconds

    def take_over(recipient: str) -> None:
        if len(smtp_server.handler.messages) == 100:
            with db.connect() as conn, conn.begin():
                conn.execute(update(locks).values(owner="other.example:1/x"))

    smtp_server.handler.on_message = take_over
    summary, status = _send(settings, db)
    assert status == 6
    assert summary.paused is not None
    assert summary.paused.startswith("lost the lock send:2026-11-16 to another sender")
    assert summary.sent < SMALL - 100
