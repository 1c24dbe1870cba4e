"""The workers rows of bench/run.sh: req/s at 32 connections with --workers 1 and 2, per round, and
their medians, as Markdown.

usage: workers_report.py RAW_DIR RESULTS_MD COMMAND
"""

from __future__ import annotations

import argparse
import datetime
import re
import statistics
from pathlib import Path

ROWS = {
    "v1-json": "POST /v1/chat/completions (relay, JSON)",
    "api-sse10": "POST /api/chat stream:false (upstream sse10)",
}


def rate(path: Path) -> tuple[float | None, int]:
    text = path.read_text(errors="replace")
    found = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return (float(found.group(1)) if found else None), errors + (int(non_2xx.group(1)) if non_2xx else 0)


def main(raw: Path, results: Path, command: str) -> None:
    lines = [
        "# Workers: --workers 1 against --workers 2",
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, `{command}`. Both proxies run side by side and",
        "are loaded in turn (A B, then B A), wrk -t2 -c32; wrk, the canned upstream (nginx) and the proxy share",
        "the machine's cores, so the second worker competes with the load generator for them.",
        "",
        "| row | req/s, 1 worker (rounds) | req/s, 2 workers (rounds) | median 1 | median 2 | 2 / 1 | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in ROWS.items():
        runs: dict[int, list[float]] = {1: [], 2: []}
        errors = 0
        for workers in (1, 2):
            for path in sorted(raw.glob(f"workers-{workers}-{key}.*.c32.txt")):
                value, failed = rate(path)
                errors += failed
                if value is not None:
                    runs[workers].append(value)
        if not runs[1] or not runs[2]:
            continue
        one, two = statistics.median(runs[1]), statistics.median(runs[2])
        lines.append(
            f"| {label} | {', '.join(f'{v:.0f}' for v in runs[1])} | {', '.join(f'{v:.0f}' for v in runs[2])} "
            f"| {one:.0f} | {two:.0f} | {two / one:.2f}× | {errors} |"
        )
    text = "\n".join(lines) + "\n"
    results.write_text(text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("command")
    args = parser.parse_args()
    main(args.raw, args.results, args.command)
