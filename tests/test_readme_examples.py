"""Every `explore` command the README shows runs as written (issue 18): each fenced example,
continuation lines joined, from a scratch directory that holds the repository's presets (so
the README's relative paths resolve), `$DB` a study storage of the suite's own."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def examples() -> list[str]:
    out = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", README.read_text(), re.S):
        lines = body.replace("\\\n", " ").splitlines()
        for line in lines:
            line = line.strip()
            if line.startswith("$ explore "):
                out.append(line[2:])
            elif lang in ("bash", "sh", "shell") and line.startswith("explore "):
                out.append(line)
    return list(dict.fromkeys(out))


def test_the_readme_has_examples():
    assert len(examples()) >= 15


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    (d / "presets").symlink_to(README.parent / "presets")
    return d


@pytest.mark.parametrize("command", examples())
def test_readme_example_runs(command, scratch, cli, monkeypatch):
    monkeypatch.chdir(scratch)
    db = os.environ.get("EXPLORE_TEST_POSTGRES_URL") if "--workers" in command else None
    db = db or f"sqlite:///{scratch / 'readme.db'}"
    args = shlex.split(command.replace("$DB", db), comments=True)[1:]
    code, out, err = cli(*args)
    assert code == 0, (command, err[-2000:])
    assert "Traceback" not in err
