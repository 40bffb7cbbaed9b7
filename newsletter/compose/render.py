"""Render an issue with the Jinja2 templates in ``templates/`` and inline its CSS with premailer.

Three documents come out of one :class:`~newsletter.models.Issue`:

* ``email.html``: ``email.html.j2`` in email mode, CSS inlined (``@media`` rules kept in a
  ``<style>`` block with their ``!important``), whitespace between lines removed;
* ``index.html``: the same template in web mode (no unsubscribe placeholders, CSS not inlined);
* ``email.txt``: ``email.txt.j2``, with article HTML turned into wrapped text.

The unsubscribe and preferences links are the placeholders below; delivery fills them in.
"""

from __future__ import annotations

import re
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from newsletter.compose.inline import inline_css
from newsletter.compose.plaintext import LinkRefs, html_to_text, underline, wrap
from newsletter.compose.rates import format_change, format_value
from newsletter.core.models import Issue, RateRow, date_text
from newsletter.errors import TemplateError

UNSUBSCRIBE_PLACEHOLDER = "%%unsubscribe_url%%"
PREFERENCES_PLACEHOLDER = "%%preferences_url%%"
PLACEHOLDERS: tuple[str, str] = (UNSUBSCRIBE_PLACEHOLDER, PREFERENCES_PLACEHOLDER)

HTML_TEMPLATE = "email.html.j2"
TEXT_TEMPLATE = "email.txt.j2"


@dataclass(frozen=True)
class RenderedIssue:
    email_html: str
    email_txt: str
    web_html: str


@dataclass(frozen=True)
class RenderOptions:
    templates_dir: Path
    tagline: str = ""
    full_text: bool = True
    web_url: str = ""
    language: str = "en"
    text_width: int = 78
    rates_quote: str = "per_base"  # "1 USD = 515.46 KZT", or "per_currency": "KZT/USD = 0.00194"
    organisation: str = ""  # sender.organisation, in the footer
    postal_address: str = ""  # sender.postal_address, in the footer (lines joined by ", ")


def _autoescape(name: str | None) -> bool:
    return bool(name) and ".html" in str(name)


_environments: dict[Path, jinja2.Environment] = {}
_environments_lock = threading.Lock()


def environment(templates_dir: Path) -> jinja2.Environment:
    """The environment of a templates folder, made once: its templates are compiled once and
    kept (Jinja2 recompiles one whose file changed: ``auto_reload``), where a fresh environment
    for each variant compiled both templates again, about half of a variant's rendering."""
    key = templates_dir.resolve()
    with _environments_lock:
        env = _environments.get(key)
        if env is None:
            env = _environments[key] = make_environment(templates_dir)
        return env


def make_environment(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap
    env.filters["underline"] = underline
    return env


def _template_failure(exc: Exception, templates_dir: Path, name: str) -> TemplateError:
    """Turn any Jinja2 failure into a TemplateError naming the template file and line."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        path = Path(exc.filename) if exc.filename else templates_dir / (exc.name or name)
        return TemplateError(f"template syntax error: {exc.message}", path=path, line=exc.lineno)
    if isinstance(exc, jinja2.TemplateNotFound):
        return TemplateError(f"template {exc.name!r} not found", path=templates_dir / str(exc.name))
    path, line = templates_dir / name, None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename.endswith(".j2"):
            path, line = Path(filename), lineno
    return TemplateError(f"template error: {exc}", path=path, line=line)


def _render(
    env: jinja2.Environment, name: str, context: dict[str, Any], templates_dir: Path
) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateError as exc:
        raise _template_failure(exc, templates_dir, name) from None
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError) as exc:
        raise _template_failure(exc, templates_dir, name) from None


def _quoted(row: RateRow, quote: str) -> dict[str, Any]:
    """A rates row as the template shows it: ``KZT/USD = 0.00194`` (per currency), or turned
    round, ``1 USD = 515.46 KZT`` (per base, how readers in the region think of it), its change
    turned round too."""
    data = row.to_json()
    data["label"] = f"{row.currency}/{row.base} = {row.value_text}"
    if quote == "per_base" and row.value:
        data["label"] = (
            f"1 {row.base} = {format_value(1 / row.value, significant=True)} {row.currency}"
        )
        if row.change_pct is not None:
            inverse = (1 / (1 + row.change_pct / 100) - 1) * 100
            data["change_text"], data["direction"] = format_change(inverse)
    return data


def preheader(issue: Issue, limit: int = 140) -> str:
    """The inbox preview line: the first headline of each section."""
    heads = [s.articles[0].title for s in issue.sections if s.articles]
    text = " · ".join(heads)
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def _context(
    issue: Issue, options: RenderOptions, mode: str, links: tuple[str, str] = PLACEHOLDERS
) -> dict[str, Any]:
    sections = []
    for section in issue.sections:
        articles = []
        for a in section.articles:
            articles.append(
                {
                    "title": a.title,
                    "url": a.url,
                    "published": a.published,
                    "published_text": date_text(a.published.date()),
                    "summary": a.summary,
                    "body_html": Markup(a.body_html),  # sanitised by nh3 in compose
                    "topics": list(a.topics),
                    "country": a.country,
                    "image": a.image,
                    "image_alt": a.image_alt,
                }
            )
        sections.append({"country": section.country, "slug": section.slug, "articles": articles})
    rates = issue.rates
    web_url = f"{options.web_url}/archive/{issue.day.isoformat()}" if options.web_url else ""
    return {
        "mode": mode,
        "issue": {
            "title": issue.title,
            "name": issue.title.split(" — ")[0],
            "date": issue.day,
            "date_text": issue.date_text,
            "tagline": options.tagline,
            "preheader": preheader(issue),
            "article_count": len(issue.articles),
        },
        "rates": {
            "available": rates.available,
            "base": rates.base,
            "date": rates.day,
            "date_text": date_text(rates.day) if rates.day else "",
            "rows": [_quoted(r, options.rates_quote) for r in rates.rows],
            "quote": options.rates_quote,
        },
        "sections": sections,
        "arrows": {"up": "▲", "down": "▼", "flat": ""},
        "full_text": options.full_text,
        "language": options.language,
        "intro_html": Markup(issue.intro_html),  # the editor's note; sanitised in compose
        "sender": {
            "organisation": options.organisation,
            "postal_address": ", ".join(
                line.strip() for line in options.postal_address.splitlines() if line.strip()
            ),
        },
        "urls": {
            "unsubscribe": links[0] if mode == "email" else "",
            "preferences": links[1] if mode == "email" else "",
            "web": web_url,
            "home": options.web_url,
        },
    }


def email_html_raw(
    issue: Issue, options: RenderOptions, links: tuple[str, str] = PLACEHOLDERS
) -> str:
    """The email HTML before its CSS is inlined."""
    env = environment(options.templates_dir)
    return _render(
        env, HTML_TEMPLATE, _context(issue, options, "email", links), options.templates_dir
    )


def render_issue(
    issue: Issue,
    options: RenderOptions,
    links: tuple[str, str] = PLACEHOLDERS,
    *,
    web: bool = True,
    inline: Callable[[str], str] = inline_css,
) -> RenderedIssue:
    """The three documents; ``links`` (unsubscribe, preferences) go where the template puts
    its links in email mode: the placeholders by default, the send's slot marks at send time.
    ``web=False`` (a send) skips the web page, which only the build and the preview use.
    ``inline``: premailer by default; the editions of one issue share one premailer pass
    (:class:`~newsletter.compose.inline.Inliner`)."""
    env = environment(options.templates_dir)
    email_raw = email_html_raw(issue, options, links)
    web_html = (
        _render(env, HTML_TEMPLATE, _context(issue, options, "web"), options.templates_dir)
        if web
        else ""
    )
    text_context = _context(issue, options, "email", links)
    refs = LinkRefs()
    text_context["links"] = refs
    text_context["width"] = options.text_width
    text_context["to_text"] = lambda fragment: html_to_text(str(fragment), refs, options.text_width)
    email_txt = _render(env, TEXT_TEMPLATE, text_context, options.templates_dir)
    return RenderedIssue(inline(email_raw), _tidy_text(email_txt), web_html)


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    out = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", out).strip() + "\n"
