"""``/subscribe``: double opt-in. The answer is the same whether or not the address is known."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from newsletter.audience import selfservice
from newsletter.core.addresses import control_character, normalise
from newsletter.core.states import SubscriberStatus
from newsletter.core.tokens import Purpose
from newsletter.errors import AddressError, FormError, UnknownInterestError
from newsletter.web.common import CONFIRM_TTL, WebContext, client_detail, context, form, html
from newsletter.web.pages import page


async def subscribe(request: Request) -> Response:
    web = context(request)
    vocabulary = web.vocabulary
    values: dict[str, Any] = {
        "heading": f"Subscribe to {web.site.name}",
        "email": "",
        "person": "",
        "countries": [*vocabulary.countries, vocabulary.regional],
        "topics": list(vocabulary.topics),
    }
    if request.method != "POST":
        return html(request, "subscribe.html", **values)
    client = request.client.host if request.client else "?"
    if not web.limiter.allow(client):
        return html(
            request,
            "message.html",
            429,
            heading="Too many requests",
            message="Please wait a few minutes before trying again.",
        )
    fields = await form(request)
    email_raw = (fields.get("email") or [""])[0]
    person = (fields.get("name") or [""])[0].strip()
    values.update(email=email_raw, person=person)
    try:
        email, _ = normalise(email_raw)
        interests = vocabulary.canonical(fields.get("interest", []))
        if len(person) > 200 or "\r" in person or "\n" in person:
            raise FormError("the name must be one line of at most 200 characters", field="name")
        if char := control_character(person):
            raise FormError(f"the name contains a control character ({char})", field="name")
    except (AddressError, UnknownInterestError, FormError) as exc:
        return html(request, "subscribe.html", 400, error=str(exc), **values)
    with web.database.connect() as conn, conn.begin():
        sid, status = selfservice.sign_up(
            conn,
            email,
            web.site.subscribe_list,
            vocabulary,
            name=person,
            interests=interests,
            detail=client_detail(request),
        )
    response = html(
        request,
        "message.html",
        heading="Check your inbox",
        message=f"If {email} can be subscribed, a message with a confirmation link is on its "
        "way. Nothing is sent before you click it.",
    )
    if status in (SubscriberStatus.UNCONFIRMED, SubscriberStatus.UNSUBSCRIBED):
        token = web.signer.make(Purpose.CONFIRM, sid, ttl=CONFIRM_TTL)
        link = f"{web.site.base}/confirm/{token}"
        response.background = BackgroundTask(send_confirmation, web, email, person, link)
    return response


async def send_confirmation(web: WebContext, email: str, person: str, link: str) -> None:
    site = web.site
    message = EmailMessage()
    message["From"] = f"{site.from_name} <{site.from_address}>"
    message["To"] = email
    message["Subject"] = f"Confirm your subscription to {site.name}"
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=site.from_address.rpartition("@")[2])
    message.set_content(
        page(
            "confirmation_email.txt",
            name=site.name,
            email=email,
            person=person,
            link=link,
            hours=CONFIRM_TTL // 3600,
        )
    )
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    await web.transport.send(site.from_address, email, data)
