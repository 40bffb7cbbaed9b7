"""The one place where delivery reads the settings: it builds transports, signers, limits and
senders from them. The CLI, the scheduler and the web app call it; the rest of ``delivery`` takes
the small typed objects it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from newsletter.config import Settings
from newsletter.config.sections import RelaySettings
from newsletter.core.tokens import Signer, load_key, write_key
from newsletter.delivery.dkim import DKIMSigner
from newsletter.delivery.options import Limits
from newsletter.delivery.ratelimit import RateLimiter
from newsletter.delivery.relays import Relay, RelayTransport
from newsletter.delivery.sender import Identity, Sender, SendSetup
from newsletter.delivery.sharedrate import SharedRateLimiter
from newsletter.delivery.smtp import SMTPConfig, SMTPTransport
from newsletter.delivery.transports import MaildirTransport, Transport
from newsletter.delivery.warmup import Warmup
from newsletter.storage.db import Database


def make_signer(settings: Settings) -> Signer:
    """The signer of unsubscribe/preferences tokens (raises KeyFileError without a key)."""
    key = load_key(
        settings.security.secret_key.get_secret_value(),
        settings.path(settings.security.secret_key_file),
    )
    return Signer(key)


def ensure_key(settings: Settings) -> Path | None:
    """Create the key file on first need (no ``security.secret_key``, no file yet); returns its
    path when it was just created, so that the caller can say so."""
    if settings.security.secret_key.get_secret_value():
        return None
    path = settings.path(settings.security.secret_key_file)
    if path.exists():
        return None
    try:
        write_key(path)
    except FileExistsError:  # made meanwhile by another sender of this workspace
        return None
    return path


def make_dkim(settings: Settings) -> DKIMSigner | None:
    if not settings.dkim.domain:
        return None
    return DKIMSigner(
        settings.dkim.domain, settings.dkim.selector, settings.path(settings.dkim.private_key_file)
    )


def smtp_config(settings: Settings) -> SMTPConfig:
    smtp = settings.smtp
    return SMTPConfig(
        host=smtp.host,
        port=smtp.port,
        security=smtp.security,
        username=smtp.username,
        password=smtp.password.get_secret_value(),
        timeout=smtp.timeout,
        pipelining=smtp.pipelining,
        verify=smtp.verify,
        ca_file=str(settings.path(smtp.ca_file)) if smtp.ca_file else "",
    )


def make_transport(settings: Settings, database: Database | None = None) -> Transport:
    """Several relays when ``[[relays]]`` are set (their rate limits shared through
    ``database`` when it is PostgreSQL), else SMTP when ``smtp.host`` is set, else the local
    Maildir outbox."""
    if settings.relays:
        return RelayTransport([_relay(settings, r, database) for r in settings.relays])
    if not settings.smtp.host:
        return MaildirTransport(settings.path(settings.smtp.outbox))
    return SMTPTransport(smtp_config(settings))


def _relay(settings: Settings, r: RelaySettings, database: Database | None) -> Relay:
    config = SMTPConfig(
        host=r.host,
        port=r.port,
        security=r.security,
        username=r.username,
        password=r.password.get_secret_value(),
        timeout=r.timeout,
        pipelining=settings.smtp.pipelining,
        verify=r.verify,
        ca_file=str(settings.path(r.ca_file)) if r.ca_file else "",
    )
    limiter: RateLimiter | SharedRateLimiter | None = None
    if r.rate_per_second or r.rate_per_hour:
        if database is not None and database.backend == "postgresql":
            limiter = SharedRateLimiter(database, r.rate_per_second, r.rate_per_hour, relay=r.name)
        else:
            limiter = RateLimiter(r.rate_per_second, r.rate_per_hour)
    return Relay(r.name, SMTPTransport(config), r.weight, r.concurrency, limiter)


def make_limits(settings: Settings) -> Limits:
    smtp = settings.smtp
    return Limits(
        concurrency=smtp.concurrency,
        rate_per_second=smtp.rate_per_second,
        rate_per_hour=smtp.rate_per_hour,
        retries=smtp.retries,
        backoff=smtp.backoff,
        bounce_limit=smtp.bounce_limit,
        pause_ratio=settings.bounces.pause_ratio,
        pause_window=settings.bounces.pause_window,
        pause_after_errors=smtp.pause_after_errors,
        stop_grace=smtp.stop_grace,
        sender_timeout=smtp.sender_timeout,
        warmup=Warmup(smtp.warmup_start, smtp.warmup_factor, smtp.warmup_since)
        if smtp.warmup_start and smtp.warmup_since
        else None,
    )


def send_setup(settings: Settings) -> SendSetup:
    s = settings.sender
    return SendSetup(
        issues_dir=settings.issues_dir,
        render=settings.render_options(),
        vocabulary=settings.vocabulary(),
        identity=Identity(
            from_address=s.from_address,
            from_name=s.from_name,
            subject=s.subject,
            list_id=s.list_id,
            base_url=s.base_url or settings.issue.web_url,
            unsubscribe_mailto=s.unsubscribe_mailto,
            reply_to=s.reply_to,
            return_path=settings.bounces.return_path,
        ),
    )


def make_sender(
    settings: Settings,
    database: Database,
    *,
    transport: Transport | None = None,
    signer: Signer | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Sender:
    """A sender with every part built from the settings unless given."""
    return Sender(
        send_setup(settings),
        database,
        transport or make_transport(settings, database),
        signer or make_signer(settings),
        limits=make_limits(settings),
        dkim=make_dkim(settings),
        progress=progress,
    )
