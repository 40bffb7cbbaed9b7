"""The ``newsletter`` command line: thin commands that load settings, call the library, report.

Errors from the library arrive as :class:`~newsletter.errors.NewsletterError`; they are printed
here as one line on stderr (``error: ...``) and become the exit status.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli import audience, build, delivery, demo, edit, inbound, schedule, web, worker
from newsletter.cli.common import State

app = typer.Typer(
    name="newsletter",
    help="Compose, preview and send a weekly regional news digest.\n\n"
    "Example: newsletter build --date 2026-11-16",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="NEWSLETTER_CONFIG",
            help="The workspace's config file (default: ./newsletter.toml).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Compose, preview and send a weekly regional news digest."""
    ctx.obj = State(config)
    ctx.call_on_close(ctx.obj.close)


for _group in (build, edit, audience, delivery, demo, web, schedule, inbound, worker):
    _group.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:  # e.g. `newsletter config | head`
        sys.exit(0)
