"""Turn the raw wrk outputs of bench/run.sh into one Markdown table.

usage: report.py RAW_DIR RESULTS_MD COMMAND

RAW_DIR holds, per measured line NAME (proxy-<row> or direct-<scenario>):
NAME.c1.txt / NAME.c32.txt (wrk --latency output), and for proxy lines
NAME.check (curl sanity check: "ok" or the reason) and NAME.rss ("kB kB").
The ledger's rows: ledger-on-ROW.N.c32.txt and ledger-off-ROW.N.c32.txt for rounds N = 1, 2, …,
and ledger-ROW.pairs (how many pairs of processes the rounds were spread over).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# (row key, label, upstream scenario, what the nginx line means for this row)
ROWS: list[tuple[str, str, str | None, str | None]] = [
    ("tags", "GET /api/tags", None, None),
    ("v1-json", "POST /v1/chat/completions", "json", "direct"),
    ("v1-sse2000", "POST /v1/chat/completions stream, 2000 chunks", "sse2000", "direct"),
    ("api-sse10", "POST /api/chat stream:false (upstream sse10)", "sse10", "scale"),
    ("api-sse100", "POST /api/chat stream:true (upstream sse100)", "sse100", "scale"),
    ("api-sse2000", "POST /api/chat stream:true (upstream sse2000)", "sse2000", "scale"),
]
VIA = {"direct": "direct (nginx)", "scale": "upstream file only (scale)"}
HEADER = [
    "row",
    "via",
    "p50 ms @1 conn",
    "p99 ms @1 conn",
    "req/s @32 conn",
    "added p50 ms",
    "RSS MiB",
    "errors",
]
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass
class Wrk:
    """The figures of one wrk run that the table needs."""

    p50: float | None = None
    p99: float | None = None
    rps: float | None = None
    errors: list[str] = field(default_factory=list)


def parse_wrk(path: Path) -> Wrk:
    if not path.exists():
        return Wrk(errors=["not run"])
    text = path.read_text(errors="replace")
    run = Wrk()
    pct = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+(?:us|ms|s|m|h))\s*$", text, re.M))
    for key, attr in (("50", "p50"), ("99", "p99")):
        if m := re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", pct.get(key, "")):
            setattr(run, attr, float(m[1]) * UNIT_MS[m[2]])
    if m := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M):
        run.rps = float(m[1])
    else:
        last = text.strip().splitlines()[-1:] or ["no output"]
        run.errors.append(f"wrk failed: {last[0]}")
    if (m := re.search(r"^\s+(\d+) requests in", text, re.M)) and int(m[1]) == 0:
        run.errors.append("0 requests completed")
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        run.errors.append(f"{m[1]} non-2xx")
    if m := re.search(r"Socket errors: (.*)", text):
        counts = re.findall(r"(\w+) (\d+)", m[1])
        run.errors += [f"{n} {kind} err" for kind, n in counts if int(n)]
    return run


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def rss(path: Path) -> str:
    if not path.exists():
        return "—"
    now, peak = (int(kb) / 1024 for kb in path.read_text().split())
    return f"{now:.1f} / {peak:.1f}"


def line(raw: Path, name: str, label: str, via: str, base: float | None) -> tuple[list[str], float | None]:
    c1, c32 = parse_wrk(raw / f"{name}.c1.txt"), parse_wrk(raw / f"{name}.c32.txt")
    errors = [f"c1: {e}" for e in c1.errors] + [f"c32: {e}" for e in c32.errors]
    if c1.errors == c32.errors == ["not run"]:
        errors = ["not run"]
    check = raw / f"{name}.check"
    if check.exists() and (verdict := check.read_text().strip()) != "ok":
        errors.insert(0, f"bad response: {verdict}")
    added = None if base is None or c1.p50 is None else c1.p50 - base
    cells = [
        label,
        via,
        ms(c1.p50),
        ms(c1.p99),
        "—" if c32.rps is None else f"{c32.rps:,.0f}",
        "—" if added is None else f"{added:+.3f}",
        rss(raw / f"{name}.rss"),
        f"**{'; '.join(errors)}**" if errors else "none",
    ]
    return cells, c1.p50


def table(raw: Path) -> str:
    rows: list[list[str]] = []
    for key, label, scenario, kind in ROWS:
        nginx_cells: list[str] | None = None
        base = None
        if scenario and kind:
            nginx_cells, nginx_p50 = line(raw, f"direct-{scenario}", label, VIA[kind], None)
            base = nginx_p50 if kind == "direct" else None
        rows.append(line(raw, f"proxy-{key}", label, "proxy", base)[0])
        if nginx_cells:
            rows.append(nginx_cells)
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(out)


LEDGER_ROWS = [
    ("v1-json", "POST /v1/chat/completions"),
    ("api-sse10", "POST /api/chat stream:false (upstream sse10)"),
]


def rate(rps: float | None) -> str:
    return "—" if rps is None else f"{rps:,.0f}"


def round_of(path: Path) -> int:
    return int(path.name.split(".")[-3])  # ledger-on-ROW.N.c32.txt


def median_interval(values: list[float]) -> tuple[float, float] | None:
    """A 95% confidence interval of the median of `values` (without assuming their distribution):
    the order statistics the binomial's normal approximation names; None for fewer than 6 values."""
    n = len(values)
    if n < 6:
        return None
    ordered = sorted(values)
    half = 1.96 * math.sqrt(n) / 2
    low, high = math.floor(n / 2 - half), math.ceil(n / 2 + 1 + half)  # ranks, from 1
    return ordered[max(low, 1) - 1], ordered[min(high, n) - 1]


# Student's t, two-sided 95%, by degrees of freedom; a df between two entries takes the smaller's (wider).
_T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 15: 2.13}
_T975 |= {20: 2.09, 30: 2.04, 60: 2.00, 120: 1.98}


def pairs_mean_interval(costs: dict[int, float], pairs: int) -> tuple[float, float, float] | None:
    """The cost as the mean of the pairs' own costs, with its 95% interval: each pair of processes
    brings some luck of its own, so its rounds are not independent of each other, and the pairs
    are. `costs` by round number (1, 2, …: each pair's rounds in a row); None for fewer than 3 pairs."""
    if pairs < 3 or not costs or max(costs) % pairs:
        return None
    per_pair = max(costs) // pairs
    grouped: dict[int, list[float]] = {}
    for number, cost in costs.items():
        grouped.setdefault((number - 1) // per_pair, []).append(math.log1p(cost))
    means = [statistics.fmean(logs) for logs in grouped.values()]
    if len(means) < 3:
        return None
    mean = statistics.fmean(means)
    t = _T975[max(df for df in _T975 if df <= len(means) - 1)]
    half = t * statistics.stdev(means) / math.sqrt(len(means))
    return math.expm1(mean), math.expm1(mean - half), math.expm1(mean + half)


def ledger_table(raw: Path) -> str | None:
    """req/s with the ledger on (the default, SQLite) and off (`--database-url none`): each side's
    median, and the cost as the median of the rounds' own costs. A round loads the two proxies one
    right after the other, so its cost compares figures taken under the same load of the machine;
    the machine's drift from round to round (here up to ±10%) moves both sides and cancels out."""
    out = [
        "| row | ledger on, req/s (median) | ledger off, req/s (median) | cost (median of the rounds')"
        " | 95% confidence interval of that median | middle half of the rounds' costs | mean of the pairs'"
        " costs (95% interval) | rounds (pairs of processes) | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label in LEDGER_ROWS:
        sides: dict[str, dict[int, float]] = {}
        errors: list[str] = []
        for side in ("on", "off"):
            paths = sorted(raw.glob(f"ledger-{side}-{key}.*.c32.txt"), key=round_of)
            runs = {round_of(path): parse_wrk(path) for path in paths}
            sides[side] = {number: run.rps for number, run in runs.items() if run.rps is not None}
            errors += [f"{side}: {error}" for run in runs.values() for error in run.errors]
            check = raw / f"ledger-{side}-{key}.check"
            if check.exists() and (verdict := check.read_text().strip()) != "ok":
                errors.insert(0, f"{side}: bad response: {verdict}")
        on_rounds, off_rounds = sides["on"], sides["off"]
        if not on_rounds and not off_rounds:
            continue
        on = statistics.median(on_rounds.values()) if on_rounds else None
        off = statistics.median(off_rounds.values()) if off_rounds else None
        by_round = {n: (on_rounds[n] - off_rounds[n]) / off_rounds[n] for n in sorted(on_rounds) if off_rounds.get(n)}
        costs = list(by_round.values())
        quartiles = statistics.quantiles(costs, n=4) if len(costs) > 1 else costs * 3
        interval = median_interval(costs)
        pairs_file = raw / f"ledger-{key}.pairs"
        pairs = pairs_file.read_text().strip() if pairs_file.exists() else "?"
        by_pair = pairs_mean_interval(by_round, int(pairs)) if pairs.isdigit() else None
        cells = [
            label,
            rate(on),
            rate(off),
            f"{statistics.median(costs):+.1%}" if costs else "—",
            f"{interval[0]:+.1%} … {interval[1]:+.1%}" if interval else "—",
            f"{quartiles[0]:+.1%} … {quartiles[2]:+.1%}" if costs else "—",
            f"{by_pair[0]:+.1%} ({by_pair[1]:+.1%} … {by_pair[2]:+.1%})" if by_pair else "—",
            f"{len(costs)} ({pairs})",
            f"**{'; '.join(errors)}**" if errors else "none",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) if len(out) > 2 else None


def version(*cmd: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    first = (done.stdout + done.stderr).strip().splitlines() or ["?"]
    return first[0].split(" Copyright")[0]


def machine() -> str:
    cpu = "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and (m := re.search(r"^model name\s*:\s*(.*)$", cpuinfo.read_text(), re.M)):
        cpu = m[1]
    return (
        f"nproc {os.cpu_count()} ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {version('nginx', '-v')}, {version('wrk', '-v')}"
    )


def main(raw: Path, results: Path, command: str) -> None:
    parts = []
    if any(raw.glob("*.c1.txt")):  # not with BENCH_ONLY=ledger
        parts.append(table(raw))
    if ledger := ledger_table(raw):
        parts.append("The usage ledger's cost (`wrk -t2 -c32`, the two proxies loaded in turn):\n\n" + ledger)
    body = "\n\n".join(parts)
    print(body)
    skipped = raw / "proxy.skipped"
    notes = [
        "- p50/p99: `wrk -t1 -c1 --latency` (after a 1 s warm-up); req/s: `wrk -t2 -c32`;"
        " wrk timeout 30 s. Latency is to the last byte of the response.",
        "- added p50 = proxy p50 − direct p50 (same request straight to nginx).",
        "- upstream file only (scale): nginx serving the SSE file the proxy consumes for that row;"
        " a different endpoint, so no added latency is computed.",
        "- RSS: VmRSS / VmHWM of the proxy after the row's load. One proxy process per"
        " upstream scenario, so rows sharing a scenario share a process.",
        "- The canned upstream answers at once from static files (a whole SSE body arrives in one"
        " burst), so the figures are the proxy's own cost, not an upstream's pace.",
        "- wrk (2 threads), nginx (1 worker) and the proxy share the same CPUs. Figures under"
        " ~0.1 ms swing with whether the scheduler puts wrk and nginx on the same CPU; read them as ≈0.1 ms.",
        "- The ledger's cost: two proxies for the same upstream side by side, the default (a SQLite"
        " ledger in the run's directory) and `--database-url none`, loaded in turn (on, off; then off, on)"
        " for the given rounds (`BENCH_LEDGER_SECONDS` each). Each round's cost is (on − off) / off of its"
        " two runs; the row's cost is the median of the rounds' costs, and the middle half the range of the"
        " rounds' costs between their first and third quartiles. The rounds are spread over fresh pairs of"
        " processes (`BENCH_LEDGER_PAIRS`, `BENCH_LEDGER_ROUNDS` rounds each; which of the two starts first"
        " alternates from pair to pair): two processes of the same code differ by a few percent between"
        " themselves. The confidence interval is the median's, from the rounds' order statistics. The mean of"
        " the pairs' costs takes each pair's own cost (the geometric mean of its rounds' on/off) and averages"
        " those, with Student's t interval over the pairs: a pair's rounds share its luck, the pairs do not.",
    ]
    if skipped.exists():
        notes.insert(0, f"- **proxy not measured: {skipped.read_text().strip().splitlines()[0]}**")
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results.write_text(
        "# oai2ollama benchmark\n\n"
        f"- command: `{command}`\n- date: {date}\n- machine: {machine()}\n\n"
        f"{body}\n\n" + "\n".join(notes) + "\n",
        encoding="utf-8",
    )
    print(f"\nwritten to {results}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw_dir", type=Path, help="the wrk outputs of one bench/run.sh run")
    parser.add_argument("results", type=Path, help="the Markdown file to write")
    parser.add_argument("command", help="the command that produced the run, quoted in the report")
    args = parser.parse_args()
    main(args.raw_dir, args.results, args.command)
