"""Sanitising article HTML from feeds and Markdown with nh3 (an allow-list HTML cleaner).

Only structural, email-safe markup survives: paragraphs, sub-headings, lists, emphasis, links,
images, quotes, simple tables. Scripts, event handlers, ``javascript:`` URLs, forms, iframes,
styles and remote CSS are removed. Relative links and images are made absolute against the
article's URL. Article headings are demoted so they sit below the article headline (``h3``).
"""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

import nh3

ALLOWED_TAGS = {
    "a",
    "b",
    "blockquote",
    "br",
    "caption",
    "code",
    "em",
    "figcaption",
    "figure",
    "h4",
    "h5",
    "hr",
    "i",
    "img",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "small",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "u",
    "ul",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height", "title"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start"},
}
DROPPED_WITH_CONTENT = {
    "script",
    "style",
    "iframe",
    "form",
    "object",
    "embed",
    "template",
    "noscript",
    "svg",
    "math",
    "select",
    "textarea",
    "button",
    "head",
    "title",
    "frameset",
    "frame",
    "applet",
}
URL_SCHEMES = {"http", "https", "mailto"}

_HEADING = re.compile(r"<(/?)h([1-6])\b", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_EMPTY_P = re.compile(r"<p>\s*</p>")


def _demote(match: re.Match[str]) -> str:
    level = int(match.group(2))
    return f"<{match.group(1)}h{4 if level <= 4 else 5}"


def clean_html(fragment: str, base_url: str) -> str:
    """Return a safe HTML fragment; URLs made absolute against ``base_url``."""

    def absolutise(tag: str, attribute: str, value: str) -> str | None:
        if attribute in ("href", "src"):
            value = value.strip()
            if not value or value.startswith("#"):
                return None
            return urljoin(base_url, value)
        if attribute in ("width", "height"):
            return value if value.isdigit() else None
        return value

    demoted = _HEADING.sub(_demote, fragment)
    cleaned = nh3.clean(
        demoted,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        attribute_filter=absolutise,
        clean_content_tags=DROPPED_WITH_CONTENT,
        link_rel=None,
        strip_comments=True,
    )
    return _EMPTY_P.sub("", str(cleaned)).strip()


def clean_text(value: str) -> str:
    """A one-line plain string from text that may hold tags or entities (titles, summaries)."""
    without_tags = _TAG.sub(
        " ", nh3.clean(value, tags=set(), clean_content_tags=DROPPED_WITH_CONTENT)
    )
    return " ".join(html.unescape(without_tags).split())


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` at a word boundary to at most ``limit`` characters, adding an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"
