"""The editor's plan for an issue: ``issues/D/plan.toml``, applied by every build.

``newsletter build`` makes the automatic selection; the plan holds what the editor changed, by
article URL, so a rebuild (new articles arriving, a template edited) never loses it::

    # issues/2026-11-16/plan.toml: the editor's changes to this issue (newsletter edit).
    intro = \"\"\"A short note from the editor, in Markdown.\"\"\"
    drop = ["https://example.org/a", ...]          # left out
    [country]                                       # moved to another section
    "https://example.org/b" = "Kazakhstan"
    [order]                                         # listed first in their section, in order
    Kazakhstan = ["https://example.org/c", "https://example.org/b"]

A change naming an article that is no longer in the issue's window is a build warning.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from newsletter.compose.sanitize import clean_html
from newsletter.compose.sources import render_markdown
from newsletter.core.models import Article, Issue
from newsletter.errors import EditError, SourceError

PLAN_FILE = "plan.toml"


@dataclass
class Plan:
    intro: str = ""
    drop: list[str] = field(default_factory=list)
    country: dict[str, str] = field(default_factory=dict)
    order: dict[str, list[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.intro or self.drop or self.country or self.order)


def load_plan(path: Path) -> Plan:
    """The plan at ``path`` (an empty one when there is none); raises SourceError naming the
    file and line when it cannot be read."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Plan()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read the plan: {exc}", source=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise SourceError(f"not valid TOML: {exc}", source=str(path), line=line) from None
    try:
        plan = Plan(
            intro=str(data.get("intro", "")),
            drop=[str(u) for u in data.get("drop", [])],
            country={str(k): str(v) for k, v in dict(data.get("country", {})).items()},
            order={str(k): [str(u) for u in v] for k, v in dict(data.get("order", {})).items()},
        )
    except (TypeError, ValueError) as exc:
        raise SourceError(f"unexpected plan content: {exc}", source=str(path)) from None
    unknown = set(data) - {"intro", "drop", "country", "order"}
    if unknown:
        raise SourceError(f"unknown key {sorted(unknown)[0]!r} in the plan", source=str(path))
    return plan


def save_plan(path: Path, plan: Plan) -> None:
    """Write the plan (atomically); an empty plan removes the file."""
    if plan.empty:
        path.unlink(missing_ok=True)
        return
    quote = json.dumps  # a JSON string is a valid TOML basic string
    lines = ["# The editor's changes to this issue (newsletter edit); every build applies them."]
    if plan.intro:
        lines.append(f"intro = {quote(plan.intro, ensure_ascii=False)}")
    if plan.drop:
        lines.append("drop = [" + ", ".join(quote(u) for u in plan.drop) + "]")
    if plan.country:
        lines.append("\n[country]")
        lines += [f"{quote(u)} = {quote(c, ensure_ascii=False)}" for u, c in plan.country.items()]
    if plan.order:
        lines.append("\n[order]")
        for country, urls in plan.order.items():
            lines.append(
                f"{quote(country, ensure_ascii=False)} = ["
                + ", ".join(quote(u) for u in urls)
                + "]"
            )
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def apply_plan(
    issue: Issue, plan: Plan, countries: list[str], group: object
) -> tuple[Issue, list[str]]:
    """The issue with the plan applied, and a warning for each change naming an article that
    is not in it. ``group`` regroups articles into sections (``select.group_sections``)."""
    warnings: list[str] = []
    present = {a.url for a in issue.articles}
    for url in [*plan.drop, *plan.country, *(u for urls in plan.order.values() for u in urls)]:
        if url not in present:
            warnings.append(f"plan: {url} is not in this issue's window any more; change ignored")
    articles: list[Article] = []
    for article in issue.articles:
        if article.url in plan.drop:
            continue
        country = plan.country.get(article.url)
        if country and country in countries:
            article = replace(article, country=country)
        elif country:
            warnings.append(f"plan: unknown country {country!r} for {article.url}; ignored")
        articles.append(article)
    sections = group(articles)  # type: ignore[operator]
    ordered = []
    for section in sections:
        first = [
            u for u in plan.order.get(section.country, []) if u in {a.url for a in section.articles}
        ]
        rank = {u: n for n, u in enumerate(first)}
        members = (
            sorted(section.articles, key=lambda a: (rank.get(a.url, len(rank)), 0))
            if first
            else list(section.articles)
        )
        ordered.append(replace(section, articles=tuple(members)))
    intro_html = clean_html(render_markdown(plan.intro), "") if plan.intro.strip() else ""
    return replace(issue, sections=ordered, intro_html=intro_html), warnings


def edit_plan(
    plan: Plan,
    verb: str,
    args: list[str],
    issue: Issue,
    countries: list[str],
    *,
    to: int | None = None,
    reader: Callable[[str], str] | None = None,
) -> Plan:
    """The plan with one edit made (``newsletter edit`` and the preview's desk). ARTICLE is its
    number in ``issue`` (1-based, in order), ``dN`` for the Nth dropped one, or its URL; raises
    EditError naming what is wrong."""
    articles = issue.articles

    def article(ref: str) -> str:
        if ref.isdigit() and 1 <= int(ref) <= len(articles):
            return articles[int(ref) - 1].url
        if ref.startswith("d") and ref[1:].isdigit() and 1 <= int(ref[1:]) <= len(plan.drop):
            return plan.drop[int(ref[1:]) - 1]
        if ref.startswith(("http://", "https://")):
            return ref
        raise EditError(f"no article {ref!r}: give its number from 'edit list' or its URL")

    def need(count: int, what: str) -> list[str]:
        if len(args) != count:
            raise EditError(f"edit {verb} needs {what}")
        return args

    if verb == "drop":
        url = article(need(1, "ARTICLE")[0])
        plan.drop = [*(u for u in plan.drop if u != url), url]
    elif verb == "restore":
        url = article(need(1, "ARTICLE (a URL or dN from 'list')")[0])
        if url not in plan.drop:
            raise EditError(f"{url} is not dropped")
        plan.drop.remove(url)
    elif verb == "move":
        url = article(need(1, "ARTICLE and --to N")[0])
        section = next((s for s in issue.sections if url in {a.url for a in s.articles}), None)
        if to is None or section is None:
            raise EditError("edit move needs an article of the issue and --to N (its new position)")
        urls = [a.url for a in section.articles if a.url != url]
        plan.order[section.country] = [*urls[: to - 1], url]
    elif verb == "country":
        ref, name = need(2, "ARTICLE and COUNTRY")
        known = {c.lower(): c for c in countries}
        if name.lower() not in known:
            raise EditError(f"unknown country {name!r} (one of: {', '.join(countries)})")
        plan.country[article(ref)] = known[name.lower()]
    elif verb == "intro":
        text = need(1, "FILE (Markdown) or - for standard input")[0]
        plan.intro = (reader(text) if reader else text).strip()
    elif verb == "reset":
        plan = Plan()
    else:
        raise EditError(f"unknown edit {verb!r}")
    return plan
