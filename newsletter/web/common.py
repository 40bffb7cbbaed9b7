"""What every subscriber page shares: the app's context, page rendering, forms, rate limits."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass
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
from newsletter.web.pages import page

MAX_BODY = 16 * 1024
CONFIRM_TTL = 48 * 3600


class RateLimit:
    """At most ``count`` requests per ``seconds`` from one address (in memory, per process)."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count, self.seconds = count, seconds
        self._hits: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str) -> bool:
        stamp = time.monotonic()
        hits = self._hits[key]
        while hits and hits[0] <= stamp - self.seconds:
            hits.popleft()
        if len(hits) >= self.count:
            return False
        hits.append(stamp)
        return True


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
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https:; form-action 'self'"
    )
    return response


async def form(request: Request) -> dict[str, list[str]]:
    """The url-encoded form; raises RequestTooLarge over MAX_BODY (answered with 413)."""
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_BODY:
        raise RequestTooLarge(MAX_BODY)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY:
            raise RequestTooLarge(MAX_BODY)
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def client_detail(request: Request) -> str:
    return f"ip={request.client.host if request.client else '?'}"
