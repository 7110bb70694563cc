"""`explore run PRESET`: run a ready-made study preset (or your own YAML), with any option
overridden on the command line; `explore regress`: pin every preset's output."""

from __future__ import annotations

from typing import Any

import typer

def _command(path: tuple[str, ...]):
    """The click command at an explore subcommand path (for its option names)."""
    from typer.main import get_command

    from .app import app

    cmd = get_command(app)
    for part in path:
        sub = getattr(cmd, "commands", {}).get(part)
        if sub is None:
            from explore.models.errors import ConfigError
            raise ConfigError(f"unknown command path {' '.join(path)!r}: "
                              f"{part!r} is not a subcommand")
        cmd = sub
    return cmd


def preset_argv(preset, extra: list[str] | None = None) -> list[str]:
    """A study preset -> the explore argument list; option names are checked against the
    command's real options (unknown names are errors naming the nearest)."""
    from explore import presets
    from explore.models.errors import ConfigError

    cmd = _command(tuple(preset.command))
    flags = {o: p for p in cmd.params for o in p.opts if o.startswith("--")}
    argv = list(preset.command)
    for key, value in preset.options.items():
        flag = "--" + str(key).replace("_", "-")
        if flag not in flags:
            close = presets.nearest(flag, flags)
            raise ConfigError(f"study preset {preset.name!r}: {' '.join(preset.command)} has no "
                              f"option {flag}" + (f" (did you mean {', '.join(close)}?)"
                                                  if close else ""))
        argv += _flag_args(flag, value, flags[flag])
    return argv + list(extra or [])


def _flag_args(flag: str, value: Any, param) -> list[str]:
    if getattr(param, "is_flag", False):
        if value is True:
            return [flag]
        if value is False:
            secondary = [o for o in getattr(param, "secondary_opts", []) if o.startswith("--")]
            return secondary[:1]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in (flag, _text(v))]
    return [flag, _text(value)]


def _text(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def run_preset(name: str, extra: list[str]) -> int:
    from explore import presets
    from explore.presets.study_schema import StudyPreset

    from .app import main

    preset = presets.load("study", name)
    assert isinstance(preset, StudyPreset)
    return main(preset_argv(preset, extra))


def run_command(
    ctx: typer.Context,
    preset: str = typer.Argument(..., help="study preset name (`explore presets list study`) or "
                                 "a YAML file with command: and options:"),
) -> None:
    """Run a ready-made study preset; options after the name override the preset's.

    Example: explore run moesd-qwen2-2xh800 --gamma 2-6 --json
    """
    raise typer.Exit(run_preset(preset, list(ctx.args)))


# ---- regression of every preset -----------------------------------------------------------

VOLATILE = {"elapsed_s", "fit_seconds", "calibration_file", "evaluations", "wall_s"}


def compare(golden: Any, now: Any, rtol: float, path: str = "") -> list[str]:
    """Differences between two JSON values: numbers within rtol (relative), everything else
    (configurations, names, counts as text) exactly. Keys in VOLATILE are ignored."""
    import math

    if isinstance(golden, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(golden) | set(now), key=str):
            if k in VOLATILE:
                continue
            p = f"{path}.{k}" if path else str(k)
            if k not in now:
                out.append(f"{p}: removed (was {_short(golden[k])})")
            elif k not in golden:
                out.append(f"{p}: new ({_short(now[k])})")
            else:
                out += compare(golden[k], now[k], rtol, p)
        return out
    if isinstance(golden, list) and isinstance(now, list):
        if len(golden) != len(now):
            return [f"{path}: {len(golden)} items -> {len(now)}"]
        return [d for i, (a, b) in enumerate(zip(golden, now))
                for d in compare(a, b, rtol, f"{path}[{i}]")]
    numbers = (int, float)
    if isinstance(golden, numbers) and isinstance(now, numbers) and \
            not isinstance(golden, bool) and not isinstance(now, bool) and \
            (isinstance(golden, float) or isinstance(now, float)):
        if math.isclose(golden, now, rel_tol=rtol, abs_tol=1e-300):
            return []
        change = (now - golden) / abs(golden) if golden else float("inf")
        return [f"{path}: {golden:.6g} -> {now:.6g} ({change:+.3%})"]
    if golden != now:
        return [f"{path}: {_short(golden)} -> {_short(now)}"]
    return []


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


def regress_preset(name: str, rtol: float) -> tuple[dict, list[str]]:
    """(current result, differences from the golden file) of one study preset."""
    import json

    from explore import presets
    from explore.models.errors import ExploreError

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
    return now, compare(json.loads(path.read_text()), now, rtol)


def regress_command(
    update: bool = typer.Option(False, "--update", help="rewrite the golden files with the "
                                "current results (after printing what moved)"),
    only: list[str] = typer.Option([], "--preset", help="only this preset (repeatable)"),
    rtol: float = typer.Option(1e-6, "--rtol", help="relative tolerance on numbers"),
    limit: int = typer.Option(12, "--limit", help="differences shown per preset"),
) -> None:
    """Run every study preset and compare its JSON output with its golden file: numbers within
    --rtol, configurations exactly. Exit code 1 when anything moved (unless --update).

    Example: explore regress --preset moesd-qwen2-2xh800
    """
    import json

    from explore import presets
    from explore.models.errors import ConfigError

    from .render import console

    names = [n for n in presets.names("study") if presets.load("study", n).regress]
    for n in only:
        if n not in names:
            close = presets.nearest(n, names) or names[:5]
            raise ConfigError(f"no regressed study preset {n!r}; nearest: {', '.join(close)}")
    c = console()
    moved = 0
    for name in (only or names):
        now, diffs = regress_preset(name, rtol)
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
            golden_path(name).parent.mkdir(parents=True, exist_ok=True)
            golden_path(name).write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    total = len(only or names)
    if update:
        c.print(f"{moved} of {total} golden files rewritten")
    elif moved:
        c.print(f"[bold red]{moved} of {total} presets moved[/]: if the change is intended, "
                f"run `explore regress --update` and commit the golden files with it")
        raise typer.Exit(1)
    else:
        c.print(f"all {total} presets match their golden files")
