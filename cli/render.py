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


def write_csv(path, rows: Sequence[dict]) -> None:
    """Rows of dicts -> CSV with the union of their keys as header (first-seen order)."""
    import csv

    header: list[str] = []
    for r in rows:
        header += [k for k in r if k not in header]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in header})


def ascii_scatter(points: Sequence[tuple[float, float, str]], width: int = 60,
                  height: int = 16, xlabel: str = "", ylabel: str = "") -> str:
    """A text scatter plot; each point is (x, y, mark); later marks win a shared cell."""
    pts = [(x, y, m) for x, y, m in points if x == x and y == y]
    if not pts:
        return "(nothing to plot)"
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx, sy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    grid = [[" "] * width for _ in range(height)]
    for x, y, m in pts:
        c = min(width - 1, int((x - x0) / sx * (width - 1)))
        r = height - 1 - min(height - 1, int((y - y0) / sy * (height - 1)))
        grid[r][c] = m
    lines = [f"{ylabel} {y1:.4g}".rjust(14) + " |" + "".join(grid[0])]
    lines += [" " * 14 + " |" + "".join(row) for row in grid[1:-1]]
    lines.append(f"{y0:.4g}".rjust(14) + " |" + "".join(grid[-1]))
    lines.append(" " * 15 + "+" + "-" * width)
    lines.append(" " * 16 + f"{x0:.4g}".ljust(width - 10) + f"{x1:.4g}".rjust(10))
    lines.append(" " * 16 + xlabel)
    return "\n".join(lines)
