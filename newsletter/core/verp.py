"""References that tie returned mail to the (issue, subscriber) it answers.

Each message carries one, HMAC-signed so that nobody can make up a reference to another person:

* in its envelope sender (VERP, when ``bounces.return_path`` is set): ``bounces+REF@domain``, so
  a delivery status notification comes back to an address that names the message;
* in an ``X-Newsletter-Ref`` header, for returns that quote the message but lose the envelope;
* in its ``Message-ID`` (``<ISSUE.SUBSCRIBER.TAG@domain>``), which returns often quote.

``REF`` is ``SUBSCRIBER.ISSUE.MAC``: digits, digits and 16 lower-case hex characters, so it
survives mail systems that change the case of an address's local part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newsletter.core.tokens import Signer
from newsletter.errors import TokenError

HEADER = "X-Newsletter-Ref"
_REF = re.compile(r"\b(\d{1,12})\.(\d{8}|[a-z0-9_]{1,32})\.([0-9a-f]{16})\b", re.IGNORECASE)
_MESSAGE_ID = re.compile(
    r"<(\d{4}-\d{2}-\d{2})\.(\d{1,12})\.([0-9a-f]{20})@[^>\s]+>", re.IGNORECASE
)


@dataclass(frozen=True)
class Reference:
    issue: str
    subscriber_id: int


def _compact(issue: str) -> str:
    return issue.replace("-", "") if re.fullmatch(r"\d{4}-\d{2}-\d{2}", issue) else issue


def _expand(issue: str) -> str:
    return f"{issue[:4]}-{issue[4:6]}-{issue[6:]}" if re.fullmatch(r"\d{8}", issue) else issue


def make_ref(signer: Signer, issue: str, subscriber_id: int) -> str:
    return f"{subscriber_id}.{_compact(issue)}.{signer.tag(f'verp:{issue}:{subscriber_id}')}"


def read_ref(signer: Signer, ref: str) -> Reference:
    """The issue and subscriber of a reference; raises TokenError for a forged one."""
    match = _REF.fullmatch(ref.strip())
    if match is None:
        raise TokenError("not a bounce reference")
    sid, issue = int(match.group(1)), _expand(match.group(2).lower())
    if make_ref(signer, issue, sid) != f"{sid}.{_compact(issue)}.{match.group(3).lower()}":
        raise TokenError("forged bounce reference")
    return Reference(issue, sid)


def return_path(address: str, ref: str) -> str:
    """``bounces@d`` and REF -> ``bounces+REF@d``."""
    local, _, domain = address.rpartition("@")
    return f"{local}+{ref}@{domain}"


def ref_in_address(address: str, return_address: str) -> str | None:
    """The REF inside an address such as ``bounces+REF@d`` (any case), or None."""
    local = return_address.rpartition("@")[0].lower()
    match = re.search(rf"(?<![\w.+-]){re.escape(local)}\+([0-9a-z._]+)@", address, re.IGNORECASE)
    return match.group(1) if match else None


def read_message_id(signer: Signer, text: str) -> Reference | None:
    """The first of our own Message-IDs in ``text`` that verifies, or None."""
    for match in _MESSAGE_ID.finditer(text):
        issue, sid, tag = match.group(1), int(match.group(2)), match.group(3).lower()
        if signer.message_id_tag(issue, sid) == tag:
            return Reference(issue, sid)
    return None


def refs_in(text: str) -> list[str]:
    """Every string in ``text`` that has the shape of a REF (to be verified)."""
    return [m.group(0) for m in _REF.finditer(text)]
