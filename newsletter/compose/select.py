"""Compose an issue: read the sources, pick the latest articles, classify and group them.

The result is an :class:`~newsletter.models.Issue` (no rendering here, see ``render``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from newsletter.compose import rates as rates_mod
from newsletter.compose.classify import CountryClassifier, normalise_topics
from newsletter.compose.options import IssueConfig
from newsletter.compose.plan import PLAN_FILE, apply_plan, load_plan
from newsletter.compose.sanitize import clean_html, clean_text, truncate
from newsletter.compose.sources import (
    RawItem,
    SourceResult,
    fetch_bytes,
    is_url,
    load_feed,
    load_markdown_folder,
)
from newsletter.core.models import Article, Issue, RatesHeader, Section, Window, date_text
from newsletter.errors import NoArticlesError, RatesError, SourceError

_ISSUE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FIRST_P = re.compile(r"<p>(.*?)</p>", re.DOTALL)


@dataclass
class ComposeOptions:
    day: date
    since: date | None = None
    sources: Sequence[str] | None = None  # replaces the configured feeds and folders
    rates: str | None = None  # replaces the configured rates source


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def built_issue_dates(issues_dir: Path) -> list[date]:
    """Dates of the issues already built in ``issues_dir`` (folders holding an issue.json)."""
    if not issues_dir.is_dir():
        return []
    found = []
    for child in issues_dir.iterdir():
        if _ISSUE_DIR.match(child.name) and (child / "issue.json").is_file():
            try:
                found.append(date.fromisoformat(child.name))
            except ValueError:
                continue
    return sorted(found)


def compute_window(config: IssueConfig, day: date, since: date | None) -> Window:
    """From the previous issue's end (or ``window_days`` back) to the end of ``day``."""
    tz = config.tz
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    if since is not None:
        if since > day:
            raise NoArticlesError(f"--since {since} is after the issue date {day}")
        return Window(datetime.combine(since, time(0), tzinfo=tz), end)
    earlier = [d for d in built_issue_dates(config.issues_dir) if d < day]
    if earlier:
        previous = earlier[-1]
        start = datetime.combine(previous + timedelta(days=1), time(0), tzinfo=tz)
        manifest = config.issues_dir / previous.isoformat() / "issue.json"
        try:
            stored = json.loads(manifest.read_text(encoding="utf-8"))["window"]["end"]
            start = datetime.fromisoformat(stored).astimezone(tz)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an older or hand-made manifest: the day after the previous issue
        return Window(start, end)
    return Window(end - timedelta(days=config.window_days), end)


def _load(location: str, config: IssueConfig, markdown: bool) -> SourceResult:
    if markdown:
        return load_markdown_folder(location, tz=config.tz)
    return load_feed(location, limits=config.fetch)


def resolve_sources(config: IssueConfig, override: Sequence[str] | None) -> list[tuple[str, bool]]:
    """(location, is_markdown_folder) for every source of this run."""
    if override:  # given on the command line: relative to the current directory
        out = []
        for raw in override:
            if is_url(raw):
                out.append((raw, False))
            else:
                path = Path(raw).resolve()
                out.append((str(path), path.is_dir()))
        return out
    feeds = [(f, False) for f in config.feeds]
    folders = [(m, True) for m in config.markdown]
    return feeds + folders


def read_sources(
    config: IssueConfig, sources: list[tuple[str, bool]]
) -> tuple[list[RawItem], list[str]]:
    """Read every source (URLs in parallel); a failed source becomes a warning."""
    warnings: list[str] = []
    items: list[RawItem] = []

    def run(entry: tuple[str, bool]) -> SourceResult | SourceError:
        try:
            return _load(entry[0], config, entry[1])
        except SourceError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(sources)))) as pool:
        for result in pool.map(run, sources):
            if isinstance(result, SourceError):
                warnings.append(f"source skipped: {result}")
                continue
            items.extend(result.items)
            warnings.extend(result.warnings)
    return items, warnings


def _url_key(url: str) -> str:
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def make_article(
    item: RawItem, config: IssueConfig, classifier: CountryClassifier
) -> tuple[Article, list[str]]:
    """Sanitise, summarise and classify one raw item."""
    warnings: list[str] = []
    title = clean_text(item.title)
    body = clean_html(item.content_html, item.url)
    text = clean_text(body)
    if item.summary_html:
        summary = clean_text(item.summary_html)
    else:
        first = _FIRST_P.search(body)
        summary = clean_text(first.group(1)) if first else text
    summary = truncate(summary, config.summary_chars)
    labels = list(item.categories)
    if item.country:
        labels.append(item.country)
        if classifier.explicit([item.country]) is None:
            warnings.append(
                f"{item.origin}: unknown country {item.country!r} (known: "
                f"{', '.join(config.all_countries)}); inferred from the text instead"
            )
    verdict = classifier.classify(title, text, labels)
    country_words = {c.lower() for c in config.all_countries} | {"central asia", "region"}
    topic_labels = [c for c in item.categories if c.strip().lower() not in country_words]
    topics, _unknown_categories = normalise_topics(
        topic_labels, config.topics, config.topic_aliases
    )
    fm_topics, unknown = normalise_topics(item.topics, config.topics, config.topic_aliases)
    if unknown:
        warnings.append(
            f"{item.origin}: unknown topic {unknown[0]!r} ignored (vocabulary: "
            f"{', '.join(config.topics)})"
        )
    merged = tuple(t for t in config.topics if t in set(topics) | set(fm_topics))
    article = Article(
        title=title,
        url=item.url,
        published=item.published.astimezone(config.tz),
        body_html=body,
        summary=summary,
        country=verdict.country,
        topics=merged,
        source=item.origin,
        guid=item.guid,
        image=item.image,
        image_alt=item.image_alt,
    )
    return article, warnings


def select_articles(
    items: list[RawItem], config: IssueConfig, window: Window
) -> tuple[list[Article], list[str]]:
    """Articles inside the window, de-duplicated by URL and guid, classified."""
    classifier = CountryClassifier(config.countries, config.regional)
    seen: set[str] = set()
    articles: list[Article] = []
    warnings: list[str] = []
    for item in items:
        if not (window.start <= item.published < window.end):
            continue
        keys = {_url_key(item.url)} | ({f"guid:{item.guid}"} if item.guid else set())
        if keys & seen:
            continue
        seen |= keys
        article, notes = make_article(item, config, classifier)
        articles.append(article)
        warnings.extend(notes)
    return articles, warnings


def group_sections(articles: list[Article], config: IssueConfig) -> list[Section]:
    """One section per country in configured order, Regional last; newest first inside."""
    sections = []
    for country in config.all_countries:
        members = [a for a in articles if a.country == country]
        members.sort(key=lambda a: (-a.published.timestamp(), a.title, a.url))
        if members:
            sections.append(Section(country, slugify(country), tuple(members)))
    return sections


def compose_rates(
    config: IssueConfig, day: date, override: str | None
) -> tuple[RatesHeader, list[str]]:
    base, currencies = config.rates_base, config.rates_currencies
    location = override or config.rates_source
    if not location:
        return rates_mod.unavailable(base, currencies), ["rates: no rates source configured"]
    if not is_url(location):
        location = str(Path(location).resolve()) if override else location
    try:
        fetched = rates_mod.parse_rates(fetch_bytes(location, config.fetch), location)
        history = rates_mod.merge_history(config.rates_history, fetched)
    except (RatesError, SourceError) as exc:
        return rates_mod.unavailable(base, currencies), [f"rates unavailable: {exc}"]
    return rates_mod.build_header(history, base, currencies, day)


def compose_issue(config: IssueConfig, options: ComposeOptions) -> Issue:
    """Everything an issue holds, ready to render. Raises NoArticlesError when empty."""
    window = compute_window(config, options.day, options.since)
    sources = resolve_sources(config, options.sources)
    if not sources:
        raise NoArticlesError(
            "no article sources: set sources.feeds / sources.markdown or pass --source"
        )
    items, warnings = read_sources(config, sources)
    articles, notes = select_articles(items, config, window)
    warnings.extend(notes)
    if not articles:
        raise NoArticlesError(
            f"no articles published between {window.start:%Y-%m-%d %H:%M} and "
            f"{window.end:%Y-%m-%d %H:%M} ({config.timezone}) in "
            f"{len(sources)} source(s)"
            + (f"; {len(warnings)} warning(s): {warnings[0]}" if warnings else "")
        )
    header, rate_warnings = compose_rates(config, options.day, options.rates)
    warnings.extend(rate_warnings)
    return Issue(
        day=options.day,
        title=f"{config.title} — {date_text(options.day)}",
        date_text=date_text(options.day),
        window=window,
        rates=header,
        sections=group_sections(articles, config),
        warnings=warnings,
    )


def with_plan(config: IssueConfig, selection: Issue) -> Issue:
    """The automatic selection with the editor's plan (``issues/D/plan.toml``) applied."""
    plan = load_plan(config.issues_dir / selection.day.isoformat() / PLAN_FILE)
    if plan.empty:
        return selection
    issue, plan_warnings = apply_plan(
        selection, plan, config.all_countries, lambda arts: group_sections(arts, config)
    )
    issue.warnings = [*selection.warnings, *plan_warnings]
    return issue
