"""Where returned mail is read from: a Maildir, an mbox file, one ``.eml`` file, a folder of
them, or standard input (one message, as an MTA pipes it)."""

from __future__ import annotations

import mailbox
import sys
from collections.abc import Iterator
from pathlib import Path

from newsletter.errors import MailboxError

MAX_MESSAGE = 10 * 1024 * 1024  # bytes of one returned mail that are read


def messages(location: str) -> Iterator[tuple[str, bytes]]:
    """(label, raw bytes) of each message at ``location``; raises MailboxError when the
    location itself cannot be read (a message that cannot is skipped by the caller)."""
    if location == "-":
        yield "stdin", sys.stdin.buffer.read(MAX_MESSAGE)
        return
    path = Path(location)
    if path.is_dir():
        yield from _folder(path)
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(5)
    except OSError as exc:
        raise MailboxError(f"cannot read: {exc.strerror}", path=location) from None
    if head == b"From ":
        yield from _mbox(path)
    else:
        yield str(path), path.read_bytes()[:MAX_MESSAGE]


def _folder(path: Path) -> Iterator[tuple[str, bytes]]:
    if all((path / sub).is_dir() for sub in ("cur", "new")):
        files = sorted([*(path / "new").iterdir(), *(path / "cur").iterdir()])
    else:
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    for file in files:
        try:
            yield str(file), file.read_bytes()[:MAX_MESSAGE]
        except OSError:
            continue  # delivered and taken away meanwhile


def _mbox(path: Path) -> Iterator[tuple[str, bytes]]:
    box = mailbox.mbox(path, create=False)
    try:
        for number, key in enumerate(box.iterkeys(), start=1):
            yield f"{path}:{number}", box.get_bytes(key)[:MAX_MESSAGE]
    finally:
        box.close()
