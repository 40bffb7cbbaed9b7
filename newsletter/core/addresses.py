"""E-mail address validation and normalisation.

``normalise`` returns ``(address, key)``: the address as it will be stored (domain lower-cased,
internationalised domains in Unicode, local part kept) and the comparison key (the whole address
lower-cased: addresses are compared case-insensitively). Validation is email-validator's, without
DNS lookups. Because it costs ~33 µs an address, which would dominate a million-row import, plain
ASCII addresses go through a fast path that accepts a strict subset of what email-validator
accepts and normalises them the same way (a property-based test holds the two together);
anything else is handed to email-validator.
"""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import AddressError

_SPECIAL_USE = {"arpa", "invalid", "local", "localhost", "onion", "test"}
_FAST = re.compile(
    r"(?P<local>[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)


def _fast(address: str) -> tuple[str, str] | None:
    match = _FAST.fullmatch(address)
    if match is None:
        return None
    local, domain = match.group("local"), match.group("domain").lower()
    if len(local) > 64 or len(domain) > 253 or len(address) > 254:
        return None
    labels = domain.split(".")
    if labels[-1] in _SPECIAL_USE or any(label.startswith("xn--") for label in labels):
        return None
    if any(label[2:4] == "--" for label in labels):  # other reserved "ab--" forms: be strict
        return None
    normalised = f"{local}@{domain}"
    return normalised, normalised.lower()


def normalise(raw: str) -> tuple[str, str]:
    """Validate ``raw``; return (stored address, comparison key) or raise AddressError."""
    address = raw.strip()
    if not address:
        raise AddressError("empty address", address=raw)
    fast = _fast(address)
    if fast is not None:
        return fast
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise AddressError(f"bad address {address[:80]!r}: {exc}", address=raw) from None
    normalised = result.normalized
    return normalised, normalised.lower()


def has_crlf(value: str) -> bool:
    return bool(re.search(r"[\r\n]", value))


# C0 controls but tab, DEL, C1 controls, and the Unicode line and paragraph separators: never
# part of a name or any text that may reach a header line.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def control_character(value: str) -> str | None:
    """The first control character in ``value`` as ``U+XXXX``, or None."""
    found = CONTROL_CHARACTERS.search(value)
    return f"U+{ord(found.group()):04X}" if found else None
