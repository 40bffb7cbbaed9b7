"""``newsletter serve``: the pages behind the links in every issue (Starlette, served by uvicorn).

* ``POST /u/<token>`` (RFC 8058 one-click, body ``List-Unsubscribe=One-Click``) unsubscribes at
  once and answers 200, no redirect, no cookie; ``GET /u/<token>`` only shows a button (mail
  scanners follow GET links). Idempotent.
* ``/p/<token>``: interests and lists; an unsubscribed person may subscribe again here.
* ``/subscribe``: double opt-in: a signed link valid 48 hours, sent by mail; the answer is the same
  whether or not the address is known; a per-IP rate limit.
* ``/confirm/<token>``: a button that confirms (GET alone changes nothing).
* ``/archive``, ``/archive/<date>``, ``/archive/feed.xml``: the public web versions of past
  issues (no personal data, no tokens) and an Atom feed.

Tokens are HMAC-signed (``core/tokens.py``); a tampered, truncated or expired one gets a plain 400
page. Every action is written to ``events`` by the audience layer. The endpoints live in
``subscriber.py``, ``signup.py`` and ``archive.py``; their pages are templates in ``templates/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.config import Settings
from newsletter.core.tokens import Signer
from newsletter.delivery.transports import Transport
from newsletter.errors import RequestTooLarge
from newsletter.inbound.factory import make_policy
from newsletter.storage.db import Database
from newsletter.web import archive, signup, subscriber, webhooks
from newsletter.web.common import Site, WebContext
from newsletter.web.guard import Guard, RateLimit, redact_access_log

__all__ = ["RateLimit", "create_app"]

log = logging.getLogger(__name__)
RETRY_EVERY = 30.0  # seconds between rounds over confirmation mails kept to be retried

ROUTES = [
    Route("/", archive.home),
    Route("/u/{token}", subscriber.unsubscribe, methods=["GET", "POST"]),
    Route("/p/{token}", subscriber.preferences, methods=["GET", "POST"]),
    Route("/subscribe", signup.subscribe, methods=["GET", "POST"]),
    Route("/confirm/{token}", subscriber.confirm, methods=["GET", "POST"]),
    Route("/archive", archive.archive),
    Route("/archive/feed.xml", archive.feed),
    Route("/archive/{day}", archive.archive_issue),
    Route("/webhooks/ses", webhooks.ses, methods=["POST"]),
    Route("/webhooks/postmark", webhooks.postmark, methods=["POST"]),
]


async def too_large(request: Request, exc: Exception) -> Response:
    return Response("request body too large", status_code=413)


def create_app(
    settings: Settings,
    database: Database,
    signer: Signer,
    transport: Transport,
    *,
    subscribe_list: str = "weekly",
    rate: RateLimit | None = None,
    retry_every: float = RETRY_EVERY,
) -> Starlette:
    site = Site(
        name=settings.issue.title,
        base=settings.sender.base_url or settings.issue.web_url or "",
        language=settings.issue.language,
        tagline=settings.issue.tagline,
        from_address=settings.sender.from_address,
        from_name=settings.sender.from_name,
        subscribe_list=subscribe_list,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_retry_loop(app.state.web, retry_every))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    redact_access_log()
    app = Starlette(
        routes=ROUTES,
        exception_handlers={RequestTooLarge: too_large},
        lifespan=lifespan,
        middleware=[Middleware(Guard, base=site.base)],
    )
    app.router.redirect_slashes = False  # Guard redirects, from the base URL, not from Host
    app.state.web = WebContext(
        site=site,
        database=database,
        signer=signer,
        transport=transport,
        vocabulary=settings.vocabulary(),
        limiter=rate or RateLimit(5, 600),
        issues_dir=settings.issues_dir,
        public_lists=frozenset([*settings.web.public_lists, subscribe_list]),
        confirmation_interval=timedelta(hours=settings.web.confirmation_interval_hours),
        webhooks=webhooks.Webhooks(
            policy=make_policy(settings),
            postmark_username=settings.bounces.postmark_username,
            postmark_password=settings.bounces.postmark_password.get_secret_value(),
            sns_pattern=settings.bounces.sns_url_pattern,
            sns_topics=frozenset(settings.bounces.sns_topic_arns),
        ),
    )
    return app


async def _retry_loop(web: WebContext, every: float) -> None:
    """Kept confirmation mails, retried every ``every`` seconds while the server runs; a round
    that fails (the database away) is logged and the next one comes all the same."""
    while True:
        await asyncio.sleep(every)
        try:
            await signup.retry_confirmations(web)
        except Exception:
            log.exception("retrying confirmation mails failed; next round in %g s", every)
