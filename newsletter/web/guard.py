"""What stands between the internet and the subscriber pages.

* :class:`Guard`, an ASGI middleware around the whole app: security headers on every response
  (a CSP with ``frame-ancestors 'none'``, ``nosniff``, a referrer policy that never passes a
  token on);
  cross-site form posts refused (``Origin``, else ``Referer``, must be this site); a path with a
  trailing slash redirected to the same path without it, built from ``sender.base_url`` and never
  from the ``Host`` header.
* :class:`RateLimit`: at most ``count`` requests per client in ``seconds``, with bounded memory
  (idle clients forgotten, the least recent dropped past ``max_clients``); IPv6 clients are
  counted per /64, the block one customer usually holds.
* :func:`redact_access_log`: tokens in ``/u/``, ``/p/`` and ``/confirm/`` paths never reach the
  access log.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections import OrderedDict, deque
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
_TOKEN_PATH = re.compile(r"/(u|p|confirm)/[^/?#\s\"]+")


def token_path(path: str) -> bool:
    return _TOKEN_PATH.match(path) is not None


def referrer_policy(path: str) -> str:
    """``no-referrer`` on pages whose URL holds a token (so no link on them can pass it on);
    ``same-origin`` elsewhere, so that a browser still names this site as the ``Origin`` of the
    sign-up form it posts (under ``no-referrer`` it sends ``Origin: null``)."""
    return "no-referrer" if token_path(path) else "same-origin"


def redact(path: str) -> str:
    """``/u/TOKEN`` -> ``/u/[token]`` (and the same for /p/ and /confirm/)."""
    return _TOKEN_PATH.sub(r"/\1/[token]", path)


class _RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def redact_access_log() -> None:
    """Install the token filter on uvicorn's access and error loggers (once)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactTokens) for f in logger.filters):
            logger.addFilter(_RedactTokens())


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower case; "" when it has none."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()


class Guard:
    """The middleware described in the module docstring; ``base`` is the site's public URL."""

    def __init__(self, app: ASGIApp, *, base: str) -> None:
        self.app = app
        self.base = base.rstrip("/")
        self.origin = origin_of(base)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = Headers(scope=scope)
        if method not in SAFE_METHODS and not self.same_site(path, headers):
            await self.respond(send, 403, b"cross-site request refused\n")
            return
        if len(path) > 1 and path.endswith("/"):
            await self.redirect(send, scope)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    out.setdefault(name, value)
                out.setdefault("Referrer-Policy", referrer_policy(path))
                out.setdefault("Content-Security-Policy", CSP)
            await send(message)

        await self.app(scope, receive, with_headers)

    def same_site(self, path: str, headers: Headers) -> bool:
        """A browser names the page a form was posted from in ``Origin`` (or at least
        ``Referer``); a request with neither is not a browser's cross-site post (a mail
        provider's RFC 8058 one-click POST has neither) and is let through. Pages with a token
        in their path send no referrer, so their own forms post ``Origin: null``: accepted there,
        since only who holds the token can post to that path at all."""
        claimed = headers.get("origin")
        if claimed is None and headers.get("referer"):
            claimed = origin_of(headers["referer"]) or "null"
        if claimed is None:
            return True
        claimed = claimed.strip().lower()
        if claimed == "null" and token_path(path):
            return True
        host = headers.get("host", "").lower()
        own = {self.origin} if self.origin else set()
        if host:
            own |= {f"http://{host}", f"https://{host}"}
        return claimed in own

    async def redirect(self, send: Send, scope: Scope) -> None:
        target = "/" + scope["path"].strip("/")  # never "//host": that would leave the site
        query = scope.get("query_string", b"").decode("latin-1")
        location = self.base + target + (f"?{query}" if query else "")
        await self.respond(send, 308, b"", [(b"location", location.encode("latin-1", "replace"))])

    async def respond(
        self, send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"content-security-policy", CSP.encode()),
            *((k.lower().encode(), v.encode()) for k, v in HEADERS.items()),
            (b"referrer-policy", b"no-referrer"),
            *(extra or []),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def local_host_header(value: str) -> bool:
    """Whether a ``Host`` header names this machine by address or as ``localhost``. Any other
    name is refused by the preview: a page on a stranger's site can make its own domain name
    resolve to 127.0.0.1 (DNS rebinding) and read the preview, but it cannot make the browser
    send an address or ``localhost`` as the Host."""
    host = value.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def client_key(host: str) -> str:
    """What the rate limit counts: the address, or its /64 for IPv6."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimit:
    """At most ``count`` requests per client and ``seconds`` (in memory, per process).

    Memory is bounded: a client idle for ``seconds`` is forgotten, and past ``max_clients`` the
    least recently seen is dropped (at worst it gets a fresh allowance)."""

    def __init__(self, count: int, seconds: float, *, max_clients: int = 10_000) -> None:
        self.count, self.seconds, self.max_clients = count, seconds, max_clients
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    @property
    def clients(self) -> int:
        """How many clients are remembered."""
        return len(self._hits)

    def allow(self, host: str, *, now: float | None = None) -> bool:
        stamp = time.monotonic() if now is None else now
        self._expire(stamp)
        key = client_key(host)
        hits = self._hits.pop(key, None) or deque()
        while hits and hits[0] <= stamp - self.seconds:
            hits.popleft()
        allowed = len(hits) < self.count
        if allowed:
            hits.append(stamp)
        self._hits[key] = hits  # now the most recent
        while len(self._hits) > self.max_clients:
            self._hits.popitem(last=False)
        return allowed

    def _expire(self, stamp: float) -> None:
        """Forget clients whose newest hit is out of the window (oldest first, so this stops
        at the first one still inside it)."""
        while self._hits:
            key, hits = next(iter(self._hits.items()))
            if hits and hits[-1] > stamp - self.seconds:
                break
            del self._hits[key]
