"""The exception hierarchy of the newsletter package.

Every error the library raises on purpose derives from :class:`NewsletterError`. Exceptions carry
the fields a caller needs (``path``, ``line``, ``key``, ``source``...) and render to one plain
line with ``str()``. The CLI turns them into that line on stderr and an exit code; the library
never prints or exits.
"""

from __future__ import annotations

from pathlib import Path


class NewsletterError(Exception):
    """Base class of all errors raised by the newsletter package."""

    exit_code = 1

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

    exit_code = 2

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

    exit_code = 3


class TemplateError(NewsletterError):
    """A Jinja2 template is missing, has a syntax error or failed while rendering."""

    def __init__(self, message: str, *, path: str | Path, line: int | None = None) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{_where(path, line)}{message}")


class BuildCheckError(NewsletterError):
    """``--strict`` is on and the built issue failed one or more build checks."""

    exit_code = 4

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
