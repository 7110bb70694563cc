"""The bad-input table (tests/fuzz_cases.py: every numeric flag, every reader) in-process: each
case exits 2 with exactly one bounded `error:` line on stderr and nothing on stdout, never a
traceback, and each within a time bound (a hang fails its case instead of the run)."""

from __future__ import annotations

import signal

import pytest
from fuzz_cases import cases

from explore.cli.app import MAX_LINE, main

CASE_SECONDS = 20   # generous for a loaded machine; a bad input is refused before any search


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def test_every_bad_input_is_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)   # a case that wrongly succeeds writes its files here
    table = cases(tmp_path)
    assert len(table) >= 2000
    failures = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for label, argv in table:
            signal.alarm(CASE_SECONDS)
            try:
                code = main(argv)
            except _Hang:
                code = "hang"
            except BaseException as e:   # noqa: B036 - a traceback is what the test looks for
                code = f"{type(e).__name__}: {str(e)[:80]}"
            finally:
                signal.alarm(0)
            out = capsys.readouterr()
            lines = out.err.strip().splitlines()
            if (code != 2 or len(lines) != 1 or not lines[0].startswith("error: ")
                    or len(lines[0]) > len("error: ") + MAX_LINE or out.out):
                failures.append(f"{label}: {code} {out.err[:160]!r}")
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert not failures, f"{len(failures)} of {len(table)}:\n" + "\n".join(failures[:40])


@pytest.mark.parametrize("payload", [
    "a: !!python/object/apply:os.system ['touch {marker}']\n",
    "!!python/object/new:os.system ['touch {marker}']\n",
    "a: !!python/name:os.system\n"])
def test_no_yaml_tag_runs_code(cli, tmp_path, payload):
    marker = tmp_path / "ran"
    f = tmp_path / "m.yaml"
    f.write_text(payload.format(marker=marker))
    code, _, err = cli("pipeline", "--model", str(f))
    assert code == 2 and "could not determine a constructor" in err and not marker.exists()
