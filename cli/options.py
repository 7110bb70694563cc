"""Option groups: every command-line flag is declared once, as a field of a dataclass.

A group (Workload, Hardware, Parallelism, Policy, Search, Output, ...) is a dataclass whose
fields carry their flag names, help, unit and help panel (`option(...)`). `@uses(name=Group)`
injects the group's flags into a Typer command and hands the command a typed `Group` instance
instead of loose arguments; a group used by several commands is declared once, so a flag has
one name, one help text and one default everywhere (Vidur's idea, in Typer).

A command that needs other defaults for some fields (for example "None: the fixture's value")
passes them with `Use(Group, field=default, ...)`; the help text says "(default: ...)" when
`default_text` is set on the field and the default is None.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import typing
from typing import Any, Callable

from explore.models.spec import NONNEGATIVE, Range

# Typer is imported where commands are built, so request modules that only declare groups (and
# the tests and benchmarks that build studies from them) do not import it.


def option(default: Any, *flags: str, help: str, unit: str = "",
           default_text: str = "", panel: str = "", range: Range = NONNEGATIVE,
           ints: int | None = None, most: int | None = None,
           choices: tuple[str, ...] | str = ()) -> Any:
    """A dataclass field that is also a command-line option. A number flag takes finite values
    in `range` (>= 0 unless declared otherwise); a text flag is never empty, and with `ints`
    lists whole numbers >= ints (and <= most; cli.common.RANGE_HELP), with `choices` names one
    of them (or of the tuple a "module:NAME" string names, imported when the flag is read).
    All are checked as the flag is read, so a command that does not use a flag of its group
    still refuses a bad value."""
    return dataclasses.field(default=default, metadata={
        "flags": flags, "help": help, "unit": unit, "default_text": default_text,
        "panel": panel, "range": range, "ints": ints, "most": most, "choices": choices})


MAX_TEXT = 4096   # PATH_MAX: no name, path or list a flag takes is longer


def text(ints: int | None = None, most: int | None = None,
         choices: tuple[str, ...] | str = ()) -> Callable:
    """The Typer callback of a text flag: not empty (an empty value silently meant the
    default), no control characters (a NUL byte is no path), at most MAX_TEXT characters;
    a list of whole numbers (1-8,16) is read, sized and checked now (the command parses it
    again where it uses it); a choice is one of `choices`, else the nearest is named."""
    def callback(ctx: Any, param: Any, value: Any) -> Any:
        flag = next((o for o in param.opts if o.startswith("--")), param.name)
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if v is not None:
                _check_text(v, flag, ints, most, choices)
        return value
    return callback


def _check_text(v: str, flag: str, ints: int | None, most: int | None,
                choices: tuple[str, ...] | str) -> None:
    from explore.models.errors import InputError, did_you_mean, shown

    from .common import parse_int_range

    if not v.replace(",", "").strip():
        raise InputError(f"{flag}: empty value; give one or leave the flag out")
    if len(v) > MAX_TEXT or any(ord(c) < 32 for c in v):
        raise InputError(f"{flag} {shown(v)}: " + (f"longer than {MAX_TEXT} characters"
                                                  if len(v) > MAX_TEXT else
                                                  "has control characters"))
    if ints is not None:
        parse_int_range(v, flag, ints, most)
    if isinstance(choices, str):
        module, name = choices.split(":")
        choices = getattr(importlib.import_module(module), name)
    if choices and v not in choices:
        raise InputError(f"{flag} {shown(v)}: choose {', '.join(choices)}"
                         f"{did_you_mean(v, choices)}")


def file_value(group: type, name: str, value: Any, where: str) -> Any:
    """An option's value written in a file (chiplet --config best.yaml) instead of on the
    command line: the type its flag takes, then the same checks as the flag."""
    from explore import presets

    f = next(f for f in dataclasses.fields(group) if f.name == name)
    hint = typing.get_type_hints(group)[name]
    flag = f.metadata["flags"][0]
    value = presets.coerce(value, hint, "", f"{where}: {flag}")
    if _number(hint):
        f.metadata["range"].check(value, f"{where}: {flag}")
    elif _text(hint) and isinstance(value, str):
        _check_text(value, f"{where}: {flag}", f.metadata["ints"], f.metadata["most"],
                    f.metadata["choices"])
    return value


def checked(range: Range = NONNEGATIVE) -> Callable:
    """The Typer callback of a number flag: its value finite and in `range`, else one
    InputError naming the flag (every number flag, declared here or with typer.Option)."""
    def callback(ctx: Any, param: Any, value: Any) -> Any:
        flag = next((o for o in param.opts if o.startswith("--")), param.name)
        for v in value if isinstance(value, (list, tuple)) else (value,):
            range.check(v, flag)
        return value
    return callback


def _text(hint: Any) -> bool:
    """str, Optional[str] or a list of str (a repeatable flag)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return all(a is str or typing.get_args(a) == (str,) for a in args)


def _number(hint: Any) -> bool:
    """int or float, possibly Optional (bool is an int to Python, not a number flag)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return all(a in (int, float) for a in args)


@dataclasses.dataclass(frozen=True)
class Use:
    """A group with some defaults changed for one command."""
    group: type
    defaults: dict[str, Any]

    def __init__(self, group: type, **defaults: Any) -> None:
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "defaults", defaults)
        unknown = set(defaults) - {f.name for f in dataclasses.fields(group)}
        if unknown:
            raise TypeError(f"{group.__name__} has no field {sorted(unknown)[0]!r}")


def help_text(f: dataclasses.Field, default: Any) -> str:
    """The help text, its unit in parentheses and, for a None default, what None means."""
    meta = f.metadata
    text = meta["help"] + (f" ({meta['unit']})" if meta["unit"] else "")
    if default is None and meta["default_text"]:
        text += f" (default: {meta['default_text']})"
    return text


def _params(prefix: str, spec: type | Use) -> list[inspect.Parameter]:
    import typer

    group, defaults = (spec.group, spec.defaults) if isinstance(spec, Use) else (spec, {})
    hints = typing.get_type_hints(group)
    panel = getattr(group, "PANEL", None)
    out = []
    for f in dataclasses.fields(group):
        if not f.metadata:
            continue
        default = defaults.get(f.name, f.default)
        hint = hints[f.name]
        callback = (checked(f.metadata["range"]) if _number(hint) else
                    text(f.metadata["ints"], f.metadata["most"], f.metadata["choices"])
                    if _text(hint) else None)
        opt = typer.Option(default, *f.metadata["flags"], help=help_text(f, default),
                           rich_help_panel=f.metadata["panel"] or panel, callback=callback)
        out.append(inspect.Parameter(f"{prefix}__{f.name}", inspect.Parameter.KEYWORD_ONLY,
                                     default=opt, annotation=hints[f.name]))
    return out


def uses(**groups: type | Use) -> Callable:
    """Decorate a Typer command: its parameters named after `groups` receive typed group
    objects built from the groups' flags."""
    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for n, p in sig.parameters.items() if n not in groups]
        injected = [p for name, spec in groups.items() for p in _params(name, spec)]

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            for name, spec in groups.items():
                group = spec.group if isinstance(spec, Use) else spec
                values = {f.name: kwargs.pop(f"{name}__{f.name}")
                          for f in dataclasses.fields(group) if f.metadata}
                kwargs[name] = group(**values)
            return fn(*args, **kwargs)

        params = own + injected
        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command
    return decorate
