"""Returns reported by sending services over webhooks: Amazon SES through SNS, and Postmark.

Both become the same :class:`~newsletter.inbound.classify.Return` objects as returned mail, so
the policy is one. SNS messages are verified (RFC 3447 PKCS#1 v1.5 signatures, SHA-1 for
SignatureVersion 1, SHA-256 for 2) with a certificate the caller fetched from an allowed URL.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.core.smtpreplies import judge, status_of
from newsletter.core.states import ReturnKind
from newsletter.core.tokens import Signer
from newsletter.core.verp import HEADER, read_message_id, read_ref
from newsletter.errors import TokenError, WebhookError
from newsletter.inbound.classify import Return

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
)  # fmt: skip


def sns_string_to_sign(fields: dict[str, Any]) -> bytes:
    """The canonical text SNS signs (its documented field order; Subject only when present)."""
    kind = fields.get("Type")
    names = NOTIFICATION_FIELDS if kind == "Notification" else CONFIRMATION_FIELDS
    text = "".join(
        f"{name}\n{fields[name]}\n" for name in names if name in fields and fields[name] is not None
    )
    return text.encode("utf-8")


def verify_sns(fields: dict[str, Any], certificate_pem: bytes) -> None:
    """Raises WebhookError unless ``fields`` carry a valid signature by that certificate."""
    version = str(fields.get("SignatureVersion", ""))
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)
    if algorithm is None:
        raise WebhookError(f"unknown SNS SignatureVersion {version[:10]!r}")
    try:
        signature = base64.b64decode(str(fields.get("Signature", "")), validate=True)
        key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    except ValueError as exc:
        raise WebhookError(f"unreadable SNS signature or certificate: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookError("the SNS certificate does not hold an RSA key")
    try:
        key.verify(signature, sns_string_to_sign(fields), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise WebhookError("the SNS signature does not verify") from None


def _reference(signer: Signer, text: str, headers: list[dict[str, Any]]) -> Any:
    for header in headers:
        if str(header.get("name", "")).lower() == HEADER.lower():
            try:
                return read_ref(signer, str(header.get("value", "")))
            except TokenError:
                break
    return read_message_id(signer, text)


def ses_returns(event: dict[str, Any], signer: Signer) -> list[Return]:
    """The returns in one SES bounce or complaint event (SNS ``Message``, as JSON)."""
    kind = str(event.get("notificationType") or event.get("eventType") or "")
    mail = event.get("mail") or {}
    headers = mail.get("headers") or []
    ref = _reference(signer, json.dumps(mail.get("commonHeaders") or {}), headers)
    message_id = str(mail.get("messageId", ""))
    out: list[Return] = []
    if kind == "Bounce":
        bounce = event.get("bounce") or {}
        kind_of = str(bounce.get("bounceType", ""))
        subtype = str(bounce.get("bounceSubType", ""))
        for rcpt in bounce.get("bouncedRecipients") or []:
            diagnostic = str(rcpt.get("diagnosticCode", ""))[:500]
            status = str(rcpt.get("status", "")) or status_of(diagnostic)
            if subtype in ("ContentRejected", "AttachmentRejected"):
                verdict, reason = ReturnKind.SENDER, f"content rejected ({subtype})"
            elif kind_of == "Permanent" and subtype in (
                "NoEmail",
                "Suppressed",
                "OnAccountSuppressionList",
            ):
                verdict, reason = ReturnKind.HARD, f"address refused ({subtype})"
            elif kind_of == "Permanent":
                verdict, reason = judge(status or "5.0.0", diagnostic)
            else:
                verdict, reason = judge(status or "4.0.0", diagnostic)
                if verdict == ReturnKind.HARD:
                    verdict = ReturnKind.SOFT
            out.append(
                _return(
                    verdict,
                    reason,
                    status,
                    diagnostic,
                    "ses",
                    ref,
                    rcpt.get("emailAddress"),
                    message_id,
                )
            )
    elif kind == "Complaint":
        complaint = event.get("complaint") or {}
        feedback = str(complaint.get("complaintFeedbackType", "abuse") or "abuse")
        verdict = ReturnKind.IGNORED if feedback == "not-spam" else ReturnKind.COMPLAINT
        for rcpt in complaint.get("complainedRecipients") or []:
            out.append(
                _return(
                    verdict,
                    f"complaint ({feedback})",
                    "",
                    "",
                    "ses",
                    ref,
                    rcpt.get("emailAddress"),
                    message_id,
                )
            )
    return out


POSTMARK_TYPES = {
    "HardBounce": ReturnKind.HARD,
    "BadEmailAddress": ReturnKind.HARD,
    "ManuallyDeactivated": ReturnKind.HARD,
    "SoftBounce": ReturnKind.SOFT,
    "Transient": ReturnKind.SOFT,
    "DnsError": ReturnKind.SOFT,
    "Undeliverable": ReturnKind.SOFT,
    "Unknown": ReturnKind.SOFT,
    "SpamNotification": ReturnKind.SENDER,
    "Blocked": ReturnKind.SENDER,
    "DMARCPolicy": ReturnKind.SENDER,
    "ContentRelated": ReturnKind.SENDER,
    "VirusNotification": ReturnKind.SENDER,
    "SpamComplaint": ReturnKind.COMPLAINT,
    "Unsubscribe": ReturnKind.UNSUBSCRIBE,
    "AutoResponder": ReturnKind.AUTOREPLY,
}


def postmark_returns(payload: dict[str, Any]) -> list[Return]:
    """The return in one Postmark bounce or spam-complaint webhook call."""
    record = str(payload.get("RecordType", ""))
    if record not in ("Bounce", "SpamComplaint"):
        return []
    kind_name = (
        "SpamComplaint" if record == "SpamComplaint" else str(payload.get("Type", "Unknown"))
    )
    verdict = POSTMARK_TYPES.get(kind_name, ReturnKind.SOFT)
    details = str(payload.get("Details") or payload.get("Description") or "")[:500]
    status = status_of(details)
    reason = {ReturnKind.COMPLAINT: "complaint (abuse)"}.get(verdict, f"Postmark: {kind_name}")
    if verdict == ReturnKind.HARD and status:
        judged, why = judge(status, details)
        if judged == ReturnKind.SENDER:
            verdict, reason = judged, why
    return [
        _return(
            verdict,
            reason,
            status,
            details,
            "postmark",
            None,
            payload.get("Email"),
            str(payload.get("MessageID", "")),
        )
    ]


def _return(
    kind: ReturnKind,
    reason: str,
    status: str,
    diagnostic: str,
    form: str,
    ref: Any,
    address: Any,
    message_id: str,
) -> Return:
    return Return(
        kind,
        reason,
        status=status[:16],
        diagnostic=diagnostic,
        form=form,
        ref=ref,
        addresses=(str(address).lower(),) if address else (),
        message_id=message_id[:200],
    )
