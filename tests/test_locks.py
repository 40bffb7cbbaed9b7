"""Named locks (send and scheduler): one holder, stale ones taken over by exactly one taker."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import update

from newsletter.core.clock import now
from newsletter.errors import SendLockedError
from newsletter.storage import locks
from newsletter.storage.db import Database
from newsletter.storage.db import locks as locks_table

REMOTE = "elsewhere.example:4242/deadbeef"  # a holder on another host: only its beat tells


@pytest.fixture
def lockdb(db: Database) -> Database:
    db.ensure_schema()
    return db


def test_a_live_holder_keeps_its_lock(lockdb: Database) -> None:
    with lockdb.connect() as conn, conn.begin():
        locks.acquire_lock(conn, "send:x", REMOTE)
    with (
        pytest.raises(SendLockedError, match=r"held by elsewhere\.example"),
        lockdb.connect() as conn,
        conn.begin(),
    ):
        locks.acquire_lock(conn, "send:x", "me:1/a")


def _take(
    db: Database, barrier: threading.Barrier, owner: str, won: list[str], lost: list[str]
) -> None:
    try:
        with db.connect() as conn, conn.begin():
            barrier.wait()
            locks.acquire_lock(conn, "send:x", owner)
        won.append(owner)
    except SendLockedError as exc:
        lost.append(str(exc))


def test_a_stale_lock_goes_to_exactly_one_of_two_racing_takers(lockdb: Database) -> None:
    for _round in range(5):
        with lockdb.connect() as conn, conn.begin():
            conn.execute(locks_table.delete())
            locks.acquire_lock(conn, "send:x", REMOTE)
            conn.execute(update(locks_table).values(heartbeat_at=now() - locks.LOCK_STALE * 2))
        barrier = threading.Barrier(2, timeout=10)
        won: list[str] = []
        lost: list[str] = []

        threads = [
            threading.Thread(target=_take, args=(lockdb, barrier, f"taker:{i}/x", won, lost))
            for i in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(won) == 1 and len(lost) == 1, (won, lost)


def test_a_holder_whose_lock_was_taken_over_learns_it_from_its_heartbeat(lockdb: Database) -> None:
    with lockdb.connect() as conn, conn.begin():
        locks.acquire_lock(conn, "send:x", "me:1/a")
        assert locks.heartbeat(conn, "send:x", "me:1/a")
        conn.execute(update(locks_table).values(owner=REMOTE))
        assert not locks.heartbeat(conn, "send:x", "me:1/a")
