"""What every command shares: settings and database loaded once, errors turned into exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from newsletter.config import Settings, load_settings
from newsletter.errors import (
    BuildCheckError,
    ConfigError,
    NewsletterError,
    NoArticlesError,
    ScheduleError,
    SendLockedError,
)

if TYPE_CHECKING:
    from pathlib import Path

    from newsletter.storage.db import Database

F = TypeVar("F", bound=Callable[..., Any])

# Exit statuses: the one table that maps library errors to them (the first class in this order
# that the error is an instance of wins; any other NewsletterError is 1). `send` adds 5 and 6 for
# its outcomes (newsletter.cli.delivery).
EXIT_CODES: dict[type[NewsletterError], int] = {
    ConfigError: 2,
    ScheduleError: 2,
    NoArticlesError: 3,
    BuildCheckError: 4,
    SendLockedError: 7,
}
EXIT_FAILURES = 5  # send: some addresses failed permanently; nothing left to retry
EXIT_UNDELIVERED = 6  # send: messages are left queued or deferred (run it again)


def exit_code(exc: NewsletterError) -> int:
    """The exit status of a library error (:data:`EXIT_CODES`)."""
    for cls, code in EXIT_CODES.items():
        if isinstance(exc, cls):
            return code
    return 1


out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class State:
    """What the global options say; settings are loaded once, on first use."""

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None
        self._database: Database | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings

    @property
    def database(self) -> Database:
        if self._database is None:
            from newsletter.storage.db import Database

            self._database = Database(self.settings.database_url)
        return self._database

    def close(self) -> None:
        if self._database is not None:
            self._database.dispose()
            self._database = None


def handles_errors(func: F) -> F:
    """Turn library errors into one line on stderr and a non-zero exit status."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NewsletterError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(exit_code(exc)) from None
        except KeyboardInterrupt:
            err.print("interrupted", markup=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):  # pragma: no cover - the callback always sets it
        obj = State(None)
        ctx.find_root().obj = obj
    return obj


def warn(message: str) -> None:
    err.print(f"warning: {message}", markup=False)


def parse_day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date in the form YYYY-MM-DD", param_hint=option
        ) from None


def today(settings: Settings) -> date:
    return datetime.now(settings.issue.tz).date()


def key_on_first_need(settings: Any) -> None:
    """Create the signing key the first time one is needed, and say where it is."""
    from newsletter.delivery.factory import ensure_key

    created = ensure_key(settings)
    if created is not None:
        err.print(
            f"created a new secret key in {created} (mode 600): keep it, links in sent issues "
            "depend on it; every sender and 'newsletter serve' of this workspace must use the "
            "same key (copy the file, or set security.secret_key)",
            markup=False,
        )
