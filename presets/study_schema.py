"""The format of a study preset (presets/studies/*.yaml): an explore command and its options,
re-runnable with `explore run NAME` and pinned by `explore regress`."""

from __future__ import annotations

from dataclasses import dataclass

from explore.models.errors import InputError
from explore.models.spec import spec


@dataclass(frozen=True)
class StudyPreset:
    name: str = spec("preset name")
    command: tuple[str, ...] = spec("explore subcommand path, e.g. [sd] or [pipeline, validate]")
    options: dict = spec("long option names without '--' (dashes or underscores) -> values as "
                         "written on the command line; true for a flag", default={})
    description: str = spec("one line shown in preset lists", default="")
    regress: bool = spec("pin this preset's JSON output in `explore regress`", default=True)

    def __post_init__(self) -> None:
        if not self.command:
            raise InputError("command must name an explore subcommand, e.g. [sd]")
