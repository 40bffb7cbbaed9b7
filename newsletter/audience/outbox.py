"""Confirmation mails that could not go out at once (the relay down, a dead connection), kept in
``mail_outbox`` and retried with growing delays until they go out or :data:`GIVE_UP_AFTER`.

Only the subscriber is stored: the mail is made again at each attempt (a fresh link, nothing
a visitor typed), so the table holds no token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from newsletter.core.clock import now
from newsletter.core.states import SubscriberStatus
from newsletter.storage.db import dialect_insert, mail_outbox, subscribers

CONFIRMATION = "confirmation"
DELAYS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)  # seconds before attempt 2, 3, ...
GIVE_UP_AFTER = timedelta(hours=24)
WAITING = (SubscriberStatus.UNCONFIRMED, SubscriberStatus.UNSUBSCRIBED)  # may still confirm


@dataclass(frozen=True)
class Pending:
    id: int
    subscriber_id: int
    email: str
    attempts: int
    created_at: datetime


def keep(conn: Connection, subscriber_id: int, error: str) -> None:
    """Remember a confirmation to retry (one per subscriber: a second failure updates it)."""
    stamp = now()
    conn.execute(
        dialect_insert(conn, mail_outbox)
        .values(
            kind=CONFIRMATION,
            subscriber_id=subscriber_id,
            created_at=stamp,
            next_attempt_at=stamp + timedelta(seconds=DELAYS[0]),
            attempts=1,
            last_error=error[:500],
        )
        .on_conflict_do_nothing()
    )


def due(conn: Connection, limit: int = 50) -> list[Pending]:
    """Confirmations whose next attempt is due, for subscribers still waiting to confirm."""
    rows = conn.execute(
        select(
            mail_outbox.c.id,
            mail_outbox.c.subscriber_id,
            subscribers.c.email,
            subscribers.c.status,
            mail_outbox.c.attempts,
            mail_outbox.c.created_at,
        )
        .join(subscribers, subscribers.c.id == mail_outbox.c.subscriber_id)
        .where(mail_outbox.c.kind == CONFIRMATION, mail_outbox.c.next_attempt_at <= now())
        .order_by(mail_outbox.c.next_attempt_at)
        .limit(limit)
    ).all()
    out = []
    for row in rows:
        if row.status not in WAITING:  # confirmed another way since, or gone
            done(conn, row.id)
            continue
        out.append(Pending(row.id, row.subscriber_id, row.email, row.attempts, row.created_at))
    return out


def done(conn: Connection, pending_id: int) -> None:
    conn.execute(delete(mail_outbox).where(mail_outbox.c.id == pending_id))


def failed_again(conn: Connection, pending: Pending, error: str) -> bool:
    """Schedule the next attempt; False (and the entry dropped) once it is time to give up."""
    if now() - pending.created_at >= GIVE_UP_AFTER:
        done(conn, pending.id)
        return False
    delay = DELAYS[min(pending.attempts, len(DELAYS) - 1)]
    conn.execute(
        update(mail_outbox)
        .where(mail_outbox.c.id == pending.id)
        .values(
            attempts=pending.attempts + 1,
            next_attempt_at=now() + timedelta(seconds=delay),
            last_error=error[:500],
        )
    )
    return True


def count(conn: Connection) -> int:
    return len(conn.execute(select(mail_outbox.c.id)).all())
