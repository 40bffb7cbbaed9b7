"""What the send loop works with: the :class:`Host` it runs for, and the :class:`Job` each
message is while it waits for a worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NamedTuple, Protocol

from newsletter.core.models import Issue
from newsletter.delivery import sendlog
from newsletter.delivery.dkim import DKIMSigner
from newsletter.delivery.message import Draft, MessageTemplate
from newsletter.delivery.options import Limits
from newsletter.delivery.transports import Transport
from newsletter.storage.db import Database


class Host(Protocol):
    """What the loop needs of the send it runs for (:class:`~newsletter.delivery.sender.Sender`
    provides it): its parts, its limits, and the variant of an interest set."""

    db: Database
    transport: Transport
    dkim: DKIMSigner | None
    limits: Limits
    owner: str
    from_address: str
    stop_requests: int
    progress: Callable[[int, int], None]

    def variant(self, issue: Issue, interests: str) -> tuple[str, MessageTemplate | None]: ...

    @property
    def variant_count(self) -> int: ...


class Job(NamedTuple):
    """A message on its way to a worker."""

    row: sendlog.Claimed
    variant: str
    draft: Draft
    signatures: asyncio.Future[list[str]] | None  # with DKIM: its chunk's signatures
    slot: int  # its place in that chunk
    claimed: float  # monotonic time of the claim
