"""Issue commands: ``config``, ``build`` and ``preview``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from newsletter.cli.common import State, err, handles_errors, out, parse_day, state, today, warn
from newsletter.config import masked_dump
from newsletter.errors import AudienceError

if TYPE_CHECKING:
    from newsletter.storage.db import Database


def config_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
) -> None:
    """Print the effective settings (file, .env and environment merged), secrets masked.

    Example: NEWSLETTER_ISSUE__WINDOW_DAYS=14 newsletter config
    """
    data = masked_dump(state(ctx).settings)
    if as_json:
        out.print(json.dumps(data, indent=2, ensure_ascii=False), markup=False)
        return
    out.print(f"# effective settings from {data.pop('config_file')}", markup=False)
    for section, values in data.items():
        tables = values if isinstance(values, list) else [values]
        for table in tables:
            out.print(
                f"\n[[{section}]]" if isinstance(values, list) else f"\n[{section}]", markup=False
            )
            for key, value in table.items():
                out.print(f"{key} = {json.dumps(value, ensure_ascii=False)}", markup=False)


def build_command(
    ctx: typer.Context,
    day: Annotated[
        str | None, typer.Option("--date", "-d", help="Issue date, YYYY-MM-DD (default: today).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Take articles from this date on (default: since the previous issue)."),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            help="A feed (path or URL) or Markdown folder; replaces the configured ones. Repeatable."
        ),
    ] = None,
    rates: Annotated[
        str | None, typer.Option(help="Rates JSON (path or URL); replaces the configured one.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of issues/<date>/.")
    ] = None,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Fail (exit 4, nothing written) when a build check fails."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Rebuild an issue already sent; the sent version is kept as a revision."
        ),
    ] = False,
) -> None:
    """Build an issue: issues/<date>/ with issue.json, email.html, email.txt and index.html.

    Once any subscriber has received an issue it is locked: a rebuild needs --force, which keeps
    the sent files in issues/<date>/revisions/N/. Example: newsletter build --date 2026-11-16
    """
    from newsletter.compose.issuefiles import build_and_write
    from newsletter.compose.select import ComposeOptions

    settings = state(ctx).settings
    issue_day = parse_day(day, "--date") or today(settings)
    options = ComposeOptions(issue_day, parse_day(since, "--since"), source or None, rates)
    if out_dir is None:
        unlock(ctx, settings.issues_dir / issue_day.isoformat(), issue_day.isoformat(), force)
    with err.status(f"Building the issue of {issue_day}…"):
        result = build_and_write(
            settings.issue_config(), options, out_dir=out_dir, strict=strict or None
        )
    issue = result.issue
    where = result.out_dir
    shown = where.relative_to(Path.cwd()) if where and where.is_relative_to(Path.cwd()) else where
    out.print(f"Built {issue.title} → {shown}/", markup=False)
    out.print(
        f"  window: {issue.window.start:%Y-%m-%d %H:%M} → {issue.window.end:%Y-%m-%d %H:%M} "
        f"({settings.issue.timezone})",
        markup=False,
    )
    width = max(len(s.country) for s in issue.sections)
    for section in issue.sections:
        out.print(f"  {section.country:<{width}}  {len(section.articles):>3}", markup=False)
    out.print(f"  {'total':<{width}}  {len(issue.articles):>3} articles", markup=False)
    rates_line = (
        f"{issue.rates.day} ({sum(r.value is not None for r in issue.rates.rows)} currencies)"
        if issue.rates.available
        else "unavailable"
    )
    out.print(f"  rates: {rates_line}", markup=False)
    sizes = " · ".join(f"{name} {size / 1024:.1f} KB" for name, size in result.sizes.items())
    out.print(f"  sizes: {sizes}", markup=False)
    count = len(issue.warnings) + len(result.problems)
    out.print(f"  {count} warning(s)" if count else "  no warnings", markup=False)
    out.file.flush()
    for message in issue.warnings:
        warn(message)
    for problem in result.problems:
        warn(f"check: {problem}")


def preview_command(
    ctx: typer.Context,
    day: Annotated[
        str | None,
        typer.Argument(
            help="Issue date, YYYY-MM-DD (default: the latest built issue, else today)."
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default: preview.port, 8025).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default: 127.0.0.1).")] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the page in a browser.")
    ] = False,
    list_name: Annotated[
        str | None,
        typer.Option(
            "--list",
            "-l",
            help="Offer this list's variants and subscribers (default: the first list).",
        ),
    ] = None,
) -> None:
    """Serve a live preview of an issue: desktop, mobile, plain text and web version.

    It rebuilds and reloads the page whenever a template, the config or a Markdown source
    changes, and offers a switcher to see the edition of one variant or one subscriber.
    Nothing is written to issues/. Example: newsletter preview 2026-11-16 --port 8025
    """
    from newsletter.compose.select import built_issue_dates
    from newsletter.web.preview import PreviewServer

    settings = state(ctx).settings
    chosen = parse_day(day, "DAY")
    if chosen is None:
        built = built_issue_dates(settings.issues_dir)
        chosen = built[-1] if built else today(settings)
    database, list_name = _preview_audience(state(ctx), list_name)
    server = PreviewServer(
        settings,
        chosen,
        host=host or settings.preview.host,
        port=settings.preview.port if port is None else port,
        on_event=lambda message: err.print(message, markup=False),
        database=database,
        list_name=list_name,
    )
    server.start()
    out.print(f"Previewing the issue of {chosen} at {server.url}  (Ctrl-C to stop)", markup=False)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.wait()
    finally:
        server.stop()


def _preview_audience(st: State, list_name: str | None) -> tuple[Database | None, str | None]:
    """The database and list for the variant switcher; none when no database exists yet."""
    from sqlalchemy.engine import make_url

    from newsletter import audience

    url = make_url(st.settings.database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return None, None
    with st.database.connect() as conn:
        names = [name for name, _ in audience.list_counts(conn)]
    if list_name is not None:
        if list_name not in names:
            raise AudienceError(
                f"no list named {list_name!r} (lists: {', '.join(names) or 'none'})"
            )
        return st.database, list_name
    return (st.database, names[0]) if names else (None, None)


def register(app: typer.Typer) -> None:
    app.command("config")(handles_errors(config_command))
    app.command("build")(handles_errors(build_command))
    app.command("preview")(handles_errors(preview_command))


def unlock(ctx: typer.Context, folder: Path, issue: str, force: bool) -> None:
    """Refuse to rebuild an issue some subscribers already received, unless ``force``: then
    the sent files are kept as a numbered revision and the command says who gets which."""
    from newsletter.compose.issuefiles import keep_revision
    from newsletter.delivery import sendlog
    from newsletter.errors import DatabaseError, IssueLockedError

    if not (folder / "issue.json").exists():
        return
    try:
        with state(ctx).database.connect() as conn:
            counts = sendlog.counts(conn, issue)
    except DatabaseError as exc:
        warn(f"cannot tell whether {issue} was sent ({exc}); building it anyway")
        return
    sent = counts.get("sent", 0)
    if not sent:
        return
    if not force:
        raise IssueLockedError(
            f"the issue of {issue} was sent to {sent} subscriber(s): rebuilding it would change "
            "what the others and the archive get; use --force to keep the sent version as a "
            "revision and build anew",
            issue=issue,
            sent=sent,
        )
    number = keep_revision(folder)
    waiting = sum(n for state_, n in counts.items() if state_ in ("queued", "sending", "deferred"))
    warn(
        f"{issue} rebuilt with --force: the version {sent} subscriber(s) received is kept in "
        f"{folder / 'revisions' / str(number)}/; the {waiting} still to be sent get the new one"
    )
