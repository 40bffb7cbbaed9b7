"""Files with personal data or secrets are their owner's alone, whatever the umask: the
database (and its -wal/-shm), the key file, the outbox, a CSV export."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path


def _run(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        umask=0,  # the worst case: everything the process creates would be world-writable
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_personal_data_and_secrets_are_created_0600_in_0700_folders(workspace: Path) -> None:
    (workspace / "newsletter.db").unlink(missing_ok=True)
    key_dir = workspace / ".newsletter"
    if key_dir.exists():
        for f in key_dir.iterdir():
            f.unlink()
        key_dir.rmdir()
    assert _run(workspace, "keygen").returncode == 0
    result = _run(workspace, "demo")
    assert result.returncode == 0, result.stderr
    sample = "subscribers/weekly.csv"
    assert _run(workspace, "subscribers", "import", sample, "--list", "weekly").returncode == 0
    export = workspace / "weekly.csv"
    assert (
        _run(workspace, "subscribers", "export", "--list", "weekly", "-o", str(export)).returncode
        == 0
    )

    assert _mode(key_dir) == 0o700 and _mode(key_dir / "secret_key") == 0o600
    databases = [*workspace.glob("newsletter.db*"), *workspace.glob("issues/*/demo.db*")]
    assert workspace / "newsletter.db" in databases and len(databases) == 2
    assert all(_mode(p) == 0o600 for p in databases), {p.name: oct(_mode(p)) for p in databases}
    with sqlite3.connect(workspace / "newsletter.db") as conn:  # -wal and -shm exist while open
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("UPDATE subscribers SET name = name")
        side = [workspace / "newsletter.db-wal", workspace / "newsletter.db-shm"]
        assert all(_mode(p) == 0o600 for p in side), [oct(_mode(p)) for p in side]
    conn.close()
    (outbox,) = workspace.glob("issues/*/outbox")
    assert _mode(outbox) == 0o700
    assert all(_mode(outbox / sub) == 0o700 for sub in ("tmp", "new", "cur"))
    mails = list((outbox / "new").iterdir())
    assert len(mails) >= 5 and all(_mode(m) == 0o600 for m in mails)
    assert _mode(export) == 0o600 and export.read_text().startswith("email,")
    assert not list(workspace.glob(".weekly.csv*"))  # no temporary file left behind
