"""Bar charts as geometry for an inline SVG (`templates/chart.html` draws them): pure, no library.

A chart is a row of slots (hours, days), each a stack of series (ok and errors, or one per model);
colours come from CSS classes (`series-0`…), so light and dark themes both apply, and the figures
also go into a table beside the chart for screen readers and for reading exact values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

WIDTH = 640
HEIGHT = 200
LEFT = 56  # room for the scale's labels
BOTTOM = 22  # room for the slots' labels
TOP = 8
MAX_SERIES = 7  # more than this are summed as "other"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass
class Chart:
    title: str
    slots: list[str]
    series: list[str]
    values: list[list[float]]  # values[series][slot]
    unit: str = ""
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Label] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    top: float = 0.0

    @property
    def empty(self) -> bool:
        return not any(any(row) for row in self.values)

    @property
    def rows(self) -> list[tuple[str, list[float]]]:
        """The table beside the chart: per slot, the value of each series."""
        return [(slot, [row[i] for row in self.values]) for i, slot in enumerate(self.slots)]


def short(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + unit
    return f"{value:.2f}".rstrip("0").rstrip(".") if value % 1 else f"{int(value)}"


def nice_top(value: float) -> float:
    """The scale's top: 1, 2, 2.5 or 5 times a power of ten, at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1.0
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def stacked(
    title: str, slots: Sequence[str], series: Mapping[str, Sequence[float]], *, unit: str = "", every: int = 1
) -> Chart:
    """A stacked bar chart; `every`: label one slot in so many."""
    names = list(series)
    values = [list(series[name]) for name in names]
    if len(names) > MAX_SERIES:
        ranked = sorted(range(len(names)), key=lambda i: -sum(values[i]))
        keep = sorted(ranked[: MAX_SERIES - 1])
        rest = [i for i in range(len(names)) if i not in keep]
        other = [sum(values[i][slot] for i in rest) for slot in range(len(slots))]
        names = [names[i] for i in keep] + ["other"]
        values = [values[i] for i in keep] + [other]
    chart = Chart(title, list(slots), names, values, unit)
    totals = [sum(row[i] for row in values) for i in range(len(slots))]
    chart.top = top = nice_top(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(slots), 1)
    gap = min(step * 0.2, 4)
    for i, slot in enumerate(slots):
        base = 0.0
        for s, row in enumerate(values):
            value = row[i]
            if value <= 0:
                continue
            height = value / top * plot_h
            y = TOP + plot_h - (base + value) / top * plot_h
            text = f"{slot}: {names[s]} {short(value)}{unit}"
            chart.bars.append(
                Bar(round(LEFT + i * step + gap / 2, 2), round(y, 2), round(step - gap, 2), round(height, 2), s, text)
            )
            base += value
        if i % every == 0:
            chart.labels.append(Label(round(LEFT + i * step + step / 2, 2), HEIGHT - 6, slot))
    for fraction in (0, 0.5, 1):
        chart.ticks.append(Label(LEFT - 6, round(TOP + plot_h - fraction * plot_h + 4, 2), short(top * fraction)))
    return chart
