"""Rendering in one place: Rich tables for reports and search results, number formatting."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None:
        _console = Console(highlight=False)
    return _console


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def table(title: str | None, headers: Sequence[str], rows: Iterable[Sequence[Any]],
          right: Sequence[int] = (), caption: str | None = None) -> Table:
    """A plain table; columns whose index is in `right` are right-aligned (numbers)."""
    t = Table(title=title, caption=caption, title_justify="left", caption_justify="left",
              header_style="bold")
    for i, h in enumerate(headers):
        t.add_column(h, justify="right" if i in right else "left")
    for row in rows:
        t.add_row(*[str(c) for c in row])
    return t


def key_values(title: str, rows: Iterable[Sequence[Any]]) -> Table:
    """Two or three columns: name, value, note."""
    t = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_column(style="dim")
    for row in rows:
        row = [str(c) for c in row] + [""] * (3 - len(row))
        t.add_row(*row)
    return t


def si(value: float, unit: str, digits: int = 3) -> str:
    """1.5e9, 'B' -> '1.50 GB'; decimal prefixes."""
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def result_rows(result, metrics, indices, param_names: Sequence[str]) -> list[list[str]]:
    """Rows for a top-N table of any study: rank, parameters, then metrics."""
    rows = []
    for rank, i in enumerate(indices, 1):
        point = result.point(i)
        rows.append([str(rank), *[str(point[p]) for p in param_names],
                     *[m.show(float(result.metrics[m.name][i])) for m in metrics
                       if m.name in result.metrics]])
    return rows


def metric_headers(metrics) -> list[str]:
    return [f"{m.label} ({m.unit})" if m.unit else m.label for m in metrics]


def scatter(xs, ys, highlight=(), chosen=None, width: int = 64, height: int = 16,
            xlabel: str = "x", ylabel: str = "y") -> str:
    """A terminal scatter plot: '.' every point, 'o' the highlighted ones (a Pareto set),
    'X' the chosen one. Returns Rich markup."""
    import math

    pts = [(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return "(nothing to plot)"
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    sx = (width - 1) / (x1 - x0) if x1 > x0 else 0.0
    sy = (height - 1) / (y1 - y0) if y1 > y0 else 0.0
    grid = [[" "] * width for _ in range(height)]

    def put(i, ch):
        x, y = xs[i], ys[i]
        if math.isfinite(x) and math.isfinite(y):
            grid[height - 1 - round((y - y0) * sy)][round((x - x0) * sx)] = ch

    for i in range(len(xs)):
        put(i, ".")
    for i in highlight:
        put(i, "[cyan]o[/]")
    if chosen is not None:
        put(chosen, "[bold red]X[/]")
    ylab_top, ylab_bot = f"{y1:.4g}", f"{y0:.4g}"
    pad = max(len(ylab_top), len(ylab_bot))
    lines = [f"{ylabel}"]
    for r, row in enumerate(grid):
        label = ylab_top if r == 0 else ylab_bot if r == height - 1 else ""
        lines.append(f"{label:>{pad}} |" + "".join(row))
    lines.append(" " * pad + " +" + "-" * width)
    left, right = f"{x0:.4g}", f"{x1:.4g}"
    lines.append(" " * (pad + 2) + left + " " * max(1, width - len(left) - len(right)) + right)
    lines.append(" " * (pad + 2) + f"{xlabel}   (. point, o Pareto set, X chosen)")
    return "\n".join(lines)


MARKERS = "*+ox#@%&"


def line_plot(x, series: dict, width: int = 64, height: int = 14, xlabel: str = "x",
              ylabel: str = "y", hline: float | None = None) -> str:
    """A terminal line plot of several series over one x axis (one marker per series, later
    series drawn on top); `hline` draws a dotted reference level. Returns Rich markup."""
    import math

    xs = list(x)
    values = [v for ys in series.values() for v in ys if math.isfinite(v)]
    if hline is not None:
        values.append(hline)
    if not xs or not values:
        return "(nothing to plot)"
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(values), max(values)
    sx = (width - 1) / (x1 - x0) if x1 > x0 else 0.0
    sy = (height - 1) / (y1 - y0) if y1 > y0 else 0.0
    grid = [[" "] * width for _ in range(height)]
    if hline is not None:
        row = height - 1 - round((hline - y0) * sy)
        grid[row] = ["[dim]·[/]"] * width
    colours = ["cyan", "green", "yellow", "magenta", "blue", "red", "white", "bright_black"]
    for k, (label, ys) in enumerate(series.items()):
        mark = f"[{colours[k % len(colours)]}]{MARKERS[k % len(MARKERS)]}[/]"
        for xv, yv in zip(xs, ys):
            if math.isfinite(yv):
                grid[height - 1 - round((yv - y0) * sy)][round((xv - x0) * sx)] = mark
    top, bottom = f"{y1:.3g}", f"{y0:.3g}"
    pad = max(len(top), len(bottom))
    lines = [ylabel]
    for r, row in enumerate(grid):
        label = top if r == 0 else bottom if r == height - 1 else ""
        lines.append(f"{label:>{pad}} |" + "".join(row))
    lines.append(" " * pad + " +" + "-" * width)
    left, right = f"{x0:g}", f"{x1:g}"
    lines.append(" " * (pad + 2) + left + " " * max(1, width - len(left) - len(right)) + right)
    legend = "  ".join(f"[{colours[k % len(colours)]}]{MARKERS[k % len(MARKERS)]}[/] {label}"
                       for k, label in enumerate(series))
    lines.append(" " * (pad + 2) + f"{xlabel}   {legend}")
    return "\n".join(lines)
