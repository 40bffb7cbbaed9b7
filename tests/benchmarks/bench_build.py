"""Benchmark: build a 200-article issue and measure the premailer cost per document.

Run on demand:  python tests/benchmarks/bench_build.py [--articles 200] [--repeat 3]
Goal (issue 2): a 200-article build in under 2 s on one core. Prints its figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from newsletter.compose.issuefiles import build_issue  # noqa: E402
from newsletter.compose.render import inline_css, render_issue  # noqa: E402
from newsletter.compose.select import ComposeOptions, compose_issue  # noqa: E402
from newsletter.config import load_settings  # noqa: E402

PLACES = ["Astana", "Bishkek", "Dushanbe", "Ashgabat", "Tashkent", "Central Asia"]
TOPICS = ["Economy", "Energy", "Transport", "Politics", "Technology", "Environment"]


def make_feed(path: Path, n: int) -> None:
    items = []
    for i in range(n):
        place = PLACES[i % len(PLACES)]
        body = (
            f"<p>Officials in {place} announced project number {i}, which is expected to change how "
            "people in the region live and work over the coming decade, according to the plan.</p>"
            "<h2>What happens next</h2><ul><li>a tender in the spring;</li><li>construction from the "
            "summer;</li><li>opening within three years.</li></ul>"
            f"<p>Critics in {place} said the cost was too high and asked for a public hearing before "
            "any contract is signed. The ministry said it would publish the budget next month.</p>"
        )
        day = 10 + i % 6
        items.append(
            f"<item><title>{place} announces project {i}</title>"
            f"<link>https://bench.example.org/{i}</link><guid>bench-{i}</guid>"
            f"<pubDate>{day} Nov 2026 08:{i % 60:02d}:00 +0000</pubDate>"
            f"<category>{TOPICS[i % len(TOPICS)]}</category>"
            f"<content:encoded><![CDATA[{body}]]></content:encoded></item>"
        )
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>Bench</title>'
        "<link>https://bench.example.org/</link>" + "".join(items) + "</channel></rss>"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the goal says
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        shutil.copy(REPO / "newsletter.toml", ws / "newsletter.toml")
        shutil.copytree(REPO / "templates", ws / "templates")
        shutil.copytree(REPO / "sources", ws / "sources")
        make_feed(ws / "bench.xml", args.articles)
        settings = load_settings(ws / "newsletter.toml")
        options = ComposeOptions(date(2026, 11, 16), sources=[str(ws / "bench.xml")])
        totals, composes, renders, inlines = [], [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = build_issue(settings.issue_config(), options)
            totals.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            issue = compose_issue(settings.issue_config(), options)
            composes.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            render_issue(issue, settings.render_options())
            renders.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            inline_css(result.rendered.web_html)
            inlines.append(time.perf_counter() - t0)
        n = len(result.issue.articles)
        size = len(result.files["email.html"])
        print(f"articles in issue        : {n}")
        print(
            f"email.html size          : {size / 1024:.1f} KB (raw HTML before inlining: "
            f"{len(result.files['index.html']) / 1024:.1f} KB)"
        )
        print(
            f"full build (best/median) : {min(totals):.3f} s / {statistics.median(totals):.3f} s  (goal < 2 s)"
        )
        print(f"  compose                : {min(composes):.3f} s")
        print(f"  render all three parts : {min(renders):.3f} s")
        print(
            f"premailer per document   : {min(inlines) * 1000:.0f} ms for {n} articles "
            f"({min(inlines) / n * 1000:.2f} ms per article)"
        )


if __name__ == "__main__":
    main()
