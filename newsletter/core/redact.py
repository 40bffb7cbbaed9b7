"""Secrets out of what is shown: passwords and keys inside URLs become ``********``.

Used wherever a URL may be printed or logged: ``newsletter config``, database errors, feed and
rates sources named in warnings.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "********"
SECRET_PARAMETERS = re.compile(
    r"(pass|pwd|secret|token|key|sig|auth|credential|session)", re.IGNORECASE
)


def mask_url(url: str) -> str:
    """``url`` with the password of its user information (also when there is no user name) and
    the values of query parameters that look like secrets masked. Anything that does not parse
    as a URL with a scheme is returned as it is."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if colon else f"{userinfo}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_PARAMETERS.search(k) for k, _ in pairs):
            query = urlencode(
                [(k, MASK if SECRET_PARAMETERS.search(k) and v else v) for k, v in pairs],
                safe="*",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def mask_urls(text: str) -> str:
    """Every URL inside ``text`` masked as :func:`mask_url` does."""
    return _URL.sub(lambda m: mask_url(m.group(0)), text)
