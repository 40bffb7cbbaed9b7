"""``newsletter edit D VERB``: the editor's changes to a built issue (``issues/D/plan.toml``).

Each change rebuilds the issue's files from its stored automatic selection and the plan
(no source is read again); ``newsletter build`` applies the same plan to a fresh selection.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from newsletter.cli.common import handles_errors, out, parse_day, state, warn
from newsletter.core.models import Issue
from newsletter.errors import EditError

if TYPE_CHECKING:  # imported where used: every command loads this module
    from newsletter.compose.plan import Plan

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
    from newsletter.compose.plan import PLAN_FILE, edit_plan, load_plan, save_plan

    settings = state(ctx).settings
    issue_day = parse_day(day, "DATE")
    assert issue_day is not None
    if verb not in VERBS:
        raise EditError(f"unknown edit {verb!r} (one of: {', '.join(VERBS)})")
    folder = settings.issues_dir / issue_day.isoformat()
    issue = load_issue(settings.issues_dir, issue_day)
    plan_path = folder / PLAN_FILE
    plan = load_plan(plan_path)
    if verb == "list":
        _list(issue, plan)
        return
    unlock(ctx, folder, issue_day.isoformat(), force)
    vocabulary = settings.vocabulary()
    countries = [*vocabulary.countries, vocabulary.regional]
    plan = edit_plan(plan, verb, list(args or []), issue, countries, to=to, reader=_read_intro)
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


def register(app: typer.Typer) -> None:
    app.command("edit")(handles_errors(edit_command))


def _read_intro(source: str) -> str:
    return sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
