"""Every file a command writes goes through one output helper (cli/output.py): a path that
cannot be written is one `error:` line naming it, exit 2, no traceback (issue 10)."""

from __future__ import annotations

import pytest

MISSING = "/proc/nope/x"          # a directory that cannot be created, even as root
FULL = "/dev/full"                # writes fail: no space left on device

SAVE_DIR_COMMANDS = [
    ("chiplet", "run"),
    ("chiplet", "search", "--grid", "4x4"),
    ("sd", "--model", "qwen2-57b", "--gamma", "2", "--batch", "1-4"),
    ("pipeline", "breakdown", "--layers", "48", "--tp", "8", "--pp", "8", "--mbs", "4",
     "--schedule", "1f1b"),
]


@pytest.fixture(scope="module")
def stored_study(tmp_path_factory):
    from explore.cli.app import main
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'runs.db'}"
    assert main(["sd", "--model", "qwen2-57b", "--batch", "1-8", "--gamma", "2", "--search",
                 "optuna", "--n-trials", "3", "--storage", url, "--study-name", "s",
                 "--json"]) == 0
    return url


def _one_error_line(code, out, err, needle):
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("args", SAVE_DIR_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_save_dir_that_cannot_be_made(cli, args):
    _one_error_line(*cli(*args, "--save-dir", MISSING), f"--save-dir {MISSING}: No such file")


@pytest.mark.parametrize("args", SAVE_DIR_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_save_dir_that_is_a_file(cli, tmp_path, args):
    f = tmp_path / "a-file"
    f.write_text("")
    _one_error_line(*cli(*args, "--save-dir", str(f)), "exists and is not a directory")


@pytest.mark.parametrize("target,reason", [(MISSING + ".csv", "No such file or directory"),
                                           (FULL, "No space left on device"),
                                           ("/tmp", "Is a directory")])
def test_study_export_to_an_unwritable_path(cli, stored_study, target, reason):
    _one_error_line(*cli("study", "export", "--storage", stored_study, "--study-name", "s",
                         "-o", target), f"cannot write {target}: {reason}")


def test_timeline_and_op_list_files(cli):
    base = ("pipeline", "timeline", "--layers", "48", "--tp", "8", "--pp", "8", "--mbs", "4",
            "--schedule", "1f1b")
    _one_error_line(*cli(*base, "--out", FULL), f"cannot write {FULL}")
    _one_error_line(*cli(*base, "--ops", MISSING + ".csv"), f"cannot write {MISSING}.csv")


def test_calibration_file(cli, tmp_path):
    from explore import presets
    data = presets.data_path("validation", "sd", "h200_qwen2_layer_times.csv")
    _one_error_line(*cli("sd", "fit", str(data), "--model", "qwen2-57b", "--hardware", "h200",
                         "--where", "model=qwen2-57b-a14b", "-o", FULL),
                    f"cannot write {FULL}: No space left on device")


@pytest.mark.parametrize("args", SAVE_DIR_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_one_way_out_lists_the_saved_files(cli, args, tmp_path):
    """Every study leaves through cli/output.present: with --json the answer lists the files it
    saved, and each exists; without it the tables end with one line naming them."""
    import json
    from pathlib import Path
    code, out, err = cli(*args, "--save-dir", str(tmp_path / "j"), "--json")
    assert code == 0, err
    saved = json.loads(out)["saved"]
    assert saved and all(Path(p).is_file() and Path(p).parent == tmp_path / "j" for p in saved)
    assert "result.json" in {Path(p).name for p in saved}
    code, out, err = cli(*args, "--save-dir", str(tmp_path / "t"))
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("saved ") and last.endswith(f" to {tmp_path / 't'}")


def test_save_dir_never_overwrites_without_force_nor_follows_links(cli, tmp_path):
    """Issue 19: a second --save-dir into the same directory is refused (one line, exit 2)
    unless --force; a symbolic link planted there is replaced, never written through."""
    args = SAVE_DIR_COMMANDS[2]
    d = tmp_path / "out"
    assert cli(*args, "--save-dir", str(d))[0] == 0
    _one_error_line(*cli(*args, "--save-dir", str(d)), "result.json exists; pass --force")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    (d / "result.json").unlink()
    (d / "result.json").symlink_to(outside)
    _one_error_line(*cli(*args, "--save-dir", str(d)), "result.json exists")
    code, _, err = cli(*args, "--save-dir", str(d), "--force")
    assert code == 0, err
    assert outside.read_text() == "keep"
    saved = d / "result.json"
    assert not saved.is_symlink() and '"study": "sd"' in saved.read_text()
