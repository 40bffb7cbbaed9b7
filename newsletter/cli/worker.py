"""``newsletter worker``: serve every running send as one more sender (PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import typer

from newsletter.cli.common import err, handles_errors, key_on_first_need, out, state
from newsletter.errors import ConfigError


def worker_command(
    ctx: typer.Context,
    poll: Annotated[
        float, typer.Option(min=0.1, help="Seconds between looks for sends with work left.")
    ] = 2.0,
) -> None:
    """Join every send that has work left, as one more sender, until stopped (SIGTERM).

    Needs PostgreSQL (SQLite allows one sender). Run it on as many machines as you like;
    start a send anywhere with 'newsletter send'. Example: newsletter worker
    """
    from newsletter.delivery.factory import make_sender
    from newsletter.delivery.worker import Worker

    st = state(ctx)
    settings, database = st.settings, st.database
    if database.backend != "postgresql":
        raise ConfigError("newsletter worker needs PostgreSQL: with SQLite one sender at a time")
    key_on_first_need(settings)
    worker = Worker(database, lambda: make_sender(settings, database), poll=poll)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    err.print("worker: waiting for sends (Ctrl-C or SIGTERM stops)", markup=False)
    asyncio.run(main())
    sent = sum(s.sent for s in worker.served)
    out.print(f"worker stopped: {len(worker.served)} send run(s) served, {sent} sent", markup=False)


def register(app: typer.Typer) -> None:
    app.command("worker")(handles_errors(worker_command))
