"""Addresses and header text as they go on the wire.

* Domains go through IDNA 2008 with UTS #46 mapping (the ``idna`` package), never Python's
  IDNA 2003 codec: ``faß.de`` is ``xn--fa-hia.de``, not ``fass.de``.
* A local part outside ASCII needs SMTPUTF8 (RFC 6531): :func:`wire_address` says so, and the
  transport then uses the extension, or fails that one recipient when the server lacks it.
* Header text from subscribers (names) is cleaned of control characters when a header is built
  (import, ``add`` and the sign-up form refuse them; older rows may still hold some) and long
  values are folded into encoded words, so no header line passes 78 octets where it can be
  helped and never 998.
"""

from __future__ import annotations

import re
from email.header import Header
from functools import lru_cache

import idna

from newsletter.core.addresses import CONTROL_CHARACTERS
from newsletter.errors import MessageError

UNSAFE_TEXT = CONTROL_CHARACTERS
_COMMAND_UNSAFE = re.compile(r"[\x00-\x20\x7f<>]")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
LINE = 78  # what a header line should not pass (RFC 5322, 2.1.1); 998 is the hard limit


def clean_text(value: str) -> str:
    """``value`` with every control character replaced by a space (tab is kept)."""
    return UNSAFE_TEXT.sub(" ", value) if UNSAFE_TEXT.search(value) else value


@lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """The domain's A-labels (IDNA 2008, UTS #46 non-transitional); raises ``idna.IDNAError``."""
    if domain.isascii():
        return domain
    return idna.encode(domain, uts46=True).decode("ascii")


def wire_address(address: str) -> tuple[str, bool]:
    """(the address with an ASCII domain, whether it needs SMTPUTF8); raises MessageError
    for anything that could end or split an SMTP command, or a domain IDNA 2008 refuses."""
    if _PLAIN_ADDRESS.fullmatch(address):  # the common case, ~10x cheaper
        return address, False
    if _COMMAND_UNSAFE.search(address):
        raise MessageError(f"{address!r} cannot be used in an SMTP command", recipient=address)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise MessageError(f"{address!r} is not an address", recipient=address)
    try:
        domain = ascii_domain(domain)
    except (idna.IDNAError, UnicodeError) as exc:
        raise MessageError(
            f"address {address!r}: the domain cannot be encoded (IDNA 2008: {exc})",
            recipient=address,
        ) from None
    return f"{local}@{domain}", not local.isascii()


def fold_text(value: str, name_length: int) -> str:
    """An unstructured header value (RFC 5322 ``unstructured``): as it is when it is ASCII and
    fits on the line, otherwise RFC 2047 encoded words folded to lines of at most 78 octets.
    ``name_length`` is the length of ``Name: ``, which shares the first line."""
    if value.isascii():
        if len(value) + name_length <= LINE:
            return value
        folded = _fold_at_spaces(value, name_length)
        if folded is not None:
            return folded
    header = Header(value, "utf-8", header_name=" " * (name_length - 2) or None)
    return header.encode(maxlinelen=LINE - 2).replace("\n", "\r\n")


def _fold_at_spaces(value: str, name_length: int) -> str | None:
    """ASCII folded before spaces (unfolding gives ``value`` back); None when a word is too long."""
    lines: list[str] = []
    current, room = "", LINE - name_length
    for i, word in enumerate(value.split(" ")):
        piece = word if i == 0 else " " + word
        if current and len(current) + len(piece) > room:
            lines.append(current)
            current, room = piece, LINE
        else:
            current += piece
        if len(current) > room:
            return None
    lines.append(current)
    return "\r\n".join(lines)


def address_header(name: str, address: str, field: str = "To") -> str:
    """A mailbox (``Name <local@domain>``) for ``From`` or ``To``: the name cleaned and, when it
    is not plain short ASCII, encoded and folded; the domain in A-labels; a local part outside
    ASCII kept as UTF-8 (RFC 6532: such a message goes out with SMTPUTF8)."""
    wire, _ = wire_address(address)
    name = clean_text(name).strip()
    if not name:
        return wire
    start = len(field) + 2
    if _PLAIN_NAME.fullmatch(name) and start + len(name) + len(wire) + 3 <= LINE:
        return f"{name} <{wire}>"
    words = fold_text(name, start) if not name.isascii() or len(name) > 40 else _quoted(name)
    last = words.rpartition("\r\n")[2]
    first_line = "\r\n" not in words
    if (start if first_line else 0) + len(last) + len(wire) + 3 > LINE:
        return f"{words}\r\n <{wire}>"
    return f"{words} <{wire}>"


def _quoted(name: str) -> str:
    if _PLAIN_NAME.fullmatch(name):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
