"""One rate limit for every sender of a send (PostgreSQL): token buckets in the database.

A bucket per limit (``smtp:second`` with ``rate_per_second``, ``smtp:hour`` with
``rate_per_hour``) holds tokens that refill with time; a sender takes a few at a time in one
short transaction (``SELECT ... FOR UPDATE``), so the relay sees the quota however many senders
there are. A throttling reply (``454``, ``421 4.7.0 ...rate``) halves the shared rate for
everyone; it recovers over :data:`RECOVER_SECONDS`.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from newsletter.storage.db import Database, rate_buckets

RECOVER_SECONDS = 30.0  # from a halved rate back to the full one
MIN_FACTOR = 0.1
GRANT_SECONDS = 0.05  # a sender takes at most this long's worth of tokens at once


def _refill(row: Any, rate: float, burst: float, moment: float) -> tuple[float, float]:
    factor = min(1.0, row.factor + (moment - row.slowed_at) / RECOVER_SECONDS)
    tokens = min(burst, row.tokens + max(0.0, moment - row.stamp) * rate * factor)
    return tokens, factor


def take(conn: Connection, limits: list[tuple[str, float, float]], want: int) -> tuple[int, float]:
    """Take up to ``want`` tokens from every bucket ``(name, rate, burst)``; returns (taken,
    seconds until one more is due when none was)."""
    rows = []
    for name, _, burst in limits:
        row = conn.execute(
            select(rate_buckets).where(rate_buckets.c.name == name).with_for_update()
        ).first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(rate_buckets).values(
                            name=name, tokens=burst, stamp=time.time(), factor=1.0, slowed_at=0.0
                        )
                    )
            except IntegrityError:
                pass
            row = conn.execute(
                select(rate_buckets).where(rate_buckets.c.name == name).with_for_update()
            ).one()
        rows.append(row)
    # The clock is read once the rows are ours: read before waiting for another sender's lock,
    # it would be older than the stamp that sender wrote, and the same time would count twice.
    moment = max(time.time(), *(row.stamp for row in rows))
    levels = [
        _refill(row, rate, burst, moment)
        for row, (_, rate, burst) in zip(rows, limits, strict=True)
    ]
    taken = max(0, min(want, *(math.floor(tokens) for tokens, _ in levels)))
    wait = 0.0
    for (name, rate, _), (tokens, factor) in zip(limits, levels, strict=True):
        left = tokens - taken
        if not taken:
            wait = max(wait, (1.0 - left) / (rate * factor))
        conn.execute(
            update(rate_buckets)
            .where(rate_buckets.c.name == name)
            .values(tokens=left, stamp=moment)
        )
    return taken, wait


def slow_down(conn: Connection, names: list[str]) -> None:
    moment = time.time()
    for name in names:
        row = conn.execute(
            select(rate_buckets).where(rate_buckets.c.name == name).with_for_update()
        ).first()
        if row is None:
            continue
        factor = min(1.0, row.factor + (moment - row.slowed_at) / RECOVER_SECONDS)
        conn.execute(
            update(rate_buckets)
            .where(rate_buckets.c.name == name)
            .values(factor=max(MIN_FACTOR, factor / 2), slowed_at=moment)
        )


class SharedRateLimiter:
    """The :class:`~newsletter.delivery.ratelimit.RateLimiter` interface over shared buckets."""

    active = True

    def __init__(self, db: Database, per_second: float, per_hour: int, relay: str = "smtp") -> None:
        self.db = db
        self.limits: list[tuple[str, float, float]] = []
        if per_second:
            self.limits.append(
                (f"{relay}:second", per_second, max(1.0, per_second * GRANT_SECONDS))
            )
        if per_hour:
            self.limits.append((f"{relay}:hour", per_hour / 3600.0, float(per_hour)))
        self.per_second = per_second
        self.grant = max(1, math.floor(min(b for _, _, b in self.limits)))
        self.pool = 0

    def _take(self, want: int) -> tuple[int, float]:
        with self.db.connect() as conn, conn.begin():
            return take(conn, self.limits, want)

    def _slow(self) -> None:
        with self.db.connect() as conn, conn.begin():
            slow_down(conn, [name for name, _, _ in self.limits])

    async def wait(self) -> None:
        while self.pool <= 0:
            taken, wait = await asyncio.to_thread(self._take, self.grant)
            if taken:
                self.pool += taken
                break
            await asyncio.sleep(min(max(wait, 0.002), 1.0))
        self.pool -= 1

    async def slow_down(self) -> None:
        await asyncio.to_thread(self._slow)

    def claim_size(self, batch: int) -> int:
        if not self.per_second:
            return batch
        return max(1, min(batch, math.ceil(self.per_second)))
