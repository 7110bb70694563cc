"""`explore regress`: run every study preset and compare its JSON output with its golden file.

How closely a number must match follows what it means (the tolerance policy, stated once here
and printed by the command):

- closed-form model outputs are deterministic: relative 1e-9 (absolute 1e-12 near zero), so a
  1e-6 change to any input still shows;
- results of a numerical fit (any value under a key named `calibrated`, or in a record that
  says what it was `fitted_on`) are compared by what a user reads: predictions and errors at
  the agreement the solver's settings guarantee (models/fit_settings.py PREDICTION_RTOL), fitted
  parameters as a fraction of their bound range, and a parameter on a bound by which bound;
- timings and solver evaluation counts are ignored;
- everything else (configurations, names, statuses, counts) exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import typer

from explore.models.fit_settings import PREDICTION_RTOL
from .options import checked


@dataclass(frozen=True)
class Tolerance:
    what: str
    rtol: float
    atol: float

    def close(self, a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=self.rtol, abs_tol=self.atol)


CLOSED_FORM = Tolerance("closed-form outputs", 1e-9, 1e-12)
FITTED = Tolerance("numerical fit results", 10 * PREDICTION_RTOL, PREDICTION_RTOL)
# parameters along flat directions of the cost are less determined than predictions: 100x the
# prediction agreement, as a fraction of the bound range
PARAMETER = Tolerance("fitted parameters (fraction of bound range)", 0.0, 100 * PREDICTION_RTOL)
IGNORED = {"elapsed_s", "fit_seconds", "wall_s", "evaluations", "calibration_file"}
FIT_KEY, FIT_RECORD = "calibrated", "fitted_on"
PARAMETER_KEYS = {"name", "value", "lower", "upper", "at_bound"}


def policy(closed_form: Tolerance = CLOSED_FORM) -> str:
    """The tolerance policy in one line, as the command prints it."""
    return (f"tolerances: {closed_form.what} relative {closed_form.rtol:g}; {FITTED.what} "
            f"relative {FITTED.rtol:g} (absolute {FITTED.atol:g}); {PARAMETER.what} "
            f"{PARAMETER.atol:g}, on a bound by which bound; timings ignored")


def compare(golden: Any, now: Any, tol: Tolerance = CLOSED_FORM, path: str = "") -> list[str]:
    """Differences between two JSON values under the tolerance policy above."""
    if isinstance(golden, dict) and isinstance(now, dict):
        if FIT_RECORD in golden:
            tol = FITTED
        if tol is FITTED and PARAMETER_KEYS <= golden.keys() and PARAMETER_KEYS <= now.keys():
            return _compare_parameter(golden, now, path)
        out = []
        for k in sorted(set(golden) | set(now), key=str):
            if k in IGNORED:
                continue
            p = f"{path}.{k}" if path else str(k)
            if k not in now:
                out.append(f"{p}: removed (was {_short(golden[k])})")
            elif k not in golden:
                out.append(f"{p}: new ({_short(now[k])})")
            else:
                out += compare(golden[k], now[k], FITTED if k == FIT_KEY else tol, p)
        return out
    if isinstance(golden, list) and isinstance(now, list):
        if len(golden) != len(now):
            return [f"{path}: {len(golden)} items -> {len(now)}"]
        return [d for i, (a, b) in enumerate(zip(golden, now))
                for d in compare(a, b, tol, f"{path}[{i}]")]
    if _is_float_pair(golden, now):
        if tol.close(golden, now):
            return []
        change = (now - golden) / abs(golden) if golden else float("inf")
        return [f"{path}: {golden:.6g} -> {now:.6g} ({change:+.3%})"]
    if golden != now:
        return [f"{path}: {_short(golden)} -> {_short(now)}"]
    return []


def _is_float_pair(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool)
            and not isinstance(b, bool) and (isinstance(a, float) or isinstance(b, float)))


def _compare_parameter(golden: dict, now: dict, path: str) -> list[str]:
    """A fitted parameter: 'on <bound> bound' when it sits on one, else its position in the
    bound range (relative to its value when the range is unbounded)."""
    def reading(p: dict) -> str:
        return f"on {p['at_bound']} bound" if p["at_bound"] else f"{p['value']:.6g}"

    where = f"{path}({golden['name']})"
    if golden["name"] != now["name"] or golden["lower"] != now["lower"] or \
            golden["upper"] != now["upper"]:
        return [f"{where}: bounds {golden['lower']:.6g}..{golden['upper']} -> "
                f"{now['lower']:.6g}..{now['upper']}"]
    if golden["at_bound"] or now["at_bound"]:
        same = golden["at_bound"] == now["at_bound"]
        return [] if same else [f"{where}: {reading(golden)} -> {reading(now)}"]
    if golden["upper"] is None:
        moved = not FITTED.close(golden["value"], now["value"])
    else:
        span = golden["upper"] - golden["lower"]
        moved = abs(now["value"] - golden["value"]) > PARAMETER.atol * span
    return [f"{where}: {reading(golden)} -> {reading(now)}"] if moved else []


def _short(v: Any) -> str:
    import json
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def capture(argv: list[str]) -> tuple[int, str]:
    """Run explore in-process; return (exit code, stdout)."""
    import contextlib
    import io

    from .app import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    return code, buf.getvalue()


def golden_path(name: str):
    from explore import presets
    return presets.data_path("studies", "golden", f"{name}.json")


def regress_preset(name: str, closed_form: Tolerance = CLOSED_FORM) -> tuple[dict, list[str]]:
    """(current result, differences from the golden file) of one study preset."""
    import json

    from explore import presets
    from explore.models.errors import ExploreError

    from .run import preset_argv

    preset = presets.load("study", name)
    code, out = capture(preset_argv(preset, ["--json"]))
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        raise ExploreError(f"study preset {name!r} did not print JSON (exit {code})") from None
    now = {"exit_code": code, "output": data}
    path = golden_path(name)
    if not path.exists():
        return now, ["no golden file yet (run explore regress --update)"]
    return now, compare(json.loads(path.read_text()), now, closed_form)


def regress_command(
    update: bool = typer.Option(False, "--update", help="rewrite the golden files with the "
                                "current results (after printing what moved)"),
    only: list[str] = typer.Option([], "--preset", help="only this preset (repeatable)"),
    rtol: float = typer.Option(CLOSED_FORM.rtol, "--rtol", help="relative tolerance on "
                               "closed-form outputs (fit results follow the solver's)",
                               callback=checked()),
    limit: int = typer.Option(12, "--limit", help="differences shown per preset",
                              callback=checked()),
) -> None:
    """Run every study preset and compare its JSON output with its golden file: closed-form
    numbers within --rtol, fit results at the solver's agreement, configurations exactly. Exit
    code 1 when anything moved (unless --update).

    Example: explore regress --preset moesd-qwen2-2xh800
    """
    import json

    from explore import presets
    from explore.models.errors import ConfigError, shown

    from .output import write_text
    from .render import console

    closed_form = Tolerance(CLOSED_FORM.what, rtol, CLOSED_FORM.atol)
    names = [n for n in presets.names("study") if presets.load("study", n).regress]
    for n in only:
        if n not in names:
            close = presets.nearest(n, names)
            raise ConfigError(f"no regressed study preset {shown(n)}"
                              + (f"; nearest: {', '.join(close)}" if close else "")
                              + " (`explore presets list study` shows all)")
    c = console()
    c.print(f"[dim]{policy(closed_form)}[/]")
    moved = 0
    for name in (only or names):
        now, diffs = regress_preset(name, closed_form)
        if diffs:
            moved += 1
            c.print(f"[bold red]moved[/]  {name}: {len(diffs)} difference(s)")
            for d in diffs[:limit]:
                c.print(f"         {d}", markup=False, highlight=False)
            if len(diffs) > limit:
                c.print(f"         ... {len(diffs) - limit} more")
        else:
            c.print(f"[green]same[/]   {name}")
        if update and diffs:
            write_text(golden_path(name), json.dumps(now, indent=1, sort_keys=True) + "\n")
    total = len(only or names)
    if update:
        c.print(f"{moved} of {total} golden files rewritten")
    elif moved:
        c.print(f"[bold red]{moved} of {total} presets moved[/]: if the change is intended, "
                f"run `explore regress --update` and commit the golden files with it")
        raise typer.Exit(1)
    else:
        c.print(f"all {total} presets match their golden files")
