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


def cpu_per_request(wrk_output: Path, rate: float) -> list[float]:
    """The proxy's CPU milliseconds per request in one run (its .cpu file: ticks, ticks per second)."""
    path = wrk_output.with_name(wrk_output.name.replace(".c32.txt", ".cpu"))
    duration = re.search(r"requests in ([\d.]+)(ms|s|m)", wrk_output.read_text(errors="replace"))
    if not path.exists() or duration is None or rate <= 0:
        return []
    ticks, per_second = (int(part) for part in path.read_text().split())
    seconds = float(duration.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[duration.group(2)]
    return [1000 * ticks / per_second / (rate * seconds)]


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "—"


def main(raw: Path, results: Path, command: str) -> None:
    lines = [
        "# Workers: --workers 1 against --workers 2",
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, `{command}`. Both proxies run side by side and",
        "are loaded in turn (A B, then B A), wrk -t2 -c32; wrk, the canned upstream (nginx) and the proxy share",
        "the machine's cores, so the second worker competes with the load generator for them.",
        "",
        "The proxy's CPU time per request (all its processes, user + system) is less disturbed by other load on",
        "the machine than req/s: 1,000 / (CPU ms per request) is what one core can serve.",
        "",
        "| row | req/s, 1 worker (rounds) | req/s, 2 workers (rounds) | median 1 | median 2 | 2 / 1 "
        "| CPU ms/request, 1 / 2 | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, label in ROWS.items():
        runs: dict[int, list[float]] = {1: [], 2: []}
        cpu: dict[int, list[float]] = {1: [], 2: []}
        errors = 0
        for workers in (1, 2):
            for path in sorted(raw.glob(f"workers-{workers}-{key}.*.c32.txt")):
                value, failed = rate(path)
                errors += failed
                if value is not None:
                    runs[workers].append(value)
                    cpu[workers].extend(cpu_per_request(path, value))
        if not runs[1] or not runs[2]:
            continue
        one, two = statistics.median(runs[1]), statistics.median(runs[2])
        lines.append(
            f"| {label} | {', '.join(f'{v:.0f}' for v in runs[1])} | {', '.join(f'{v:.0f}' for v in runs[2])} "
            f"| {one:.0f} | {two:.0f} | {two / one:.2f}× | {median(cpu[1])} / {median(cpu[2])} | {errors} |"
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
