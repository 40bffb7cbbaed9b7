"""The inbound parts made from the settings (the only inbound module that reads them)."""

from __future__ import annotations

from newsletter.config import Settings
from newsletter.delivery.factory import make_signer
from newsletter.errors import ConfigError
from newsletter.inbound.apply import Policy
from newsletter.inbound.classify import Mailroom
from newsletter.inbound.imap import IMAPConfig


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


def make_imap_config(settings: Settings) -> IMAPConfig:
    b = settings.bounces
    if not b.imap_host or not b.imap_username:
        raise ConfigError(
            "set bounces.imap_host and bounces.imap_username (and the password) to fetch returns"
        )
    return IMAPConfig(
        host=b.imap_host,
        username=b.imap_username,
        password=b.imap_password.get_secret_value(),
        port=b.imap_port,
        security=b.imap_security,
        folder=b.imap_folder,
        done_folder=b.imap_done_folder,
        ca_file=str(settings.path(b.imap_ca_file)) if b.imap_ca_file else "",
        timeout=b.imap_timeout,
    )
