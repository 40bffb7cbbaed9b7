"""The pages behind a subscriber's own links: one-click unsubscribe, preferences, confirmation.

GET and HEAD only show a page (mail scanners follow links); only POST changes anything.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.audience import selfservice
from newsletter.audience.subscribers import Subscriber
from newsletter.core.interests import split
from newsletter.core.states import SubscriberStatus
from newsletter.core.tokens import Purpose, Token
from newsletter.errors import TokenError, UnknownInterestError
from newsletter.web.common import CONFIRM_TTL, client_detail, context, form, html


def bad_link(request: Request, exc: TokenError) -> HTMLResponse:
    return html(
        request,
        "message.html",
        400,
        heading="This link does not work",
        error=str(exc).capitalize() + ".",
        message="It may have been cut short by your mail program, or it has expired.",
        link=f"{context(request).site.base}/subscribe",
        link_text="Subscribe again",
    )


def holder(request: Request, purpose: Purpose) -> Subscriber:
    """The subscriber whose token is in the path; raises TokenError."""
    return holder_and_token(request, purpose)[0]


def holder_and_token(request: Request, purpose: Purpose) -> tuple[Subscriber, Token]:
    web = context(request)
    token = web.signer.read_token(request.path_params["token"], purpose)
    with web.database.connect() as conn:
        sub = selfservice.by_id(conn, token.subscriber_id)
    if sub is None:
        raise TokenError("invalid link")
    return sub, token


async def unsubscribe(request: Request) -> Response:
    web, token = context(request), request.path_params["token"]
    base, name = web.site.base, web.site.name
    try:
        sub = holder(request, Purpose.SUBSCRIBER)
    except TokenError as exc:
        return bad_link(request, exc)
    if request.method != "POST":
        return html(
            request,
            "confirm_unsubscribe.html",
            heading="Unsubscribe",
            email=sub.email,
            action=f"{base}/u/{token}",
            preferences=f"{base}/p/{token}",
        )
    await form(request)
    with web.database.connect() as conn, conn.begin():
        selfservice.unsubscribe(conn, sub, client_detail(request))
    return html(
        request,
        "message.html",
        heading="You are unsubscribed",
        message=f"{sub.email} will not receive {name} any more.",
        link=f"{base}/p/{token}",
        link_text="Changed your mind? Subscribe again",
    )


async def preferences(request: Request) -> Response:
    web, token = context(request), request.path_params["token"]
    try:
        sub = holder(request, Purpose.SUBSCRIBER)
    except TokenError as exc:
        return bad_link(request, exc)
    with web.database.connect() as conn:
        all_lists = selfservice.offered_lists(conn, sub, web.public_lists)
    vocabulary = web.vocabulary
    values: dict[str, Any] = {
        "heading": "Your preferences",
        "email": sub.email,
        "status": sub.status,
        "countries": [*vocabulary.countries, vocabulary.regional],
        "topics": list(vocabulary.topics),
        "chosen": split(sub.interests),
        "all_lists": all_lists,
        "lists": sub.lists,
        "action": f"{web.site.base}/p/{token}",
        "unsubscribe": f"{web.site.base}/u/{token}",
    }
    if request.method != "POST":
        return html(request, "preferences.html", **values)
    fields = await form(request)
    try:
        interests = vocabulary.canonical(fields.get("interest", []))
    except UnknownInterestError as exc:
        return html(request, "preferences.html", 400, error=str(exc), **values)
    chosen_lists = fields.get("list", [])
    if refused := [n for n in chosen_lists if n not in all_lists]:
        return html(
            request, "preferences.html", 400, error=f"no such list: {refused[0][:100]}", **values
        )
    with web.database.connect() as conn, conn.begin():
        again = selfservice.set_preferences(
            conn,
            sub,
            interests,
            chosen_lists,
            resubscribe=fields.get("resubscribe") == ["1"],
            detail=client_detail(request),
        )
    values.update(
        chosen=split(interests),
        lists=chosen_lists,
        saved=True,
        status=SubscriberStatus.ACTIVE if again else sub.status,
    )
    return html(request, "preferences.html", **values)


async def confirm(request: Request) -> Response:
    web, token = context(request), request.path_params["token"]
    try:
        sub, issued = holder_and_token(request, Purpose.CONFIRM)
        if selfservice.confirmation_outdated(sub, issued.expires - CONFIRM_TTL):
            raise TokenError("this link was sent before you unsubscribed; please sign up again")
    except TokenError as exc:
        return bad_link(request, exc)
    if request.method != "POST":
        return html(
            request,
            "confirm_subscription.html",
            heading="Confirm your subscription",
            email=sub.email,
            action=f"{web.site.base}/confirm/{token}",
        )
    with web.database.connect() as conn, conn.begin():
        selfservice.confirm(conn, sub, client_detail(request))
    return html(
        request,
        "message.html",
        heading="You are subscribed",
        message=f"{sub.email} will receive {web.site.name} from the next issue on.",
    )
