"""Supervision helpers of the send loop: the watchdog task and the one line a failure gives.

The send loop runs its feeder, workers, writer and :func:`watchdog` in one ``asyncio.TaskGroup``:
the first failure cancels the rest, and :func:`failure_reason` turns what the group raised into
the line the operator reads (``newsletter send`` exits 6 with it; the run record keeps it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from newsletter.errors import NewsletterError, SendInterrupted, SendLockedError

log = logging.getLogger(__name__)

WATCH_EVERY = 0.25  # seconds between the watchdog's looks
HEARTBEAT_SECONDS = 5.0  # how often a SQLite sender refreshes its lock (stale after 90 s)
RESUME = "the rest stays queued: run the same command to resume"


async def watchdog(
    stop_requests: Callable[[], int],
    grace: float,
    beat: Callable[[], Awaitable[bool]] | None,
    lock_name: str,
    beat_every: float = HEARTBEAT_SECONDS,
) -> None:
    """Runs until cancelled. Raises :class:`SendInterrupted` when a second stop request comes or
    the first one's ``grace`` runs out; with ``beat`` (the SQLite send lock), refreshes the lock
    every :data:`HEARTBEAT_SECONDS` and raises :class:`SendLockedError` once it was lost."""
    loop = asyncio.get_running_loop()
    last_beat = loop.time()
    stop_seen = 0.0
    while True:
        await asyncio.sleep(WATCH_EVERY)
        requests = stop_requests()
        if requests:
            stop_seen = stop_seen or loop.time()
            if requests > 1 or loop.time() - stop_seen >= grace:
                why = "a second stop request" if requests > 1 else "the stop grace ran out"
                raise SendInterrupted(
                    f"stopped before the messages in flight finished ({why}); "
                    "those stay 'sending' and go back to the queue at the next run"
                )
        if beat is not None and loop.time() - last_beat >= beat_every:
            last_beat = loop.time()
            if not await beat():
                raise SendLockedError(
                    f"lost the lock {lock_name} to another sender; stopping"
                    if beat_every == HEARTBEAT_SECONDS
                    else f"its claims on {lock_name} went to the other senders (this sender's "
                    "heartbeat was late); stopping",
                    name=lock_name,
                    owner="",
                )


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


def failure_reason(group: BaseExceptionGroup[BaseException]) -> str:
    """One line for what stopped the group; re-raises what is not an ``Exception``
    (KeyboardInterrupt, SystemExit)."""
    errors = _leaves(group)
    for exc in errors:
        if not isinstance(exc, Exception):
            raise exc
    exc = next((e for e in errors if isinstance(e, SendInterrupted)), errors[0])
    if isinstance(exc, NewsletterError):
        return f"{exc}; {RESUME}"
    log.error("the send stopped on an unexpected error", exc_info=exc)
    return f"stopped by an unexpected error ({type(exc).__name__}: {exc}); {RESUME}"


GUARD_FROM = 200  # messages seen before the share of permanent refusals may pause a send


class RefusalGuard:
    """Watches the share of recent messages refused for good (5xx): past ``ratio`` of the last
    ``window`` (judged from 200 messages on), a relay has started blocking us or the list has
    gone stale, and the send pauses as it does for a server outage."""

    def __init__(self, ratio: float, window: int) -> None:
        self.ratio = ratio
        self.recent: deque[bool] = deque(maxlen=window)
        self.refused = 0

    def add(self, refused: bool) -> str | None:
        """Record one outcome; the reason to pause, when there is one."""
        recent = self.recent
        if len(recent) == recent.maxlen and recent[0]:
            self.refused -= 1
        recent.append(refused)
        self.refused += refused
        if len(recent) < min(GUARD_FROM, recent.maxlen or GUARD_FROM):
            return None
        if self.refused <= self.ratio * len(recent):
            return None
        return (
            f"{self.refused} of the last {len(recent)} messages were refused permanently "
            f"({self.refused / len(recent):.0%}, over bounces.pause_ratio {self.ratio:.0%})"
        )
