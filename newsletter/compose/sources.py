"""Article sources: RSS 2.0 / Atom feeds (file or http(s) URL) and folders of Markdown files.

A source yields :class:`RawItem` objects: still unsanitised and unclassified (see ``compose``).
A source that cannot be read raises :class:`SourceError`; a single bad item or file inside a
source that otherwise reads is reported as a warning and skipped.
"""

from __future__ import annotations

import calendar
import re
import xml.sax
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import feedparser
import yaml
from markdown_it import MarkdownIt

from newsletter.compose.fetch import FetchLimits, fetch_url
from newsletter.core.redact import mask_url
from newsletter.errors import SourceError

FETCH_DEFAULTS = FetchLimits()


@dataclass
class RawItem:
    title: str
    url: str
    published: datetime
    content_html: str
    summary_html: str
    origin: str
    guid: str = ""
    categories: list[str] = field(default_factory=list)
    country: str | None = None
    topics: list[str] = field(default_factory=list)
    image: str | None = None
    image_alt: str = ""


@dataclass
class SourceResult:
    items: list[RawItem]
    warnings: list[str]


def is_url(location: str) -> bool:
    return bool(re.match(r"^https?://", location, re.IGNORECASE))


def fetch_bytes(location: str, limits: FetchLimits) -> bytes:
    """Read a file path or an http(s) URL (within ``limits``: see ``fetch.py``); raise
    :class:`SourceError` naming it on failure."""
    if is_url(location):
        return fetch_url(location, limits)
    try:
        return Path(location).read_bytes()
    except IsADirectoryError:
        raise SourceError("is a folder, not a feed file", source=location) from None
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror}", source=location) from None


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids (most C0 controls, lone surrogates,
    U+FFFE/FFFF): a title holding one would make the archive feed unreadable."""
    return _NOT_XML.sub("", text)


def image_url(base: str, value: str, label: str, warnings: list[str]) -> str | None:
    """An image URL made absolute; anything but http(s) is dropped with a warning."""
    url = urljoin(base, value.strip())
    if is_url(url):
        return url
    scheme = url.partition(":")[0][:20] if ":" in url else "relative"
    warnings.append(f"{label}: image URL with scheme {scheme!r} dropped (http and https only)")
    return None


def _entry_datetime(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = dict.get(entry, key)  # plain lookup: FeedParserDict aliases these with a warning
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    return None


def load_feed(location: str, *, limits: FetchLimits = FETCH_DEFAULTS) -> SourceResult:
    """Parse an RSS 2.0 or Atom feed with feedparser. A feed that is not well-formed XML (an
    HTML entity such as ``&eacute;``, a stray ``&``) is read by feedparser's lenient parser,
    with a warning, when that finds items; only a feed where it finds none is an error."""
    data = fetch_bytes(location, limits)
    shown = mask_url(location)
    parsed = feedparser.parse(data, sanitize_html=False, resolve_relative_uris=False)
    exc = parsed.get("bozo_exception")
    warnings: list[str] = []
    if parsed.get("bozo") and isinstance(exc, xml.sax.SAXParseException):
        if not parsed.entries:
            raise SourceError(
                f"malformed XML: {exc.getMessage()}", source=shown, line=exc.getLineNumber()
            )
        warnings.append(
            f"{shown}:{exc.getLineNumber()}: not well-formed XML ({exc.getMessage()}); "
            f"read leniently, {len(parsed.entries)} item(s) found"
        )
    if not parsed.get("version") and not parsed.entries:
        raise SourceError("not an RSS or Atom feed", source=shown)
    base = parsed.feed.get("link") or (location if is_url(location) else "")
    items: list[RawItem] = []
    for number, entry in enumerate(parsed.entries, start=1):
        title = xml_safe(" ".join(str(entry.get("title", "")).split()))
        label = f"{shown}: item {number}" + (f" ({title!r})" if title else "")
        link = str(entry.get("link", "")).strip()
        if base and link:
            link = urljoin(base, link)
        if not title:
            warnings.append(f"{label}: no title; skipped")
            continue
        if not is_url(link):
            warnings.append(f"{label}: no absolute http(s) link; skipped")
            continue
        published = _entry_datetime(entry)
        if published is None:
            warnings.append(f"{label}: no publication date; skipped")
            continue
        contents = entry.get("content") or []
        summary = str(entry.get("summary", ""))
        content = str(contents[0].get("value", "")) if contents else summary
        categories = [str(t.get("term", "")).strip() for t in entry.get("tags", []) or []]
        image = None
        for enclosure in entry.get("enclosures", []) or []:
            if str(enclosure.get("type", "")).startswith("image/") and enclosure.get("href"):
                image = image_url(link, str(enclosure["href"]), label, warnings)
                break
        items.append(
            RawItem(
                title=title,
                url=link,
                published=published,
                content_html=content,
                summary_html=summary if contents else "",
                origin=shown,
                guid=str(entry.get("id", "")),
                categories=[c for c in categories if c],
                image=image,
                image_alt=title if image else "",
            )
        )
    return SourceResult(items, warnings)


_markdown = MarkdownIt("commonmark", {"html": True, "typographer": True}).enable(
    ["replacements", "smartquotes"]
)


def render_markdown(text: str) -> str:
    return str(_markdown.render(text))


def _as_datetime(value: Any, tz: tzinfo) -> datetime:
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime.combine(value, time(0, 0))
    elif isinstance(value, str):
        try:
            result = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"'date' is not an ISO date or datetime: {value!r}") from None
    else:
        raise ValueError(f"'date' must be a date, not {type(value).__name__}")
    return result if result.tzinfo else result.replace(tzinfo=tz)


def _str_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in re.split(r"[,;|]", value) if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise ValueError(f"{key!r} must be a list of strings")


def parse_markdown_file(path: Path, *, tz: tzinfo, warnings: list[str] | None = None) -> RawItem:
    """Read one Markdown file with YAML front matter; raise SourceError naming file and line.
    Lesser problems (an image URL that is not http(s)) go to ``warnings``."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"not UTF-8 (byte {exc.start})", source=source) from None
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror}", source=source) from None
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise SourceError("no front matter (the first line must be '---')", source=source, line=1)
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() in ("---", "..."))
    except StopIteration:
        raise SourceError("front matter is not closed by a '---' line", source=source) from None
    try:
        meta = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else None
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SourceError(f"bad front matter: {problem}", source=source, line=line) from None
    if not isinstance(meta, dict):
        raise SourceError("front matter must be a mapping of keys", source=source, line=2)
    try:
        for key in ("title", "date", "url"):
            if not meta.get(key):
                raise ValueError(f"front matter has no {key!r}")
        url = str(meta["url"]).strip()
        if not is_url(url):
            raise ValueError(f"'url' must be an absolute http(s) URL, not {url!r}")
        published = _as_datetime(meta["date"], tz)
        topics = _str_list(meta.get("topics"), "topics")
        country = meta.get("country")
        if country is not None and not isinstance(country, str):
            raise ValueError("'country' must be a string")
        image = meta.get("image")
        unknown = set(meta) - {
            "title",
            "date",
            "url",
            "country",
            "topics",
            "summary",
            "image",
            "image_alt",
            "guid",
        }
        if unknown:
            raise ValueError(f"unknown front-matter key {sorted(unknown)[0]!r}")
    except ValueError as exc:
        raise SourceError(str(exc), source=source) from None
    body = "\n".join(lines[end + 1 :])
    summary = meta.get("summary")
    notes = warnings if warnings is not None else []
    return RawItem(
        title=xml_safe(" ".join(str(meta["title"]).split())),
        url=url,
        published=published,
        content_html=render_markdown(body),
        summary_html=render_markdown(str(summary)) if summary else "",
        origin=source,
        guid=str(meta.get("guid", "")),
        country=country.strip() if country else None,
        topics=topics,
        image=image_url(url, str(image), source, notes) if image else None,
        image_alt=str(meta.get("image_alt", "")),
    )


def load_markdown_folder(location: str, *, tz: tzinfo) -> SourceResult:
    folder = Path(location)
    if not folder.is_dir():
        raise SourceError("Markdown folder not found", source=location)
    items: list[RawItem] = []
    warnings: list[str] = []
    for path in sorted(folder.glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        try:
            items.append(parse_markdown_file(path, tz=tz, warnings=warnings))
        except SourceError as exc:
            warnings.append(f"{exc}; file skipped")
    return SourceResult(items, warnings)
