"""`explore run PRESET`: run a ready-made study preset (or your own YAML), with any option
overridden on the command line; `explore regress`: pin every preset's output."""

from __future__ import annotations

from typing import Any

import typer

def _command(path: tuple[str, ...]):
    """The click command at an explore subcommand path (for its option names)."""
    from .app import command

    cmd = command()
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
