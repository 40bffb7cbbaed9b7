"""Building the e-mail for each subscriber, fast.

A rendered variant becomes a :class:`MessageTemplate` once: the MIME body (multipart/alternative,
text/plain first, text/html last, UTF-8, quoted-printable with lines of at most 76 octets) in
which the unsubscribe and preferences URLs are fixed-length *slots*, and the headers that are the
same for everyone. Personalising a message is then a few byte replacements (the URLs carry an
HMAC token of fixed length), a handful of per-recipient headers (To, Message-ID, Date,
List-Unsubscribe) and, with DKIM on, one SHA-256 over the body and one RSA signature
(``cryptography``), relaxed/relaxed, computed here rather than by dkimpy (pure-Python RSA is ~25x
slower). dkimpy verifies these signatures in the tests.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr
from typing import Any

from newsletter.compose.render import (
    PREFERENCES_PLACEHOLDER,
    UNSUBSCRIBE_PLACEHOLDER,
    RenderedIssue,
)
from newsletter.core.tokens import TOKEN_LENGTH, Purpose, Signer
from newsletter.delivery.dkim import DKIMSigner, canonical_body
from newsletter.errors import HeaderError, MessageError

CRLF = b"\r\n"


@dataclass(frozen=True)
class SenderConfig:
    from_address: str
    from_name: str
    subject: str  # the issue's subject line, already formatted
    list_id: str
    base_url: str  # where /u/TOKEN and /p/TOKEN are served
    unsubscribe_mailto: str
    reply_to: str = ""

    @property
    def domain(self) -> str:
        return self.from_address.rpartition("@")[2]


def check_header(field: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderError(field, value)
    return value


def encode_header(value: str) -> str:
    """ASCII stays as it is; anything else becomes RFC 2047 encoded words (folded)."""
    try:
        value.encode("ascii")
        return value
    except UnicodeEncodeError:
        return Header(value, "utf-8").encode(maxlinelen=76).replace("\n", "\r\n")


_PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+")


def address_header(name: str, email: str) -> str:
    if _PLAIN_NAME.fullmatch(name) and _PLAIN_ADDRESS.fullmatch(email):
        # The common case, as formataddr would write it (no quoting, no encoding needed).
        return f"{name} <{email}>" if name.strip() else email
    check_header("address", name)
    check_header("address", email)
    domain = email.rpartition("@")[2]
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise MessageError(
            f"address {email!r} has a domain that cannot be encoded", recipient=email
        ) from None
    local = email.rpartition("@")[0]
    try:
        local.encode("ascii")
    except UnicodeEncodeError:
        raise MessageError(
            f"address {email!r} needs SMTPUTF8, which is not supported", recipient=email
        ) from None
    return formataddr((name, f"{local}@{ascii_domain}"), charset="utf-8").replace("\n", "\r\n")


# -- quoted-printable with slots ------------------------------------------------------------------

_LITERAL = frozenset(range(33, 127)) - {ord("=")}


def qp_encode(text: str, slots: tuple[str, ...] = ()) -> bytes:
    """Quoted-printable (RFC 2045), CRLF line ends, lines <= 76 octets; ``slots`` never split.

    A "." that would start a line is written as ``=2E``, so the body never needs SMTP
    dot-stuffing (the transport can send it as it is).
    """
    pattern = re.compile("|".join(re.escape(s) for s in slots)) if slots else None
    out: list[str] = []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        pieces: list[tuple[bool, str]] = []
        pos = 0
        if pattern is not None:
            for m in pattern.finditer(line):
                pieces.append((False, line[pos : m.start()]))
                pieces.append((True, m.group(0)))
                pos = m.end()
        pieces.append((False, line[pos:]))
        current = ""
        for is_slot, piece in pieces:
            tokens = [piece] if is_slot else _qp_tokens(piece)
            for token in tokens:
                if len(current) + len(token) > 75:
                    out.append(current + "=")
                    current = ""
                if not current and token == ".":
                    token = "=2E"  # no line starts with ".": SMTP needs no dot-stuffing
                current += token
        if current.endswith((" ", "\t")):
            current = current[:-1] + ("=20" if current[-1] == " " else "=09")
            if len(current) > 76:
                out.append(current[:-3] + "=")
                current = current[-3:]
        out.append(current)
    return "\r\n".join(out).encode("ascii")


def _qp_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for ch in text:
        code = ord(ch)
        if code < 128 and (code in _LITERAL or ch in " \t"):
            tokens.append(ch)
        else:
            tokens.extend(f"={b:02X}" for b in ch.encode("utf-8"))
    return tokens


def _split_slots(body: bytes, slots: tuple[str, ...]) -> tuple[list[bytes], list[int]]:
    """``body`` cut at every slot: the pieces between them, and which slot each cut was."""
    pattern = re.compile(b"|".join(re.escape(slot.encode()) for slot in slots))
    index = {slot.encode(): i for i, slot in enumerate(slots)}
    pieces: list[bytes] = []
    order: list[int] = []
    pos = 0
    for m in pattern.finditer(body):
        pieces.append(body[pos : m.start()])
        order.append(index[m.group(0)])
        pos = m.end()
    pieces.append(body[pos:])
    return pieces, order


def _fill(pieces: list[bytes], order: list[int], values: tuple[bytes, ...]) -> bytes:
    joined = [pieces[0]]
    for i, slot in enumerate(order, 1):
        joined.append(values[slot])
        joined.append(pieces[i])
    return b"".join(joined)


# -- per-variant template ------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str


class MessageTemplate:
    """One variant's message, ready to be personalised many times."""

    def __init__(
        self,
        issue_key: str,
        variant: str,
        rendered: RenderedIssue,
        sender: SenderConfig,
        signer: Signer,
        dkim: DKIMSigner | None = None,
    ) -> None:
        self.issue_key = issue_key
        self.variant = variant
        self.sender = sender
        self.signer = signer
        self.dkim = dkim
        url_len = len(sender.base_url) + 3 + TOKEN_LENGTH
        self._unsub_slot = "~U" + "~" * (url_len - 2)
        self._prefs_slot = "~P" + "~" * (url_len - 2)
        self._token_slot = "~T" + "~" * (TOKEN_LENGTH - 2)
        slots = (self._unsub_slot, self._prefs_slot)
        text = rendered.email_txt.replace(UNSUBSCRIBE_PLACEHOLDER, self._unsub_slot).replace(
            PREFERENCES_PLACEHOLDER, self._prefs_slot
        )
        html = rendered.email_html.replace(UNSUBSCRIBE_PLACEHOLDER, self._unsub_slot).replace(
            PREFERENCES_PLACEHOLDER, self._prefs_slot
        )
        boundary = f"=_nl_{hashlib.sha1((issue_key + variant).encode()).hexdigest()[:24]}"
        self.boundary = boundary
        part = (
            'Content-Type: text/{kind}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        body = b"".join(
            [
                f"--{boundary}\r\n".encode(),
                part.format(kind="plain").encode(),
                qp_encode(text, slots),
                CRLF,
                f"--{boundary}\r\n".encode(),
                part.format(kind="html").encode(),
                qp_encode(html, slots),
                CRLF,
                f"--{boundary}--\r\n".encode(),
            ]
        )
        if body.startswith(b".") or b"\n." in body:  # qp_encode never lets this happen
            raise MessageError(f"variant {variant}: a body line starts with '.'")
        self.body = body
        self._pieces, self._slot_order = _split_slots(body, slots)
        self._canon_pieces, self._canon_order = _split_slots(
            canonical_body(body) if dkim else b"", slots
        )
        unsub_mailto = (
            f"<mailto:{sender.unsubscribe_mailto}?subject=unsubscribe%20{self._token_slot}>"
        )
        self._list_unsubscribe = f"<{self._unsub_slot}>, {unsub_mailto}"
        self.static_headers: list[tuple[str, str]] = [
            ("From", address_header(sender.from_name, sender.from_address)),
            ("Subject", encode_header(check_header("Subject", sender.subject))),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
            ("List-Id", encode_header(check_header("List-Id", sender.list_id))),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
        if sender.reply_to:
            self.static_headers.append(("Reply-To", check_header("Reply-To", sender.reply_to)))
        self._date_cache: tuple[int, str] = (-1, "")
        self.slot_counts = (
            body.count(self._unsub_slot.encode()),
            body.count(self._prefs_slot.encode()),
        )

    def _date(self, when: datetime) -> str:
        second = int(when.timestamp())
        if self._date_cache[0] != second:
            self._date_cache = (second, format_datetime(when))
        return self._date_cache[1]

    def urls(self, subscriber_id: int) -> tuple[str, str, str]:
        token = self.signer.make(Purpose.SUBSCRIBER, subscriber_id)
        base = self.sender.base_url
        return token, f"{base}/u/{token}", f"{base}/p/{token}"

    def message_id(self, subscriber_id: int) -> str:
        tag = self.signer.message_id_tag(self.issue_key, subscriber_id)
        return f"<{self.issue_key}.{subscriber_id}.{tag}@{self.sender.domain}>"

    def personalise(self, recipient: Recipient, when: datetime) -> bytes:
        """The complete message for one recipient, CRLF line ends, ready for SMTP."""
        draft = self.draft(recipient, when)
        return draft.finish(self.dkim.sign(draft.to_sign) if self.dkim and draft.to_sign else None)

    def draft(self, recipient: Recipient, when: datetime) -> Draft:
        """Everything but the DKIM signature itself (see :meth:`DKIMSigner.sign`)."""
        token, unsub, prefs = self.urls(recipient.subscriber_id)
        values = (unsub.encode(), prefs.encode())
        body = _fill(self._pieces, self._slot_order, values)
        headers = [
            self.static_headers[0],
            ("To", address_header(recipient.name, recipient.email)),
            self.static_headers[1],
            ("Date", self._date(when)),
            ("Message-ID", self.message_id(recipient.subscriber_id)),
            (
                "List-Unsubscribe",
                self._list_unsubscribe.replace(self._unsub_slot, unsub).replace(
                    self._token_slot, token
                ),
            ),
            *self.static_headers[2:],
        ]
        head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("utf-8")
        if self.dkim is None:
            return Draft(head, body)
        canon = _fill(self._canon_pieces, self._canon_order, values)
        value, data = self.dkim.prepare(headers, canon, int(when.timestamp()))
        return Draft(head, body, value, data)


class WireSafe(bytes):
    """A whole message whose lines all end with CRLF and never start with "." (the body is
    quoted-printable, which writes such a dot as ``=2E``; header lines start with a name or
    with folding white space): it goes into SMTP DATA as it is, without dot-stuffing."""


@dataclass(frozen=True)
class Draft:
    """A personalised message waiting for its DKIM signature (if any)."""

    head: bytes
    body: bytes
    dkim_value: str = ""
    to_sign: bytes = b""

    def finish(self, signature: str | None) -> WireSafe:
        if signature is None:
            return WireSafe(b"".join((self.head, CRLF, self.body)))
        dkim = f"DKIM-Signature: {self.dkim_value}{signature}\r\n".encode("ascii")
        return WireSafe(b"".join((dkim, self.head, CRLF, self.body)))


def describe(message: bytes) -> dict[str, Any]:
    """Size and longest line of a message (for checks and the demo)."""
    lines = message.split(CRLF)
    return {"bytes": len(message), "longest_line": max(len(line) for line in lines)}
