"""Several SMTP relays used together (``[[relays]]``), behind the one Transport interface.

Each batch of messages goes to the relay furthest behind its share (``weight``), within that
relay's own ``concurrency`` and rate limits (shared by every sender on PostgreSQL). A relay
that cannot be reached, or whose connection drops, is paused for :data:`COOLDOWN` seconds and
the messages it did not take go to the others at once; only when every relay is paused does the
send pause (as it does for a single server that is down). Each outcome names its relay, and the
send log keeps it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from newsletter.delivery.ratelimit import RateLimiter
from newsletter.delivery.sharedrate import SharedRateLimiter
from newsletter.delivery.smtp import SMTPTransport
from newsletter.delivery.transports import Delivery, Notify, Outgoing
from newsletter.errors import TransportError

log = logging.getLogger(__name__)
COOLDOWN = 60.0  # seconds a relay that failed rests before it is tried again


@dataclass
class Relay:
    name: str
    transport: SMTPTransport
    weight: float = 1.0
    concurrency: int = 4
    limiter: RateLimiter | SharedRateLimiter | None = None
    sent: int = 0
    paused_until: float = 0.0
    why: str = ""
    gate: asyncio.Semaphore | None = field(default=None, repr=False)


class RelayTransport:
    """A :class:`~newsletter.delivery.transports.Transport` over several relays."""

    def __init__(self, relays: Sequence[Relay], cooldown: float = COOLDOWN) -> None:
        if not relays:
            raise TransportError("no relays configured")
        self.relays = list(relays)
        self.cooldown = cooldown
        self.name = "relays " + "+".join(r.name for r in self.relays)

    async def open(self) -> None:
        """Open every relay; one that refuses the login or TLS is paused (the others go on);
        only when none opens does the send stop."""
        problems = []
        for relay in self.relays:
            relay.gate = asyncio.Semaphore(relay.concurrency)
            try:
                await relay.transport.open()
            except TransportError as exc:
                self._pause(relay, str(exc))
                problems.append(f"{relay.name}: {exc}")
        if len(problems) == len(self.relays):
            raise TransportError("no relay can be used: " + "; ".join(problems))

    async def close(self) -> None:
        for relay in self.relays:
            await relay.transport.close()

    async def send(self, sender: str, recipient: str, message: bytes) -> Delivery:
        return (await self.send_many(sender, [(recipient, message)]))[0]

    def _pause(self, relay: Relay, why: str) -> None:
        relay.paused_until = time.monotonic() + self.cooldown
        relay.why = why
        log.warning("relay %s paused for %g s: %s", relay.name, self.cooldown, why)

    def _pick(self) -> Relay:
        moment = time.monotonic()
        ready = [r for r in self.relays if r.paused_until <= moment]
        if not ready:
            reasons = "; ".join(f"{r.name}: {r.why}" for r in self.relays)
            raise TransportError(f"every relay is paused ({reasons})")
        return min(ready, key=lambda r: (r.sent / r.weight, -r.weight))

    async def send_many(
        self, sender: str, batch: Sequence[Outgoing], notify: Notify | None = None
    ) -> list[Delivery]:
        results: list[Delivery | None] = [None] * len(batch)
        pending = list(range(len(batch)))
        while pending:
            relay = self._pick()
            relay.sent += len(pending)  # its share counts what it was given
            assert relay.gate is not None, "open() first"
            dropped = ""
            positions = list(pending)

            def note(
                k: int, delivery: Delivery, positions: list[int] = positions, name: str = relay.name
            ) -> None:
                nonlocal dropped
                if delivery.connection_error or not delivery.tried:
                    dropped = delivery.reply or "the connection dropped"  # another relay tries it
                    return
                i = positions[k]
                results[i] = delivery = replace(delivery, relay=name)
                if notify is not None:
                    notify(i, delivery)

            async with relay.gate:
                try:
                    if relay.limiter is not None:
                        for _ in positions:
                            await relay.limiter.wait()
                    await relay.transport.send_many(sender, [batch[i] for i in positions], note)
                except TransportError as exc:
                    dropped = str(exc)
                    self._pause(relay, dropped)
            if dropped and relay.paused_until <= time.monotonic():
                self._pause(relay, dropped)
            pending = [i for i in positions if results[i] is None]
        return [d for d in results if d is not None]
