"""The editor's desk in the preview: the same edits as ``newsletter edit`` from buttons.

``POST /__edit`` (form: ``verb``, ``article`` URL, ``to``, ``country``, ``intro``) changes the
issue's plan, rewrites the issue's files from its selection (as ``edit`` does) and answers
303 to the preview page, which shows the result. Only from the preview's own pages: the Host
must be an address or localhost (see ``guard.local_host_header``) and the ``Origin`` this
preview's, so a web page elsewhere cannot make the editor's browser edit the issue. An issue
that subscribers already received is refused, as on the command line.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from newsletter.compose.issuefiles import load_issue, rebuild_from_selection, write_files
from newsletter.compose.plan import PLAN_FILE, Plan, edit_plan, load_plan, save_plan
from newsletter.config import Settings
from newsletter.delivery import sendlog
from newsletter.errors import NewsletterError
from newsletter.storage.db import Database
from newsletter.web.common import read_body
from newsletter.web.guard import local_host_header

DESK_VERBS = ("drop", "restore", "move", "country", "intro", "reset")


def desk_view(settings: Settings, day: date) -> dict[str, Any] | None:
    """What the desk panel shows: the articles as built (numbered), the dropped ones, the
    intro and the countries; None before the issue is built."""
    try:
        issue = load_issue(settings.issues_dir, day)
    except NewsletterError:
        return None
    plan = load_plan(settings.issues_dir / day.isoformat() / PLAN_FILE)
    vocabulary = settings.vocabulary()
    return {
        "sections": [
            {
                "country": s.country,
                "articles": [{"title": a.title, "url": a.url} for a in s.articles],
            }
            for s in issue.sections
        ],
        "dropped": plan.drop,
        "intro": plan.intro,
        "countries": [*vocabulary.countries, vocabulary.regional],
    }


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return False  # a browser names the page a form comes from; anything else is refused
    parts = urlsplit(origin)
    return parts.netloc.lower() == request.headers.get("host", "").lower() and local_host_header(
        parts.netloc
    )


async def edit(request: Request, settings: Settings, day: date) -> Response:
    if not local_host_header(request.headers.get("host", "")) or not _same_origin(request):
        return PlainTextResponse("edits come from this preview's own page only\n", status_code=403)
    from urllib.parse import parse_qs

    fields = {k: v[0] for k, v in parse_qs((await read_body(request, 64 * 1024)).decode()).items()}
    verb = fields.get("verb", "")
    if verb not in DESK_VERBS:
        return PlainTextResponse(f"unknown edit {verb[:40]!r}\n", status_code=400)
    try:
        _apply(settings, day, verb, fields)
    except NewsletterError as exc:
        return PlainTextResponse(f"{exc}\n", status_code=409)
    return RedirectResponse("/", status_code=303)


def _apply(settings: Settings, day: date, verb: str, fields: dict[str, str]) -> None:
    folder: Path = settings.issues_dir / day.isoformat()
    database = Database(settings.database_url)
    try:
        with database.connect() as conn:
            sent = sendlog.counts(conn, day.isoformat()).get("sent", 0)
    finally:
        database.dispose()
    if sent:
        raise NewsletterError(
            f"the issue of {day} was sent to {sent} subscriber(s): it is locked "
            "('newsletter edit ... --force' on the command line)"
        )
    issue = load_issue(settings.issues_dir, day)
    plan: Plan = load_plan(folder / PLAN_FILE)
    vocabulary = settings.vocabulary()
    args = {
        "drop": [fields.get("article", "")],
        "restore": [fields.get("article", "")],
        "move": [fields.get("article", "")],
        "country": [fields.get("article", ""), fields.get("country", "")],
        "intro": [fields.get("intro", "")],
        "reset": [],
    }[verb]
    to = int(fields["to"]) if fields.get("to", "").isdigit() and int(fields["to"]) > 0 else None
    countries = [*vocabulary.countries, vocabulary.regional]
    plan = edit_plan(plan, verb, args, issue, countries, to=to)
    save_plan(folder / PLAN_FILE, plan)
    write_files(folder, rebuild_from_selection(settings.issue_config(), day).files)
