"""What a return does to the list (the policy), written once per (returned mail, address).

* The **address** is bad (unknown user, no such domain, disabled, moved): ``bounced`` at once.
* Temporary trouble (mailbox full, greylisting, timeouts) or a permanent refusal whose reason
  is unclear: ``bounced`` only after ``soft_limit`` issues in a row bounced softly, with no issue
  delivered in between.
* A refusal aimed at the **sender** (block list, spam filter, policy, DMARC) leaves the subscriber
  alone: it counts toward the sender alarm (``status``, ``bounces report``).
* A complaint: ``complained`` at once, never mailed again. A mail to the unsubscribe address with
  a valid token: ``unsubscribed``.

Every decision is an event with the reason, the status and the returned mail's id. A mail seen
before (the same bytes, or the same webhook id) changes nothing more.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from newsletter.audience.subscribers import record_event
from newsletter.core.addresses import normalise
from newsletter.core.clock import now
from newsletter.core.states import ReturnKind, SendState, SubscriberStatus
from newsletter.errors import AddressError
from newsletter.inbound.classify import Return
from newsletter.storage.db import returns, send_log, subscribers

SUPPRESSING = {
    ReturnKind.HARD: (SubscriberStatus.BOUNCED, "bounce.hard"),
    ReturnKind.COMPLAINT: (SubscriberStatus.COMPLAINED, "complaint"),
    ReturnKind.UNSUBSCRIBE: (SubscriberStatus.UNSUBSCRIBED, "unsubscribe.mail"),
}
REPLACEABLE = (SubscriberStatus.ACTIVE, SubscriberStatus.UNCONFIRMED)


@dataclass(frozen=True)
class Policy:
    soft_limit: int = 3  # soft bounces in a row, no delivery between, before ``bounced``


@dataclass(frozen=True)
class Decision:
    """What one return did: shown one line per message by the CLI."""

    kind: ReturnKind
    reason: str
    subscriber_id: int | None = None
    email: str = ""
    status_now: str = ""  # the subscriber's status after it ("" if unchanged or unknown)
    repeat: bool = False  # seen before: nothing done
    problem: str = ""  # refused: nothing done

    @property
    def changed(self) -> bool:
        return bool(self.status_now) and not self.repeat


def source_key(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _subscriber(conn: Connection, ret: Return) -> tuple[int, str, str] | None:
    """(id, email, status) of the subscriber a return is about, by the best clue it has."""
    sid = ret.ref.subscriber_id if ret.ref else ret.subscriber_id
    if sid is not None:
        row = conn.execute(
            select(subscribers.c.id, subscribers.c.email, subscribers.c.status).where(
                subscribers.c.id == sid
            )
        ).first()
        return (int(row.id), str(row.email), str(row.status)) if row else None
    for group, need_one in ((ret.addresses, False), (ret.candidates, True)):
        keys = []
        for address in group[:50]:
            try:
                keys.append(normalise(address)[1])
            except AddressError:
                continue
        if not keys:
            continue
        rows = conn.execute(
            select(subscribers.c.id, subscribers.c.email, subscribers.c.status).where(
                subscribers.c.email_key.in_(keys)
            )
        ).all()
        if rows and (not need_one or len(rows) == 1):
            row = min(rows, key=lambda r: keys.index(normalise(r.email)[1]))
            return int(row.id), str(row.email), str(row.status)
    return None


def apply(conn: Connection, ret: Return, *, source: str, key: str, policy: Policy) -> Decision:
    """Record ``ret`` and act on it, inside the caller's transaction."""
    if ret.problem:
        return Decision(ret.kind, ret.reason, problem=ret.problem)
    found = _subscriber(conn, ret)
    sid, email, status = found if found else (None, "", "")
    address = email or (ret.addresses[0] if ret.addresses else "")
    issue = ret.ref.issue if ret.ref else _latest_issue(conn, sid)
    row = {
        "at": now(),
        "source": source,
        "source_key": key,
        "message_id": ret.message_id[:250],
        "subscriber_id": sid,
        "address": address[:320].lower(),
        "domain": address.rpartition("@")[2][:255].lower(),
        "issue": issue,
        "kind": ret.kind,
        "reason": ret.reason[:200],
        "status": ret.status[:16],
        "diagnostic": ret.diagnostic[:500],
    }
    try:
        with conn.begin_nested():
            conn.execute(insert(returns).values(**row))
    except IntegrityError:
        return Decision(ret.kind, ret.reason, sid, email, repeat=True)
    if sid is None or ret.kind in (ReturnKind.AUTOREPLY, ReturnKind.DELAYED, ReturnKind.IGNORED):
        return Decision(ret.kind, ret.reason, sid, email)
    detail = (
        f"reason={ret.reason}; status={ret.status or '-'}; issue={issue or '-'}; "
        f"source={source}; message={ret.message_id or '-'}"
    )
    target: str | None = None
    event = {ReturnKind.SOFT: "bounce.soft", ReturnKind.SENDER: "bounce.sender"}.get(ret.kind, "")
    if ret.kind in SUPPRESSING:
        target, event = SUPPRESSING[ret.kind]
    elif ret.kind == ReturnKind.SOFT:
        streak = _soft_streak(conn, sid, issue)
        detail += f"; in a row={streak}/{policy.soft_limit}"
        if streak >= policy.soft_limit:
            target = SubscriberStatus.BOUNCED
    record_event(conn, event, sid, detail[:1000])
    movable = status in REPLACEABLE or (
        ret.kind == ReturnKind.COMPLAINT and status != SubscriberStatus.COMPLAINED
    )
    if target is None or not movable:
        return Decision(ret.kind, ret.reason, sid, email)
    stamp = now()
    conn.execute(
        update(subscribers)
        .where(subscribers.c.id == sid)
        .values(status=target, unsubscribed_at=stamp, updated_at=stamp)
    )
    record_event(conn, f"status.{target}", sid, f"by {event}: {ret.reason}")
    return Decision(ret.kind, ret.reason, sid, email, status_now=str(target))


def _latest_issue(conn: Connection, sid: int | None) -> str | None:
    if sid is None:
        return None
    found = conn.execute(
        select(send_log.c.issue)
        .where(send_log.c.subscriber_id == sid, send_log.c.state == SendState.SENT)
        .order_by(send_log.c.issue.desc())
        .limit(1)
    ).scalar()
    return str(found) if found else None


def _soft_streak(conn: Connection, sid: int, issue: str | None) -> int:
    """How many issues in a row, up to ``issue``, this subscriber bounced softly (or hard)
    with no issue delivered between: the sent issues newest first, counted while each has a
    bounce on record."""
    sent = [
        str(i)
        for (i,) in conn.execute(
            select(send_log.c.issue)
            .where(send_log.c.subscriber_id == sid, send_log.c.state == SendState.SENT)
            .order_by(send_log.c.issue.desc())
        )
    ]
    bounced = {
        str(i)
        for (i,) in conn.execute(
            select(returns.c.issue).where(
                returns.c.subscriber_id == sid,
                returns.c.kind.in_([ReturnKind.SOFT, ReturnKind.HARD]),
            )
        )
        if i
    }
    if issue is not None and issue not in sent:
        sent = sorted({*sent, issue}, reverse=True)
    streak = 0
    for day in sent:
        if issue is not None and day > issue:
            continue
        if day not in bounced:
            break
        streak += 1
    return max(streak, 1)
