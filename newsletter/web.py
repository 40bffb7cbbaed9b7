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

Tokens are HMAC-signed (``tokens.py``); a tampered, truncated or expired one gets a plain 400 page.
Every action is written to ``events`` with a timestamp.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import delete, insert, select, update
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from newsletter import audience
from newsletter.addresses import normalise
from newsletter.compose import built_issue_dates
from newsletter.config import Settings
from newsletter.db import Database, lists, memberships, now, subscribers
from newsletter.errors import AddressError, NewsletterError
from newsletter.interests import UnknownInterestError, Vocabulary, split
from newsletter.tokens import Purpose, Signer, TokenError
from newsletter.web_pages import page

MAX_BODY = 16 * 1024
CONFIRM_TTL = 48 * 3600


class BodyTooLarge(Exception):
    pass


async def form(request: Request) -> dict[str, list[str]]:
    """The url-encoded form, refusing bodies over MAX_BODY (413)."""
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_BODY:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY:
            raise BodyTooLarge
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


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


def create_app(
    settings: Settings,
    database: Database,
    signer: Signer,
    transport: Any,
    *,
    subscribe_list: str = "weekly",
    rate: RateLimit | None = None,
) -> Starlette:
    vocabulary = Vocabulary.from_settings(settings)
    name = settings.issue.title
    base = settings.sender.base_url or settings.issue.web_url or ""
    limiter = rate or RateLimit(5, 600)

    def html(template: str, code: int = 200, /, **context: Any) -> HTMLResponse:
        context.setdefault("heading", name)
        response = HTMLResponse(
            page(template, name=name, base=base, language=settings.issue.language, **context),
            status_code=code,
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src https:; form-action 'self'"
        )
        return response

    def bad_link(exc: TokenError) -> HTMLResponse:
        return html(
            "message.html",
            400,
            heading="This link does not work",
            error=str(exc).capitalize() + ".",
            message="It may have been cut short by your mail program, or it has expired.",
            link=f"{base}/subscribe",
            link_text="Subscribe again",
        )

    def subscriber(token: str, purpose: Purpose) -> Any:
        sid = signer.read(token, purpose)
        with database.connect() as conn:
            row = conn.execute(select(subscribers).where(subscribers.c.id == sid)).first()
        if row is None:
            raise TokenError("invalid link")
        return row

    def event(kind: str, sid: int | None, detail: str, request: Request) -> None:
        client = request.client.host if request.client else "?"
        with database.connect() as conn, conn.begin():
            audience.record_event(conn, kind, sid, f"{detail} ip={client}".strip())

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            row = subscriber(token, Purpose.SUBSCRIBER)
        except TokenError as exc:
            return bad_link(exc)
        if request.method == "GET":
            return html(
                "confirm_unsubscribe.html",
                heading="Unsubscribe",
                email=row.email,
                action=f"{base}/u/{token}",
                preferences=f"{base}/p/{token}",
            )
        try:
            await form(request)
        except BodyTooLarge:
            return Response("request body too large", status_code=413)
        already = row.status in ("unsubscribed", "bounced", "complained")
        if not already:
            with database.connect() as conn, conn.begin():
                stamp = now()
                conn.execute(
                    update(subscribers)
                    .where(subscribers.c.id == row.id)
                    .values(status="unsubscribed", unsubscribed_at=stamp, updated_at=stamp)
                )
        event("web.unsubscribe" if not already else "web.unsubscribe.repeat", row.id, "", request)
        return html(
            "message.html",
            heading="You are unsubscribed",
            message=f"{row.email} will not receive {name} any more.",
            link=f"{base}/p/{token}",
            link_text="Changed your mind? Subscribe again",
        )

    async def preferences(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            row = subscriber(token, Purpose.SUBSCRIBER)
        except TokenError as exc:
            return bad_link(exc)
        with database.connect() as conn:
            all_lists = [n for (n,) in conn.execute(select(lists.c.name).order_by(lists.c.name))]
            mine = audience.get(conn, row.email).lists
        context: dict[str, Any] = {
            "heading": "Your preferences",
            "email": row.email,
            "status": row.status,
            "countries": [*vocabulary.countries, vocabulary.regional],
            "topics": list(vocabulary.topics),
            "chosen": split(row.interests),
            "all_lists": all_lists,
            "lists": mine,
            "action": f"{base}/p/{token}",
            "unsubscribe": f"{base}/u/{token}",
        }
        if request.method == "GET":
            return html("preferences.html", **context)
        try:
            fields = await form(request)
        except BodyTooLarge:
            return Response("request body too large", status_code=413)
        try:
            interests = vocabulary.canonical(fields.get("interest", []))
        except UnknownInterestError as exc:
            return html("preferences.html", 400, error=str(exc), **context)
        chosen_lists = [n for n in fields.get("list", []) if n in all_lists]
        resubscribe = fields.get("resubscribe") == ["1"] and row.status == "unsubscribed"
        with database.connect() as conn, conn.begin():
            values: dict[str, Any] = {"interests": interests, "updated_at": now()}
            if resubscribe:
                values.update(status="active", unsubscribed_at=None)
            conn.execute(update(subscribers).where(subscribers.c.id == row.id).values(**values))
            if all_lists:
                ids = dict(conn.execute(select(lists.c.name, lists.c.id)).all())
                conn.execute(delete(memberships).where(memberships.c.subscriber_id == row.id))
                for list_name in chosen_lists:
                    conn.execute(
                        insert(memberships).values(
                            list_id=ids[list_name], subscriber_id=row.id, added_at=now()
                        )
                    )
        event(
            "web.preferences",
            row.id,
            f"interests={interests or '*'} lists={','.join(chosen_lists)}"
            + (" resubscribed" if resubscribe else ""),
            request,
        )
        context.update(
            chosen=split(interests),
            lists=chosen_lists,
            saved=True,
            status="active" if resubscribe else row.status,
        )
        return html("preferences.html", **context)

    async def subscribe(request: Request) -> Response:
        context: dict[str, Any] = {
            "heading": f"Subscribe to {name}",
            "email": "",
            "person": "",
            "countries": [*vocabulary.countries, vocabulary.regional],
            "topics": list(vocabulary.topics),
        }
        if request.method == "GET":
            return html("subscribe.html", **context)
        client = request.client.host if request.client else "?"
        if not limiter.allow(client):
            return html(
                "message.html",
                429,
                heading="Too many requests",
                message="Please wait a few minutes before trying again.",
            )
        try:
            fields = await form(request)
        except BodyTooLarge:
            return Response("request body too large", status_code=413)
        email_raw = (fields.get("email") or [""])[0]
        person = (fields.get("name") or [""])[0].strip()
        context.update(email=email_raw, person=person)
        try:
            email, key = normalise(email_raw)
            interests = vocabulary.canonical(fields.get("interest", []))
            if len(person) > 200 or "\r" in person or "\n" in person:
                raise NewsletterError("the name must be one line of at most 200 characters")
        except (AddressError, UnknownInterestError, NewsletterError) as exc:
            return html("subscribe.html", 400, error=str(exc), **context)
        task = None
        with database.connect() as conn, conn.begin():
            row = conn.execute(select(subscribers).where(subscribers.c.email_key == key)).first()
            if row is None:
                sub, _ = audience.add(
                    conn,
                    email,
                    subscribe_list,
                    vocabulary,
                    name=person,
                    interests=split(interests),
                    status="unconfirmed",
                )
                sid, status = sub.id, "unconfirmed"
            else:
                sid, status = row.id, row.status
                if status == "unconfirmed":  # not mailed yet: take the latest form's choices
                    conn.execute(
                        update(subscribers)
                        .where(subscribers.c.id == sid)
                        .values(interests=interests, name=person or row.name, updated_at=now())
                    )
        if status in ("unconfirmed", "unsubscribed"):
            token = signer.make(Purpose.CONFIRM, sid, ttl=CONFIRM_TTL)
            task = BackgroundTask(send_confirmation, email, person, f"{base}/confirm/{token}")
        event("web.subscribe", sid, f"status={status}", request)
        response = html(
            "message.html",
            heading="Check your inbox",
            message=f"If {email} can be subscribed, a message with a confirmation link is on its "
            "way. Nothing is sent before you click it.",
        )
        response.background = task
        return response

    async def send_confirmation(email: str, person: str, link: str) -> None:
        message = EmailMessage()
        message["From"] = f"{settings.sender.from_name} <{settings.sender.from_address}>"
        message["To"] = email
        message["Subject"] = f"Confirm your subscription to {name}"
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain=settings.sender.from_address.rpartition("@")[2])
        message.set_content(
            page(
                "confirmation_email.txt",
                name=name,
                email=email,
                person=person,
                link=link,
                hours=CONFIRM_TTL // 3600,
            )
        )
        data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        await transport.send(settings.sender.from_address, email, data)

    async def confirm(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            row = subscriber(token, Purpose.CONFIRM)
        except TokenError as exc:
            return bad_link(exc)
        if request.method == "GET":
            return html(
                "confirm_subscription.html",
                heading="Confirm your subscription",
                email=row.email,
                action=f"{base}/confirm/{token}",
            )
        if row.status in ("unconfirmed", "unsubscribed"):
            with database.connect() as conn, conn.begin():
                conn.execute(
                    update(subscribers)
                    .where(subscribers.c.id == row.id)
                    .values(status="active", unsubscribed_at=None, updated_at=now())
                )
        event("web.confirm", row.id, f"was={row.status}", request)
        return html(
            "message.html",
            heading="You are subscribed",
            message=f"{row.email} will receive {name} from the next issue on.",
        )

    def issues() -> list[dict[str, Any]]:
        out = []
        for day in reversed(built_issue_dates(settings.issues_dir)):
            manifest = json.loads(
                (settings.issues_dir / day.isoformat() / "issue.json").read_text("utf-8")
            )
            count = sum(len(s["articles"]) for s in manifest["sections"])
            heads = [s["articles"][0]["title"] for s in manifest["sections"] if s["articles"]]
            out.append(
                {
                    "date": day.isoformat(),
                    "title": manifest["title"],
                    "count": count,
                    "summary": " · ".join(heads),
                    "updated": f"{day.isoformat()}T00:00:00Z",
                }
            )
        return out

    async def archive(request: Request) -> Response:
        return html("archive.html", heading="Archive", issues=issues())

    async def archive_issue(request: Request) -> Response:
        day = request.path_params["day"]
        try:
            valid = datetime.strptime(day, "%Y-%m-%d").date().isoformat() == day
        except ValueError:
            valid = False
        path = settings.issues_dir / day / "index.html"
        if not valid or not path.is_file():
            return html(
                "message.html",
                404,
                heading="No such issue",
                message=f"There is no issue of {day}.",
                link=f"{base}/archive",
                link_text="All issues",
            )
        return HTMLResponse(path.read_text("utf-8"))

    async def feed(request: Request) -> Response:
        entries = issues()
        updated = entries[0]["updated"] if entries else "1970-01-01T00:00:00Z"
        body = page("feed.xml", name=name, base=base, issues=entries, updated=updated)
        return Response(body, media_type="application/atom+xml; charset=utf-8")

    async def home(request: Request) -> Response:
        return html(
            "message.html",
            message=settings.issue.tagline,
            link=f"{base}/subscribe",
            link_text="Subscribe",
        )

    routes = [
        Route("/", home),
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/p/{token}", preferences, methods=["GET", "POST"]),
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/confirm/{token}", confirm, methods=["GET", "POST"]),
        Route("/archive", archive),
        Route("/archive/feed.xml", feed),
        Route("/archive/{day}", archive_issue),
    ]
    return Starlette(routes=routes)
