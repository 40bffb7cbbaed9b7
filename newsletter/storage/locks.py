"""Named locks: one row per lock in ``locks``, kept alive by a heartbeat.

A holder beats every few seconds; a lock whose holder stopped beating for :data:`LOCK_STALE`, or
whose holder is a process of this host that no longer exists, is taken over. A takeover checks the
row count of its conditional update, so of two takers only one wins.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from newsletter.core.clock import now
from newsletter.errors import SendLockedError
from newsletter.storage.db import dialect_insert, locks

LOCK_STALE = timedelta(seconds=90)


def owner_name() -> str:
    """``host:pid/nonce``: unique for every sender or scheduler, even within one process."""
    return f"{socket.gethostname()}:{os.getpid()}/{uuid.uuid4().hex[:8]}"


def _alive(owner: str) -> bool:
    """False only when the owner is a process of this host that no longer exists."""
    host, _, pid = owner.partition("/")[0].rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(conn: Connection, name: str, owner: str) -> None:
    """Take a named lock (a row); a lock whose holder stopped beating for 90 s is taken over."""
    stamp = now()
    result = conn.execute(
        dialect_insert(conn, locks)
        .values(name=name, owner=owner, acquired_at=stamp, heartbeat_at=stamp)
        .on_conflict_do_nothing()
    )
    if result.rowcount == 1:
        return
    row = conn.execute(select(locks).where(locks.c.name == name)).one()
    if row.owner != owner and stamp - row.heartbeat_at < LOCK_STALE and _alive(row.owner):
        raise SendLockedError(
            f"{name} is held by {row.owner} since {row.acquired_at:%Y-%m-%d %H:%M:%S} UTC "
            f"(still running); wait for it to finish "
            f"(a crashed holder on another host is taken over {LOCK_STALE.seconds} s after its last beat)",
            name=name,
            owner=row.owner,
        )
    taken = conn.execute(
        update(locks)
        .where(locks.c.name == name, locks.c.heartbeat_at == row.heartbeat_at)
        .values(owner=owner, acquired_at=stamp, heartbeat_at=stamp)
    )
    if taken.rowcount != 1:  # another taker won the race for the stale lock
        raise SendLockedError(
            f"{name} was just taken over by another process; wait for it to finish",
            name=name,
            owner="",
        )


def heartbeat(conn: Connection, name: str, owner: str) -> bool:
    """Refresh the holder's beat; False when ``owner`` no longer holds the lock (taken over)."""
    result = conn.execute(
        update(locks).where(locks.c.name == name, locks.c.owner == owner).values(heartbeat_at=now())
    )
    return result.rowcount == 1


def release_lock(conn: Connection, name: str, owner: str) -> None:
    conn.execute(locks.delete().where(locks.c.name == name, locks.c.owner == owner))
