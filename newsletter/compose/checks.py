"""Build checks: what makes an email clip, break or render badly in the major clients.

Each check returns problems as one-line strings. ``build`` prints them as warnings, or with
``--strict`` refuses to write the issue.
"""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser

from newsletter.compose.render import PLACEHOLDERS

# CSS that Gmail, Outlook (Windows) or Yahoo ignore or mangle (caniemail.com).
UNSUPPORTED_CSS: dict[str, re.Pattern[str]] = {
    "display:flex": re.compile(r"display\s*:\s*(?:inline-)?flex", re.I),
    "display:grid": re.compile(r"display\s*:\s*(?:inline-)?grid", re.I),
    "position": re.compile(r"(?<![\w-])position\s*:", re.I),
    "box-shadow": re.compile(r"box-shadow\s*:", re.I),
    "CSS variables": re.compile(r"var\(\s*--|(?<![\w-])--[\w-]+\s*:", re.I),
    "rgba()/hsla()": re.compile(r"(?:rgba|hsla)\s*\(", re.I),
    "@import": re.compile(r"@import", re.I),
    "@font-face": re.compile(r"@font-face", re.I),
}


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images_without_alt: list[str] = []
        self.styles: list[str] = []
        self.style_blocks: list[str] = []
        self.scripts = 0
        self.ids: set[str] = set()
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "a" and a.get("href") is not None:
            self.links.append(a["href"] or "")
        elif tag == "img" and "alt" not in a:
            self.images_without_alt.append(a.get("src") or "?")
        elif tag == "script":
            self.scripts += 1
        elif tag == "style":
            self._in_style = True
            self.style_blocks.append("")
        if a.get("style"):
            self.styles.append(a["style"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style_blocks[-1] += data


def _outside_media(css: str) -> str:
    """The CSS text that is not inside an @media block."""
    out, depth, i = [], 0, 0
    in_media = False
    while i < len(css):
        if css.startswith("@media", i) and depth == 0:
            in_media = True
        ch = css[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0 and in_media:
                in_media = False
                i += 1
                continue
        if not in_media:
            out.append(ch)
        i += 1
    return "".join(out).strip()


def _counted(messages: list[str]) -> list[str]:
    counts = Counter(messages)
    return [m if counts[m] == 1 else f"{m} ({counts[m]} places)" for m in dict.fromkeys(messages)]


def check_html(
    html: str, name: str = "email.html", *, max_kb: float = 102.0, inlined: bool = True
) -> list[str]:
    problems: list[str] = []
    size = len(html.encode("utf-8"))
    if size > max_kb * 1024:
        problems.append(f"{name} is {size / 1024:.1f} KB: Gmail clips messages over {max_kb:g} KB")
    scan = _Scan()
    scan.feed(html)
    scan.close()
    if scan.scripts:
        problems.append(f"{name} contains {scan.scripts} <script> element(s)")
    found: list[str] = []
    for href in scan.links:
        if href in PLACEHOLDERS or href.startswith("mailto:"):
            continue
        if href.startswith("#") and href[1:] in scan.ids:
            continue  # a jump within the message ("In this issue")
        if not re.match(r"^https?://[^\s/]+", href):
            found.append(f"{name}: link {href[:80]!r} is not an absolute http(s) URL")
    for src in scan.images_without_alt:
        found.append(f"{name}: image {src[:80]!r} has no alt text")
    for css in scan.styles + scan.style_blocks:
        for label, pattern in UNSUPPORTED_CSS.items():
            if pattern.search(css):
                found.append(f"{name}: CSS {label} is not supported by major email clients")
    if inlined:
        for block in scan.style_blocks:
            rest = _outside_media(block)
            if rest:
                found.append(
                    f"{name}: <style> holds rules outside @media that were not inlined: {rest[:60]!r}"
                )
    return problems + _counted(found)


def check_text(text: str, name: str = "email.txt", *, max_line: int = 78) -> list[str]:
    long_lines = [
        (n, len(line)) for n, line in enumerate(text.splitlines(), 1) if len(line) > max_line
    ]
    if not long_lines:
        return []
    n, length = long_lines[0]
    more = f" (and {len(long_lines) - 1} more lines)" if len(long_lines) > 1 else ""
    return [f"{name}:{n}: line is {length} characters, over {max_line}{more}"]
