"""Schedule commands: ``schedule run`` and ``schedule show``."""

from __future__ import annotations

import json
import logging
import signal
import threading
from typing import Annotated, Any

import typer
from rich.table import Table

from newsletter.cli.common import EXIT_CODES, err, handles_errors, out, state
from newsletter.errors import SendLockedError

schedule_app = typer.Typer(
    help="Send the issue every week without an operator.\n\nExample: newsletter schedule run",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@schedule_app.command("run")
@handles_errors
def run_command(
    ctx: typer.Context,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="If another scheduler runs, wait for it instead of exiting."),
    ] = False,
) -> None:
    """Run the scheduler in the foreground (for systemd or a terminal); SIGTERM stops it cleanly.

    Example: newsletter schedule run
    """
    from newsletter.schedule.service import SchedulerService

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    st = state(ctx)
    service = SchedulerService(st.settings, st.database)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        logging.getLogger("newsletter.schedule.service").info(
            "signal %s: stopping", signal.Signals(signum).name
        )
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.start(wait_for_lock=wait)
        out.print(
            f"scheduler running with {len(st.settings.schedules)} schedule(s); SIGTERM or Ctrl-C stops it",
            markup=False,
        )
        while not stop.wait(0.5) and not service.stopped:
            pass
    finally:
        service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if service.lost_lock:
        err.print(f"error: {service.lost_lock}", markup=False)
        raise typer.Exit(EXIT_CODES[SendLockedError])
    out.print("scheduler stopped", markup=False)


@schedule_app.command("show")
@handles_errors
def show_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show each schedule: its next run times and the result of its last run.

    Example: newsletter schedule show
    """
    from newsletter.schedule.cron import show

    st = state(ctx)
    entries = show(st.settings, st.database)
    if as_json:
        out.print(json.dumps(entries, indent=2, default=str), markup=False)
        return
    if not entries:
        out.print("no schedules configured (add [[schedules]] to the config)", markup=False)
        return
    table = Table("schedule", "cron", "lists", "next runs", "last run", box=None)
    for e in entries:
        last = e["last_run"]
        last_text = (
            f"{last['issue']}: {last['outcome']} ({last['sent']} sent, {last['failed']} failed) "
            f"{last['detail']}"
            if last
            else "never"
        )
        nexts = e.get("error") or "\n".join(e["next_runs"])
        lists = ", ".join(e["lists"]) + (" (build only)" if e["build_only"] else "")
        table.add_row(e["name"], e["cron"], lists, nexts, last_text)
    out.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(schedule_app, name="schedule")
