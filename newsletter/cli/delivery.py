"""Delivery commands: ``send``, ``status``, ``keygen`` and ``demo``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
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

from newsletter.cli.common import (
    EXIT_FAILURES,
    EXIT_UNDELIVERED,
    err,
    handles_errors,
    key_on_first_need,
    out,
    parse_day,
    state,
)
from newsletter.config import Settings
from newsletter.core.states import RunOutcome
from newsletter.core.tokens import Signer
from newsletter.delivery.factory import make_sender
from newsletter.delivery.options import SendOptions, SendSummary
from newsletter.delivery.transports import Transport
from newsletter.errors import KeyFileError
from newsletter.storage.db import Database


def run_send(
    settings: Settings,
    database: Database,
    options: SendOptions,
    transport: Transport | None = None,
    signer: Signer | None = None,
) -> SendSummary:
    """Run one send with a progress bar; SIGINT/SIGTERM stop it cleanly."""
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

    sender = make_sender(
        settings, database, transport=transport, signer=signer, progress=on_progress
    )

    async def main() -> SendSummary:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, sender.request_stop)
        return await sender.run(options)

    with progress:
        return asyncio.run(main())


def report(summary: SendSummary, as_json: bool) -> int:
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
        for reply, count in summary.reasons.most_common(3):  # why, without opening 'status'
            out.print(f"  {count} x {reply}", markup=False)
        if summary.no_match:
            out.print(
                f"  {summary.no_match} subscriber(s) got nothing: no article of this issue "
                "matches their interests",
                markup=False,
            )
    if summary.paused:
        err.print(f"paused: {summary.paused}", markup=False)
    elif summary.stopped:
        err.print(
            "stopped: messages not yet sent stay queued; run the same command to resume",
            markup=False,
        )
    if summary.outcome in (RunOutcome.PAUSED, RunOutcome.INCOMPLETE):
        return EXIT_UNDELIVERED
    return EXIT_FAILURES if summary.outcome == RunOutcome.FAILURES else 0


def _confirm(st: Any, issue: str, list_name: str) -> None:
    """Ask before a real send starts (a terminal only); "no" ends the command, nothing sent."""
    from newsletter import audience
    from newsletter.delivery import sendlog

    with st.database.connect() as conn:
        active = dict(audience.list_counts(conn)).get(list_name, {}).get("active", 0)
        done = sendlog.counts(conn, issue).get("sent", 0)
    question = f"Send the issue of {issue} to {list_name} ({active} active, {done} already sent)?"
    if not typer.confirm(question, default=False):
        err.print("not sent", markup=False)
        raise typer.Exit(1)


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
    variant: Annotated[
        str | None, typer.Option("--variant", help="With --to: only this variant (see segments).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before sending (on a terminal).")
    ] = False,
) -> None:
    """Send an issue to a list: each subscriber their edition, exactly once, resumable.

    On a terminal it first asks (--yes skips the question; without a terminal it never asks).

    Exit status: 0 all delivered, 5 some failed permanently, 6 some left queued or deferred
    (run it again to resume). Example: newsletter send 2026-11-16 --list weekly
    """
    from newsletter.core.addresses import normalise

    st = state(ctx)
    parse_day(issue, "ISSUE")
    if to is not None:
        to = normalise(to)[0]
    key_on_first_need(st.settings)
    if to is None and not dry_run and not st.settings.sender.postal_address:
        err.print(
            "warning: sender.postal_address is empty: commercial mail must carry the sender's "
            "postal address (CAN-SPAM); set it in newsletter.toml",
            markup=False,
        )
    if variant is not None and to is None:
        raise typer.BadParameter("--variant goes with --to (a test copy)", param_hint="--variant")
    if to is None and not dry_run and not yes and sys.stdin.isatty() and sys.stdout.isatty():
        _confirm(st, issue, list_name)
    options = SendOptions(issue, list_name, dry_run=dry_run, limit=limit, to=to, variant=variant)
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
    from newsletter.cli.inbound import alarm_line
    from newsletter.delivery import senders, sendlog, warmup
    from newsletter.delivery.factory import make_limits
    from newsletter.inbound.service import sender_alarm
    from newsletter.schedule.cron import runs_for_issue

    with state(ctx).database.connect() as conn:
        counts = sendlog.counts(conn, issue)
        failures = sendlog.failures(conn, issue)
        runs = sendlog.runs(conn, issue)
        alarm = sender_alarm(conn, issue)
        running = senders.running(conn, issue)
        relays = sendlog.by_relay(conn, issue)
        limits = make_limits(state(ctx).settings)
        warm = warmup.status(conn, limits.warmup, warmup.today()) if limits.warmup else None
    scheduled = runs_for_issue(state(ctx).database, issue)
    if as_json:
        payload = {
            "issue": issue,
            "counts": counts,
            "failures": failures,
            "runs": runs,
            "schedule_runs": scheduled,
            "sender_alarm": alarm,
            "senders": running,
            "warmup": warm,
            "relays": relays,
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
    if relays:
        out.print(
            "  sent by relay: " + ", ".join(f"{k} {n}" for k, n in relays.items()), markup=False
        )
    for r in running:  # while a send runs (PostgreSQL: any number of senders)
        out.print(
            f"  sender {r['host']} pid {r['pid']}: {r['sent']} sent, "
            f"{r['messages_per_second']} messages/s, heartbeat {r['heartbeat_seconds_ago']} s ago",
            markup=False,
        )
    if warm:
        out.print(
            f"  warm-up: today's cap {warm['cap']}, {warm['sent_today']} sent today, "
            f"{warm['left']} left",
            markup=False,
        )
    if alarm:
        out.print(alarm_line(alarm), markup=False)


def keygen_command(ctx: typer.Context) -> None:
    """Create the secret key file that signs unsubscribe and preferences links (never printed).

    Example: newsletter keygen
    """
    from newsletter.core.tokens import write_key

    settings = state(ctx).settings
    path = settings.path(settings.security.secret_key_file)
    if path.exists():
        raise KeyFileError("exists already: keep it (links in sent issues depend on it)", path=path)
    write_key(path)
    out.print(f"wrote a new secret key to {path} (mode 600)", markup=False)


def register(app: typer.Typer) -> None:
    app.command("send")(handles_errors(send_command))
    app.command("status")(handles_errors(status_command))
    app.command("keygen")(handles_errors(keygen_command))
