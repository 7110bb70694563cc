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


def test_presets_show_reads_the_users_own_file(cli, tmp_path):
    mine = tmp_path / "my-dram.yaml"
    mine.write_text((README.parent / "presets/chiplet/dram/ddr5.yaml").read_text())
    code, out, _ = cli("presets", "show", str(mine))
    assert code == 0 and "dram preset my-dram" in out and "bw_stack" in out
    (tmp_path / "odd.yaml").write_text("x: 1\n")
    for path, message in ((tmp_path / "odd.yaml", "is not a preset of any kind"),
                          (tmp_path / "none.yaml", "file not found")):
        code, _, err = cli("presets", "show", str(path))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_presets_fields_keeps_bracketed_examples(cli):
    code, out, _ = cli("presets", "fields", "study")
    assert code == 0 and "[sd]" in out


def test_pipeline_sweep_has_default_values(cli):
    import json
    code, out, _ = cli("pipeline", "sweep", "--vary", "seq", "--json")
    assert code == 0
    assert [r["value"] for r in json.loads(out)["rows"]] == [1024, 2048, 4096, 8192, 16384]
