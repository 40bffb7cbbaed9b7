"""``newsletter demo``: build the sample, load the sample list, send it over SMTP to a local server."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from newsletter.cli.common import handles_errors, out, parse_day, state, today
from newsletter.cli.delivery import report, run_send
from newsletter.storage.db import Database


def demo_command(
    ctx: typer.Context,
    day: Annotated[
        str | None, typer.Option("--date", "-d", help="Issue date (default: today).")
    ] = None,
) -> None:
    """Build the sample issue, load the sample list and send it over real SMTP to a local server.

    The local server (aiosmtpd on 127.0.0.1) stores what it receives in issues/<date>/outbox/.
    Nothing leaves the machine. Example: newsletter demo --date 2026-11-16
    """
    from newsletter.audience.importer import import_csv
    from newsletter.compose.issuefiles import build_and_write
    from newsletter.compose.select import ComposeOptions
    from newsletter.core.tokens import Signer, load_key
    from newsletter.delivery.localserver import LocalSMTPServer
    from newsletter.delivery.options import SendOptions
    from newsletter.delivery.smtp import SMTPConfig, SMTPTransport

    st = state(ctx)
    settings = st.settings
    issue_day: date = parse_day(day, "--date") or today(settings)
    built = build_and_write(settings.issue_config(), ComposeOptions(issue_day))
    folder = settings.issues_dir / issue_day.isoformat()
    out.print(
        f"1. built {built.issue.title}: {len(built.issue.articles)} articles → {folder}/",
        markup=False,
    )
    demo_db_path = folder / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{demo_db_path}{suffix}").unlink(missing_ok=True)
    outbox = folder / "outbox"

    shutil.rmtree(outbox, ignore_errors=True)
    sample = settings.workspace / "subscribers" / "weekly.csv"
    with Database(f"sqlite:///{demo_db_path}") as db:
        imported = import_csv(db, sample, "weekly", settings.vocabulary())
        out.print(
            f"2. loaded {imported.added} subscribers from {sample.name} into a demo database "
            f"({demo_db_path.name})",
            markup=False,
        )
        import secrets

        key = load_key(
            settings.security.secret_key.get_secret_value(),
            settings.path(settings.security.secret_key_file),
        )
        signer = Signer(key or secrets.token_bytes(32))
        with LocalSMTPServer(outbox) as server:
            transport = SMTPTransport(
                SMTPConfig(host="127.0.0.1", port=server.port, security="none", timeout=10)
            )
            out.print(
                f"3. sending over SMTP to a local server on 127.0.0.1:{server.port} …", markup=False
            )
            summary = run_send(
                settings,
                db,
                SendOptions(issue_day.isoformat(), "weekly", origin="demo"),
                transport=transport,
                signer=signer,
            )
    code = report(summary, as_json=False)
    _sample_list_for_the_preview(st, sample)
    files = sorted((outbox / "new").iterdir()) if (outbox / "new").exists() else []
    out.print(f"4. the server stored {len(files)} messages in {outbox}/new/", markup=False)
    if files:
        out.print(f"   open one: less {files[0]}", markup=False)
    out.print(
        f"   preview the issue, each edition of the list: newsletter preview {issue_day}",
        markup=False,
    )
    raise typer.Exit(code)


def _sample_list_for_the_preview(st: Any, sample: Path) -> None:
    """A fresh workspace (no subscriber yet) gets the sample list in its own database too, so
    that the preview after the quickstart has the variant switcher. The demo's send log stays
    in the demo database: a real send later still reaches everyone."""
    from newsletter import audience
    from newsletter.audience.importer import import_csv

    with st.database.connect() as conn:
        if audience.list_counts(conn):
            return
    imported = import_csv(st.database, sample, "weekly", st.settings.vocabulary())
    out.print(
        f"   the sample list ({imported.added} subscribers) is in the workspace database too, "
        "for the preview's variant switcher",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(handles_errors(demo_command))
