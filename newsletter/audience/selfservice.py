"""What a subscriber does for themselves on the subscriber pages: sign up, confirm, change
preferences, unsubscribe. The web app calls these; it never writes the tables itself.

Each function runs inside the caller's transaction and records an event with ``detail``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from newsletter.audience.subscribers import Subscriber, add, get, record_event
from newsletter.core.addresses import normalise
from newsletter.core.clock import now
from newsletter.core.interests import Vocabulary, split
from newsletter.core.states import SUPPRESSED, SubscriberStatus
from newsletter.storage.db import lists, memberships, subscribers


def by_id(conn: Connection, subscriber_id: int) -> Subscriber | None:
    """The subscriber with this id (with their lists), or None."""
    row = conn.execute(select(subscribers.c.email).where(subscribers.c.id == subscriber_id)).first()
    return None if row is None else get(conn, row.email)


def list_names(conn: Connection) -> list[str]:
    return [str(n) for (n,) in conn.execute(select(lists.c.name).order_by(lists.c.name))]


def offered_lists(conn: Connection, sub: Subscriber, public: Iterable[str]) -> list[str]:
    """The lists the preferences page offers this person: the public ones that exist, and
    those they are on (never an internal list they are not on)."""
    wanted = set(public) | set(sub.lists)
    return [name for name in list_names(conn) if name in wanted]


def claim_confirmation(conn: Connection, subscriber_id: int, interval: timedelta) -> bool:
    """Whether a confirmation mail may go to this subscriber now: at most one per ``interval``
    however many sign-ups ask. Marks it sent when so; of two racing sign-ups, one wins."""
    stamp = now()
    claimed = conn.execute(
        update(subscribers)
        .where(
            subscribers.c.id == subscriber_id,
            or_(
                subscribers.c.confirmation_sent_at.is_(None),
                subscribers.c.confirmation_sent_at <= stamp - interval,
            ),
        )
        .values(confirmation_sent_at=stamp)
    )
    return claimed.rowcount == 1


def unsubscribe(conn: Connection, sub: Subscriber, detail: str) -> bool:
    """Unsubscribe (one click); False when they were not receiving anyway. Idempotent."""
    if sub.status in SUPPRESSED:
        record_event(conn, "web.unsubscribe.repeat", sub.id, detail)
        return False
    stamp = now()
    conn.execute(
        update(subscribers)
        .where(subscribers.c.id == sub.id)
        .values(status=SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=stamp, updated_at=stamp)
    )
    record_event(conn, "web.unsubscribe", sub.id, detail)
    return True


def set_preferences(
    conn: Connection,
    sub: Subscriber,
    interests: str,
    chosen_lists: list[str],
    *,
    resubscribe: bool,
    detail: str,
) -> bool:
    """Store canonical ``interests`` and list memberships (names not in the database are
    ignored); an unsubscribed person who ticks ``resubscribe`` is active again. Returns whether
    they were resubscribed."""
    again = resubscribe and sub.status == SubscriberStatus.UNSUBSCRIBED
    values: dict[str, Any] = {"interests": interests, "updated_at": now()}
    if again:
        values.update(status=SubscriberStatus.ACTIVE, unsubscribed_at=None)
    conn.execute(update(subscribers).where(subscribers.c.id == sub.id).values(**values))
    ids = dict(conn.execute(select(lists.c.name, lists.c.id)).all())
    if ids:
        conn.execute(delete(memberships).where(memberships.c.subscriber_id == sub.id))
        for name in chosen_lists:
            if name in ids:
                conn.execute(
                    insert(memberships).values(
                        list_id=ids[name], subscriber_id=sub.id, added_at=now()
                    )
                )
    record_event(
        conn,
        "web.preferences",
        sub.id,
        f"interests={interests or '*'} lists={','.join(chosen_lists)}"
        + (" resubscribed" if again else "")
        + f" {detail}".rstrip(),
    )
    return again


def sign_up(
    conn: Connection,
    email: str,
    list_name: str,
    vocabulary: Vocabulary,
    *,
    name: str,
    interests: str,
    detail: str,
) -> tuple[int, str]:
    """A sign-up from the form: a new address is added ``unconfirmed``; an unconfirmed one takes
    the latest form's choices. Returns (subscriber id, status before the sign-up)."""
    _, key = normalise(email)
    row = conn.execute(select(subscribers).where(subscribers.c.email_key == key)).first()
    if row is None:
        sub, _ = add(
            conn,
            email,
            list_name,
            vocabulary,
            name=name,
            interests=split(interests),
            status=SubscriberStatus.UNCONFIRMED,
        )
        sid, status = sub.id, str(SubscriberStatus.UNCONFIRMED)
    else:
        sid, status = int(row.id), str(row.status)
        if status == SubscriberStatus.UNCONFIRMED:  # not mailed yet: the latest form's choices
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == sid)
                .values(interests=interests, name=name or row.name, updated_at=now())
            )
    record_event(conn, "web.subscribe", sid, f"status={status} {detail}".rstrip())
    return sid, status


def confirmation_outdated(sub: Subscriber, issued: float) -> bool:
    """Whether a confirmation link issued at ``issued`` (Unix seconds) predates the person's
    unsubscribe: then it must not subscribe them again. Tokens carry whole seconds, so a link
    issued in the same second as the unsubscribe counts as earlier."""
    return sub.unsubscribed_at is not None and issued <= int(sub.unsubscribed_at.timestamp())


def confirm(conn: Connection, sub: Subscriber, detail: str) -> None:
    """Double opt-in: an unconfirmed (or unsubscribed) subscriber becomes active."""
    if sub.status in (SubscriberStatus.UNCONFIRMED, SubscriberStatus.UNSUBSCRIBED):
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id == sub.id)
            .values(status=SubscriberStatus.ACTIVE, unsubscribed_at=None, updated_at=now())
        )
    record_event(conn, "web.confirm", sub.id, f"was={sub.status} {detail}".rstrip())
