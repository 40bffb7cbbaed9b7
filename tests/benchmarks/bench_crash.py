"""Benchmark: how many readers get the issue twice after ``kill -9`` of a send, and how fast.

Run on demand:

    python tests/benchmarks/bench_crash.py [--n 5000] [--delay 0.02] [--kill-at 0.4] [--runs 3]
                                           [--repo PATH]

For each run: a fresh workspace with N readers, a real aiosmtpd server that takes ``delay``
seconds over each message, ``newsletter send`` (default settings) started in a child process,
``kill -9`` once the server holds ``kill-at`` of the messages, then the same command again.
Prints the duplicates (readers mailed twice), anybody lost, and the messages/s of the first
send before the kill. ``--repo`` runs the command from another checkout (to compare with an
older version on the same machine). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.conftest import SAMPLE_DATE, RecordingHandler, start_smtp, stop_smtp  # noqa: E402


def workspace(tmp: Path, n: int) -> Path:
    ws = tmp / "ws"
    ws.mkdir()
    shutil.copy(REPO / "newsletter.toml", ws / "newsletter.toml")
    for name in ("sources", "templates", "subscribers"):
        shutil.copytree(REPO / name, ws / name)
    (ws / "issues").mkdir()
    (ws / "people.csv").write_text(
        "email,name\n" + "".join(f"reader{i:05d}@example.org,Reader {i}\n" for i in range(n))
    )
    return ws


def one_run(repo: Path, n: int, delay: float, kill_at: float) -> tuple[int, int, float, int]:
    """(duplicates, lost, messages/s before the kill, received at the kill)."""
    controller, server = start_smtp(RecordingHandler())
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            ws = workspace(Path(tmp_name), n)
            env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
            env.update(
                NEWSLETTER_SECURITY__SECRET_KEY="bench-secret-0123456789abcdef",
                NEWSLETTER_SMTP__HOST=server.host,
                NEWSLETTER_SMTP__PORT=str(server.port),
                NEWSLETTER_SMTP__SECURITY="none",
                PYTHONPATH=str(repo),
            )

            def cli(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    [sys.executable, "-m", "newsletter", *args],
                    cwd=ws,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )

            assert cli("build", "--date", SAMPLE_DATE).returncode == 0
            assert cli("subscribers", "import", "people.csv", "--list", "weekly").returncode == 0
            server.handler.data_delay = delay
            command = [sys.executable, "-m", "newsletter", "send", SAMPLE_DATE, "--list", "weekly"]
            proc = subprocess.Popen(
                command, cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            target = int(n * kill_at)
            first = None
            deadline = time.monotonic() + 600
            while len(server.handler.messages) < target and time.monotonic() < deadline:
                if first is None and server.handler.messages:
                    first = (time.monotonic(), len(server.handler.messages))
                time.sleep(0.002)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            at_kill = len(server.handler.messages)
            start_t, start_n = first or (time.monotonic(), 0)
            rate = (at_kill - start_n) / max(time.monotonic() - start_t, 1e-6)
            server.handler.data_delay = 0
            rerun = cli("send", SAMPLE_DATE, "--list", "weekly")
            assert rerun.returncode == 0, rerun.stderr[-2000:]
            received = Counter(rcpt for rcpt, _, _ in server.handler.messages)
            duplicates = sum(c - 1 for c in received.values())
            lost = n - len(received)
            return duplicates, lost, rate, at_kill
    finally:
        stop_smtp(controller)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--kill-at", type=float, default=0.4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    print(
        f"{args.repo}: N={args.n}, sink {args.delay * 1000:.0f} ms a message, kill -9 at "
        f"{args.kill_at:.0%}, default settings"
    )
    for i in range(args.runs):
        duplicates, lost, rate, at_kill = one_run(args.repo, args.n, args.delay, args.kill_at)
        print(
            f"run {i + 1}: killed at {at_kill} received; duplicates after resume {duplicates}, "
            f"lost {lost}; {rate:,.0f} messages/s before the kill"
        )


if __name__ == "__main__":
    main()
