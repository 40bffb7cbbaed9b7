"""What an SMTP refusal says about the address: the status code and the words around it.

The same rules serve the replies met during a send and the diagnostic codes in returned mail.
Suppress only when the **address** is bad; a refusal aimed at the **sender** (a blocked IP, a
spam or content filter, a policy, DMARC) says nothing about the subscriber.
"""

from __future__ import annotations

import re

from newsletter.core.states import ReturnKind

ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
BASIC = re.compile(r"(?<!\d)([45]\d\d)(?:[ -]|$)")

_SENDER = re.compile(
    r"spam|junk|blocked|block ?list|black ?list|listed (?:in|on|at|by)|\brbl\b|dnsbl|spamhaus|"
    r"barracuda|spamcop|sorbs|reputation|policy|dmarc|\bspf\b|dkim|not authori[sz]ed|"
    r"unauthenticated|authentication required|content (?:rejected|filter)|message (?:content )?"
    r"rejected|rejected (?:due to|because of|for policy)|banned|sender address rejected|"
    r"sender (?:denied|blocked|rejected)|relay(?:ing)? (?:access )?denied|too many (?:connections"
    r"|messages|recipients)|rate limit|throttl|suspicious|virus|phish|bulk mail|low reputation|"
    r"client host .* (?:blocked|rejected)|poor reputation|not accepted from",
    re.IGNORECASE,
)
_NO_DOMAIN = re.compile(
    r"host or domain name not found|domain (?:name )?not found|no such domain|domain does not "
    r"exist|name service error|nxdomain|unrouteable (?:mail )?(?:domain|address)|no mx|null mx|"
    r"unable to route|host not found|name or service not known|bad destination (?:mailbox|host)",
    re.IGNORECASE,
)
_DISABLED = re.compile(
    r"(?:account|mailbox|user|address)(?: has been| is)? (?:disabled|deactivated|inactive|"
    r"suspended|closed|blocked by the owner|no longer (?:active|available|valid|in use))|"
    r"no longer (?:active|available|valid|in use)|mailbox (?:has )?moved|has moved|"
    r"account expired|expired account",
    re.IGNORECASE,
)
_UNKNOWN = re.compile(
    r"user(?:name)? unknown|unknown (?:user|recipient|mailbox|address|local[- ]part)|"
    r"no such (?:user|recipient|mailbox|address|account|person)|recipient (?:unknown|not found|"
    r"does not exist|invalid)|invalid (?:recipient|mailbox|address|user)|"
    r"(?:mailbox|user|account|address|recipient) (?:not found|unavailable|does ?n[o']t exist|"
    r"not exist)|does ?n[o']t (?:have an? .*account|exist)|doesn't exist|not our customer|"
    r"address not found|couldn't be found|could not be found|no mailbox here|"
    r"not a valid (?:mailbox|recipient|user)|recipientnotfound|addressnotfound|"
    r"mailbox name not allowed|unknown or illegal alias|bad address|account .* not exist|"
    r"not listed in (?:the )?(?:domino |public name & address book|domino directory|directory)",
    re.IGNORECASE,
)
_FULL = re.compile(
    r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|full)|exceed(?:s|ed)? (?:the |his |her "
    r"|their )?(?:storage|quota)|insufficient (?:system )?storage|out of storage|storage (?:space|"
    r"allocation)|mail ?box size limit|full mailbox|user is over",
    re.IGNORECASE,
)
_TEMPORARY = re.compile(
    r"gr[ae]ylist|try again later|temporar|timed? ?out|connection (?:refused|reset|lost)|"
    r"deferr|retry|delayed|resources? (?:temporarily )?unavailable|please try again",
    re.IGNORECASE,
)


def status_of(text: str) -> str:
    """The enhanced status code in ``text`` (``5.1.1``), else one made from the basic reply
    code (``550`` -> ``5.0.0``), else ""."""
    if match := ENHANCED.search(text):
        return ".".join(match.groups())
    if match := BASIC.search(text):
        return f"{match.group(1)[0]}.0.0"
    return ""


def judge(status: str, text: str) -> tuple[ReturnKind, str]:
    """(kind, reason) for a refusal with enhanced ``status`` ("" if none) and ``text``."""
    status = status.strip()
    klass, subject, detail = [*status.split("."), "", "", ""][:3]
    code = f"{subject}.{detail}"
    if klass == "2":
        return ReturnKind.IGNORED, "delivered"
    if code in ("2.2", "2.3") or _FULL.search(text):
        return ReturnKind.SOFT, "mailbox full"
    if code in ("1.2", "4.4") or (klass == "5" and _NO_DOMAIN.search(text)):
        return ReturnKind.HARD if klass == "5" else ReturnKind.SOFT, "no such domain"
    sender = subject in ("7", "6") or code == "3.4" or bool(_SENDER.search(text))
    unknown = code in ("1.1", "1.3", "1.10", "4.1") or _UNKNOWN.search(text)
    if klass == "5" and unknown and not (subject == "7" and _SENDER.search(text)):
        return ReturnKind.HARD, "unknown user"
    if klass == "5" and (code in ("1.6", "2.1") or _DISABLED.search(text)):
        return ReturnKind.HARD, "mailbox disabled or moved"
    if sender:
        return ReturnKind.SENDER, "refused for the sender (block list, spam filter or policy)"
    if klass == "4" or _TEMPORARY.search(text):
        return ReturnKind.SOFT, "temporary failure"
    if klass == "5":
        return ReturnKind.SOFT, "permanent failure, reason unclear"
    return ReturnKind.SOFT, "failure, reason unclear"
