"""``/subscribe``: double opt-in. The answer is the same whether or not the address is known."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from newsletter.audience import outbox, selfservice
from newsletter.core.addresses import control_character, normalise
from newsletter.core.states import SendState, SubscriberStatus
from newsletter.core.tokens import Purpose
from newsletter.errors import AddressError, FormError, UnknownInterestError
from newsletter.web.common import CONFIRM_TTL, WebContext, client_detail, context, form, html
from newsletter.web.pages import page

log = logging.getLogger(__name__)


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
        mail = status in (
            SubscriberStatus.UNCONFIRMED,
            SubscriberStatus.UNSUBSCRIBED,
        ) and selfservice.claim_confirmation(conn, sid, web.confirmation_interval)
    response = html(
        request,
        "message.html",
        heading="Check your inbox",
        message=f"If {email} can be subscribed, a message with a confirmation link is on its "
        "way. Nothing is sent before you click it.",
    )
    if mail:  # else one went out within the interval: the page says the same
        response.background = BackgroundTask(confirm_by_mail, web, sid, email)
    return response


async def confirm_by_mail(web: WebContext, subscriber_id: int, email: str) -> None:
    """Send the confirmation mail; one that cannot go out is logged and kept to be retried
    (:func:`retry_confirmations`). The visitor's page is the same either way."""
    error = await _send_confirmation(web, subscriber_id, email)
    if error:
        log.warning(
            "confirmation mail to subscriber %d not sent (%s); kept, retried in %d s",
            subscriber_id,
            error,
            outbox.DELAYS[0],
        )
        with web.database.connect() as conn, conn.begin():
            outbox.keep(conn, subscriber_id, error)


async def retry_confirmations(web: WebContext) -> int:
    """One round over the kept confirmations that are due; returns how many went out."""
    with web.database.connect() as conn, conn.begin():
        pending = outbox.due(conn)
    sent = 0
    for item in pending:
        error = await _send_confirmation(web, item.subscriber_id, item.email)
        with web.database.connect() as conn, conn.begin():
            if not error:
                outbox.done(conn, item.id)
                sent += 1
                log.info("confirmation mail to subscriber %d sent on retry", item.subscriber_id)
            elif outbox.failed_again(conn, item, error):
                log.warning(
                    "confirmation mail to subscriber %d still not sent (%s)",
                    item.subscriber_id,
                    error,
                )
            else:
                log.error(
                    "confirmation mail to subscriber %d given up after %d attempts (%s)",
                    item.subscriber_id,
                    item.attempts + 1,
                    error,
                )
    return sent


async def _send_confirmation(web: WebContext, subscriber_id: int, email: str) -> str:
    """ "" when sent, else why not. A message that meets a connection the server had closed
    is tried once more at once, on a fresh connection."""
    site = web.site
    token = web.signer.make(Purpose.CONFIRM, subscriber_id, ttl=CONFIRM_TTL)
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
            link=f"{site.base}/confirm/{token}",
            hours=CONFIRM_TTL // 3600,
        )
    )
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    reason = ""
    for _ in range(2):
        try:
            delivery = await web.transport.send(site.from_address, email, data)
        except Exception as exc:  # a refused login, a bug: kept and retried all the same
            return f"{type(exc).__name__}: {exc}"[:500]
        if delivery.state == SendState.SENT:
            return ""
        reason = delivery.reply or delivery.state
        if not (delivery.connection_error or not delivery.tried):
            break
    return reason
