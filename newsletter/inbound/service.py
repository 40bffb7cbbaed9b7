"""Reading a batch of returned mail into the database, and reporting on what came back."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from newsletter.core.states import ReturnKind, SendState
from newsletter.inbound.apply import Decision, Policy, apply, source_key
from newsletter.inbound.classify import Mailroom, classify
from newsletter.inbound.imap import IMAPConfig, IMAPMailbox
from newsletter.storage.db import Database, events, returns, send_log

log = logging.getLogger(__name__)
SENDER_ALARM = 0.01  # refusals aimed at the sender, as a share of the messages sent


@dataclass
class Tally:
    """What a batch of returned mail did."""

    read: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    changed: Counter[str] = field(default_factory=Counter)  # new status -> subscribers
    repeats: int = 0
    unmatched: int = 0  # bounces and complaints that name nobody on the list
    problems: list[str] = field(default_factory=list)  # "label: why nothing was done"
    moved: int = 0  # IMAP: messages moved to the processed folder

    def to_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "kinds": dict(self.kinds),
            "status_changes": dict(self.changed),
            "repeats": self.repeats,
            "unmatched": self.unmatched,
            "problems": self.problems,
            "moved": self.moved,
        }


def read_returns(
    db: Database,
    items: Iterable[tuple[str, bytes]],
    room: Mailroom,
    policy: Policy,
    *,
    source: str = "import",
    progress: Callable[[int], None] | None = None,
) -> Tally:
    """Classify and apply every message; one message that is odd fails alone, with its line."""
    tally = Tally()
    for label, raw in items:
        tally.read += 1
        try:
            verdicts = classify(raw, room)
        except Exception as exc:  # a stranger's bytes: this message alone
            tally.problems.append(f"{label}: cannot be read as mail ({type(exc).__name__})")
            continue
        key = source_key(raw)
        with db.connect() as conn, conn.begin():
            decisions = [apply(conn, v, source=source, key=key, policy=policy) for v in verdicts]
        for decision in decisions:
            _count(tally, label, decision)
        if progress is not None:
            progress(tally.read)
    return tally


def fetch_returns(db: Database, config: IMAPConfig, room: Mailroom, policy: Policy) -> Tally:
    """Read an IMAP mailbox of returns; what was read is moved to ``config.done_folder``."""
    with IMAPMailbox(config) as box:
        tally = read_returns(db, box.messages(), room, policy, source="imap")
    tally.moved = box.moved
    return tally


def _count(tally: Tally, label: str, decision: Decision) -> None:
    if decision.problem:
        tally.problems.append(f"{label}: {decision.problem}; nothing changed")
        return
    if decision.repeat:
        tally.repeats += 1
        return
    tally.kinds[decision.kind] += 1
    if decision.changed:
        tally.changed[decision.status_now] += 1
    if decision.subscriber_id is None and decision.kind in (
        ReturnKind.HARD,
        ReturnKind.SOFT,
        ReturnKind.COMPLAINT,
    ):
        tally.unmatched += 1
        log.info("%s: %s for nobody on the list", label, decision.kind)


def report(conn: Connection, issue: str | None = None) -> dict[str, Any]:
    """Returns counted by kind, reason, domain and issue; the sender alarm."""
    where = [returns.c.issue == issue] if issue else []

    def counted(*columns: Any, limit: int = 20) -> list[dict[str, Any]]:
        query = (
            select(*columns, func.count().label("n"))
            .where(*where)
            .group_by(*columns)
            .order_by(func.count().desc())
            .limit(limit)
        )
        return [dict(row._mapping) for row in conn.execute(query)]

    return {
        "issue": issue or "all",
        "by_kind": counted(returns.c.kind),
        "by_reason": counted(returns.c.kind, returns.c.reason),
        "by_domain": counted(returns.c.domain, returns.c.kind),
        "by_issue": counted(returns.c.issue, returns.c.kind, limit=50),
        "sender_alarm": sender_alarm(conn, issue),
    }


def sender_alarm(conn: Connection, issue: str | None) -> dict[str, Any] | None:
    """Refusals aimed at the sender for ``issue`` (else the latest issue with any return),
    and their share of the messages sent; None when there are none."""
    if issue is None:
        issue = conn.execute(
            select(returns.c.issue)
            .where(returns.c.kind == ReturnKind.SENDER, returns.c.issue.is_not(None))
            .order_by(returns.c.issue.desc())
            .limit(1)
        ).scalar()
        if issue is None:
            return None
    refused = conn.execute(
        select(func.count())
        .select_from(returns)
        .where(returns.c.issue == issue, returns.c.kind == ReturnKind.SENDER)
    ).scalar_one()
    if not refused:
        return None
    sent = conn.execute(
        select(func.count())
        .select_from(send_log)
        .where(send_log.c.issue == issue, send_log.c.state == SendState.SENT)
    ).scalar_one()
    share = refused / sent if sent else 1.0
    return {
        "issue": issue,
        "refused": int(refused),
        "sent": int(sent),
        "share": round(share, 4),
        "alarm": share >= SENDER_ALARM,
    }


def subscriber_returns(conn: Connection, subscriber_id: int) -> list[dict[str, Any]]:
    """The return decisions on record for one subscriber (events), newest last."""
    rows = conn.execute(
        select(events.c.at, events.c.kind, events.c.detail)
        .where(
            events.c.subscriber_id == subscriber_id,
            events.c.kind.in_(
                [
                    "bounce.hard",
                    "bounce.soft",
                    "bounce.sender",
                    "complaint",
                    "unsubscribe.mail",
                    "status.bounced",
                    "status.complained",
                    "status.unsubscribed",
                ]
            ),
        )
        .order_by(events.c.id)
    )
    return [{"at": r.at.isoformat(), "kind": r.kind, "detail": r.detail} for r in rows]
