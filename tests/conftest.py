"""Shared fixtures: presets, the shared/ reference folder, and a CLI runner."""

from __future__ import annotations

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
