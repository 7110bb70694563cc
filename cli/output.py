"""Every file explore writes goes through this module: JSON, CSV with units in the headers,
YAML, PNG figures (matplotlib, imported only when a figure is written). A path that cannot be
written (a missing or unwritable directory, a directory where a file should go, a full disk) is
one InputError naming the path and the reason."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Sequence


def _cannot(path, e: OSError):
    from explore.models.errors import InputError
    return InputError(f"cannot write {path}: {e.strerror or e}")


def prepare(directory: Path) -> Path:
    """A --save-dir: created if missing; an error if it is a file or cannot be made."""
    from explore.models.errors import InputError

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"--save-dir {directory}: exists and is not a directory") from None
    except OSError as e:
        raise InputError(f"--save-dir {directory}: {e.strerror or e}") from None
    return directory


_SAVING: list[tuple[Path, bool]] = []   # the --save-dir being written, and --force


@contextmanager
def saving_into(directory: Path, force: bool):
    """Files written inside: into `directory` only, never over an existing file unless
    `force`, never through a symbolic link (with `force` the link itself is replaced)."""
    _SAVING.append((Path(directory), force))
    try:
        yield directory
    finally:
        _SAVING.pop()


def write_bytes(path: Path, data: bytes) -> None:
    """The one place files are opened for writing."""
    from explore.models.errors import InputError

    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    if _SAVING:
        directory, force = _SAVING[-1]
        if os.path.realpath(Path(path).parent) != os.path.realpath(directory):
            raise InputError(f"cannot write {path}: outside --save-dir {directory}")
        if os.path.lexists(path):
            if not force:
                raise InputError(f"--save-dir {directory}: {Path(path).name} exists; pass "
                                 f"--force to overwrite it")
            if os.path.islink(path):     # replace the link, never write where it points
                os.unlink(path)
    try:
        fd = os.open(path, flags, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"cannot write {path}: it is a symbolic link") from None
        raise _cannot(path, e) from None


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data) -> None:
    from .common import _clean
    write_text(path, json.dumps(_clean(data), indent=2) + "\n")


def write_yaml(path: Path, data: dict) -> None:
    import yaml
    write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def csv_text(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(headers)
    w.writerows(rows)
    return buf.getvalue()


def rows_csv_text(rows: Sequence[dict], default_header: Sequence[str] = ()) -> str:
    """Rows of dicts -> CSV whose header is the union of their keys (first-seen order)."""
    header: list[str] = list(default_header) if not rows else []
    for r in rows:
        header += [k for k in r if k not in header]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header)
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in header})
    return buf.getvalue()


def write_csv(path: Path, headers: Sequence[str], rows: Iterable[Sequence]) -> None:
    write_text(path, csv_text(headers, rows))


def write_rows(path: Path, rows: Sequence[dict]) -> None:
    write_text(path, rows_csv_text(rows))


def present(out: dict, json_out: bool, save_dir: str | None, render: Callable[[dict], None],
            save: Callable[[dict, Path], list[Path]] | None = None, force: bool = False) -> None:
    """The one way out of a command: the files under --save-dir (written first, so a bad
    directory fails before anything is printed; existing files only with --force), then JSON
    (keys starting with "_" are the command's own objects, not output; "saved" lists the files)
    or the Rich tables and a line that lists what was saved."""
    written: list[Path] = []
    if save_dir and save is not None:
        with saving_into(prepare(Path(save_dir)), force) as directory:
            written = save(out, directory)
    if json_out:
        from .common import emit_json
        public = {k: v for k, v in out.items() if not str(k).startswith("_")}
        if written:
            public["saved"] = [str(p) for p in written]
        emit_json(public)
        return
    render(out)
    if written:
        from .render import console
        # one unwrapped line, so the directory can be copied whole
        console().print(f"saved {', '.join(p.name for p in written)} to {save_dir}",
                        markup=False, highlight=False, soft_wrap=True)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _finish(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    """Labels, grid, legend, save, close: every figure ends the same way."""
    plt = _pyplot()
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def line_figure(path: Path, x, series: dict, xlabel: str, ylabel: str, title: str,
                mark: tuple | None = None, span: tuple | None = None,
                hline: tuple | None = None) -> None:
    """Lines over one x axis; `mark` = (x, y, label) point, `span` = (x0, x1, label) shaded
    range, `hline` = (y, label) reference level."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=130)
    for label, ys in series.items():
        ax.plot(x, ys, label=label, linewidth=1.6)
    if span:
        ax.axvspan(span[0], span[1], color="tab:green", alpha=0.12, label=span[2])
    if hline:
        ax.axhline(hline[0], color="grey", linestyle=":", linewidth=1, label=hline[1])
    if mark:
        ax.plot([mark[0]], [mark[1]], "o", color="black", markersize=7, label=mark[2])
    _finish(fig, ax, path, xlabel, ylabel, title)


def scatter_figure(path: Path, xs, ys, highlight: Sequence[int], chosen: int | None,
                   xlabel: str, ylabel: str, title: str) -> None:
    """All points, a highlighted set (Pareto front, joined) and the chosen point."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=130)
    ax.scatter(xs, ys, s=10, color="lightgrey", label="evaluated")
    front = sorted(highlight, key=lambda i: xs[i])
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "o-", color="tab:blue",
            markersize=4, linewidth=1, label="Pareto set")
    if chosen is not None:
        ax.plot([xs[chosen]], [ys[chosen]], "*", color="tab:red", markersize=14, label="chosen")
    _finish(fig, ax, path, xlabel, ylabel, title)


def stacked_bars(path: Path, categories: Sequence[str], stacks: dict, ylabel: str, title: str,
                 cap: tuple | None = None) -> None:
    """One bar per category split into stacked parts; `cap` = (y, label) limit line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=130)
    bottom = [0.0] * len(categories)
    for label, values in stacks.items():
        ax.bar(categories, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values)]
    if cap:
        ax.axhline(cap[0], color="tab:red", linestyle="--", linewidth=1.2, label=cap[1])
    _finish(fig, ax, path, "", ylabel, title)
