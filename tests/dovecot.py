"""A private Dovecot IMAP server for tests (Debian's dovecot-imapd): IMAPS on 127.0.0.1 with a
certificate from a test CA, one user, Maildir storage in a temporary folder. Needs root (the
master process); the system's Dovecot configuration is not touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import trustme

from newsletter.delivery.localserver import free_port

USER, PASSWORD = "bounces", "imap-s3cret-pass"


def unavailable() -> str | None:
    if shutil.which("dovecot") is None:
        return "Dovecot is not installed (Debian package dovecot-imapd)"
    if os.geteuid() != 0:
        return "a private Dovecot instance needs root"
    return None


class Dovecot:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nl-dovecot-"))
        self.root.chmod(0o755)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(self.root / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(self.root / "cert.pem"))
        self.ca_file = self.root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        home = self.root / "home"
        home.mkdir()
        shutil.chown(home, "nobody")
        for sub in ("run", "state"):
            (self.root / sub).mkdir()
        (self.root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        self.port = free_port()
        r = self.root
        (r / "dovecot.conf").write_text(
            f"""protocols = imap
listen = 127.0.0.1
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/log
ssl = required
ssl_cert = <{r}/cert.pem
ssl_key = <{r}/key.pem
disable_plaintext_auth = yes
first_valid_uid = 1
mail_location = maildir:{r}/home/%u/Maildir
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {self.port}
    ssl = yes
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={r}/home/%u
}}
"""
        )
        subprocess.run(  # the daemon keeps inherited pipes open: no capture
            ["dovecot", "-c", str(r / "dovecot.conf")],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while not self._listening():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Dovecot did not start: {(r / 'log').read_text()[-500:]}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        subprocess.run(
            ["dovecot", "-c", str(self.root / "dovecot.conf"), "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)
