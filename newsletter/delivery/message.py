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
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from newsletter.compose.render import RenderedIssue
from newsletter.core.addresses import CONTROL_CHARACTERS
from newsletter.core.tokens import TOKEN_LENGTH, Purpose, Signer
from newsletter.core.verp import HEADER as REF_HEADER
from newsletter.core.verp import make_ref, return_path
from newsletter.delivery.dkim import DKIMSigner, canonical_pieces
from newsletter.delivery.envelope import address_header, fold_text
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
    return_path: str = ""  # bounces.return_path: VERP envelope senders when set

    @property
    def domain(self) -> str:
        return self.from_address.rpartition("@")[2]


def check_header(field: str, value: str) -> str:
    """Settings-made header values (subject, list id, reply-to) must be one line of text."""
    if CONTROL_CHARACTERS.search(value):
        raise HeaderError(field, value)
    return value


@dataclass(frozen=True)
class SlotMarks:
    """What the template is rendered with in place of the unsubscribe and preferences URLs.

    Random for every send and exactly as long as the URLs that replace them, so no article
    text can know them in advance: a placeholder copied from the template's docs into a feed
    item stays inert text. The body is cut at these marks once (:func:`qp_segments` records
    where); personalising then joins the pieces with the URLs, by position.
    """

    unsubscribe: str
    preferences: str

    @classmethod
    def new(cls, base_url: str) -> SlotMarks:
        length = len(base_url) + 3 + TOKEN_LENGTH  # BASE/u/TOKEN
        if length < 24:  # pragma: no cover - a base URL is at least "https://x.y"
            raise MessageError(f"base URL {base_url!r} is too short")
        return cls(
            ("nlU" + secrets.token_hex(length))[:length],
            ("nlP" + secrets.token_hex(length))[:length],
        )

    @property
    def slots(self) -> tuple[str, str]:
        return (self.unsubscribe, self.preferences)


# -- quoted-printable with slots ------------------------------------------------------------------

_LITERAL = frozenset(range(33, 127)) - {ord("=")}


def qp_segments(text: str, slots: tuple[str, ...] = ()) -> tuple[list[bytes], list[int]]:
    """Quoted-printable (RFC 2045), CRLF line ends, lines <= 76 octets, cut at the slots.

    Returns the encoded pieces between the slots and which slot each cut was (so
    ``pieces[0] + slot[order[0]] + pieces[1] + ...`` is the whole encoding); a slot is never
    split across lines. Where each slot lands is recorded while encoding: the encoded body is
    never searched afterwards.

    A "." that would start a line is written as ``=2E``, so the body never needs SMTP
    dot-stuffing (the transport can send it as it is).
    """
    pattern = re.compile("|".join(re.escape(s) for s in slots)) if slots else None
    index = {slot: i for i, slot in enumerate(slots)}
    out: list[str] = []
    done = 0  # length of the lines in ``out`` with their CRLFs
    cuts: list[tuple[int, int]] = []  # (offset in the output, slot)
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
                    done += len(current) + 3
                    current = ""
                if not current and token == ".":
                    token = "=2E"  # no line starts with ".": SMTP needs no dot-stuffing
                if is_slot:
                    cuts.append((done + len(current), index[token]))
                current += token
        if current.endswith((" ", "\t")):
            current = current[:-1] + ("=20" if current[-1] == " " else "=09")
            if len(current) > 76:
                out.append(current[:-3] + "=")
                done += len(current) - 3 + 3
                current = current[-3:]
        out.append(current)
        done += len(current) + 2
    encoded = "\r\n".join(out).encode("ascii")
    segments: list[bytes] = []
    pos = 0
    for offset, slot in cuts:
        segments.append(encoded[pos:offset])
        pos = offset + len(slots[slot])
    segments.append(encoded[pos:])
    return segments, [slot for _, slot in cuts]


def qp_encode(text: str) -> bytes:
    """Quoted-printable of ``text`` (see :func:`qp_segments`)."""
    return qp_segments(text)[0][0]


def _qp_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for ch in text:
        code = ord(ch)
        if code < 128 and (code in _LITERAL or ch in " \t"):
            tokens.append(ch)
        else:
            tokens.extend(f"={b:02X}" for b in ch.encode("utf-8"))
    return tokens


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
    """One variant's message, ready to be personalised many times.

    ``rendered`` must have been rendered with ``marks`` as its unsubscribe and preferences URLs
    (:class:`SlotMarks`); the template's own links are the only places personalised.
    """

    def __init__(
        self,
        issue_key: str,
        variant: str,
        rendered: RenderedIssue,
        sender: SenderConfig,
        signer: Signer,
        dkim: DKIMSigner | None = None,
        *,
        marks: SlotMarks,
    ) -> None:
        self.issue_key = issue_key
        self.variant = variant
        self.sender = sender
        self.signer = signer
        self.dkim = dkim
        if len(marks.unsubscribe) != len(sender.base_url) + 3 + TOKEN_LENGTH:
            raise MessageError(f"variant {variant}: slot marks made for another base URL")
        slots = marks.slots
        for part, kind in ((rendered.email_txt, "text"), (rendered.email_html, "HTML")):
            if marks.unsubscribe not in part:
                raise MessageError(f"variant {variant}: the {kind} part has no unsubscribe link")
        boundary = f"=_nl_{hashlib.sha1((issue_key + variant).encode()).hexdigest()[:24]}"
        self.boundary = boundary
        part_head = (
            'Content-Type: text/{kind}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        text_pieces, text_order = qp_segments(rendered.email_txt, slots)
        html_pieces, html_order = qp_segments(rendered.email_html, slots)
        # One list of pieces for the whole body: the MIME framing joins onto the pieces at
        # each end of each part.
        opening = f"--{boundary}\r\n{part_head.format(kind='plain')}".encode()
        middle = f"\r\n--{boundary}\r\n{part_head.format(kind='html')}".encode()
        closing = f"\r\n--{boundary}--\r\n".encode()
        text_pieces[0] = opening + text_pieces[0]
        text_pieces[-1] += middle + html_pieces[0]
        self._pieces = [*text_pieces, *html_pieces[1:]]
        self._pieces[-1] += closing
        self._slot_order = text_order + html_order
        self.body = _fill(self._pieces, self._slot_order, (b"", b""))
        if self._pieces[0].startswith(b".") or any(b"\n." in p for p in self._pieces):
            raise MessageError(f"variant {variant}: a body line starts with '.'")
        # Relaxed body canonicalisation works within lines and the URLs hold no white space,
        # so the canonical body is the canonical pieces joined with the same URLs.
        self._canon_pieces = canonical_pieces(self._pieces) if dkim else []
        # The body hash of every message starts the same: its state after the first piece
        # is kept, and each message only hashes on from there (a quarter of the body less).
        self._canon_start = hashlib.sha256(self._canon_pieces[0] if dkim else b"")
        self._token_slot = "~T" + "~" * (TOKEN_LENGTH - 2)
        self._unsub_slot = marks.unsubscribe
        unsub_mailto = (
            f"<mailto:{sender.unsubscribe_mailto}?subject=unsubscribe%20{self._token_slot}>"
        )
        self._list_unsubscribe = f"<{self._unsub_slot}>, {unsub_mailto}"
        self.static_headers: list[tuple[str, str]] = [
            ("From", address_header(sender.from_name, sender.from_address, "From")),
            ("Subject", fold_text(check_header("Subject", sender.subject), len("Subject: "))),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
            ("List-Id", fold_text(check_header("List-Id", sender.list_id), len("List-Id: "))),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
        if sender.reply_to:
            reply_to = check_header("Reply-To", sender.reply_to)
            self.static_headers.append(("Reply-To", address_header("", reply_to, "Reply-To")))
        self._date_cache: tuple[int, str] = (-1, "")
        self.slot_counts = (self._slot_order.count(0), self._slot_order.count(1))

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

    def ref(self, subscriber_id: int) -> str:
        return make_ref(self.signer, self.issue_key, subscriber_id)

    def envelope_sender(self, subscriber_id: int) -> str:
        """``MAIL FROM``: ``bounces+REF@domain`` (VERP) when a return path is set, else From."""
        if not self.sender.return_path:
            return self.sender.from_address
        return return_path(self.sender.return_path, self.ref(subscriber_id))

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
            (REF_HEADER, self.ref(recipient.subscriber_id)),
            (
                "List-Unsubscribe",
                self._list_unsubscribe.replace(self._unsub_slot, unsub).replace(
                    self._token_slot, token
                ),
            ),
            *self.static_headers[2:],
        ]
        head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("utf-8")
        envelope = self.envelope_sender(recipient.subscriber_id)
        if self.dkim is None:
            return Draft(head, body, envelope_from=envelope)
        body_hash = self._canon_start.copy()
        for i, slot in enumerate(self._slot_order):
            body_hash.update(values[slot])
            body_hash.update(self._canon_pieces[i + 1])
        value, data = self.dkim.prepare(headers, body_hash.digest(), int(when.timestamp()))
        return Draft(head, body, value, data, envelope)


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
    envelope_from: str = ""  # MAIL FROM for this message ("" = the sender's From address)

    def finish(self, signature: str | None) -> WireSafe:
        if signature is None:
            return WireSafe(b"".join((self.head, CRLF, self.body)))
        dkim = f"DKIM-Signature: {self.dkim_value}{signature}\r\n".encode("ascii")
        return WireSafe(b"".join((dkim, self.head, CRLF, self.body)))


def describe(message: bytes) -> dict[str, Any]:
    """Size and longest line of a message (for checks and the demo)."""
    lines = message.split(CRLF)
    return {"bytes": len(message), "longest_line": max(len(line) for line in lines)}
