"""Subscribers and lists: add, remove, unsubscribe, show, list, export, counts.

The rule that protects people: an address that is ``unsubscribed``, ``bounced`` or
``complained`` is never made active again by an operator's add or import; only the person
can re-subscribe (through the confirmation flow of the web endpoints).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from newsletter.core.addresses import control_character, normalise
from newsletter.core.clock import now
from newsletter.core.csvcells import neutralise
from newsletter.core.interests import Vocabulary, split
from newsletter.core.states import STATUSES, SUPPRESSED, SubscriberStatus
from newsletter.errors import AudienceError, UnknownInterestError
from newsletter.storage.db import events, lists, memberships, subscribers


@dataclass
class Subscriber:
    id: int
    email: str
    name: str
    status: str
    interests: str
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    unsubscribed_at: datetime | None
    lists: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "name": self.name,
            "status": self.status,
            "interests": split(self.interests),
            "lists": self.lists,
            "attributes": self.attributes,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "unsubscribed_at": self.unsubscribed_at.isoformat() if self.unsubscribed_at else None,
        }


def record_event(conn: Connection, kind: str, subscriber_id: int | None, detail: str = "") -> None:
    conn.execute(
        insert(events).values(at=now(), subscriber_id=subscriber_id, kind=kind, detail=detail)
    )


def ensure_list(conn: Connection, name: str) -> int:
    name = name.strip()
    if not name or len(name) > 100:
        raise AudienceError(f"list name {name!r} must be 1 to 100 characters")
    found = conn.execute(select(lists.c.id).where(lists.c.name == name)).scalar()
    if found is not None:
        return int(found)
    return int(
        conn.execute(
            insert(lists).values(name=name, created_at=now()).returning(lists.c.id)
        ).scalar_one()
    )


def list_id(conn: Connection, name: str) -> int:
    found = conn.execute(select(lists.c.id).where(lists.c.name == name)).scalar()
    if found is None:
        known = [r[0] for r in conn.execute(select(lists.c.name).order_by(lists.c.name))]
        raise AudienceError(f"no list named {name!r} (lists: {', '.join(known) or 'none yet'})")
    return int(found)


def _row_to_subscriber(row: Any) -> Subscriber:
    return Subscriber(
        row.id,
        row.email,
        row.name,
        row.status,
        row.interests,
        dict(row.attributes or {}),
        row.created_at,
        row.updated_at,
        row.unsubscribed_at,
    )


def get(conn: Connection, email: str) -> Subscriber:
    _, key = normalise(email)
    row = conn.execute(select(subscribers).where(subscribers.c.email_key == key)).first()
    if row is None:
        raise AudienceError(f"no subscriber {email!r}", email=email)
    sub = _row_to_subscriber(row)
    sub.lists = [
        r[0]
        for r in conn.execute(
            select(lists.c.name)
            .join(memberships, memberships.c.list_id == lists.c.id)
            .where(memberships.c.subscriber_id == sub.id)
            .order_by(lists.c.name)
        )
    ]
    return sub


def add(
    conn: Connection,
    email: str,
    list_name: str,
    vocabulary: Vocabulary,
    *,
    name: str | None = None,
    interests: list[str] | None = None,
    status: str = SubscriberStatus.ACTIVE,
) -> tuple[Subscriber, str]:
    """Add (or update) a subscriber on a list. Returns (subscriber, "added" | "updated")."""
    if status not in STATUSES:
        raise AudienceError(f"unknown status {status!r} (one of: {', '.join(STATUSES)})")
    stored, key = normalise(email)
    if name and (char := control_character(name)):
        raise AudienceError(f"the name contains a control character ({char})", email=email)
    if name and len(name) > 200:
        raise AudienceError("the name is longer than 200 characters", email=email)
    try:
        canonical = vocabulary.canonical(interests) if interests is not None else None
    except UnknownInterestError as exc:
        raise AudienceError(str(exc), email=email) from None
    row = conn.execute(select(subscribers).where(subscribers.c.email_key == key)).first()
    lid = ensure_list(conn, list_name)
    stamp = now()
    if row is None:
        values = {
            "email": stored,
            "email_key": key,
            "name": name or "",
            "status": status,
            "interests": canonical or "",
            "attributes": {},
            "created_at": stamp,
            "updated_at": stamp,
            "unsubscribed_at": stamp if status in SUPPRESSED else None,
        }
        sid = int(
            conn.execute(
                insert(subscribers).values(**values).returning(subscribers.c.id)
            ).scalar_one()
        )
        outcome = "added"
    else:
        sid = row.id
        if row.status in SUPPRESSED:
            raise AudienceError(
                f"{row.email} is {row.status}: it stays that way; only the person can subscribe again",
                email=email,
            )
        changes: dict[str, Any] = {}
        if name is not None and name != row.name:
            changes["name"] = name
        if canonical is not None and canonical != row.interests:
            changes["interests"] = canonical
        if status != row.status:
            changes["status"] = status
            if status in SUPPRESSED:
                changes["unsubscribed_at"] = stamp
        if changes:
            changes["updated_at"] = stamp
            conn.execute(update(subscribers).where(subscribers.c.id == sid).values(**changes))
        outcome = "updated"
    exists = conn.execute(
        select(memberships.c.list_id).where(
            and_(memberships.c.list_id == lid, memberships.c.subscriber_id == sid)
        )
    ).first()
    if exists is None:
        conn.execute(insert(memberships).values(list_id=lid, subscriber_id=sid, added_at=stamp))
    record_event(conn, f"cli.{outcome}", sid, f"list={list_name}")
    return get(conn, stored), outcome


def unsubscribe(
    conn: Connection,
    email: str,
    *,
    kind: str = "cli.unsubscribe",
    status: str = SubscriberStatus.UNSUBSCRIBED,
) -> Subscriber:
    """Mark a subscriber unsubscribed (or bounced/complained). Idempotent."""
    sub = get(conn, email)
    if sub.status != status and not (
        sub.status in SUPPRESSED and status == SubscriberStatus.UNSUBSCRIBED
    ):
        stamp = now()
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id == sub.id)
            .values(status=status, unsubscribed_at=stamp, updated_at=stamp)
        )
        record_event(conn, kind, sub.id, f"status={status}")
    return get(conn, email)


def remove(conn: Connection, email: str, list_name: str | None) -> list[str]:
    """Take a subscriber off one list (or all). The record stays, so suppression is kept."""
    sub = get(conn, email)
    query = delete(memberships).where(memberships.c.subscriber_id == sub.id)
    if list_name is not None:
        lid = list_id(conn, list_name)
        if list_name not in sub.lists:
            raise AudienceError(f"{sub.email} is not on the list {list_name!r}", email=email)
        query = query.where(memberships.c.list_id == lid)
    conn.execute(query)
    record_event(conn, "cli.remove", sub.id, f"list={list_name or '*'}")
    return [list_name] if list_name else sub.lists


def query(
    conn: Connection,
    *,
    list_name: str | None = None,
    status: str | None = None,
    interest: str | None = None,
    vocabulary: Vocabulary | None = None,
) -> Iterator[Subscriber]:
    """Stream subscribers matching the filters, ordered by address."""
    stmt = select(subscribers).order_by(subscribers.c.email_key)
    if list_name is not None:
        lid = list_id(conn, list_name)
        stmt = stmt.join(memberships, memberships.c.subscriber_id == subscribers.c.id).where(
            memberships.c.list_id == lid
        )
    if status is not None:
        if status not in STATUSES:
            raise AudienceError(f"unknown status {status!r} (one of: {', '.join(STATUSES)})")
        stmt = stmt.where(subscribers.c.status == status)
    tag = None
    if interest is not None and vocabulary is not None:
        try:
            tag = vocabulary.canonical([interest])
        except ValueError as exc:
            raise AudienceError(str(exc)) from None
    for row in conn.execution_options(yield_per=2000).execute(stmt):
        if tag is not None and tag not in split(row.interests):
            continue
        yield _row_to_subscriber(row)


def list_counts(conn: Connection) -> list[tuple[str, dict[str, int]]]:
    """Each list with its member counts by status."""
    rows = conn.execute(
        select(lists.c.name, subscribers.c.status, func.count())
        .select_from(lists)
        .join(memberships, memberships.c.list_id == lists.c.id, isouter=True)
        .join(subscribers, subscribers.c.id == memberships.c.subscriber_id, isouter=True)
        .group_by(lists.c.name, subscribers.c.status)
        .order_by(lists.c.name)
    )
    out: dict[str, dict[str, int]] = {}
    for name, status, count in rows:
        counts = out.setdefault(name, dict.fromkeys(STATUSES, 0))
        if status is not None:
            counts[status] = int(count)
    return list(out.items())


EXPORT_COLUMNS = ["email", "name", "interests", "status"]


def export(conn: Connection, list_name: str, out: IO[str]) -> int:
    """Write the list as CSV that ``subscribers import`` reads back to the same state. No cell
    can start a spreadsheet formula (see ``core/csvcells.py``)."""
    list_id(conn, list_name)  # an unknown list is an error, not an empty file
    keys: set[str] = set()
    for sub in query(conn, list_name=list_name):
        keys.update(sub.attributes)
    extra = sorted(k for k in keys if k.lower() not in EXPORT_COLUMNS)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS + extra)
    count = 0
    for sub in query(conn, list_name=list_name):
        values = [sub.email, sub.name, sub.interests, sub.status]
        for key in extra:
            value = sub.attributes.get(key, "")
            values.append(value if isinstance(value, str) else json.dumps(value))
        writer.writerow([neutralise(v) for v in values])
        count += 1
    return count
