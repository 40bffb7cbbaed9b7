"""CSS inlining with premailer, once per issue however many editions.

:func:`inline_css` runs premailer over one document. An issue sent to readers with different
interests has many editions (variants), each a subset of the issue's articles in the same
template; premailer over each cost ~25 ms of a send's start a variant (the whole render ~35).

:class:`Inliner` learns premailer's work on the full issue once and replays it on each edition.
premailer's effect on an element (its ``style`` and the attributes derived from it) depends only
on the element and its ancestors, their tags and attributes, as long as no inlined selector
looks at siblings (``+``, ``~``, ``:first-child``, ``:nth-child``...). So the full issue is parsed,
each element keyed by (its parent's key, tag, attributes; the text of a ``<style>``), premailer
run over it, and the attributes each key ended with kept. An edition is parsed the same way and
each element given its key's attributes, then serialised as premailer serialises. An element
the full issue did not have, or a template whose CSS looks at siblings, falls back to premailer
for that edition: either way the output is premailer's, byte for byte (``tests/test_inline.py``
checks every variant of the sample).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import cssutils
from lxml import etree
from premailer import Premailer

# Six-digit colours survive Outlook.com; premailer would otherwise shorten #ffffff to #fff.
cssutils.ser.prefs.minimizeColorHash = False
cssutils.log.setLevel(logging.CRITICAL)

_BLANK_LINES = re.compile(r"\n\s*\n+")
_LEADING_SPACE = re.compile(r"^[ \t]+", re.MULTILINE)
_SIBLING_SELECTORS = re.compile(r"[+~:]")

_OPTIONS: dict[str, Any] = {
    "allow_network": False,
    "strip_important": False,
    "keep_style_tags": False,
    "remove_classes": False,
    "disable_validation": True,
    "cssutils_logging_level": logging.CRITICAL,
    "exclude_pseudoclasses": True,
}

Key = tuple[int, Any, tuple[tuple[str, str], ...], str | None]
After = tuple[tuple[tuple[str, str], ...], str | None, bool]  # attributes, style text, removed


def inline_css(html: str) -> str:
    """Inline the ``<style>`` rules with premailer, keep ``@media`` rules, no network access."""
    return minify(str(Premailer(html, **_OPTIONS).transform()))


def minify(html: str) -> str:
    """Drop indentation and blank lines (not inside ``<pre>``, which is left alone)."""
    if "<pre" in html:
        return html
    return _BLANK_LINES.sub("\n", _LEADING_SPACE.sub("", html)).strip() + "\n"


def _parse(html: str) -> tuple[Any, Any]:
    """(what to serialise, the root element), exactly as premailer parses a string."""
    stripped = html.strip()
    tree = etree.fromstring(stripped, etree.HTMLParser()).getroottree()
    page = tree.getroot()
    return (tree if stripped.startswith(tree.docinfo.doctype) else page), page


def _serialise(root: Any) -> str:
    return minify(etree.tostring(root, method="html", pretty_print=True, encoding="utf-8").decode())


def _key(element: Any, parent: int) -> Key:
    text = element.text if element.tag == "style" else None
    return (parent, element.tag, tuple(element.attrib.items()), text)


def _walk(page: Any, ids: dict[Key, int], learn: bool) -> list[tuple[Any, int]] | None:
    """Every element with its key's id (new ids made when learning); None when an element's key
    is unknown. Iterative: a feed's deeply nested markup must not exhaust the stack."""
    out: list[tuple[Any, int]] = []
    stack = [(page, -1)]
    while stack:
        element, parent = stack.pop()
        key = _key(element, parent)
        kid = ids.setdefault(key, len(ids)) if learn else ids.get(key)
        if kid is None:
            return None
        out.append((element, kid))
        stack.extend((child, kid) for child in element if isinstance(child.tag, str))
    return out


def _replayable(page: Any) -> bool:
    """A head to keep the left-over CSS in, and no inlined selector that looks at siblings."""
    if page is None or page.find("head") is None:
        return False
    parser = Premailer(**_OPTIONS)
    for index, style in enumerate(page.iter("style")):
        rules, _ = parser._parse_style_rules(style.text or "", index)
        if any(_SIBLING_SELECTORS.search(selector) for _, selector, _ in rules):
            return False
    return True


class Inliner:
    """premailer's work on one issue, learned once (:meth:`learn`), replayed on its editions."""

    def __init__(self, ids: dict[Key, int], after: dict[int, After]) -> None:
        self._ids, self._after = ids, after

    @classmethod
    def learn(cls, html: str) -> tuple[Inliner | None, str]:
        """premailer over ``html`` (the full issue): (the inliner, or None where replaying
        could differ from premailer; ``html`` inlined)."""
        root, page = _parse(html)
        if not _replayable(page):
            return None, inline_css(html)
        ids: dict[Key, int] = {}
        elements = _walk(page, ids, learn=True) or []
        Premailer(**_OPTIONS).transform(page)
        after: dict[int, After] = {}
        for element, kid in elements:
            removed = element is not page and element.getparent() is None
            text = element.text if element.tag == "style" else None
            state = (tuple(element.attrib.items()), text, removed)
            if after.setdefault(kid, state) != state:  # same key, different result: not local
                return None, _serialise(root)
        return cls(ids, after), _serialise(root)

    def apply(self, html: str) -> str | None:
        """``html`` (an edition of the learned issue) as premailer would inline it; None when
        it has an element the issue did not (the caller runs premailer: :func:`inline_css`)."""
        root, page = _parse(html)
        elements = _walk(page, self._ids, learn=False) if page is not None else None
        if elements is None:
            return None
        for element, kid in elements:
            attributes, text, removed = self._after[kid]
            if removed:
                element.getparent().remove(element)
                continue
            if text is not None:
                element.text = text
            if tuple(element.attrib.items()) != attributes:
                element.attrib.clear()
                for name, value in attributes:
                    element.set(name, value)
        return _serialise(root)
