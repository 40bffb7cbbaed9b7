"""Fetching a feed or rates file from a URL that a third party controls, within limits.

* **One deadline** for the whole fetch (``sources.timeout``): connecting, every redirect and
  every byte; a server that drips a byte a second is cut off at the deadline.
* **A byte cap** (``sources.max_bytes``) on the body as received and again as decompressed: we
  ask for gzip or deflate only and inflate ourselves, a bounded piece at a time, so a small
  gzip bomb never becomes gigabytes in memory.
* **At most five redirects**, http and https only.
* **No way in to the local network**: a redirect to a host other than the configured one must
  resolve to public addresses only (not loopback, private, link-local, reserved), unless
  ``sources.allow_private``; we then connect to the very address that was checked (TLS still
  verifies the host name), so a DNS answer that changes in between cannot slip past the check.
  The configured URL itself may be on any address: the operator chose it.

Every refusal is a :class:`~newsletter.errors.SourceError` naming the source (its secrets
masked); the build reports it as a warning and goes on with the other sources.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import zlib
from urllib.parse import urljoin

import httpx

from newsletter.compose.options import FetchLimits
from newsletter.core.redact import mask_url
from newsletter.errors import SourceError

__all__ = ["FetchLimits", "fetch_url"]

USER_AGENT = "newsletter/0.1 (+https://github.com/newsletter)"
REDIRECTS = frozenset({301, 302, 303, 307, 308})


def fetch_url(url: str, limits: FetchLimits) -> bytes:
    """The body at ``url``; raises SourceError. Callable from any thread, loop or not."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_fetch(url, limits))
    box: list[bytes | BaseException] = []  # a loop runs here: fetch in a thread of its own

    def run() -> None:
        try:
            box.append(asyncio.run(_fetch(url, limits)))
        except BaseException as exc:  # handed to the caller below
            box.append(exc)

    thread = threading.Thread(target=run, name="fetch", daemon=True)
    thread.start()
    thread.join(limits.timeout + 5)
    if not box:
        raise SourceError(f"timed out after {limits.timeout:g} s", source=mask_url(url))
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


async def _fetch(url: str, limits: FetchLimits) -> bytes:
    shown = mask_url(url)
    try:
        async with asyncio.timeout(limits.timeout):
            return await _follow(url, limits, shown)
    except TimeoutError:
        raise SourceError(f"timed out after {limits.timeout:g} s", source=shown) from None
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot fetch: {exc or type(exc).__name__}", source=shown) from None


async def _follow(url: str, limits: FetchLimits, shown: str) -> bytes:
    """Every SourceError raised from here names ``shown``: the URL with its secrets masked."""
    configured = httpx.URL(url).host
    current = url
    async with httpx.AsyncClient(
        follow_redirects=False, timeout=limits.timeout, trust_env=False
    ) as client:
        for _hop in range(limits.max_redirects + 1):
            target = httpx.URL(current)
            if target.scheme not in ("http", "https"):
                raise SourceError(f"refused a redirect to a {target.scheme}: URL", source=shown)
            addresses = await _resolve(target, shown)
            if target.host != configured and not limits.allow_private:
                for address in addresses:
                    if not _public(address):
                        raise SourceError(
                            f"refused a redirect to {target.host} ({address}), a "
                            "non-public address (sources.allow_private allows it)",
                            source=shown,
                        )
            response = await _connect(client, target, addresses, shown)
            try:
                if response.status_code in REDIRECTS and "location" in response.headers:
                    current = urljoin(str(target), response.headers["location"])
                    continue
                if response.status_code >= 400:
                    raise SourceError(
                        f"HTTP {response.status_code} {response.reason_phrase}", source=shown
                    )
                raw = await _read(response, limits.max_bytes, shown)
                encoding = response.headers.get("content-encoding", "")
            finally:
                await response.aclose()
            return decode(raw, encoding, limits.max_bytes, shown)
    raise SourceError(f"more than {limits.max_redirects} redirects", source=shown)


async def _resolve(target: httpx.URL, shown: str) -> list[str]:
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, port, type=socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        raise SourceError(f"cannot resolve {target.host}: {exc.strerror}", source=shown) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def _connect(
    client: httpx.AsyncClient, target: httpx.URL, addresses: list[str], shown: str
) -> httpx.Response:
    """GET ``target`` from the first of ``addresses`` that answers (never from a fresh lookup)."""
    error: Exception | None = None
    for address in addresses:
        request = client.build_request(
            "GET",
            target.copy_with(host=address),
            headers={
                "Host": target.netloc.decode("ascii"),
                "User-Agent": USER_AGENT,
                "Accept-Encoding": "gzip, deflate",
            },
            extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
        )
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            error = exc
    raise SourceError(f"cannot connect to {target.host}: {error}", source=shown)


async def _read(response: httpx.Response, limit: int, shown: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise SourceError(f"larger than {limit:,} bytes ({int(declared):,})", source=shown)
    body = bytearray()
    async for chunk in response.aiter_raw():
        body.extend(chunk)
        if len(body) > limit:
            raise SourceError(f"larger than {limit:,} bytes", source=shown)
    return bytes(body)


def decode(raw: bytes, content_encoding: str, limit: int, shown: str) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate, identity), never producing over ``limit``."""
    data = raw
    for coding in reversed([c.strip().lower() for c in content_encoding.split(",") if c.strip()]):
        if coding in ("gzip", "x-gzip"):
            data = _inflate(data, zlib.MAX_WBITS | 16, limit, shown)
        elif coding == "deflate":
            try:
                data = _inflate(data, zlib.MAX_WBITS, limit, shown)
            except zlib.error:  # some servers send raw deflate
                data = _inflate(data, -zlib.MAX_WBITS, limit, shown)
        elif coding != "identity":
            raise SourceError(f"unsupported Content-Encoding {coding!r}", source=shown)
    return data


def _inflate(data: bytes, wbits: int, limit: int, shown: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    try:
        while data:
            out.extend(inflater.decompress(data, limit + 1 - len(out)))
            if len(out) > limit:
                raise SourceError(f"larger than {limit:,} bytes once decompressed", source=shown)
            data = inflater.unconsumed_tail
        out.extend(inflater.flush())
    except zlib.error as exc:
        if wbits == zlib.MAX_WBITS:
            raise
        raise SourceError(f"cannot decompress: {exc}", source=shown) from None
    if len(out) > limit:
        raise SourceError(f"larger than {limit:,} bytes once decompressed", source=shown)
    return bytes(out)
