"""``newsletter edit D VERB``: the editor's changes to a built issue (``issues/D/plan.toml``).

Each change rebuilds the issue's files from its stored automatic selection and the plan
(no source is read again); ``newsletter build`` applies the same plan to a fresh selection.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import handles_errors, out, parse_day, state, warn
from newsletter.compose.plan import Plan
from newsletter.config import Settings
from newsletter.core.models import Issue
from newsletter.errors import AudienceError

VERBS = ("list", "drop", "restore", "move", "country", "intro", "reset")


def edit_command(
    ctx: typer.Context,
    day: Annotated[str, typer.Argument(help="The issue's date, YYYY-MM-DD.")],
    verb: Annotated[str, typer.Argument(help="list, drop, restore, move, country, intro, reset.")],
    args: Annotated[
        list[str] | None,
        typer.Argument(help="ARTICLE (its number from 'list', or its URL); COUNTRY; FILE or -."),
    ] = None,
    to: Annotated[int | None, typer.Option("--to", min=1, help="move: the new position.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Edit an issue already sent.")] = False,
) -> None:
    """Curate a built issue: drop, restore, reorder, move to another country, add an intro.

    Examples: newsletter edit 2026-11-16 list; newsletter edit 2026-11-16 drop 3;
    newsletter edit 2026-11-16 move 5 --to 1; newsletter edit 2026-11-16 country 4 Kazakhstan;
    newsletter edit 2026-11-16 intro note.md; newsletter edit 2026-11-16 reset
    """
    from newsletter.cli.build import unlock
    from newsletter.compose.issuefiles import load_issue, rebuild_from_selection, write_files
    from newsletter.compose.plan import PLAN_FILE, load_plan, save_plan

    settings = state(ctx).settings
    issue_day = parse_day(day, "DATE")
    assert issue_day is not None
    if verb not in VERBS:
        raise AudienceError(f"unknown edit {verb!r} (one of: {', '.join(VERBS)})")
    folder = settings.issues_dir / issue_day.isoformat()
    issue = load_issue(settings.issues_dir, issue_day)
    plan_path = folder / PLAN_FILE
    plan = load_plan(plan_path)
    if verb == "list":
        _list(issue, plan)
        return
    unlock(ctx, folder, issue_day.isoformat(), force)
    plan = _change(plan, verb, list(args or []), to, issue, settings, day)
    save_plan(plan_path, plan)
    result = rebuild_from_selection(settings.issue_config(), issue_day)
    write_files(folder, result.files)
    for message in result.issue.warnings:
        if message.startswith("plan:"):
            warn(message)
    out.print(
        f"{verb}: {issue_day} rebuilt, {len(result.issue.articles)} articles"
        + (f" (plan: {plan_path})" if plan_path.exists() else " (no plan)"),
        markup=False,
    )


def _list(issue: Issue, plan: Plan) -> None:
    number = 0
    for section in issue.sections:
        out.print(f"{section.country}:", markup=False)
        for item in section.articles:
            number += 1
            out.print(f"  {number:>3}. {item.title}  <{item.url}>", markup=False)
    for n, url in enumerate(plan.drop, start=1):
        out.print(f"  dropped d{n}: {url}", markup=False)
    if plan.intro:
        out.print(f"intro: {plan.intro.strip().splitlines()[0][:70]}…", markup=False)


def _change(
    plan: Plan,
    verb: str,
    rest: list[str],
    to: int | None,
    issue: Issue,
    settings: Settings,
    day: str,
) -> Plan:
    """The plan with one edit made; raises AudienceError for a bad ARTICLE or COUNTRY."""
    articles = issue.articles

    def article(ref: str) -> str:
        if ref.isdigit() and 1 <= int(ref) <= len(articles):
            return articles[int(ref) - 1].url
        if ref.startswith("d") and ref[1:].isdigit() and 1 <= int(ref[1:]) <= len(plan.drop):
            return plan.drop[int(ref[1:]) - 1]
        if ref.startswith(("http://", "https://")):
            return ref
        raise AudienceError(
            f"no article {ref!r}: give its number from 'edit {day} list' or its URL"
        )

    def need(count: int, what: str) -> list[str]:
        if len(rest) != count:
            raise AudienceError(f"edit {verb} needs {what}")
        return rest

    if verb == "drop":
        url = article(need(1, "ARTICLE")[0])
        plan.drop = [*(u for u in plan.drop if u != url), url]
    elif verb == "restore":
        url = article(need(1, "ARTICLE (a URL or dN from 'list')")[0])
        if url not in plan.drop:
            raise AudienceError(f"{url} is not dropped")
        plan.drop.remove(url)
    elif verb == "move":
        url = article(need(1, "ARTICLE and --to N")[0])
        if to is None:
            raise AudienceError("edit move needs --to N (the new position in its section)")
        section = next(s for s in issue.sections if url in {a.url for a in s.articles})
        urls = [a.url for a in section.articles if a.url != url]
        plan.order[section.country] = [*urls[: to - 1], url]
    elif verb == "country":
        ref, name = need(2, "ARTICLE and COUNTRY")
        url = article(ref)
        vocabulary = settings.vocabulary()
        known = {c.lower(): c for c in [*vocabulary.countries, vocabulary.regional]}
        if name.lower() not in known:
            raise AudienceError(f"unknown country {name!r} (one of: {', '.join(known.values())})")
        plan.country[url] = known[name.lower()]
    elif verb == "intro":
        source = need(1, "FILE (Markdown) or - for standard input")[0]
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        plan.intro = text.strip()
    elif verb == "reset":
        plan = Plan()
    return plan


def register(app: typer.Typer) -> None:
    app.command("edit")(handles_errors(edit_command))
