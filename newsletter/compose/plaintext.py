"""The plain-text part: sanitised article HTML to wrapped text with numbered link references.

Structure is kept: sub-headings are underlined, list items get bullets or numbers with a hanging
indent, quotes get ``> ``, links become ``text [n]`` with ``[n] URL`` listed once at the end.
Lines are wrapped at ``width`` (78) characters; only a single word longer than that (a URL) can
exceed it, which the build checks report.
"""

from __future__ import annotations

import re
import textwrap
from html.parser import HTMLParser

_BLOCKS = {
    "p",
    "div",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "table",
    "tr",
    "figure",
    "figcaption",
    "hr",
    "caption",
}


class LinkRefs:
    """Numbers links in order of first use; the same URL keeps its number."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    def ref(self, url: str) -> int:
        if url not in self._numbers:
            self._numbers[url] = len(self._numbers) + 1
        return self._numbers[url]

    def items(self) -> list[tuple[int, str]]:
        return [(n, url) for url, n in self._numbers.items()]

    def __len__(self) -> int:
        return len(self._numbers)


_REF = re.compile(r" (\[\d+\])")
_GLUE = "\u00a0"  # not white space to textwrap: a word and its link reference stay together


def wrap(text: str, width: int = 78, indent: str = "", first: str | None = None) -> str:
    """Wrap one paragraph; ``first`` replaces ``indent`` on the first line (bullets). A link
    reference (``[12]``) stays on the line of the word before it, never alone on a line."""
    glued = _REF.sub(_GLUE + r"\1", " ".join(text.split()))
    return textwrap.fill(
        glued,
        width=width,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ).replace(_GLUE, " ")


def underline(text: str, char: str = "-", width: int = 78) -> str:
    wrapped = wrap(text, width)
    longest = max((len(line) for line in wrapped.splitlines()), default=0)
    return f"{wrapped}\n{char * longest}"


class _Converter(HTMLParser):
    def __init__(self, refs: LinkRefs, width: int) -> None:
        super().__init__(convert_charrefs=True)
        self.refs = refs
        self.width = width
        self.blocks: list[tuple[str, str]] = []  # (kind, rendered text)
        self.buffer: list[str] = []
        self.lists: list[list[int | str]] = []  # [kind, counter]
        self.links: list[str | None] = []
        self.link_text: list[list[str]] = []
        self.quote = 0
        self.pre = 0
        self.item_prefix: str | None = None

    def flush(self, kind: str = "p") -> None:
        raw = "".join(self.buffer)
        self.buffer = []
        if self.pre:
            text = raw.strip("\n")
            if text:
                self.blocks.append(("pre", textwrap.indent(text, "    ")))
            return
        lines = [" ".join(part.split()) for part in raw.split("\n")]
        lines = [line for line in lines if line]
        if not lines:
            return
        quote = "> " * self.quote
        depth = len(self.lists)
        if self.item_prefix is not None:
            first = quote + "  " * depth + self.item_prefix
            rest = " " * len(first)
        else:
            first = rest = quote + ("  " * (depth + 1) if depth else "")
        out = [
            wrap(line, self.width, rest, first if i == 0 else rest) for i, line in enumerate(lines)
        ]
        text = "\n".join(out)
        if kind in ("h4", "h5", "h6"):
            text = underline(text, "~", self.width)
        self.item_prefix = None
        self.blocks.append(("li" if kind == "li" or self.lists else kind, text))

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in _BLOCKS:
            self.flush()
            if tag == "blockquote":
                self.quote += 1
            elif tag == "pre":
                self.pre += 1
            elif tag == "hr":
                self.blocks.append(("hr", "-" * 20))
        elif tag in ("ul", "ol"):
            self.flush()
            start = attributes.get("start") or "1"
            self.lists.append([tag, int(start) - 1 if start.isdigit() else 0])
        elif tag == "li":
            self.flush("li")
            if self.lists:
                current = self.lists[-1]
                if current[0] == "ol":
                    current[1] = int(current[1]) + 1
                    self.item_prefix = f"{current[1]}. "
                else:
                    self.item_prefix = "* "
            else:
                self.item_prefix = "* "
        elif tag == "br":
            self.buffer.append("\n")
        elif tag == "a":
            self.links.append(attributes.get("href"))
            self.link_text.append([])
        elif tag == "img":
            alt = (attributes.get("alt") or "").strip()
            if alt:
                self.buffer.append(f"[{alt}]")
        elif tag in ("td", "th") and self.buffer and "".join(self.buffer).strip():
            self.buffer.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self.flush(tag)
            if tag == "blockquote" and self.quote:
                self.quote -= 1
            elif tag == "pre" and self.pre:
                self.pre -= 1
        elif tag in ("ul", "ol"):
            self.flush("li")
            if self.lists:
                self.lists.pop()
        elif tag == "li":
            self.flush("li")
        elif tag == "a" and self.links:
            href = self.links.pop()
            text = "".join(self.link_text.pop()).strip()
            if href and href.startswith(("http://", "https://")) and text != href:
                self.buffer.append(f" [{self.refs.ref(href)}]")
            elif href and href.startswith("mailto:") and text != href[7:]:
                self.buffer.append(f" <{href[7:]}>")

    def handle_data(self, data: str) -> None:
        if not self.pre:
            data = data.replace("\n", " ")  # only <br> breaks a line
        self.buffer.append(data)
        for parts in self.link_text:
            parts.append(data)

    def result(self) -> str:
        self.flush()
        out: list[str] = []
        previous = ""
        for kind, text in self.blocks:
            if out:
                out.append("\n" if kind == "li" and previous == "li" else "\n\n")
            out.append(text)
            previous = kind
        return "".join(out)


def html_to_text(fragment: str, refs: LinkRefs, width: int = 78) -> str:
    converter = _Converter(refs, width)
    converter.feed(fragment)
    converter.close()
    return converter.result()
