"""The exception hierarchy of the newsletter package.

Every error the library raises on purpose derives from :class:`NewsletterError` and is defined
here, one class per kind of failure, so callers can tell them apart. Exceptions carry the fields a
caller needs (``path``, ``line``, ``key``, ``source``, ``recipient``...) and render to one plain
line with ``str()``. The CLI maps classes to exit statuses in one table
(:data:`newsletter.cli.common.EXIT_CODES`); the library never prints or exits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class NewsletterError(Exception):
    """Base class of all errors raised by the newsletter package."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _where(path: str | Path | None, line: int | None) -> str:
    if path is None:
        return ""
    return f"{path}:{line}: " if line else f"{path}: "


class ConfigError(NewsletterError):
    """A setting is missing, unknown or invalid; ``key`` is its dotted name."""

    def __init__(self, message: str, *, key: str | None = None, path: str | Path | None = None):
        self.key = key
        self.path = path
        super().__init__(f"{_where(path, None)}{message}")


class SourceError(NewsletterError):
    """An article source (feed or Markdown folder) could not be read."""

    def __init__(self, message: str, *, source: str, line: int | None = None) -> None:
        self.source = source
        self.line = line
        super().__init__(f"{_where(source, line)}{message}")


class RatesError(NewsletterError):
    """The currency rates could not be read or are invalid."""

    def __init__(self, message: str, *, source: str, field: str | None = None) -> None:
        self.source = source
        self.field = field
        super().__init__(f"{_where(source, None)}{message}")


class NoArticlesError(NewsletterError):
    """No article fell inside the issue's window: there is nothing to send."""


class TemplateError(NewsletterError):
    """A Jinja2 template is missing, has a syntax error or failed while rendering."""

    def __init__(self, message: str, *, path: str | Path, line: int | None = None) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{_where(path, line)}{message}")


class BuildCheckError(NewsletterError):
    """``--strict`` is on and the built issue failed one or more build checks."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        first = problems[0] if problems else "unknown problem"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"build check failed: {first}{more}")


class IssueNotFoundError(NewsletterError):
    """The named issue has not been built."""

    def __init__(self, message: str, *, path: str | Path) -> None:
        self.path = path
        super().__init__(message)


class ServerError(NewsletterError):
    """A local server (preview, demo SMTP) could not start."""

    def __init__(self, message: str, *, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(message)


class DatabaseError(NewsletterError):
    """The database cannot be reached, or its schema does not match the code."""


class AddressError(NewsletterError):
    """An e-mail address is not valid."""

    def __init__(self, message: str, *, address: str) -> None:
        self.address = address
        super().__init__(message)


class UnknownInterestError(NewsletterError):
    """An interest tag is not in the vocabulary (countries, Regional, topics)."""

    def __init__(self, tag: str, vocabulary: Sequence[str]) -> None:
        self.tag = tag
        super().__init__(f"unknown interest {tag!r} (known: {', '.join(vocabulary)})")


class AudienceError(NewsletterError):
    """A subscriber or list operation cannot be done (unknown address, suppressed address...)."""

    def __init__(self, message: str, *, email: str | None = None) -> None:
        self.email = email
        super().__init__(message)


class CSVImportError(NewsletterError):
    """A subscriber file cannot be imported at all (unreadable, no header, no email column)."""

    def __init__(self, message: str, *, path: str | Path, line: int | None = None) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{_where(path, line)}{message}")


class TokenError(NewsletterError):
    """A token is malformed, tampered with, expired, or for another purpose."""


class KeyFileError(NewsletterError):
    """A secret or DKIM key is missing, unreadable, of the wrong kind, or would be overwritten."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = path
        super().__init__(f"{_where(path, None)}{message}")


class HeaderError(NewsletterError):
    """A header value taken from data cannot go into a message (a line break in it...)."""

    def __init__(self, field: str, value: str) -> None:
        self.field = field
        super().__init__(
            f"header {field}: value contains a line break or another control character: "
            f"{value[:60]!r}"
        )


class MessageError(NewsletterError):
    """One recipient's message cannot be built (an address that cannot be encoded...)."""

    def __init__(self, message: str, *, recipient: str | None = None) -> None:
        self.recipient = recipient
        super().__init__(message)


class SigningError(NewsletterError):
    """A DKIM signing process failed (it exited, or could not load the key)."""


class TransportError(NewsletterError):
    """Sending cannot go on: the server refuses our credentials, TLS cannot be set up..."""


class SendInterrupted(NewsletterError):
    """A send was stopped before the messages in flight finished: a second SIGTERM/SIGINT, or
    the grace period after the first one ran out (what is unsent stays queued)."""


class SendLockedError(NewsletterError):
    """Another sender (or scheduler) holds the lock of this send."""

    def __init__(self, message: str, *, name: str, owner: str) -> None:
        self.name = name
        self.owner = owner
        super().__init__(message)


class ScheduleError(NewsletterError):
    """A schedule cannot run: bad cron expression, unknown list, no schedule configured..."""

    def __init__(self, message: str, *, schedule: str | None = None) -> None:
        self.schedule = schedule
        super().__init__(f"schedule {schedule!r}: {message}" if schedule else message)


class RequestTooLarge(NewsletterError):
    """A request body to the subscriber pages is over the size limit (answered with 413)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body over {limit} bytes")


class FormError(NewsletterError):
    """A field of a form on the subscriber pages is not acceptable."""

    def __init__(self, message: str, *, field: str) -> None:
        self.field = field
        super().__init__(message)


class MailboxError(NewsletterError):
    """A mailbox of returned mail (Maildir, mbox, .eml, IMAP) could not be read at all."""

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class WebhookError(NewsletterError):
    """A webhook call that cannot be taken: a bad signature, a certificate from elsewhere, a
    body that is not what the provider sends. Nothing is changed."""


class IssueLockedError(NewsletterError):
    """An issue some subscribers have already received cannot be rebuilt without ``--force``."""

    def __init__(self, message: str, *, issue: str, sent: int) -> None:
        self.issue = issue
        self.sent = sent
        super().__init__(message)


class EditError(NewsletterError):
    """An edit of an issue's plan that cannot be made (an unknown article or country)."""
