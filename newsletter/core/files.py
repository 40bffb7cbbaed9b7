"""Files that hold personal data or secrets: created readable by their owner only (files 0600,
folders 0700), whatever the umask; written whole or not at all."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) as 0700; a folder that exists is left as it is."""
    missing = []
    here = path
    while not here.exists():
        missing.append(here)
        here = here.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by someone else
        os.chmod(folder, DIR_MODE)


def create_private(path: Path) -> int:
    """Open a new file at ``path`` for writing, 0600; raises FileExistsError when it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask took away
    return fd


def touch_private(path: Path) -> None:
    """Make sure ``path`` exists; a new one is created empty and 0600 (in a 0700 folder)."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(create_private(path))


def write_private(path: Path, data: bytes, *, tmp: Path | None = None, sync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically: a new 0600 file ``tmp`` (by default beside
    ``path``), synced to disk unless ``sync`` is false, then renamed over it."""
    tmp = tmp or path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = create_private(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
