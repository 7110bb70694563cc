"""The studies, declared once: where each one's commands, validate command and validation live.
`explore` mounts every study from here, `explore validate` runs every validation from here, and
`explore validate STUDY` and `explore STUDY validate` are the same command for every study.
Nothing here imports a study until it is used, so `explore --help` stays fast."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StudyEntry:
    name: str
    cli: str              # module holding the study's Typer sub-app `app`
    validate: str         # "module:command": the study's validate command
    validation: str       # "module:function" -> JSON-ready result whose "checks" are summary rows


STUDIES = (
    StudyEntry("sd", "explore.cli.sd", "explore.cli.validate:validate_sd",
               "explore.cli.validate:sd_validation"),
    StudyEntry("pipeline", "explore.cli.pipeline", "explore.cli.pipeline:validate_command",
               "explore.cli.validate:pipeline_validation"),
    StudyEntry("chiplet", "explore.cli.chiplet", "explore.cli.chiplet:validate_cmd",
               "explore.cli.validate:chiplet_validation"),
)


def resolve(ref: str) -> Any:
    """'package.module:name' -> the object (looked up at call time, so a patched or cached
    function is the one used)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)
