"""Audience commands: ``subscribers ...``, ``lists``, ``segments`` and ``db ...``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from newsletter.cli.common import err, handles_errors, out, state
from newsletter.core.files import create_private
from newsletter.core.interests import Vocabulary, split
from newsletter.errors import DatabaseError

subscribers_app = typer.Typer(
    help="Manage subscribers and their lists.\n\nExample: newsletter subscribers list --list weekly",
    no_args_is_help=True,
    rich_markup_mode=None,
)
db_app = typer.Typer(
    help="Manage the database schema.\n\nExample: newsletter db upgrade",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ListOption = Annotated[str, typer.Option("--list", "-l", help="The list's name, e.g. weekly.")]


def _vocabulary(ctx: typer.Context) -> Vocabulary:
    return state(ctx).settings.vocabulary()


@subscribers_app.command("import")
@handles_errors
def import_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV with a header row and an 'email' column.")],
    list_name: ListOption,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check everything, change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import subscribers from CSV into a list, reporting every rejected row by line.

    Columns: email (required), name, interests (separated by ; or |), status; other columns
    are kept as attributes. Unsubscribed, bounced and complained addresses are never
    re-activated. Example: newsletter subscribers import subscribers/weekly.csv --list weekly
    """
    from newsletter.audience.importer import import_csv

    st = state(ctx)
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = progress.add_task("import", total=None)

    def on_reject(line: int, reason: str) -> None:
        progress.console.print(f"rejected: {file}:{line}: {reason}", markup=False)

    with progress:
        report = import_csv(
            st.database,
            file,
            list_name,
            _vocabulary(ctx),
            dry_run=dry_run,
            batch_size=st.settings.database.import_batch_size,
            on_reject=on_reject,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if as_json:
        out.print(json.dumps(report.to_json(), indent=2), markup=False)
        return
    prefix = "dry run, nothing changed: " if dry_run else ""
    out.print(
        f"{prefix}{report.rows} rows: {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.kept} kept (unsubscribed/bounced/complained), "
        f"{report.rejected} rejected",
        markup=False,
    )


@subscribers_app.command("add")
@handles_errors
def add_command(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The address.")],
    list_name: ListOption,
    name: Annotated[str | None, typer.Option(help="The person's name.")] = None,
    interest: Annotated[
        list[str] | None, typer.Option(help="A country or topic; repeatable. None: everything.")
    ] = None,
    status: Annotated[str, typer.Option(help="active or unconfirmed.")] = "active",
) -> None:
    """Add a subscriber to a list (or update their name and interests).

    Example: newsletter subscribers add ana@example.org --list weekly --interest Kazakhstan --interest energy
    """
    from newsletter import audience

    with state(ctx).database.connect() as conn, conn.begin():
        sub, outcome = audience.add(
            conn, email, list_name, _vocabulary(ctx), name=name, interests=interest, status=status
        )
    interests = ", ".join(split(sub.interests)) or "everything"
    out.print(
        f"{outcome} {sub.email} on {list_name} ({sub.status}; interests: {interests})", markup=False
    )


@subscribers_app.command("remove")
@handles_errors
def remove_command(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The address.")],
    list_name: Annotated[
        str | None, typer.Option("--list", "-l", help="Only this list (default: all).")
    ] = None,
) -> None:
    """Take a subscriber off a list (or all lists). The record, and an unsubscribe, are kept.

    Example: newsletter subscribers remove ana@example.org --list weekly
    """
    from newsletter import audience

    with state(ctx).database.connect() as conn, conn.begin():
        removed = audience.remove(conn, email, list_name)
    out.print(f"removed {email} from {', '.join(removed) or 'no list'}", markup=False)


@subscribers_app.command("unsubscribe")
@handles_errors
def unsubscribe_command(
    ctx: typer.Context, email: Annotated[str, typer.Argument(help="The address.")]
) -> None:
    """Unsubscribe an address: it is never mailed again, whatever later imports say.

    Example: newsletter subscribers unsubscribe ana@example.org
    """
    from newsletter import audience

    with state(ctx).database.connect() as conn, conn.begin():
        sub = audience.unsubscribe(conn, email)
    out.print(f"{sub.email} is {sub.status}", markup=False)


@subscribers_app.command("show")
@handles_errors
def show_command(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The address.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one subscriber: status, lists, interests, attributes, dates.

    Example: newsletter subscribers show ana@example.org
    """
    from newsletter import audience
    from newsletter.inbound.service import subscriber_returns

    with state(ctx).database.connect() as conn:
        sub = audience.get(conn, email)
        data = sub.to_json()
        data["returns"] = subscriber_returns(conn, sub.id)
    if as_json:
        out.print(json.dumps(data, indent=2, ensure_ascii=False), markup=False)
        return
    returned = data.pop("returns")
    for key, value in data.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        out.print(
            f"{key:>16}: {json.dumps(shown, ensure_ascii=False) if isinstance(shown, dict) else shown}",
            markup=False,
        )
    for event in returned:  # what returned mail decided, with its reason and status
        out.print(f"{'returns':>16}: {event['at']} {event['kind']} {event['detail']}", markup=False)


@subscribers_app.command("list")
@handles_errors
def list_command(
    ctx: typer.Context,
    list_name: Annotated[
        str | None, typer.Option("--list", "-l", help="Only members of this list.")
    ] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    interest: Annotated[str | None, typer.Option(help="Only those with this interest.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List subscribers, filtered by list, status or interest.

    Example: newsletter subscribers list --list weekly --status active --interest energy
    """
    from newsletter import audience

    count = 0
    with state(ctx).database.connect() as conn:
        for sub in audience.query(
            conn, list_name=list_name, status=status, interest=interest, vocabulary=_vocabulary(ctx)
        ):
            count += 1
            if as_json:
                typer.echo(json.dumps(sub.to_json(), ensure_ascii=False))
            else:
                interests = ",".join(split(sub.interests)) or "*"
                typer.echo(f"{sub.email}\t{sub.status}\t{interests}\t{sub.name}")
    if not as_json:
        err.print(f"{count} subscriber(s)", markup=False)


@subscribers_app.command("export")
@handles_errors
def export_command(
    ctx: typer.Context,
    list_name: ListOption,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to a file (default: stdout).")
    ] = None,
) -> None:
    """Export a list as CSV that 'subscribers import' reads back to the same state.

    Example: newsletter subscribers export --list weekly -o weekly.csv
    """
    from newsletter import audience

    with state(ctx).database.connect() as conn:
        if output is None:
            count = audience.export(conn, list_name, sys.stdout)
        else:
            tmp = output.with_name(f".{output.name}.tmp")
            tmp.unlink(missing_ok=True)  # left by an export that was killed
            try:  # 0600 (addresses), and all or nothing
                with os.fdopen(create_private(tmp), "w", encoding="utf-8", newline="") as fh:
                    count = audience.export(conn, list_name, fh)
                tmp.replace(output)
            finally:
                tmp.unlink(missing_ok=True)
    err.print(f"exported {count} subscriber(s) from {list_name}", markup=False)


def lists_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every list with its number of subscribers by status.

    Example: newsletter lists
    """
    from newsletter import audience
    from newsletter.core.states import STATUSES

    with state(ctx).database.connect() as conn:
        counts = audience.list_counts(conn)
    if as_json:
        out.print(json.dumps(dict(counts), indent=2), markup=False)
        return
    table = Table("list", *STATUSES, "total", box=None)
    for name, by_status in counts:
        table.add_row(name, *(str(by_status[s]) for s in STATUSES), str(sum(by_status.values())))
    out.print(table)


def segments_command(
    ctx: typer.Context,
    issue: Annotated[
        str, typer.Argument(help="The issue's date, YYYY-MM-DD (built with 'newsletter build').")
    ],
    list_name: ListOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the variants a list gets for an issue: subscribers, articles per section, size.

    Each variant is rendered once, whatever the number of its subscribers.
    Example: newsletter segments 2026-11-16 --list weekly
    """
    from newsletter.audience.editions import Editions
    from newsletter.audience.segments import plan_list
    from newsletter.compose.issuefiles import load_issue

    st = state(ctx)
    built = load_issue(st.settings.issues_dir, issue)
    with st.database.connect() as conn:
        plan = plan_list(conn, built, list_name, _vocabulary(ctx))
    editions = Editions(built, _vocabulary(ctx), st.settings.render_options())
    rows: list[dict[str, Any]] = []
    for variant in plan.variants:
        _, rendered = editions.rendered(variant.urls)
        rows.append(
            {
                "variant": variant.id,
                "subscribers": variant.subscribers,
                "articles": len(variant.urls),
                "sections": variant.per_section(built),
                "html_bytes": len(rendered.email_html.encode()),
                "text_bytes": len(rendered.email_txt.encode()),
                "full_edition": variant.full,
                "interest_sets": len(variant.interest_sets),
            }
        )
    if as_json:
        payload = {"issue": issue, "list": list_name, "variants": rows, "skipped": plan.skipped}
        out.print(json.dumps(payload, indent=2, ensure_ascii=False), markup=False)
        return
    table = Table("variant", "subscribers", "articles", "sections", "email.html", box=None)
    for row in rows:
        sections = " · ".join(f"{c} {n}" for c, n in row["sections"].items())
        label = row["variant"] + (" (full)" if row["full_edition"] else "")
        table.add_row(
            label,
            str(row["subscribers"]),
            str(row["articles"]),
            sections,
            f"{row['html_bytes'] / 1024:.1f} KB",
        )
    out.print(table)
    out.print(
        f"{len(rows)} variant(s) for {plan.subscribers} active subscriber(s); "
        f"{plan.skipped} skipped (nothing in this issue matches their interests)",
        markup=False,
    )


@db_app.command("upgrade")
@handles_errors
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the schema migrations to the configured database.

    Example: NEWSLETTER_DATABASE__URL=postgresql+psycopg://user@localhost/news newsletter db upgrade
    """
    from sqlalchemy.exc import OperationalError

    from newsletter.storage.migrate import upgrade

    db = state(ctx).database
    try:
        before, after = upgrade(db.engine)
    except OperationalError as exc:
        raise DatabaseError(f"cannot upgrade {db.display_url}: {exc.orig}") from None
    if before == after:
        out.print(f"{db.display_url} is up to date (revision {after})", markup=False)
    else:
        out.print(f"upgraded {db.display_url} from {before or 'empty'} to {after}", markup=False)


@db_app.command("status")
@handles_errors
def db_status(ctx: typer.Context) -> None:
    """Show the database URL (password hidden) and its schema revision.

    Example: newsletter db status
    """
    from sqlalchemy.exc import OperationalError

    from newsletter.storage.migrate import current_revision, head_revision

    db = state(ctx).database
    try:
        with db.engine.connect() as conn:
            revision = current_revision(conn)
    except OperationalError as exc:
        raise DatabaseError(f"cannot connect to {db.display_url}: {exc.orig}") from None
    head = head_revision()
    note = "up to date" if revision == head else f"needs 'newsletter db upgrade' to {head}"
    out.print(f"{db.display_url}: revision {revision or 'none (empty)'} ({note})", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(subscribers_app, name="subscribers")
    app.command("lists")(handles_errors(lists_command))
    app.command("segments")(handles_errors(segments_command))
    app.add_typer(db_app, name="db")
