"""The send log: one row per (issue, subscriber), and the work queue of a send.

States: ``queued`` → ``sending`` (claimed) → ``sent`` | ``deferred`` (retry later) | ``failed``
(permanent) | ``skipped`` (not active any more, or nothing in the issue for them). The unique
(issue, subscriber) key means nobody is ever queued twice for one issue. Rows are claimed in
batches; on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` so that several senders can share a send.
SQLite keeps one sender per issue, enforced by a row in ``locks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from newsletter.core.clock import now
from newsletter.core.smtpreplies import judge, status_of
from newsletter.core.states import SUPPRESSED, ReturnKind, RunOutcome, SendState, SubscriberStatus
from newsletter.delivery import pgqueue
from newsletter.storage.db import (
    DriverSQL,
    dialect_insert,
    memberships,
    send_log,
    send_runs,
    subscribers,
)

LEASE = timedelta(minutes=10)  # a claim older than this belongs to a dead sender (PostgreSQL)


# -- queue ---------------------------------------------------------------------------------------


def enqueue(
    conn: Connection, issue: str, list_id: int, *, after: int = 0, limit: int | None = None
) -> tuple[int, int | None]:
    """Queue the active members of the list not yet in the log for this issue: those with a
    subscriber id above ``after``, the first ``limit`` of them by id (all: None). Returns how
    many were queued and the last subscriber id looked at (None: no member is left after it)."""
    stamp = now()
    member = and_(
        memberships.c.list_id == list_id,
        subscribers.c.status == SubscriberStatus.ACTIVE,
        subscribers.c.id > after,
    )
    members = subscribers.join(memberships, memberships.c.subscriber_id == subscribers.c.id)
    last: int | None = None
    if limit is not None:
        ids = select(subscribers.c.id).select_from(members).where(member)
        chunk = ids.order_by(subscribers.c.id).limit(limit).subquery()
        last = conn.execute(select(func.max(chunk.c.id))).scalar()
        if last is None:
            return 0, None
        member = and_(member, subscribers.c.id <= last)
    source = (
        select(
            bindparam("issue", issue),
            bindparam("list_id", list_id),
            subscribers.c.id,
            bindparam("state", SendState.QUEUED.value),
            bindparam("variant", ""),
            bindparam("attempts", 0),
            bindparam("reply", ""),
            bindparam("q", stamp, type_=send_log.c.queued_at.type),
            bindparam("u", stamp, type_=send_log.c.updated_at.type),
        )
        .select_from(members)
        .where(member)
    )
    stmt = (
        dialect_insert(conn, send_log)
        .from_select(
            [
                "issue",
                "list_id",
                "subscriber_id",
                "state",
                "variant",
                "attempts",
                "last_reply",
                "queued_at",
                "updated_at",
            ],
            source,
        )
        .on_conflict_do_nothing()
    )
    in_log = select(func.count()).select_from(send_log).where(send_log.c.issue == issue)
    in_log = in_log.where(send_log.c.subscriber_id > after)
    if last is not None:
        in_log = in_log.where(send_log.c.subscriber_id <= last)
    before = int(conn.execute(in_log).scalar() or 0)
    conn.execute(stmt)  # rowcount of INSERT ... SELECT is not reliable across drivers
    return int(conn.execute(in_log).scalar() or 0) - before, last


def recover(conn: Connection, issue: str, *, single_sender: bool) -> int:
    """Put back rows claimed by a sender that died; make left-over deferred rows due now."""
    stamp = now()
    stale = send_log.c.state == SendState.SENDING
    if not single_sender:
        stale = and_(stale, send_log.c.claimed_at < stamp - LEASE)
    moved = conn.execute(
        update(send_log)
        .where(send_log.c.issue == issue, stale)
        .values(state=SendState.QUEUED, claimed_by=None, claimed_at=None, updated_at=stamp)
    ).rowcount
    conn.execute(
        update(send_log)
        .where(
            send_log.c.issue == issue,
            send_log.c.state == SendState.DEFERRED,
            send_log.c.next_attempt_at.is_(None),
        )
        .values(next_attempt_at=stamp)
    )
    return int(moved or 0)


class Claimed(NamedTuple):
    id: int
    subscriber_id: int
    email: str
    name: str
    status: str
    interests: str
    attempts: int


_CLAIM = """
SELECT l.id, l.subscriber_id, s.email, s.name, s.status, s.interests, l.attempts
FROM send_log l JOIN subscribers s ON s.id = l.subscriber_id
WHERE l.issue = ? AND {where} ORDER BY {order} LIMIT ?"""
_CLAIM_QUEUED = ("l.state = 'queued'", "l.id")
_CLAIM_DUE = ("l.state = 'deferred' AND l.next_attempt_at <= ?", "l.next_attempt_at, l.id")
_MARK_SENDING = (
    "UPDATE send_log SET state = 'sending', claimed_by = ?, claimed_at = ?, updated_at = ? "
    "WHERE id = ?"
)


def claim(conn: Connection, issue: str, owner: str, limit: int) -> list[Claimed]:
    """Claim up to ``limit`` due rows, joined with the subscriber's current state.

    Two index-backed queries (queued rows in id order, then deferred rows that are due), so a
    claim costs the same at the end of a million-row send as at its start. On PostgreSQL the
    rows are locked ``FOR UPDATE SKIP LOCKED``, so several senders can share one send.
    """
    driver = DriverSQL(conn)
    stamp = driver.datetime(now())
    postgresql = driver.dialect.name == "postgresql"
    rows: list[Claimed] = []
    for (where, order), extra in ((_CLAIM_QUEUED, ()), (_CLAIM_DUE, (stamp,))):
        want = limit - len(rows)
        if want <= 0:
            break
        if postgresql:  # picked and marked in one statement, locked FOR UPDATE SKIP LOCKED
            found = pgqueue.claim(conn, where, order, (issue, *extra, want), (owner, stamp, stamp))
            rows += [Claimed(*r) for r in found]
            continue
        query = driver.sql(_CLAIM.format(where=where, order=order))
        rows += [Claimed(*r) for r in conn.exec_driver_sql(query, (issue, *extra, want)).fetchall()]
    if rows and not postgresql:
        conn.exec_driver_sql(driver.sql(_MARK_SENDING), [(owner, stamp, stamp, r.id) for r in rows])
    return rows


def statuses(conn: Connection, subscriber_ids: list[int]) -> dict[int, str]:
    """The current status of these subscribers (absent: deleted)."""
    rows = conn.execute(
        select(subscribers.c.id, subscribers.c.status).where(subscribers.c.id.in_(subscriber_ids))
    )
    return {int(sid): str(status) for sid, status in rows}


@dataclass(frozen=True)
class Outcome:
    id: int
    subscriber_id: int
    state: str  # sent, deferred, failed, skipped, queued (given back)
    code: int | None
    reply: str
    variant: str = ""
    retry_at: datetime | None = None
    tried: bool = True
    relay: str = ""


_RECORD = (
    "UPDATE send_log SET state = ?, last_code = ?, last_reply = ?, variant = ?, relay = ?, "
    "next_attempt_at = ?, sent_at = COALESCE(?, sent_at), attempts = attempts + ?, "
    "claimed_by = NULL, claimed_at = NULL, updated_at = ? WHERE id = ?"
)


def record(conn: Connection, outcomes: list[Outcome], bounce_limit: int) -> list[int]:
    """Write a batch of outcomes; returns subscriber ids that became ``bounced``."""
    if not outcomes:
        return []
    driver = DriverSQL(conn)
    moment = now()
    stamp = driver.datetime(moment)
    rows = [
        (
            o.state,
            o.code,
            o.reply[:500],
            o.variant,
            o.relay[:40],
            driver.datetime(o.retry_at),
            stamp if o.state == SendState.SENT else None,
            1 if o.tried else 0,
            o.id,
        )
        for o in outcomes
    ]
    if driver.dialect.name != "postgresql" or not pgqueue.record(conn, stamp, rows):
        conn.exec_driver_sql(driver.sql(_RECORD), [(*r[:-1], stamp, r[-1]) for r in rows])
    hard = [  # a refusal aimed at the sender (block list, policy, DMARC) is not the address's
        o.subscriber_id
        for o in outcomes
        if o.state == SendState.FAILED
        and o.code is not None
        and o.code >= 500
        and judge(status_of(o.reply) or "5.0.0", o.reply)[0] != ReturnKind.SENDER
    ]
    bounced: list[int] = []
    for sid in hard:
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id == sid)
            .values(bounce_count=subscribers.c.bounce_count + 1, updated_at=moment)
        )
        row = conn.execute(
            select(subscribers.c.bounce_count, subscribers.c.status).where(subscribers.c.id == sid)
        ).one()
        if row.bounce_count >= bounce_limit and row.status not in SUPPRESSED:
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == sid)
                .values(status=SubscriberStatus.BOUNCED, unsubscribed_at=moment, updated_at=moment)
            )
            bounced.append(sid)
    return bounced


def next_retry(conn: Connection, issue: str) -> datetime | None:
    """When the earliest deferred row of this run is due again (None: nothing to wait for)."""
    value = conn.execute(
        select(func.min(send_log.c.next_attempt_at)).where(
            send_log.c.issue == issue,
            send_log.c.state == SendState.DEFERRED,
            send_log.c.next_attempt_at.is_not(None),
        )
    ).scalar()
    if value is not None and value.tzinfo is None:
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value


def counts(conn: Connection, issue: str) -> dict[str, int]:
    rows = conn.execute(
        select(send_log.c.state, func.count())
        .where(send_log.c.issue == issue)
        .group_by(send_log.c.state)
    )
    result: dict[str, int] = {state.value: 0 for state in SendState}
    result.update({state: int(n) for state, n in rows})
    return result


def by_relay(conn: Connection, issue: str) -> dict[str, int]:
    """Messages sent through each relay (several relays used together)."""
    rows = conn.execute(
        select(send_log.c.relay, func.count())
        .where(
            send_log.c.issue == issue, send_log.c.state == SendState.SENT, send_log.c.relay != ""
        )
        .group_by(send_log.c.relay)
    )
    return {str(relay): int(n) for relay, n in rows}


def failures(conn: Connection, issue: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(subscribers.c.email, send_log.c.state, send_log.c.attempts, send_log.c.last_reply)
        .join(subscribers, subscribers.c.id == send_log.c.subscriber_id)
        .where(
            send_log.c.issue == issue, send_log.c.state.in_((SendState.FAILED, SendState.DEFERRED))
        )
        .order_by(send_log.c.id)
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


def sent_since(conn: Connection, since: datetime) -> list[datetime]:
    rows = conn.execute(
        select(send_log.c.sent_at).where(send_log.c.sent_at >= since).order_by(send_log.c.sent_at)
    )
    return [r[0] for r in rows]


# -- runs ----------------------------------------------------------------------------------------


def start_run(conn: Connection, issue: str, list_name: str, origin: str) -> int:
    return int(
        conn.execute(
            insert(send_runs)
            .values(
                issue=issue,
                list_name=list_name,
                origin=origin,
                started_at=now(),
                outcome=RunOutcome.RUNNING,
                sent=0,
                deferred=0,
                failed=0,
                skipped=0,
                message="",
            )
            .returning(send_runs.c.id)
        ).scalar_one()
    )


def finish_run(
    conn: Connection, run_id: int, outcome: str, totals: dict[str, int], message: str
) -> None:
    conn.execute(
        update(send_runs)
        .where(send_runs.c.id == run_id)
        .values(
            finished_at=now(),
            outcome=outcome,
            sent=totals.get("sent", 0),
            deferred=totals.get("deferred", 0),
            failed=totals.get("failed", 0),
            skipped=totals.get("skipped", 0),
            message=message[:2000],
        )
    )


def runs(conn: Connection, issue: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    query = select(send_runs).order_by(send_runs.c.id.desc()).limit(limit)
    if issue is not None:
        query = query.where(send_runs.c.issue == issue)
    return [dict(r._mapping) for r in conn.execute(query)]
