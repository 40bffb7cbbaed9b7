"""The inbound parts made from the settings (the only inbound module that reads them)."""

from __future__ import annotations

from newsletter.config import Settings
from newsletter.delivery.factory import make_signer
from newsletter.inbound.apply import Policy
from newsletter.inbound.classify import Mailroom


def make_mailroom(settings: Settings, envelope_recipient: str = "") -> Mailroom:
    domain = settings.sender.from_address.rpartition("@")[2]
    return Mailroom(
        signer=make_signer(settings),
        return_path=settings.bounces.return_path,
        unsubscribe_address=settings.sender.unsubscribe_mailto or f"unsubscribe@{domain}",
        envelope_recipient=envelope_recipient,
    )


def make_policy(settings: Settings) -> Policy:
    return Policy(soft_limit=settings.bounces.soft_limit)
