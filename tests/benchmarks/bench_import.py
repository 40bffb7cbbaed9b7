"""Benchmark: import generated subscribers into SQLite; peak memory; variant planning.

Run on demand:  python tests/benchmarks/bench_import.py [--rows 1000000] [--small 100000]
Goals (issue 3): at least 20,000 rows/s; peak memory flat in the number of rows (compare the
small and the large run); planning the variants of a 1,000,000-subscriber list. Each import runs
in a fresh child process so that its peak RSS is its own. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TAGS = [
    "Kazakhstan",
    "Kyrgyzstan",
    "Tajikistan",
    "Turkmenistan",
    "Uzbekistan",
    "Regional",
    "economy",
    "energy",
    "politics",
    "security",
    "transport",
    "technology",
    "environment",
    "society",
]


def generate(path: Path, rows: int) -> None:
    rng = random.Random(42)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("email,name,interests,status,city\n")
        for i in range(rows):
            k = rng.choice((0, 1, 1, 2, 2, 3))
            interests = "|".join(rng.sample(TAGS, k))
            status = "unsubscribed" if i % 50 == 0 else "active"
            fh.write(
                f"reader{i:07d}@mail{i % 97}.example.org,Reader {i},{interests},{status},City {i % 300}\n"
            )


def child(csv_path: str, db_url: str) -> None:
    from newsletter.audience.importer import import_csv
    from newsletter.config import load_settings
    from newsletter.storage.db import Database

    settings = load_settings(REPO / "newsletter.toml")
    db = Database(db_url)
    t0 = time.perf_counter()
    report = import_csv(db, Path(csv_path), "weekly", settings.vocabulary(), batch_size=5000)
    elapsed = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "rows": report.rows,
                "added": report.added,
                "seconds": elapsed,
                "peak_mb": peak_kb / 1024,
            }
        )
    )


def run_import(rows: int, tmp: Path) -> dict[str, float]:
    csv_path = tmp / f"subs-{rows}.csv"
    t0 = time.perf_counter()
    generate(csv_path, rows)
    print(
        f"  generated {rows:,} rows ({csv_path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s"
    )
    db_url = f"sqlite:///{tmp / f'bench-{rows}.db'}"
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(csv_path), db_url],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["db_url"] = db_url  # type: ignore[assignment]
    return result


def plan(db_url: str) -> None:
    from newsletter.audience.segments import plan_list
    from newsletter.compose.issuefiles import build_issue
    from newsletter.compose.select import ComposeOptions
    from newsletter.config import load_settings
    from newsletter.storage.db import Database

    settings = load_settings(REPO / "newsletter.toml")
    issue = build_issue(settings.issue_config(), ComposeOptions(date(2026, 11, 16))).issue
    db = Database(db_url)
    with db.connect() as conn:
        t0 = time.perf_counter()
        result = plan_list(conn, issue, "weekly", settings.vocabulary())
        elapsed = time.perf_counter() - t0
    print(
        f"variant planning         : {elapsed:.2f} s for {result.subscribers:,} active subscribers "
        f"-> {len(result.variants)} variants ({sum(len(v.interest_sets) for v in result.variants)} "
        f"distinct interest sets), {result.skipped:,} skipped"
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        results = {}
        for rows in (args.small, args.rows):
            print(f"importing {rows:,} rows into SQLite …")
            r = run_import(rows, tmp)
            results[rows] = r
            print(
                f"  {r['added']:,} added in {r['seconds']:.1f} s = {r['rows'] / r['seconds']:,.0f} rows/s "
                f"(goal >= 20,000); peak RSS {r['peak_mb']:.1f} MB"
            )
        small, large = results[args.small], results[args.rows]
        print(
            f"peak memory {args.small:,} -> {args.rows:,} rows: {small['peak_mb']:.1f} -> "
            f"{large['peak_mb']:.1f} MB (difference {large['peak_mb'] - small['peak_mb']:+.1f} MB)"
        )
        plan(str(large["db_url"]))


if __name__ == "__main__":
    main()
