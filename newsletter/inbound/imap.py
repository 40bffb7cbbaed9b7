"""An IMAP mailbox of returned mail (``newsletter bounces fetch``): read over TLS, each message
moved to a folder of processed mail once what it says is in the database.

imaplib from the standard library; TLS always (implicit on 993, or STARTTLS), the server's
certificate verified. The password is never printed: errors name the host and the step.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from newsletter.errors import MailboxError


@dataclass(frozen=True)
class IMAPConfig:
    host: str
    username: str
    password: str = field(repr=False)
    port: int = 993
    security: str = "tls"  # tls (implicit) or starttls
    folder: str = "INBOX"
    done_folder: str = "Processed"
    ca_file: str = ""
    timeout: float = 30.0


class IMAPMailbox:
    """``with IMAPMailbox(config) as box: for label, raw in box.messages(): ...`` — a message
    counts as processed when the loop asks for the next one; processed messages are moved to
    ``done_folder`` when the block ends, even if it ends in an error (the rest stay)."""

    def __init__(self, config: IMAPConfig) -> None:
        self.config = config
        self.where = f"imap://{config.host}:{config.port}/{config.folder}"
        self.processed: list[bytes] = []
        self.moved = 0
        self._client: imaplib.IMAP4 | None = None

    def __enter__(self) -> IMAPMailbox:
        c = self.config
        context = ssl.create_default_context(cafile=c.ca_file or None)
        try:
            if c.security == "tls":
                client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    c.host, c.port, ssl_context=context, timeout=c.timeout
                )
            else:
                client = imaplib.IMAP4(c.host, c.port, timeout=c.timeout)
                client.starttls(context)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(f"cannot connect: {_why(exc)}", path=self.where) from None
        self._client = client
        try:
            client.login(c.username, c.password)
        except imaplib.IMAP4.error:
            self._logout()
            raise MailboxError(
                f"login refused for {c.username!r} (check bounces.imap_username and the password)",
                path=self.where,
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.processed:
                self._move(self.processed)
        finally:
            self._logout()

    def _logout(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                self._client.logout()
            self._client = None

    def _call(self, step: str, result: tuple[str, Sequence[Any]]) -> Sequence[Any]:
        status, data = result
        if status != "OK":
            detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            raise MailboxError(f"{step} failed: {detail[:200]}", path=self.where)
        return data

    def messages(self) -> Iterator[tuple[str, bytes]]:
        client = self._require()
        try:
            self._call("SELECT", client.select(_quote(self.config.folder)))
            found = self._call("SEARCH", client.uid("SEARCH", "ALL"))
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(_why(exc), path=self.where) from None
        uids = found[0].split() if found and isinstance(found[0], bytes) else []
        for uid in uids:
            try:
                data = self._call("FETCH", client.uid("FETCH", uid.decode(), "(BODY.PEEK[])"))
            except (OSError, imaplib.IMAP4.error) as exc:
                raise MailboxError(_why(exc), path=self.where) from None
            raw = next((d[1] for d in data if isinstance(d, tuple) and len(d) > 1), None)
            if isinstance(raw, bytes):
                yield f"{self.where};uid={uid.decode()}", raw
            self.processed.append(uid)

    def _move(self, uids: list[bytes]) -> None:
        client = self._require()
        done = _quote(self.config.done_folder)
        try:
            client.create(done)  # "already exists" is fine
            for first in range(0, len(uids), 500):
                chunk = b",".join(uids[first : first + 500]).decode()
                if "MOVE" in client.capabilities:
                    self._call("MOVE", client.uid("MOVE", chunk, done))
                else:
                    self._call("COPY", client.uid("COPY", chunk, done))
                    self._call("STORE", client.uid("STORE", chunk, "+FLAGS", "(\\Deleted)"))
                    self._call("EXPUNGE", client.expunge())
                self.moved += len(uids[first : first + 500])
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(
                f"moving to {self.config.done_folder}: {_why(exc)}", path=self.where
            ) from None

    def _require(self) -> imaplib.IMAP4:
        if self._client is None:
            raise MailboxError("not connected", path=self.where)
        return self._client


def _quote(folder: str) -> str:
    return '"' + re.sub(r'(["\\])', r"\\\1", folder) + '"'


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the server's certificate is not trusted ({exc.verify_message})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
