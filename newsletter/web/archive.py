"""The public archive: the web versions of past issues and an Atom feed (no personal data)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.compose.select import built_issue_dates
from newsletter.compose.sources import xml_safe
from newsletter.web.common import context, html
from newsletter.web.pages import page


def issues(issues_dir: Path) -> list[dict[str, Any]]:
    """The built issues, newest first, as the archive and the feed list them."""
    out = []
    for day in reversed(built_issue_dates(issues_dir)):
        manifest = json.loads((issues_dir / day.isoformat() / "issue.json").read_text("utf-8"))
        count = sum(len(s["articles"]) for s in manifest["sections"])
        heads = [s["articles"][0]["title"] for s in manifest["sections"] if s["articles"]]
        out.append(
            {
                "date": day.isoformat(),
                "title": xml_safe(manifest["title"]),
                "count": count,
                "summary": xml_safe(" · ".join(heads)),
                "updated": f"{day.isoformat()}T00:00:00Z",
            }
        )
    return out


async def home(request: Request) -> Response:
    site = context(request).site
    return html(
        request,
        "message.html",
        message=site.tagline,
        link=f"{site.base}/subscribe",
        link_text="Subscribe",
    )


async def archive(request: Request) -> Response:
    return html(
        request, "archive.html", heading="Archive", issues=issues(context(request).issues_dir)
    )


async def archive_issue(request: Request) -> Response:
    web = context(request)
    day = request.path_params["day"]
    try:
        valid = datetime.strptime(day, "%Y-%m-%d").date().isoformat() == day
    except ValueError:
        valid = False
    path = web.issues_dir / day / "index.html"
    if not valid or not path.is_file():
        return html(
            request,
            "message.html",
            404,
            heading="No such issue",
            message=f"There is no issue of {day}.",
            link=f"{web.site.base}/archive",
            link_text="All issues",
        )
    return HTMLResponse(path.read_text("utf-8"))


async def feed(request: Request) -> Response:
    web = context(request)
    entries = issues(web.issues_dir)
    updated = entries[0]["updated"] if entries else "1970-01-01T00:00:00Z"
    body = page("feed.xml", name=web.site.name, base=web.site.base, issues=entries, updated=updated)
    return Response(body, media_type="application/atom+xml; charset=utf-8")
