"""What every subscriber page shares: the app's context, page rendering, forms, rate limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse

from newsletter.core.interests import Vocabulary
from newsletter.core.tokens import Signer
from newsletter.delivery.transports import Transport
from newsletter.errors import RequestTooLarge
from newsletter.storage.db import Database
from newsletter.web.guard import RateLimit
from newsletter.web.pages import page

MAX_BODY = 16 * 1024
CONFIRM_TTL = 48 * 3600


@dataclass(frozen=True)
class Site:
    """What the pages say about the newsletter (from the settings)."""

    name: str
    base: str  # the public URL the pages are served at, without a trailing slash
    language: str
    tagline: str
    from_address: str
    from_name: str
    subscribe_list: str


@dataclass(frozen=True)
class WebContext:
    """Everything the endpoints use; one per app, in ``app.state.web``."""

    site: Site
    database: Database
    signer: Signer
    transport: Transport
    vocabulary: Vocabulary
    limiter: RateLimit
    issues_dir: Path  # the built issues (the archive)
    public_lists: frozenset[str] = frozenset()  # offered on the preferences page
    confirmation_interval: timedelta = timedelta(hours=24)  # one confirmation mail per address
    webhooks: Any = None  # web.webhooks.Webhooks: SES and Postmark


def context(request: Request) -> WebContext:
    web = request.app.state.web
    assert isinstance(web, WebContext)
    return web


def html(request: Request, template: str, code: int = 200, /, **values: Any) -> HTMLResponse:
    site = context(request).site
    values.setdefault("heading", site.name)
    response = HTMLResponse(
        page(template, name=site.name, base=site.base, language=site.language, **values),
        status_code=code,
    )
    response.headers["Cache-Control"] = "no-store"  # security headers: web/guard.py
    return response


async def form(request: Request) -> dict[str, list[str]]:
    """The url-encoded form; raises RequestTooLarge over MAX_BODY (answered with 413)."""
    body = await read_body(request, MAX_BODY)
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; raises RequestTooLarge over ``limit`` bytes (answered with 413)."""
    size = request.headers.get("content-length") or "0"
    if not size.isdigit() or int(size) > limit:
        raise RequestTooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise RequestTooLarge(limit)
    return bytes(body)


def client_detail(request: Request) -> str:
    return f"ip={request.client.host if request.client else '?'}"
