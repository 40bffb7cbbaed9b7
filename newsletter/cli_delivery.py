"""Delivery commands: ``send``, ``status``, ``keygen`` and ``demo``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from newsletter.cli_common import err, handles_errors, out, parse_day, state, today
from newsletter.config import Settings
from newsletter.db import Database
from newsletter.errors import NewsletterError

# Exit statuses of `send` (and `demo`).
EXIT_FAILURES = 5  # some addresses failed permanently; nothing left to retry
EXIT_UNDELIVERED = 6  # messages are left queued or deferred (paused, stopped, limited, retry later)


def make_signer(settings: Settings) -> Any:
    from newsletter.tokens import Signer, load_key

    key = load_key(
        settings.security.secret_key.get_secret_value(),
        settings.path(settings.security.secret_key_file),
    )
    return Signer(key)


def make_dkim(settings: Settings) -> Any:
    from newsletter.message import DKIMSigner

    if not settings.dkim.domain:
        return None
    return DKIMSigner(
        settings.dkim.domain, settings.dkim.selector, settings.path(settings.dkim.private_key_file)
    )


def make_transport(settings: Settings) -> Any:
    from newsletter.transports import MaildirTransport, SMTPConfig, SMTPTransport

    smtp = settings.smtp
    if not smtp.host:
        return MaildirTransport(settings.path(smtp.outbox))
    return SMTPTransport(
        SMTPConfig(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username,
            password=smtp.password.get_secret_value(),
            timeout=smtp.timeout,
            pipelining=smtp.pipelining,
            verify=smtp.verify,
            ca_file=str(settings.path(smtp.ca_file)) if smtp.ca_file else "",
        )
    )


def make_limits(settings: Settings) -> Any:
    from newsletter.delivery import Limits

    smtp = settings.smtp
    return Limits(
        concurrency=smtp.concurrency,
        rate_per_second=smtp.rate_per_second,
        rate_per_hour=smtp.rate_per_hour,
        retries=smtp.retries,
        backoff=smtp.backoff,
        bounce_limit=smtp.bounce_limit,
        pause_after_errors=smtp.pause_after_errors,
    )


def run_send(
    settings: Settings, database: Database, options: Any, transport: Any = None, signer: Any = None
) -> Any:
    """Run one send with a progress bar; SIGINT/SIGTERM stop it cleanly."""
    from newsletter.delivery import Sender

    progress = Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}/s"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = progress.add_task("send", total=None, rate="0")
    started = [0.0]

    def on_progress(done: int, total: int) -> None:
        loop_time = asyncio.get_running_loop().time()
        if not started[0]:
            started[0] = loop_time
        rate = done / max(loop_time - started[0], 1e-6)
        progress.update(task, completed=done, total=total, rate=f"{rate:,.0f}")

    sender = Sender(
        settings,
        database,
        transport or make_transport(settings),
        signer or make_signer(settings),
        limits=make_limits(settings),
        dkim=make_dkim(settings),
        progress=on_progress,
    )

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, sender.request_stop)
        return await sender.run(options)

    with progress:
        return asyncio.run(main())


def report(summary: Any, as_json: bool) -> int:
    data = {
        "issue": summary.issue,
        "list": summary.list_name,
        "transport": summary.transport,
        "outcome": summary.outcome,
        "queued_now": summary.queued_now,
        "sent": summary.sent,
        "deferred": summary.deferred,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "bounced": summary.bounced,
        "variants": summary.variants,
        "seconds": round(summary.seconds, 3),
        "rate_per_second": round(summary.sent / summary.seconds, 1) if summary.seconds else 0.0,
        "remaining": summary.remaining,
        "totals": summary.totals,
        "paused": summary.paused,
        "test_copies": summary.test_copies,
    }
    if as_json:
        out.print(json.dumps(data, indent=2), markup=False)
    elif summary.test_copies:
        out.print(
            f"sent {summary.test_copies} test copies (one per variant) via {summary.transport}; "
            "the send log is unchanged",
            markup=False,
        )
    elif summary.dry_run:
        out.print(
            f"dry run: {summary.queued_now} message(s) would be sent in {summary.variants} variant(s); "
            f"{summary.skipped} subscriber(s) skipped; {summary.totals.get('sent', 0)} already sent; "
            "nothing was sent",
            markup=False,
        )
    else:
        out.print(
            f"{summary.issue} to {summary.list_name} via {summary.transport}: {summary.sent} sent, "
            f"{summary.deferred} deferred, {summary.failed} failed, {summary.skipped} skipped "
            f"({summary.variants} variants, {data['rate_per_second']}/s, {summary.seconds:.1f} s)",
            markup=False,
        )
        t = summary.totals
        out.print(
            f"log of {summary.issue}: {t.get('sent', 0)} sent, {t.get('queued', 0)} queued, "
            f"{t.get('deferred', 0)} deferred, {t.get('failed', 0)} failed, {t.get('skipped', 0)} skipped",
            markup=False,
        )
    if summary.paused:
        err.print(f"paused: {summary.paused}", markup=False)
    elif summary.stopped:
        err.print(
            "stopped: messages not yet sent stay queued; run the same command to resume",
            markup=False,
        )
    if summary.outcome in ("paused", "incomplete"):
        return EXIT_UNDELIVERED
    return EXIT_FAILURES if summary.outcome == "failures" else 0


def send_command(
    ctx: typer.Context,
    issue: Annotated[
        str, typer.Argument(help="The issue's date, YYYY-MM-DD (built with 'newsletter build').")
    ],
    list_name: Annotated[str, typer.Option("--list", "-l", help="The list to send to.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Render and count; send nothing.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Send at most N messages in this run.")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Send one copy of each variant to this address only.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Send an issue to a list: each subscriber their edition, exactly once, resumable.

    Exit status: 0 all delivered, 5 some failed permanently, 6 some left queued or deferred
    (run it again to resume). Example: newsletter send 2026-11-16 --list weekly
    """
    from newsletter.addresses import normalise
    from newsletter.delivery import SendOptions

    st = state(ctx)
    parse_day(issue, "ISSUE")
    if to is not None:
        to = normalise(to)[0]
    options = SendOptions(issue, list_name, dry_run=dry_run, limit=limit, to=to)
    code = report(run_send(st.settings, st.database, options), as_json)
    raise typer.Exit(code)


def status_command(
    ctx: typer.Context,
    issue: Annotated[str, typer.Argument(help="The issue's date, YYYY-MM-DD.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show an issue's send log: counts by state, the failures, and the runs.

    Example: newsletter status 2026-11-16
    """
    from newsletter import sendlog
    from newsletter.scheduler import runs_for_issue

    with state(ctx).database.connect() as conn:
        counts = sendlog.counts(conn, issue)
        failures = sendlog.failures(conn, issue)
        runs = sendlog.runs(conn, issue)
    scheduled = runs_for_issue(state(ctx).database, issue)
    if as_json:
        payload = {
            "issue": issue,
            "counts": counts,
            "failures": failures,
            "runs": runs,
            "schedule_runs": scheduled,
        }
        out.print(json.dumps(payload, indent=2, default=str), markup=False)
        return
    out.print(f"{issue}: " + ", ".join(f"{n} {s}" for s, n in counts.items()), markup=False)
    for f in failures:
        out.print(
            f"  {f['state']:<8} {f['email']}  ({f['attempts']} attempts) {f['last_reply']}",
            markup=False,
        )
    for r in runs:
        end = f"{r['finished_at']:%Y-%m-%d %H:%M:%S}" if r["finished_at"] else "running"
        out.print(
            f"  run {r['id']} ({r['origin']}, {r['list_name']}) {r['started_at']:%Y-%m-%d %H:%M:%S} → {end}: "
            f"{r['outcome']}, {r['sent']} sent, {r['deferred']} deferred, {r['failed']} failed, "
            f"{r['skipped']} skipped {r['message']}".rstrip(),
            markup=False,
        )
    for r in scheduled:
        out.print(
            f"  schedule {r['schedule']} {r['started_at']:%Y-%m-%d %H:%M:%S}: {r['outcome']} {r['detail']}",
            markup=False,
        )


def keygen_command(ctx: typer.Context) -> None:
    """Create the secret key file that signs unsubscribe and preferences links (never printed).

    Example: newsletter keygen
    """
    from newsletter.tokens import write_key

    settings = state(ctx).settings
    path = settings.path(settings.security.secret_key_file)
    if path.exists():
        raise NewsletterError(f"{path} exists already: keep it (links in sent issues depend on it)")
    write_key(path)
    out.print(f"wrote a new secret key to {path} (mode 600)", markup=False)


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
    from newsletter.build import build_and_write
    from newsletter.compose import ComposeOptions
    from newsletter.delivery import SendOptions
    from newsletter.importer import import_csv
    from newsletter.interests import Vocabulary
    from newsletter.smtpserver import LocalSMTPServer
    from newsletter.tokens import Signer, load_key
    from newsletter.transports import SMTPConfig, SMTPTransport

    st = state(ctx)
    settings = st.settings
    issue_day: date = parse_day(day, "--date") or today(settings)
    built = build_and_write(settings, ComposeOptions(issue_day))
    folder = settings.issues_dir / issue_day.isoformat()
    out.print(
        f"1. built {built.issue.title}: {len(built.issue.articles)} articles → {folder}/",
        markup=False,
    )
    demo_db_path = folder / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{demo_db_path}{suffix}").unlink(missing_ok=True)
    outbox = folder / "outbox"
    import shutil

    shutil.rmtree(outbox, ignore_errors=True)
    sample = settings.workspace / "subscribers" / "weekly.csv"
    with Database(f"sqlite:///{demo_db_path}") as db:
        imported = import_csv(db, sample, "weekly", Vocabulary.from_settings(settings))
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
    files = sorted((outbox / "new").iterdir()) if (outbox / "new").exists() else []
    out.print(f"4. the server stored {len(files)} messages in {outbox}/new/", markup=False)
    if files:
        out.print(f"   open one: less {files[0]}", markup=False)
    out.print(f"   preview the issue: newsletter preview {issue_day}", markup=False)
    raise typer.Exit(code)


def serve_command(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: web.host, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: web.port, 8080).")] = None,
) -> None:
    """Serve the subscriber pages: one-click unsubscribe, preferences, sign-up, archive.

    Put it behind a reverse proxy that terminates TLS at sender.base_url.
    Example: newsletter serve --port 8080
    """
    import uvicorn

    from newsletter.web import RateLimit, create_app

    st = state(ctx)
    settings = st.settings
    app = create_app(
        settings,
        st.database,
        make_signer(settings),
        make_transport(settings),
        subscribe_list=settings.web.subscribe_list,
        rate=RateLimit(settings.web.subscribe_rate, 600),
    )
    out.print(
        f"serving on http://{host or settings.web.host}:{port or settings.web.port}/ (Ctrl-C stops)",
        markup=False,
    )
    uvicorn.run(
        app,
        host=host or settings.web.host,
        port=port if port is not None else settings.web.port,
        proxy_headers=True,
        forwarded_allow_ips=settings.web.forwarded_allow_ips,
        log_level="info",
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(handles_errors(serve_command))
    app.command("send")(handles_errors(send_command))
    app.command("status")(handles_errors(status_command))
    app.command("keygen")(handles_errors(keygen_command))
    app.command("demo")(handles_errors(demo_command))
