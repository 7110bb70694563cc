"""Search at scale (issue 6) with real parts: concurrent worker processes on one PostgreSQL
study, SQLite resume, Ctrl-C on a running search, refusal of a changed search, inspection,
and optuna-dashboard opening a stored study.

PostgreSQL tests need EXPLORE_TEST_POSTGRES_URL (set by .ci/run, which starts a server); without
it they skip with a reason, unless EXPLORE_REQUIRE_POSTGRES=1 (CI), where they fail instead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.slow    # processes, SQLite files and PostgreSQL: pytest -m "not slow"

# a small SD space: 64 x 5 = 320 points, quick to sweep, big enough for samplers to matter
SPACE = ["sd", "--model", "qwen2-57b", "--hardware", "h800", "--tp", "2", "--batch", "1-64",
         "--gamma", "2-6", "--search", "optuna"]


def explore(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explore.cli.app", *args], capture_output=True,
                          text=True, timeout=300, **kw)


def exhaustive_best() -> dict:
    out = explore(*[a for a in SPACE if a not in ("--search", "optuna")], "--json")
    return {k: json.loads(out.stdout)["best"][k] for k in ("batch", "gamma")}


def load(url: str, name: str):
    import optuna
    return optuna.load_study(study_name=name, storage=url)


@pytest.fixture
def postgres_url():
    url = os.environ.get("EXPLORE_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("EXPLORE_REQUIRE_POSTGRES") == "1":
            pytest.fail("EXPLORE_REQUIRE_POSTGRES=1 but EXPLORE_TEST_POSTGRES_URL is not set")
        pytest.skip("no PostgreSQL server: set EXPLORE_TEST_POSTGRES_URL (.ci/run starts one)")
    return url


def test_concurrent_workers_on_postgres(postgres_url):
    """Three independent `explore` processes on one study: every trial recorded exactly once,
    the count is the sum of the budgets, the best point is the exhaustive optimum's."""
    name = f"pg-{uuid.uuid4().hex[:8]}"
    budgets = [70, 60, 50]
    procs = [subprocess.Popen([sys.executable, "-m", "explore.cli.app", *SPACE, "--storage",
                               postgres_url, "--study-name", name, "--n-trials", str(n),
                               "--seed", str(i), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, n in enumerate(budgets)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    study = load(postgres_url, name)
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == sum(budgets)
    assert sorted(numbers) == list(range(sum(budgets)))
    assert all(t.state.name == "COMPLETE" for t in trials)
    best = json.loads(outs[0][0])["best"]   # each worker reports the study's best so far
    final = max(trials, key=lambda t: t.value)
    assert {"batch": final.params["batch"], "gamma": final.params["gamma"]} == exhaustive_best()
    assert best["speedup"] <= final.value + 1e-12


class _Toy:
    """The smallest study the engine accepts; `tag` stands for its fixed inputs."""
    name = "toy"
    metrics = ()

    def __init__(self, tag: str):
        from explore.search.space import Param, Space
        from explore.search.study import Objective
        self.tag = tag
        self.space = Space((Param("x", (1, 2, 3)),))
        self.objectives = (Objective("y", "maximize"),)

    def fingerprint(self) -> dict:
        return {"tag": self.tag}


def _open_together(url: str, name: str, tags: list[str]) -> list[str]:
    """open_study from one thread per tag, all released at once: 'ok' or the error text."""
    import threading

    from explore.search.engine import SearchSettings
    from explore.search.optuna_engine import open_study

    barrier = threading.Barrier(len(tags))
    outcome = [""] * len(tags)

    def worker(i: int) -> None:
        study = _Toy(tags[i])
        settings = SearchSettings(engine="optuna", storage=url, study_name=name)
        barrier.wait()
        try:
            open_study(study, study.space, study.objectives, settings)
            outcome[i] = "ok"
        except Exception as e:   # noqa: BLE001 - the test reports whatever happened
            outcome[i] = f"{type(e).__name__}: {e}"

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(tags))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcome


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_searches_starting_together_create_one_study(backend, request, tmp_path):
    """Creation is atomic: eight openers of one search all get the one study; two different
    searches opened together never both run (the others are refused with the usual line)."""
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else \
        f"sqlite:///{tmp_path / 'runs.db'}"
    for _ in range(3):             # a race shows up in some attempts, not all
        same = _open_together(url, f"same-{uuid.uuid4().hex[:8]}", ["a"] * 8)
        assert same == ["ok"] * 8, same
        tags = ["a", "b"] * 4
        mixed = _open_together(url, f"mixed-{uuid.uuid4().hex[:8]}", tags)
        winners = {t for t, o in zip(tags, mixed) if o == "ok"}
        assert len(winners) == 1, mixed
        assert all("was created for another search" in o for o in mixed if o != "ok"), mixed


def test_workers_flag_on_postgres(postgres_url):
    """`--workers 3` starts three processes itself and reports every trial they ran."""
    name = f"pgw-{uuid.uuid4().hex[:8]}"
    out = explore(*SPACE, "--storage", postgres_url, "--study-name", name, "--n-trials", "150",
                  "--workers", "3", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["search"]["evaluated"] == 150 and "3 workers" in data["search"]["engine"]
    assert len(load(postgres_url, name).get_trials(deepcopy=False)) == 150


def test_sqlite_resume_continues_the_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    first = explore(*SPACE, "--storage", url, "--study-name", "s", "--n-trials", "30", "--json")
    assert first.returncode == 0, first.stderr
    second = explore(*SPACE, "--storage", url, "--study-name", "s", "--n-trials", "20",
                     "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["search"]["evaluated"] == 50
    assert sorted(t.number for t in load(url, "s").get_trials()) == list(range(50))


def test_total_trials_is_a_shared_budget(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    for _ in range(2):
        out = explore(*SPACE, "--storage", url, "--study-name", "t", "--total-trials", "25",
                      "--n-trials", "1000", "--json")
        assert out.returncode == 0, out.stderr
    assert len(load(url, "t").get_trials()) == 25   # the second run finds the budget spent


def test_changed_search_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    assert explore(*SPACE, "--storage", url, "--study-name", "s", "--n-trials", "5").returncode == 0
    for change in (["--batch", "1-32"], ["--hardware", "a800"], ["--alpha", "0.7"]):
        args = list(SPACE)
        if change[0] in args:
            i = args.index(change[0])
            args[i + 1] = change[1]
        else:
            args += change
        out = explore(*args, "--storage", url, "--study-name", "s", "--n-trials", "5")
        assert out.returncode == 2
        assert "was created for another search" in out.stderr and "new --study-name" in \
            out.stderr
        assert "Traceback" not in out.stderr


def test_sigint_keeps_results_and_resume_continues(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "explore.cli.app", *SPACE, "--storage", url,
                             "--study-name", "long", "--n-trials", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import optuna

    from explore.models.errors import InputError
    from explore.search.optuna_engine import make_storage
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        try:   # explore's storage: it retries while the worker is still creating the tables
            study = optuna.load_study(study_name="long", storage=make_storage(url))
            if len(study.get_trials(deepcopy=False)) >= 20:
                break
        except (KeyError, InputError, optuna.exceptions.StorageInternalError):
            continue
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "resume with the same command" in err
    assert "Best for speedup" in out           # the results so far were printed
    trials = load(url, "long").get_trials(deepcopy=False)
    kept = len(trials)
    assert kept >= 20 and all(t.state.name in ("COMPLETE", "FAIL") for t in trials)
    resumed = explore(*SPACE, "--storage", url, "--study-name", "long", "--n-trials", "10",
                      "--json")
    assert resumed.returncode == 0, resumed.stderr
    numbers = sorted(t.number for t in load(url, "long").get_trials())
    assert numbers == list(range(kept + 10))


def test_study_list_show_export(tmp_path, cli):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    code, _, err = cli(*SPACE, "--storage", url, "--study-name", "insp", "--n-trials", "25",
                       "--max-latency-ms", "9", "--json")
    assert code == 0, err
    code, out, _ = cli("study", "list", "--storage", url, "--json")
    assert code == 0 and json.loads(out)[0]["study_name"] == "insp"
    assert json.loads(out)[0]["trials"] == 25
    code, out, _ = cli("study", "show", "--storage", url, "--study-name", "insp")
    assert code == 0
    for needle in ("speedup (maximize)", "Best", "speedup (x)", "Latest 20 complete trials",
                   "configuration", "batch="):
        assert needle in out
    assert "latency (ms/tok)" not in out      # only the objectives, unless --wide
    code, out, _ = cli("study", "show", "--storage", url, "--study-name", "insp", "--wide")
    assert code == 0 and "latency (ms/tok)" in out
    code, out, _ = cli("study", "show", "--storage", url, "--study-name", "insp", "--json")
    shown = json.loads(out)
    assert shown["states"] == {"complete": 25}
    assert all(r["latency_s"] <= 9e-3 for r in shown["best"])
    code, out, _ = cli("study", "export", "--storage", url, "--study-name", "insp")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 26 and lines[0].startswith("number,state,")
    assert "latency_s" in lines[0] and "reason" in lines[0]
    code, _, err = cli("study", "show", "--storage", url, "--study-name", "nope")
    assert code == 2 and "no study 'nope'" in err and "insp" in err


def test_multi_objective_pareto(tmp_path, cli):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    code, out, err = cli(*SPACE, "--objective", "throughput,latency", "--sampler", "nsga2",
                         "--n-trials", "60", "--storage", url, "--study-name", "mo", "--json")
    assert code == 0, err
    code, out, _ = cli("study", "show", "--storage", url, "--study-name", "mo")
    assert code == 0 and "Pareto set" in out and "o Pareto set" in out


def test_stored_study_opens_in_optuna_dashboard(tmp_path):
    from wsgiref.util import setup_testing_defaults

    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    assert explore(*SPACE, "--storage", url, "--study-name", "dash", "--n-trials",
                   "12").returncode == 0
    app = optuna_dashboard.wsgi(url)

    def get(path):
        env: dict = {}
        setup_testing_defaults(env)
        env.update(PATH_INFO=path, REQUEST_METHOD="GET")
        status = []
        body = b"".join(app(env, lambda s, h, *a: status.append(s)))
        return status[0], json.loads(body)

    status, studies = get("/api/studies")
    assert status.startswith("200")
    sid = next(s["study_id"] for s in studies["study_summaries"] if s["study_name"] == "dash")
    status, detail = get(f"/api/studies/{sid}")
    assert status.startswith("200") and len(detail["trials"]) == 12


def test_bad_storage_is_one_line(cli):
    code, _, err = cli(*SPACE, "--storage", "postgresql://nobody@127.0.0.1:1/none",
                       "--n-trials", "2")
    assert code == 2 and err.startswith("error: cannot open storage")
    code, _, err = cli(*SPACE, "--storage", "mysql+nodriver://x/y", "--n-trials", "2")
    assert code == 2 and err.startswith("error: cannot open storage")
    code, _, err = cli(*SPACE, "--workers", "0")
    assert code == 2 and "--workers must be >= 1" in err
