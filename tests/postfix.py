"""A private Postfix instance for tests that need real returned mail (Debian's postfix).

It listens on 127.0.0.1:PORT, relays everything to ``relay_port`` (an aiosmtpd server that
refuses what the test wants refused) and delivers mail for ``news.example.org`` through its own
aliases: so a refusal comes back as the delivery status notification Postfix itself writes, to
the VERP address of the message. Needs root (Postfix's master runs as root); the system's own
Postfix configuration is not touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

DOMAIN = "news.example.org"


def unavailable() -> str | None:
    """Why a private Postfix cannot run here, or None."""
    if shutil.which("postfix") is None or shutil.which("postalias") is None:
        return "Postfix is not installed (Debian package postfix)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root"
    return None


class Postfix:
    def __init__(self, relay_port: int, smtpd_port: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nl-postfix-"))
        self.root.chmod(0o755)  # local delivery runs as nobody: it must reach the mailbox
        self.conf = self.root / "conf"
        self.box = self.root / "returns"
        self.smtpd_port = smtpd_port
        for folder in (self.conf, self.root / "queue", self.root / "data"):
            folder.mkdir()
        for sub in ("new", "cur", "tmp"):
            (self.box / sub).mkdir(parents=True)
        for folder in (self.box, *(self.box / s for s in ("new", "cur", "tmp"))):
            folder.chmod(0o777)
        shutil.chown(self.root / "data", "postfix")
        master = Path("/etc/postfix/master.cf").read_text()
        master = master.replace("\nsmtp      inet", "\n#smtp      inet")
        master += f"\n127.0.0.1:{smtpd_port} inet n - n - - smtpd\n"
        (self.conf / "master.cf").write_text(master)
        (self.conf / "main.cf").write_text(
            "\n".join(
                [
                    "compatibility_level = 3.6",
                    f"queue_directory = {self.root / 'queue'}",
                    f"data_directory = {self.root / 'data'}",
                    f"myhostname = mx.{DOMAIN}",
                    f"mydomain = {DOMAIN}",
                    f"myorigin = {DOMAIN}",
                    f"mydestination = {DOMAIN}",
                    "inet_interfaces = loopback-only",
                    "inet_protocols = ipv4",
                    "mynetworks = 127.0.0.0/8",
                    f"relayhost = [127.0.0.1]:{relay_port}",
                    "recipient_delimiter = +",
                    f"alias_maps = hash:{self.conf / 'aliases'}",
                    f"alias_database = hash:{self.conf / 'aliases'}",
                    "smtp_host_lookup = native",
                    "disable_dns_lookups = yes",
                    "delay_warning_time = 0",
                    "smtpd_banner = $myhostname ESMTP",
                    "",
                ]
            )
        )
        (self.conf / "aliases").write_text(f"bounces: {self.box}/\nunsubscribe: {self.box}/\n")
        self._run("postalias", str(self.conf / "aliases"))
        self._run("postfix", "-c", str(self.conf), "set-permissions")
        self._run("postfix", "-c", str(self.conf), "start")

    def _run(self, *args: str) -> None:
        result = subprocess.run(args, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {result.stdout}{result.stderr}".strip())

    def returns(self) -> list[Path]:
        return sorted((self.box / "new").iterdir())

    def wait_for_returns(self, count: int, timeout: float = 60) -> list[Path]:
        deadline = time.monotonic() + timeout
        while len(found := self.returns()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} returns within {timeout:g} s")
            time.sleep(0.1)
        return found

    def stop(self) -> None:
        subprocess.run(
            ["postfix", "-c", str(self.conf), "stop"], capture_output=True, timeout=60, check=False
        )
        shutil.rmtree(self.root, ignore_errors=True)
