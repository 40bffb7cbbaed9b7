"""Webhooks of sending services: Amazon SES notifications through SNS, and Postmark.

* ``POST /webhooks/ses``: an SNS message. Its signature is verified with the certificate at
  ``SigningCertURL``, which must match ``bounces.sns_url_pattern`` (SNS's own hosts by default);
  certificates are kept once fetched. A ``SubscriptionConfirmation`` is confirmed by fetching
  its ``SubscribeURL`` (same pattern). Topics can be limited (``bounces.sns_topic_arns``).
* ``POST /webhooks/postmark``: HTTP basic auth (``bounces.postmark_username``/``_password``);
  answers 404 while no user is set.

Each call is applied once (the SNS ``MessageId``, Postmark's ``ID``): a retried delivery
changes nothing more. A call that cannot be verified changes nothing and gets 401/403 with one
line; odd content gets 400.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from newsletter.compose.fetch import FetchLimits, fetch_url
from newsletter.errors import SourceError, WebhookError
from newsletter.inbound.apply import Policy, apply
from newsletter.inbound.classify import Return
from newsletter.inbound.providers import postmark_returns, ses_returns, verify_sns
from newsletter.web.common import context, read_body

log = logging.getLogger(__name__)
MAX_WEBHOOK = 256 * 1024
CERT_LIMITS = FetchLimits(timeout=10, max_bytes=64 * 1024, max_redirects=0)


@dataclass(frozen=True)
class Webhooks:
    policy: Policy
    postmark_username: str = ""
    postmark_password: str = field(default="", repr=False)
    sns_pattern: str = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
    sns_topics: frozenset[str] = frozenset()
    certificates: dict[str, bytes] = field(default_factory=dict, compare=False)


def _hooks(request: Request) -> Webhooks:
    hooks = context(request).webhooks
    if not isinstance(hooks, Webhooks):  # pragma: no cover - create_app always sets it
        raise WebhookError("webhooks are not set up")
    return hooks


def _refuse(status: int, message: str, **headers: str) -> Response:
    log.warning("webhook %s refused: %s", "call", message)
    return PlainTextResponse(message + "\n", status_code=status, headers=headers)


async def _json(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await read_body(request, MAX_WEBHOOK))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookError("the body is not a JSON object")
    return data


def _apply(request: Request, returns: list[Return], source: str, key: str) -> list[str]:
    web, hooks = context(request), _hooks(request)
    with web.database.connect() as conn, conn.begin():
        decisions = [apply(conn, r, source=source, key=key, policy=hooks.policy) for r in returns]
    return [d.kind if not d.repeat else "repeat" for d in decisions]


async def postmark(request: Request) -> Response:
    hooks = _hooks(request)
    if not hooks.postmark_username:
        return PlainTextResponse("not found\n", status_code=404)
    if not _authorised(request.headers.get("authorization", ""), hooks):
        return _refuse(
            401, "authentication required", **{"WWW-Authenticate": 'Basic realm="newsletter"'}
        )
    try:
        payload = await _json(request)
    except WebhookError as exc:
        return _refuse(400, str(exc))
    key = f"postmark:{payload.get('ID') or hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()}"
    return JSONResponse(
        {"ok": True, "results": _apply(request, postmark_returns(payload), "postmark", key[:64])}
    )


def _authorised(header: str, hooks: Webhooks) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    ok_user = hmac.compare_digest(user.encode(), hooks.postmark_username.encode())
    ok_password = hmac.compare_digest(password.encode(), hooks.postmark_password.encode())
    return ok_user and ok_password


async def ses(request: Request) -> Response:
    hooks = _hooks(request)
    try:
        fields = await _json(request)
        kind = str(fields.get("Type", ""))
        if hooks.sns_topics and str(fields.get("TopicArn")) not in hooks.sns_topics:
            raise WebhookError("a topic this server does not take (bounces.sns_topic_arns)")
        certificate = await _certificate(hooks, str(fields.get("SigningCertURL", "")))
        verify_sns(fields, certificate)
    except WebhookError as exc:
        return _refuse(
            403 if "signature" in str(exc) or "certificate" in str(exc) else 400, str(exc)
        )
    if kind == "SubscriptionConfirmation":
        try:
            await asyncio.to_thread(
                fetch_url, _allowed(hooks, str(fields.get("SubscribeURL", ""))), CERT_LIMITS
            )
        except (WebhookError, SourceError) as exc:
            return _refuse(400, f"cannot confirm the subscription: {exc}")
        log.info("SNS subscription to %s confirmed", str(fields.get("TopicArn"))[:200])
        return JSONResponse({"ok": True, "confirmed": True})
    if kind != "Notification":
        return JSONResponse({"ok": True, "ignored": kind[:40]})
    try:
        event = json.loads(str(fields.get("Message", "")))
    except json.JSONDecodeError:
        return _refuse(400, "the SNS Message is not a JSON SES notification")
    if not isinstance(event, dict):
        return _refuse(400, "the SNS Message is not a JSON object")
    returns = ses_returns(event, context(request).signer)
    key = f"sns:{str(fields.get('MessageId', ''))[:59]}"
    return JSONResponse({"ok": True, "results": _apply(request, returns, "ses", key)})


def _allowed(hooks: Webhooks, url: str) -> str:
    """``url`` if SNS may send us there (its certificate, its subscription link)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" in parts.netloc or "\\" in url:
        raise WebhookError(f"a certificate or URL from outside SNS: {url[:100]!r}")
    if not re.match(hooks.sns_pattern, url):
        raise WebhookError(f"a certificate or URL from outside SNS: {url[:100]!r}")
    return url


async def _certificate(hooks: Webhooks, url: str) -> bytes:
    url = _allowed(hooks, url)
    if url not in hooks.certificates:
        try:
            pem = await asyncio.to_thread(fetch_url, url, CERT_LIMITS)
        except SourceError as exc:
            raise WebhookError(f"cannot fetch the SNS certificate: {exc}") from None
        if len(hooks.certificates) > 100:
            hooks.certificates.clear()
        hooks.certificates[url] = pem
    return hooks.certificates[url]
