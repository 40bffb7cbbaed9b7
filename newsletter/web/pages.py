"""The HTML of the subscriber pages and the preview: Jinja2 templates in ``web/templates/``.

Autoescaping is on for HTML and XML: anything a visitor typed is escaped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html", "xml"]),
)


def page(template: str, /, **context: Any) -> str:
    return _env.get_template(template).render(**context)
