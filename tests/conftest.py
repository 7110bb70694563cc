"""Shared fixtures: presets, the shared/ reference folder, and a CLI runner."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

os.environ["COLUMNS"] = "160"  # wide tables: assertions look for whole phrases

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared reference folder not present")
    return SHARED


@pytest.fixture
def cli(capsys):
    """Run `explore ARGS...` in-process: returns (exit code, stdout, stderr)."""
    from explore.cli.app import main

    def run(*args: str):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


# The validations are the suite's most expensive computations and most tests only read what
# they return: compute each once per test run (per distinct arguments). A test that changes the
# model underneath must call the original, `uncached(fn)`.
EXPENSIVE = (("explore.cli.validate", "sd_validation"),
             ("explore.cli.studies.chiplet", "validation_result"),
             ("explore.models.pipeline.validate", "validate"),
             ("explore.cli.studies.pipeline", "throughput_validation"),
             ("explore.cli.studies.pipeline", "moe_validation"))


def once(fn):
    results: dict[str, object] = {}

    def wrapper(*args, **kwargs):
        key = repr((args, sorted(kwargs.items())))
        if key not in results:
            results[key] = fn(*args, **kwargs)
        return copy.deepcopy(results[key])   # callers may add keys to what they get
    wrapper.__wrapped__ = fn
    return wrapper


def uncached(fn):
    return getattr(fn, "__wrapped__", fn)


@pytest.fixture(scope="session", autouse=True)
def validations_once():
    import importlib

    patch = pytest.MonkeyPatch()
    for module, name in EXPENSIVE:
        mod = importlib.import_module(module)
        patch.setattr(mod, name, once(getattr(mod, name)))
    yield
    patch.undo()


@pytest.fixture
def fresh_validations(monkeypatch):
    """For tests that change what the validations compute: the originals, uncached."""
    import importlib

    for module, name in EXPENSIVE:
        mod = importlib.import_module(module)
        monkeypatch.setattr(mod, name, uncached(getattr(mod, name)))
