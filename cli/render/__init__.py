"""Rendering in one place: Rich tables for reports and search results, number formatting."""

from __future__ import annotations

from contextlib import contextmanager

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


@contextmanager
def steps(label: str, total: int):
    """A progress bar on stderr for `total` long steps when it is a terminal: yields
    `advance(what)`, called as each step starts (a no-op elsewhere)."""
    console = err_console()
    if not console.is_terminal:
        yield lambda what: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeElapsedColumn

    bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[what]}"), TimeElapsedColumn(), console=console,
                   transient=True)
    with bar:
        task = bar.add_task(label, total=total, what="")
        started = [0]          # steps begun; the ones before the current step are done

        def advance(what: str) -> None:
            bar.update(task, completed=started[0], what=what)
            started[0] += 1
        yield advance


def table(title: str | None, headers: Sequence[str], rows: Iterable[Sequence[Any]],
          right: Sequence[int] = (), caption: str | None = None,
          compact: bool = False) -> Table:
    """A plain table; columns whose index is in `right` are right-aligned (numbers).
    `compact` drops the vertical rules (one column of space between cells) for tables with
    many narrow columns, so they fit 80 columns."""
    from rich import box

    t = Table(title=title, caption=caption, title_justify="left", caption_justify="left",
              header_style="bold", box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
              padding=(0, 1, 0, 0) if compact else (0, 1))
    for i, h in enumerate(headers):
        # a word longer than its column (a path, a URL) breaks across lines, never cut to "…"
        t.add_column(h, justify="right" if i in right else "left", overflow="fold")
    for row in rows:
        t.add_row(*[str(c) for c in row])
    return t


STATUS_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "INFO": "dim"}


def checks_table(title: str, rows: Sequence[dict]):
    """Validation rows (check, reference, ours, error, tolerance, status, source, and a study
    when the rows carry one): the one table every `validate` command prints. Designed for 80
    columns: status, check, ours (with the error when the text does not already show it) and
    the target (reference and tolerance); each source once, as a numbered note below."""
    from rich.console import Group
    from rich.markup import escape

    def text(v) -> str:
        if v is None or v == "":
            return ""
        return f"{v:.1%}" if isinstance(v, float) else str(v)

    sources: list[str] = []
    body = []
    for r in rows:
        if r["source"] and r["source"] not in sources:
            sources.append(r["source"])
        note = f" [{sources.index(r['source']) + 1}]" if r["source"] else ""
        check = (f"{r['study']}: " if "study" in r else "") + text(r["check"]) + note
        ours, error = text(r["ours"]), text(r["error"])
        if error and error not in ours:
            ours += f" ({error})"
        target = "; ".join(x for x in (text(r["reference"]), text(r["tolerance"])) if x)
        body.append([f"[{STATUS_STYLE.get(r['status'], '')}]{r['status']}[/]", escape(check),
                     escape(ours or "-"), escape(target or "-")])
    notes = "\n".join(f"[dim][{i}] {escape(s)}[/]" for i, s in enumerate(sources, 1))
    tally = ", ".join(f"{sum(r['status'] == s for r in rows)} {s}" for s in STATUS_STYLE
                      if any(r["status"] == s for r in rows))
    return Group(table(f"{title}: {tally}", ["status", "check", "ours (error)",
                                             "reference; tolerance"], body), notes)


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


def metric_headers(metrics) -> list[str]:
    return [f"{m.label} ({m.unit})" if m.unit else m.label for m in metrics]


class _Canvas:
    """A character grid that maps data coordinates to cells and frames itself with axes."""

    def __init__(self, xs, ys, width: int, height: int):
        self.x0, self.x1, self.y0, self.y1 = min(xs), max(xs), min(ys), max(ys)
        self.width, self.height = width, height
        self.sx = (width - 1) / (self.x1 - self.x0) if self.x1 > self.x0 else 0.0
        self.sy = (height - 1) / (self.y1 - self.y0) if self.y1 > self.y0 else 0.0
        self.cells = [[" "] * width for _ in range(height)]

    def row(self, y) -> int:
        return self.height - 1 - round((y - self.y0) * self.sy)

    def put(self, x, y, mark: str) -> None:
        import math
        if math.isfinite(x) and math.isfinite(y):
            self.cells[self.row(y)][round((x - self.x0) * self.sx)] = mark

    def render(self, xlabel: str, ylabel: str, legend: str) -> str:
        top, bottom = f"{self.y1:.4g}", f"{self.y0:.4g}"
        pad = max(len(top), len(bottom))
        lines = [ylabel]
        for r, cells in enumerate(self.cells):
            label = top if r == 0 else bottom if r == self.height - 1 else ""
            lines.append(f"{label:>{pad}} |" + "".join(cells))
        left, right = f"{self.x0:.4g}", f"{self.x1:.4g}"
        lines.append(" " * pad + " +" + "-" * self.width)
        lines.append(" " * (pad + 2) + left + " " * max(1, self.width - len(left) - len(right))
                     + right)
        lines.append(" " * (pad + 2) + f"{xlabel}   {legend}")
        return "\n".join(lines)


def _finite(values) -> list:
    import math
    return [v for v in values if math.isfinite(v)]


def scatter(xs, ys, highlight=(), chosen=None, width: int = 64, height: int = 16,
            xlabel: str = "x", ylabel: str = "y") -> str:
    """A terminal scatter plot: '.' every point, 'o' the highlighted ones (a Pareto set),
    'X' the chosen one. Returns Rich markup."""
    if not _finite(xs) or not _finite(ys):
        return "(nothing to plot)"
    canvas = _Canvas(_finite(xs), _finite(ys), width, height)
    for x, y in zip(xs, ys):
        canvas.put(x, y, ".")
    for i in highlight:
        canvas.put(xs[i], ys[i], "[cyan]o[/]")
    if chosen is not None:
        canvas.put(xs[chosen], ys[chosen], "[bold red]X[/]")
    return canvas.render(xlabel, ylabel, "(. point, [cyan]o[/] Pareto set, [bold red]X[/] "
                                         "chosen)")


MARKERS = "*+ox#@%&"
COLOURS = ("cyan", "green", "yellow", "magenta", "blue", "red", "white", "bright_black")


def line_plot(x, series: dict, width: int = 64, height: int = 14, xlabel: str = "x",
              ylabel: str = "y", hline: float | None = None) -> str:
    """A terminal line plot of several series over one x axis (one marker per series, later
    series drawn on top); `hline` draws a dotted reference level. Returns Rich markup."""
    xs = list(x)
    values = _finite(v for ys in series.values() for v in ys) + \
        ([hline] if hline is not None else [])
    if not xs or not values:
        return "(nothing to plot)"
    canvas = _Canvas(xs, values, width, height)
    if hline is not None:
        canvas.cells[canvas.row(hline)] = ["[dim]·[/]"] * width
    marks = [f"[{COLOURS[k % len(COLOURS)]}]{MARKERS[k % len(MARKERS)]}[/]"
             for k in range(len(series))]
    for mark, ys in zip(marks, series.values()):
        for xv, yv in zip(xs, ys):
            canvas.put(xv, yv, mark)
    return canvas.render(xlabel, ylabel, "  ".join(f"{m} {label}"
                                                   for m, label in zip(marks, series)))


def bar_chart(labels, stacks: dict, width: int = 56, unit: str = "",
              cap: float | None = None, cap_label: str = "cap") -> str:
    """Horizontal stacked bars (one row per label, one colour per stack) with the row total and
    an optional limit drawn as a red '|'. Returns Rich markup."""
    totals = [sum(values[i] for values in stacks.values()) for i in range(len(labels))]
    top = max(totals + ([cap] if cap else []) + [1e-300])
    scale = width / top
    pad = max(len(str(label)) for label in labels)
    cap_col = round(cap * scale) if cap else None
    rows = []
    for i, label in enumerate(labels):
        cells: list[str] = []
        for k, values in enumerate(stacks.values()):
            cells += [f"[{COLOURS[k % len(COLOURS)]}]█[/]"] * round(values[i] * scale)
        cells = cells[:width + 1] + [" "] * (width + 1 - len(cells))
        if cap_col is not None and cap_col <= width:
            cells[cap_col] = "[bold red]|[/]"
        rows.append(f"{label:>{pad}} " + "".join(cells) + f" {totals[i]:.1f} {unit}")
    legend = "  ".join(f"[{COLOURS[k % len(COLOURS)]}]█[/] {name}"
                       for k, name in enumerate(stacks))
    if cap:
        legend += f"  [bold red]|[/] {cap_label} {cap:.1f} {unit}"
    return "\n".join(rows + [" " * (pad + 1) + legend])
