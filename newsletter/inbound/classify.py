"""One classifier for every returned mail, however it arrives (a Maildir, IMAP, a pipe).

In order: RFC 3464 delivery status notifications and RFC 5965 ARF complaint reports (the
standard ``email`` package reads them); a mail to the unsubscribe address with a valid token;
the common non-standard bounces (qmail, Exim, older Sendmail, Yahoo...: ``flufl.bounce`` finds
the failed addresses, :mod:`~newsletter.core.smtpreplies` judges the words); auto-replies;
anything else is not a return. The message is tied to its (issue, subscriber) by the VERP
reference in the address it came back to, else the ``X-Newsletter-Ref`` header or our
``Message-ID`` quoted in it; the addresses it names are kept as the next clues.
"""

from __future__ import annotations

import email
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message

from flufl.bounce import all_failures

from newsletter.core.smtpreplies import judge, status_of
from newsletter.core.states import ReturnKind
from newsletter.core.tokens import TOKEN_LENGTH, Purpose, Signer
from newsletter.core.verp import Reference, read_message_id, read_ref, refs_in
from newsletter.errors import TokenError
from newsletter.inbound import parse

ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")
_REF_HEADER = re.compile(r"X-Newsletter-Ref:\s*([0-9a-z._]+)", re.IGNORECASE)
_TOKEN = re.compile(rf"(?<![A-Za-z0-9_-])([A-Za-z0-9_-]{{{TOKEN_LENGTH}}})(?![A-Za-z0-9_-])")
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|not delivered|delivery (?:status|failure|failed|problem|has failed"
    r"|notification)|returned mail|returned to sender|mail delivery|failure notice|"
    r"non[- ]?delivery|could not be delivered|bounce|rejected|delivery error",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery (?:subsystem|system)", re.I)
_AUTOREPLY_SUBJECT = re.compile(
    r"out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response|antwort)|"
    r"autoreply|vacation|abwesenheit|absence|away from|on leave|réponse automatique|"
    r"respuesta automática|i am (?:away|out)|will be out|holiday",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Mailroom:
    """What the classifier needs to know of us."""

    signer: Signer
    return_path: str = ""  # bounces.return_path ("" = no VERP)
    unsubscribe_address: str = ""  # the List-Unsubscribe mailto address
    envelope_recipient: str = ""  # where the MTA delivered it, when it says (a pipe)


@dataclass(frozen=True)
class Return:
    """What one returned mail says about one recipient."""

    kind: ReturnKind
    reason: str
    status: str = ""
    diagnostic: str = ""
    form: str = ""  # dsn, arf, unsubscribe, non-standard, autoreply, none
    ref: Reference | None = None  # the (issue, subscriber) it answers, verified
    subscriber_id: int | None = None  # from a valid unsubscribe token
    addresses: tuple[str, ...] = ()  # the addresses it names, best clue first
    message_id: str = ""  # of the returned mail itself
    problem: str = ""  # why nothing may change (a forged reference): one line
    candidates: tuple[str, ...] = field(default=(), repr=False)  # every address in its text


def classify(raw: bytes, room: Mailroom) -> list[Return]:
    """One or more verdicts (a DSN may report several recipients) for a returned mail."""
    msg = email.message_from_bytes(raw)
    common = _Clues(msg, room)
    if common.problem:
        return [
            common.finish(ReturnKind.IGNORED, common.problem, form="forged", problem=common.problem)
        ]
    kind = parse.report_type(msg)
    if kind == "delivery-status" and (blocks := parse.dsn_recipients(msg)):
        return [common.dsn(block) for block in blocks]
    if kind == "feedback-report":
        return [common.arf(parse.feedback_fields(msg))]
    if (unsubscribe := common.unsubscribe()) is not None:
        return [unsubscribe]
    if (bounce := common.non_standard()) is not None:
        return [bounce]
    if common.autoreply():
        return [common.finish(ReturnKind.AUTOREPLY, "an auto-reply", form="autoreply")]
    return [
        common.finish(ReturnKind.IGNORED, "not a bounce, complaint or unsubscribe", form="none")
    ]


class _Clues:
    """The identifying clues of one returned mail, found once."""

    def __init__(self, msg: Message, room: Mailroom) -> None:
        self.msg, self.room = msg, room
        self.message_id = " ".join(str(msg.get("Message-ID", "")).split())[:200]
        self.problem = ""
        self.ref: Reference | None = None
        self.text = parse.whole_text(msg)
        envelope = [
            room.envelope_recipient,
            *(str(v) for h in ENVELOPE_HEADERS for v in msg.get_all(h, [])),
        ]
        for candidate in refs_in(" ".join(e for e in envelope if "+" in e)):
            try:
                self.ref = read_ref(room.signer, candidate)
                break
            except TokenError as exc:
                self.problem = f"{exc}: {candidate}"
        if self.ref is None and not self.problem:
            self.ref = self._quoted_ref()
        if self.ref is not None:
            self.problem = ""

    def _quoted_ref(self) -> Reference | None:
        for candidate in _REF_HEADER.findall(self.text):
            try:
                return read_ref(self.room.signer, candidate)
            except TokenError:
                continue
        return read_message_id(self.room.signer, self.text)

    def finish(
        self,
        kind: ReturnKind,
        reason: str,
        *,
        form: str,
        status: str = "",
        diagnostic: str = "",
        addresses: Sequence[str] = (),
        subscriber_id: int | None = None,
        problem: str = "",
    ) -> Return:
        return Return(
            kind,
            reason,
            status=status,
            diagnostic=diagnostic,
            form=form,
            ref=self.ref,
            subscriber_id=subscriber_id,
            addresses=tuple(dict.fromkeys(a.strip().lower() for a in addresses if a.strip())),
            message_id=self.message_id,
            problem=problem,
            candidates=tuple(parse.addresses_in(self.text)),
        )

    def dsn(self, block: parse.RecipientStatus) -> Return:
        addresses = (block.final, block.original)
        if block.action == "delayed":
            return self.finish(
                ReturnKind.DELAYED,
                "delivery delayed",
                form="dsn",
                status=block.status,
                addresses=addresses,
            )
        if block.action != "failed":
            return self.finish(
                ReturnKind.IGNORED,
                f"action {block.action or 'missing'}",
                form="dsn",
                addresses=addresses,
            )
        diagnostic = block.diagnostic or parse.around(parse.notice_text(self.msg), block.final)
        status = block.status or status_of(diagnostic) or "5.0.0"
        kind, reason = judge(status, diagnostic)
        return self.finish(
            kind, reason, form="dsn", status=status, diagnostic=diagnostic, addresses=addresses
        )

    def arf(self, fields: dict[str, str]) -> Return:
        feedback = fields.get("feedback-type", "abuse").lower()
        addresses = [
            fields.get("original-rcpt-to", ""),
            fields.get("removal-recipient", ""),
        ]
        addresses = [a.strip("<> ").partition(";")[2].strip() or a.strip("<> ") for a in addresses]
        if feedback == "not-spam":
            return self.finish(
                ReturnKind.IGNORED, "reported as not spam", form="arf", addresses=addresses
            )
        return self.finish(
            ReturnKind.COMPLAINT, f"complaint ({feedback})", form="arf", addresses=addresses
        )

    def unsubscribe(self) -> Return | None:
        target = self.room.unsubscribe_address.lower()
        local, _, domain = target.rpartition("@")
        envelope = " ".join(
            str(v) for h in ENVELOPE_HEADERS for v in self.msg.get_all(h, [])
        ).lower()
        envelope += " " + self.room.envelope_recipient.lower()
        addressed = bool(target) and re.search(
            rf"(?<![\w.+-]){re.escape(local)}(?:\+[^@\s]*)?@{re.escape(domain)}", envelope
        )
        subject = " ".join(str(self.msg.get("Subject", "")).split())
        asked = bool(re.match(r"\s*unsubscribe\b", subject, re.IGNORECASE))
        if not (addressed or asked):
            return None
        body = parse.notice_text(self.msg)[:4000]
        for token in _TOKEN.findall(f"{subject}\n{body}"):
            try:
                sid = self.room.signer.read(token, Purpose.SUBSCRIBER)
            except TokenError:
                continue
            return self.finish(
                ReturnKind.UNSUBSCRIBE, "unsubscribe by mail", form="unsubscribe", subscriber_id=sid
            )
        if not addressed:
            return None
        return self.finish(
            ReturnKind.IGNORED,
            "a mail to the unsubscribe address without a valid token",
            form="unsubscribe",
            problem="a mail to the unsubscribe address without a valid token",
        )

    def non_standard(self) -> Return | None:
        msg = self.msg
        sender = f"{msg.get('From', '')} {msg.get('Return-Path', '')}"
        failed = [
            a.strip() for a in str(msg.get("X-Failed-Recipients", "")).split(",") if a.strip()
        ]
        subject = str(msg.get("Subject", ""))
        looks = (
            bool(failed) or bool(_DAEMON.search(sender)) or bool(_BOUNCE_SUBJECT.search(subject))
        )
        if not looks and str(msg.get("Return-Path", "")).strip() != "<>":
            return None
        temporary, permanent = all_failures(msg)
        found = [_text(a) for a in (*permanent, *temporary)]
        if not (failed or found or looks):
            return None
        notice = parse.notice_text(msg)
        first = (failed or found or [""])[0]
        diagnostic = parse.around(notice, (status_of(notice) and _code_text(notice)) or first)
        default = "4.0.0" if temporary and not permanent and not failed else "5.0.0"
        status = status_of(diagnostic) or default
        if (
            re.search(
                r"\bdelay|still trying|will (?:keep|continue) trying|not yet been delivered",
                notice,
                re.I,
            )
            and not permanent
            and not failed
        ):
            return self.finish(
                ReturnKind.DELAYED, "delivery delayed", form="non-standard", addresses=found
            )
        if not (failed or found or self.ref):
            return None
        kind, reason = judge(status, diagnostic)
        return self.finish(
            kind,
            reason,
            form="non-standard",
            status=status,
            diagnostic=diagnostic,
            addresses=[*failed, *found],
        )

    def autoreply(self) -> bool:
        msg = self.msg
        submitted = str(msg.get("Auto-Submitted", "no")).strip().lower()
        if submitted and submitted != "no":
            return True
        if msg.get("X-Autoreply") or msg.get("X-Autorespond") or msg.get("X-Autoresponder"):
            return True
        if str(msg.get("Precedence", "")).strip().lower() == "auto_reply":
            return True
        return bool(_AUTOREPLY_SUBJECT.search(str(msg.get("Subject", ""))))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _code_text(notice: str) -> str:
    """The reply code itself as it appears in the notice (to centre the diagnostic on it)."""
    match = re.search(
        r"(?<!\d)[45]\d\d[ -](?:[45]\.\d{1,3}\.\d{1,3})?|(?<![\d.])[45]\.\d{1,3}\.\d{1,3}", notice
    )
    return match.group(0) if match else ""
