"""Benchmark: one, two and three `newsletter send` processes sharing one send on PostgreSQL,
against Postfix's smtp-sink; the whole `newsletter send` (start-up, rendering and queueing
included) against `smtp-source` in the same run; DKIM's CPU a message against `openssl speed`.

Run on demand (PostgreSQL, and Debian's postfix for smtp-sink/smtp-source; openssl):

    python tests/benchmarks/bench_senders.py [--n 20000] [--db postgresql+psycopg://...]

Each sender is a real `newsletter send --json` process; peak RSS comes from the kernel
(``wait4``). Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from bench_send import (  # noqa: E402
    DAY,
    bench_smtp_source,
    free_port,
    make_key,
    make_workspace,
    run_child,
    start_sink,
)
from sqlalchemy import create_engine, text  # noqa: E402

KEY = "bench-senders-secret-0123456789"


def cli(ws: Path, env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", *args], cwd=ws, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"newsletter {' '.join(args)}: {result.stderr[-2000:]}")


def fresh_schema(base_url: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    sep = "&" if "?" in base_url else "?"
    return schema, f"{base_url}{sep}options=-csearch_path%3D{schema}"


def drop_schema(base_url: str, schema: str) -> None:
    engine = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def senders_run(ws: Path, base_url: str, port: int, count: int) -> dict[str, object]:
    """``count`` senders at once on a freshly loaded database; their figures and the total."""
    schema, url = fresh_schema(base_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        {
            "NEWSLETTER_DATABASE__URL": url,
            "NEWSLETTER_SECURITY__SECRET_KEY": KEY,
            "NEWSLETTER_SMTP__HOST": "127.0.0.1",
            "NEWSLETTER_SMTP__PORT": str(port),
            "NEWSLETTER_SMTP__SECURITY": "none",
            "NEWSLETTER_SMTP__CONCURRENCY": "8",
        }
    )
    try:
        cli(ws, env, "build", "--date", DAY)
        cli(ws, env, "subscribers", "import", "people.csv", "--list", "weekly")
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "newsletter", "send", DAY, "--list", "weekly", "--json"],
                cwd=ws,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for _ in range(count)
        ]
        each = []
        for proc in procs:
            assert proc.stdout is not None
            output = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            proc.stdout.close()
            data = json.loads(output[output.index("{") :])
            each.append(
                {
                    "sent": data["sent"],
                    "rate": data["rate_per_second"],
                    "peak_mb": usage.ru_maxrss / 1024,
                    "exit": proc.returncode,
                }
            )
        wall = time.perf_counter() - started
    finally:
        drop_schema(base_url, schema)
    total = sum(int(e["sent"]) for e in each)
    return {"senders": each, "sent": total, "wall": wall, "rate": total / wall}


def openssl_sign_seconds() -> float:
    out = subprocess.run(
        ["openssl", "speed", "-seconds", "3", "rsa2048"], capture_output=True, text=True
    ).stdout
    match = re.search(r"rsa\s+2048 bits\s+([\d.]+)s\s+([\d.]+)s", out)
    if not match:
        raise SystemExit("could not read 'openssl speed rsa2048'")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument(
        "--db",
        default=os.environ.get(
            "NEWSLETTER_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    port = free_port()
    sink = start_sink(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            ws = make_workspace(root, args.n, None)
            source = bench_smtp_source(port, args.n)
            print(f"smtp-source -d -s 10 -l 20000 -m {args.n}: {source:,.0f} messages/s")
            for count in (1, 2, 3):
                result = senders_run(ws, args.db, port, count)
                rows = result["senders"]
                assert isinstance(rows, list)
                per = ", ".join(
                    f"{r['sent']} at {r['rate']:,.0f}/s, peak {r['peak_mb']:.0f} MB" for r in rows
                )
                print(
                    f"{count} sender(s) on PostgreSQL: {result['sent']} sent in "
                    f"{result['wall']:.1f} s, {result['rate']:,.0f} messages/s in all "
                    f"(whole processes, start-up included) [{per}]"
                )
            # The whole `newsletter send` against smtp-source, three times, each pair in turn.
            ratios = []
            for _ in range(3):
                source = bench_smtp_source(port, args.n)
                whole = float(senders_run(ws, args.db, port, 1)["rate"])  # type: ignore[arg-type]
                ratios.append(whole / source)
                print(f"  smtp-source {source:,.0f}/s, whole `newsletter send` {whole:,.0f}/s")
            print(
                "whole `newsletter send` / smtp-source: "
                + ", ".join(f"{r:.2f}" for r in ratios)
                + f"; median {sorted(ratios)[1]:.2f} (goal 0.5)"
            )
            key = root / "dkim.pem"
            make_key(key)
            # CPU a message, signed less unsigned; the least of three runs each (the machine's
            # other work only ever adds to a figure), against openssl's own in the same run.
            runs = iter(range(1000))

            def cpu_us(key_file: Path | None) -> float:  # a fresh workspace and database each
                folder = root / f"run{next(runs)}"
                folder.mkdir()
                return run_child(make_workspace(folder, 5000, key_file), port, 8, key_file)[
                    "cpu_us"
                ]

            plain = min(cpu_us(None) for _ in range(3))
            signed = min(cpu_us(key) for _ in range(3))
            dkim_us = signed - plain
            openssl_us = min(openssl_sign_seconds() for _ in range(2)) * 1e6
            print(
                f"DKIM: {dkim_us:.0f} us of CPU a message more than unsigned ({signed:.0f} against "
                f"{plain:.0f}, least of 3 sends of 5,000 each); openssl speed rsa2048: "
                f"{openssl_us:.0f} us a signature; ratio {dkim_us / openssl_us:.2f} (goal <= 1.2)"
            )
    finally:
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
