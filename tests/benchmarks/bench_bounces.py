"""Benchmark: returned mail classified per second on the corpus (tests/returns/), one core.

Goal: 1,000 messages a second. Prints the rate for the whole classifier and for its parts, so
that a slow part shows (flufl.bounce runs only for non-standard bounces).

Run: .venv/bin/python tests/benchmarks/bench_bounces.py [--passes 30]
"""

from __future__ import annotations

import argparse
import email
import sys
import time
from pathlib import Path

from flufl.bounce import all_failures

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from newsletter.core.tokens import Signer  # noqa: E402
from newsletter.inbound.classify import Mailroom, classify  # noqa: E402
from tests.returns.make_corpus import KEY  # noqa: E402


def rate(label: str, work: list[bytes], step, passes: int) -> float:  # type: ignore[no-untyped-def]
    started = time.process_time()
    for _ in range(passes):
        for raw in work:
            step(raw)
    seconds = time.process_time() - started
    per_second = len(work) * passes / seconds
    print(f"{label:<42} {per_second:>9,.0f} messages/s  ({seconds:.2f} s CPU)")
    return per_second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passes", type=int, default=30)
    args = parser.parse_args()
    corpus = [p.read_bytes() for p in sorted((ROOT / "tests/returns/corpus").glob("*.eml"))]
    room = Mailroom(Signer(KEY), "bounces@news.example.org", "unsubscribe@news.example.org")
    print(
        f"corpus: {len(corpus)} messages, {sum(map(len, corpus)) // len(corpus):,} bytes each on average"
    )
    rate("email.message_from_bytes (parsing alone)", corpus, email.message_from_bytes, args.passes)
    rate(
        "flufl.bounce all_failures (every message)",
        corpus,
        lambda raw: all_failures(email.message_from_bytes(raw)),
        args.passes,
    )
    whole = rate(
        "classify (the whole classifier)", corpus, lambda raw: classify(raw, room), args.passes
    )
    print(f"goal 1,000 messages/s: {'met' if whole >= 1000 else 'NOT met'} ({whole / 1000:.1f}x)")
    # Real returns often quote the whole original (~20 KB for an issue): the same messages
    # with 20 KB of the text in the quoted copy.
    filler = "Kazakhstan's central bank held its base rate at 16.5 percent on Friday. " * 290
    padded = [
        raw.replace(b"Text.", filler.encode()).replace(b"The issue's text.", filler.encode())
        for raw in corpus
    ]
    padded = [raw for raw, small in zip(padded, corpus, strict=True) if len(raw) > len(small)]
    rate(
        f"classify, {len(padded)} quoting a 20 KB original",
        padded,
        lambda raw: classify(raw, room),
        args.passes,
    )


if __name__ == "__main__":
    main()
