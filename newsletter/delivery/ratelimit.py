"""The rate limit of one sender: messages per second (spaced evenly) and per rolling hour."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from datetime import datetime


class RateLimiter:
    """Messages per second (spaced evenly) and per rolling hour, honoured when sending."""

    def __init__(
        self, per_second: float, per_hour: int, recent: list[datetime] | None = None
    ) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.per_hour = per_hour
        self._next = 0.0
        self.active = bool(self.interval or per_hour)
        self._hour: deque[float] = deque()
        offset = time.monotonic() - time.time()
        for stamp in recent or []:
            self._hour.append(stamp.timestamp() + offset)

    async def wait(self) -> None:
        loop_time = time.monotonic()
        if self.per_hour:
            while self._hour and self._hour[0] <= loop_time - 3600:
                self._hour.popleft()
            if len(self._hour) >= self.per_hour:
                await asyncio.sleep(self._hour[0] + 3600 - loop_time)
                return await self.wait()
            self._hour.append(loop_time)
        if self.interval:
            slot = max(self._next, loop_time)
            self._next = slot + self.interval
            if slot > loop_time:
                await asyncio.sleep(slot - loop_time)
        return None

    async def slow_down(self) -> None:
        """A throttling reply: space the messages twice as far apart from now on."""
        if self.interval:
            self.interval = min(self.interval * 2, 10.0)

    def claim_size(self, batch: int) -> int:
        """Rows to claim at a time: about a second's worth under a per-second limit, so that
        a subscriber's status read at the claim is at most a second or two old when sent."""
        if not self.interval:
            return batch
        return max(1, min(batch, math.ceil(1.0 / self.interval)))
