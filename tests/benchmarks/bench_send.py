"""Benchmark: send one issue to N generated subscribers over SMTP to Postfix's smtp-sink.

Run on demand (needs Debian's postfix package for smtp-sink and smtp-source):

    python tests/benchmarks/bench_send.py [--n 100000] [--big 0] [--concurrency 8]

In one run it measures, against the same sink on 127.0.0.1:
  * smtp-source -d -s 10 -l 20000 (Postfix's own load generator, C),
  * a plain smtplib loop (one connection, one 20 KB message at a time),
  * ``newsletter send`` of an issue (several interest variants, ~20 KB messages each personalised
    with its own To, Message-ID and unsubscribe token), unsigned and DKIM-signed,
and prints messages/s, the ratios, and the peak RSS of each send (each in a fresh child process).
With --big M it also sends to M subscribers to compare peak memory with N. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

DAY = "2026-11-16"
INTEREST_SETS = [
    "",
    "Kazakhstan",
    "Uzbekistan",
    "Kyrgyzstan|energy",
    "Tajikistan|Turkmenistan",
    "economy",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    proc = subprocess.Popen(
        [sink, "-u", "nobody", f"127.0.0.1:{port}", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("smtp-sink did not start")


def bench_smtp_source(port: int, count: int) -> float:
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    t0 = time.perf_counter()
    subprocess.run(
        [source, "-d", "-s", "10", "-l", "20000", "-m", str(count), f"127.0.0.1:{port}"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return count / (time.perf_counter() - t0)


def bench_smtplib(port: int, count: int) -> float:
    body = ("x" * 76 + "\r\n") * 260
    message = f"From: a@example.org\r\nTo: b@example.org\r\nSubject: bench\r\n\r\n{body}".encode()
    with smtplib.SMTP("127.0.0.1", port) as client:
        t0 = time.perf_counter()
        for _ in range(count):
            client.sendmail("a@example.org", ["b@example.org"], message)
        return count / (time.perf_counter() - t0)


def make_workspace(root: Path, n: int, key_file: Path | None) -> Path:
    ws = root / f"ws-{n}-{'dkim' if key_file else 'plain'}"
    ws.mkdir()
    # The Markdown articles alone make editions of about 20 KB, the size the goal is stated for.
    config = (
        (REPO / "newsletter.toml").read_text().replace('feeds = ["sources/feed.xml"]', "feeds = []")
    )
    (ws / "newsletter.toml").write_text(config)
    for folder in ("sources", "templates"):
        shutil.copytree(REPO / folder, ws / folder)
    rng = random.Random(7)
    with (ws / "people.csv").open("w") as fh:
        fh.write("email,name,interests\n")
        for i in range(n):
            fh.write(f"reader{i:07d}@bench.example.org,Reader {i},{rng.choice(INTEREST_SETS)}\n")
    return ws


def child(ws: str, port: int, concurrency: int, key_file: str) -> None:
    """Runs in a fresh process: build, import, send; prints a JSON line."""
    import asyncio
    from datetime import date

    from newsletter.audience.importer import import_csv
    from newsletter.compose.issuefiles import build_and_write
    from newsletter.compose.select import ComposeOptions
    from newsletter.config import load_settings
    from newsletter.core.tokens import Signer
    from newsletter.delivery.factory import make_dkim, make_limits, send_setup
    from newsletter.delivery.options import SendOptions
    from newsletter.delivery.sender import Sender
    from newsletter.delivery.smtp import SMTPConfig, SMTPTransport
    from newsletter.storage.db import Database

    dkim = {"domain": "news.example.org", "selector": "bench", "private_key_file": key_file}
    settings = load_settings(
        Path(ws) / "newsletter.toml",
        smtp={"concurrency": concurrency},
        dkim=dkim if key_file else {},
    )
    build_and_write(settings.issue_config(), ComposeOptions(date.fromisoformat(DAY)))
    db = Database(settings.database_url)
    import_csv(db, Path(ws) / "people.csv", "weekly", settings.vocabulary())
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    transport = SMTPTransport(SMTPConfig("127.0.0.1", port, "none", timeout=60))
    sender = Sender(
        send_setup(settings),
        db,
        transport,
        Signer(b"bench-secret-key-0123456789abcdef"),
        limits=make_limits(settings),
        dkim=make_dkim(settings),
    )

    def usage() -> tuple[float, float]:  # (user, system) seconds, with the signing processes
        mine = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return mine.ru_utime + kids.ru_utime, mine.ru_stime + kids.ru_stime

    usage0 = usage()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    summary = asyncio.run(sender.run(SendOptions(DAY, "weekly")))
    elapsed = time.perf_counter() - t0
    usage1 = usage()
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    kids = kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime
    user = usage1[0] - usage0[0]
    cpu = user + (usage1[1] - usage0[1])
    sizes = [len(t.body) for t in sender._templates.values() if t is not None]
    print(
        json.dumps(
            {
                "sent": summary.sent,
                "seconds": elapsed,
                "rate": summary.sent / elapsed,
                "cpu_us": cpu / max(1, summary.sent) * 1e6,
                "user_us": user / max(1, summary.sent) * 1e6,
                "children_us": kids / max(1, summary.sent) * 1e6,  # the signing processes
                "variants": summary.variants,
                "body_kb": sum(sizes) / len(sizes) / 1024 if sizes else 0,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_before_send_mb": rss_before / 1024,
            }
        )
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (here: the sink), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(ws: Path, port: int, concurrency: int, key_file: Path | None) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(ws),
            str(port),
            str(concurrency),
            str(key_file or ""),
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument(
        "--big", type=int, default=0, help="also send to this many, to compare memory"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--baseline", type=int, default=20_000, help="messages for smtp-source and smtplib"
    )
    args = parser.parse_args()
    port = free_port()
    sink = start_sink(port)
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            before = cpu_seconds(sink.pid)
            source_rate = bench_smtp_source(port, args.baseline)
            sink_us = (cpu_seconds(sink.pid) - before) / args.baseline * 1e6
            print(
                f"smtp-source -d -s 10 -l 20000 : {source_rate:8,.0f} msg/s (sink CPU {sink_us:.0f} us a message)"
            )
            smtplib_rate = bench_smtplib(port, max(2000, args.baseline // 4))
            print(f"smtplib loop (20 KB)          : {smtplib_rate:8,.0f} msg/s")
            key = tmp / "dkim.pem"
            make_key(key)
            results = {}
            for label, n, key_file in [("unsigned", args.n, None), ("DKIM-signed", args.n, key)] + (
                [("unsigned", args.big, None)] if args.big else []
            ):
                ws = make_workspace(tmp, n, key_file)
                sink_before = cpu_seconds(sink.pid)
                r = run_child(ws, port, args.concurrency, key_file)
                sink_us = (cpu_seconds(sink.pid) - sink_before) / max(1, r["sent"]) * 1e6
                results[(label, n)] = r
                print(
                    f"newsletter send {label:<11} N={n:>9,}: {r['rate']:8,.0f} msg/s "
                    f"({r['sent']:,} sent in {r['seconds']:.1f} s, {r['variants']} variants, "
                    f"~{r['body_kb']:.0f} KB bodies, peak RSS {r['peak_mb']:.0f} MB; "
                    f"CPU a message: ours {r['cpu_us']:.0f} us ({r['user_us']:.0f} user), "
                    f"the sink's {sink_us:.0f} us)"
                )
            plain = results[("unsigned", args.n)]["rate"]
            signed = results[("DKIM-signed", args.n)]["rate"]
            print(f"ratio to smtplib loop         : {plain / smtplib_rate:5.2f}x  (goal >= 3)")
            print(f"ratio to smtp-source          : {plain / source_rate:5.2f}   (goal >= 0.5)")
            print(f"DKIM-signed / unsigned        : {signed / plain:5.2f}   (goal >= 0.8)")
            if args.big:
                small_mb = results[("unsigned", args.n)]["peak_mb"]
                big_mb = results[("unsigned", args.big)]["peak_mb"]
                print(
                    f"peak RSS N={args.n:,} -> {args.big:,}: {small_mb:.0f} -> {big_mb:.0f} MB "
                    f"({big_mb - small_mb:+.0f} MB; goal within 10 MB)"
                )
    finally:
        sink.terminate()
        sink.wait(5)


if __name__ == "__main__":
    os.environ.pop("NEWSLETTER_CONFIG", None)
    main()
