"""The send log's claim and write behave alike on SQLite and PostgreSQL (where each is one
statement): claimed rows are marked with their owner, each row is claimed once, outcomes land,
and a batch naming one row twice is written in order, as one statement could not."""

from __future__ import annotations

from sqlalchemy import select

from newsletter.audience.subscribers import add, list_id
from newsletter.core.interests import Vocabulary
from newsletter.core.states import SendState
from newsletter.delivery import senders, sendlog
from newsletter.storage.db import Database, send_log

ISSUE = "2026-11-16"


def _queue(db: Database, vocabulary: Vocabulary, count: int) -> None:
    with db.connect() as conn, conn.begin():
        for i in range(count):
            add(conn, f"r{i}@example.org", "weekly", vocabulary, name=f"R {i}")
        assert sendlog.enqueue(conn, ISSUE, list_id(conn, "weekly")) == (count, None)


def test_claims_mark_rows_and_never_hand_one_out_twice(
    db: Database, vocabulary: Vocabulary
) -> None:
    _queue(db, vocabulary, 25)
    seen: list[int] = []
    with db.connect() as conn, conn.begin():
        while rows := sendlog.claim(conn, ISSUE, "sender-a", 10):
            assert [r.id for r in rows] == sorted(r.id for r in rows)
            assert all(r.email.endswith("@example.org") and r.status == "active" for r in rows)
            seen += [r.id for r in rows]
    assert len(seen) == len(set(seen)) == 25
    with db.connect() as conn:
        states = conn.execute(select(send_log.c.state, send_log.c.claimed_by)).all()
    assert set(states) == {(SendState.SENDING, "sender-a")}


def test_outcomes_are_written_and_a_row_named_twice_ends_as_its_last_outcome(
    db: Database, vocabulary: Vocabulary
) -> None:
    _queue(db, vocabulary, 3)
    with db.connect() as conn, conn.begin():
        a, b, c = sendlog.claim(conn, ISSUE, "sender-a", 3)
    sent = sendlog.Outcome(a.id, a.subscriber_id, SendState.SENT, 250, "ok", variant="v1")
    failed = sendlog.Outcome(b.id, b.subscriber_id, SendState.FAILED, 550, "5.1.1 no such user")
    back = sendlog.Outcome(c.id, c.subscriber_id, SendState.QUEUED, None, "", tried=False)
    again = sendlog.Outcome(c.id, c.subscriber_id, SendState.SENT, 250, "ok", relay="main")
    for batch in ([sent, failed], [back, again]):
        with db.connect() as conn, conn.begin():
            sendlog.record(conn, batch, bounce_limit=3)
    with db.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                select(
                    send_log.c.id,
                    send_log.c.state,
                    send_log.c.last_code,
                    send_log.c.variant,
                    send_log.c.relay,
                    send_log.c.attempts,
                    send_log.c.sent_at,
                    send_log.c.claimed_by,
                )
            )
        }
    assert (rows[a.id].state, rows[a.id].last_code, rows[a.id].variant) == ("sent", 250, "v1")
    assert rows[a.id].sent_at is not None and rows[a.id].attempts == 1
    assert (rows[b.id].state, rows[b.id].last_code, rows[b.id].sent_at) == ("failed", 550, None)
    assert (rows[c.id].state, rows[c.id].relay, rows[c.id].attempts) == ("sent", "main", 1)
    assert {r.claimed_by for r in rows.values()} == {None}


def test_a_list_queued_in_two_steps_queues_everyone_once(
    db: Database, vocabulary: Vocabulary
) -> None:
    with db.connect() as conn, conn.begin():
        for i in range(30):
            add(conn, f"r{i}@example.org", "weekly", vocabulary)
        lid = list_id(conn, "weekly")
        added, last = sendlog.enqueue(conn, ISSUE, lid, limit=12)
        assert added == 12 and last is not None
        assert sendlog.enqueue(conn, ISSUE, lid, after=last) == (18, None)
        assert sendlog.enqueue(conn, ISSUE, lid) == (0, None)  # a rerun queues nobody twice
    with db.connect() as conn:
        ids = [r for (r,) in conn.execute(select(send_log.c.subscriber_id))]
    assert len(ids) == len(set(ids)) == 30


def test_a_sender_that_ends_puts_the_rows_it_still_holds_back_in_the_queue(
    db: Database, vocabulary: Vocabulary
) -> None:
    """Rows cut off by a stop go back at once, not after the 10-minute lease; another
    sender's claims are left alone."""
    _queue(db, vocabulary, 6)
    with db.connect() as conn, conn.begin():
        senders.register(conn, "sender-a", ISSUE)
        mine = sendlog.claim(conn, ISSUE, "sender-a", 2)
        theirs = sendlog.claim(conn, ISSUE, "sender-b", 2)
        done = sendlog.Outcome(mine[0].id, mine[0].subscriber_id, SendState.SENT, 250, "ok")
        sendlog.record(conn, [done], bounce_limit=3)
    with db.connect() as conn, conn.begin():
        assert senders.unregister(conn, "sender-a") == 1
    with db.connect() as conn:
        states = dict(conn.execute(select(send_log.c.id, send_log.c.state)).all())
    assert states[mine[0].id] == "sent" and states[mine[1].id] == "queued"
    assert {states[r.id] for r in theirs} == {"sending"}
