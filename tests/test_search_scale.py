"""Search at scale (issues 6 and 19) with real parts: concurrent worker processes on one
PostgreSQL study, SQLite resume, Ctrl-C on a running search, refusal of a changed search,
inspection, optuna-dashboard opening a stored study; a PostgreSQL restart mid-search, workers
starting together, duplicates, heartbeats, signals to --workers, masked passwords.

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

    def evaluate(self, points):
        from explore.search import Evaluation
        return Evaluation({"y": points["x"].astype(float)})


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


def test_second_sigint_abandons_the_trial_and_still_prints(tmp_path):
    """Two Ctrl-C in a row: the running trial is failed, not left RUNNING, and the stored
    results still print."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "explore.cli.app", *SPACE, "--storage", url,
                             "--study-name", "twice", "--n-trials", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_trials(url, "twice", 10, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Best for speedup" in out and "Traceback" not in err
    states = _states(url, "twice")
    assert states.get("COMPLETE", 0) >= 10 and "RUNNING" not in states, states


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


# ---- issue 19: distributed search you can trust --------------------------------------------

def _states(url: str, name: str) -> dict:
    from collections import Counter
    return dict(Counter(t.state.name for t in load(url, name).get_trials(deepcopy=False)))


def _wait_for_trials(url: str, name: str, n: int, proc) -> None:
    """Until the study holds n complete trials (or the process ended)."""
    import optuna
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:
            if _states(url, name).get("COMPLETE", 0) >= n:
                return
        except (KeyError, optuna.exceptions.StorageInternalError):
            continue


@pytest.fixture
def pg_restart(postgres_url):
    """A function restarting the test's PostgreSQL cluster (.ci/run exports where it is)."""
    import pwd
    pg_ctl, pgdata = os.environ.get("EXPLORE_TEST_PG_CTL"), os.environ.get("EXPLORE_TEST_PGDATA")
    if not (pg_ctl and pgdata):
        if os.environ.get("EXPLORE_REQUIRE_POSTGRES") == "1":
            pytest.fail("set EXPLORE_TEST_PG_CTL and EXPLORE_TEST_PGDATA (.ci/run does)")
        pytest.skip("no EXPLORE_TEST_PG_CTL / EXPLORE_TEST_PGDATA to restart the server")
    owner = os.stat(pgdata).st_uid
    as_owner = ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"] \
        if os.getuid() == 0 and owner != 0 else []

    def restart() -> None:
        subprocess.run([*as_owner, pg_ctl, "-D", pgdata, "-l", f"{pgdata}/server.log", "-m",
                        "fast", "-w", "restart"], check=True, capture_output=True, timeout=120)
    return restart


def test_postgres_restart_during_a_three_worker_search(postgres_url, pg_restart):
    """Every worker rides out the restart: no trial lost or left RUNNING, no traceback."""
    name = f"restart-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-m", "explore.cli.app", *SPACE, "--storage",
                             postgres_url, "--study-name", name, "--n-trials", "60",
                             "--workers", "3", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_trials(postgres_url, name, 10, proc)
    before = {t.number for t in load(postgres_url, name).get_trials(deepcopy=False)
              if t.state.name == "COMPLETE"}
    assert proc.poll() is None, "the search ended before the restart"
    pg_restart()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    trials = load(postgres_url, name).get_trials(deepcopy=False)
    states = _states(postgres_url, name)
    print(f"restart after {len(before)} complete trials: {states}")
    assert states.get("COMPLETE") == 60 and "RUNNING" not in states, states
    assert before <= {t.number for t in trials if t.state.name == "COMPLETE"}
    search = json.loads(out)["search"]
    assert search["evaluated"] == 60 and "3 workers" in search["engine"]


def test_twelve_processes_starting_together_all_join(postgres_url):
    name = f"twelve-{uuid.uuid4().hex[:8]}"
    procs = [subprocess.Popen([sys.executable, "-m", "explore.cli.app", *SPACE, "--storage",
                               postgres_url, "--study-name", name, "--n-trials", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(12)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 12, [e for e in errs if e]
    assert _states(postgres_url, name) == {"COMPLETE": 24}


def test_two_different_searches_started_together_exactly_one_runs(postgres_url):
    for _ in range(2):             # a race shows up in some attempts, not all
        name = f"two-{uuid.uuid4().hex[:8]}"
        procs = [subprocess.Popen([sys.executable, "-m", "explore.cli.app", *SPACE, *extra,
                                   "--storage", postgres_url, "--study-name", name,
                                   "--n-trials", "3"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for extra in ([], ["--alpha", "0.7"])]
        errs = [p.communicate(timeout=300)[1] for p in procs]
        assert sorted(p.returncode for p in procs) == [0, 2], errs
        refused = errs[[p.returncode for p in procs].index(2)]
        assert "was created for another search" in refused and "Traceback" not in refused
        assert _states(postgres_url, name) == {"COMPLETE": 3}


def test_readme_recipe_wastes_few_trials_on_duplicates(postgres_url):
    """The README's recipe as written (same command, default seed) in 4 processes on the sd
    space: at most 5 % of the trials repeat a point the study already held."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from bench_duplicates import run
    n, repeats, distinct = run(postgres_url, processes=4, n_trials=15)
    assert n == 60 and repeats <= 3, (n, repeats, distinct)


def test_total_trials_never_overshoots(postgres_url):
    name = f"total-{uuid.uuid4().hex[:8]}"
    # four workers race for the last trials; a second run finds the budget spent, adds none
    for workers in ("4", "1"):
        out = explore(*SPACE, "--storage", postgres_url, "--study-name", name,
                      "--total-trials", "24", "--workers", workers, "--json")
        assert out.returncode == 0, out.stderr
        states = _states(postgres_url, name)
        assert states.get("COMPLETE") == 24 and "RUNNING" not in states, states


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_dead_workers_trial_is_failed_and_retried_on_sqlite(tmp_path):
    """SQLite has heartbeats too: a RUNNING trial whose heartbeat went stale is failed, its
    point retried, and --total-trials still reached exactly."""
    import optuna
    import sqlalchemy

    from explore.search.optuna_engine import make_storage
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    assert explore(*SPACE, "--storage", url, "--study-name", "s", "--n-trials",
                   "5").returncode == 0
    storage = make_storage(url)
    study = optuna.load_study(study_name="s", storage=storage)
    dead = study.ask()        # a worker that dies in the middle of this trial
    point = {"batch": dead.suggest_int("batch", 1, 64), "gamma": dead.suggest_int("gamma", 2, 6)}
    storage.record_heartbeat(dead._trial_id)
    with sqlalchemy.create_engine(url).begin() as db:
        db.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 "
                                   "00:00:00.000000'"))
    out = explore(*SPACE, "--storage", url, "--study-name", "s", "--total-trials", "10",
                  "--n-trials", "1000")
    assert out.returncode == 0, out.stderr
    trials = load(url, "s").get_trials(deepcopy=False)
    assert trials[dead.number].state.name == "FAIL"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == point
    assert _states(url, "s") == {"COMPLETE": 10, "FAIL": 1}


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _gone(pids: list[int]) -> bool:
    deadline = time.time() + 60
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return not any(_alive(p) for p in pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_follow_their_parents_signals(tmp_path):
    """SIGINT to a --workers parent reaches every worker: they finish their trial, the parent
    prints what the study holds and exits 130; after kill -9 of a parent its workers end."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    for how in (signal.SIGINT, signal.SIGKILL):
        name = f"sig{how}"
        proc = subprocess.Popen([sys.executable, "-m", "explore.cli.app", *SPACE, "--storage",
                                 url, "--study-name", name, "--n-trials", "100000",
                                 "--workers", "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_trials(url, name, 8, proc)
        workers = _children(proc.pid)
        assert len(workers) == 2
        proc.send_signal(how)
        out, err = proc.communicate(timeout=120)
        assert _gone(workers)
        assert "RUNNING" not in _states(url, name)
        if how == signal.SIGINT:
            assert proc.returncode == 130, err
            assert "interrupted" in err and "Best for speedup" in out
            assert "Traceback" not in err


def test_storage_passwords_are_masked(postgres_url, tmp_path, cli):
    """Every place a storage URL reaches: JSON, result.json, the stored command, the study
    list and show, error lines."""
    secret = "s3cret-pw"
    url = postgres_url.replace("postgres@", f"postgres:{secret}@", 1)  # trust: any password
    name = f"mask-{uuid.uuid4().hex[:8]}"
    code, out, err = cli(*SPACE, "--storage", url, "--study-name", name, "--n-trials", "3",
                         "--json", "--save-dir", str(tmp_path / "s"))
    assert code == 0, err
    assert json.loads(out)["search"]["storage"] == url.replace(secret, "***")
    texts = [out, err, (tmp_path / "s" / "result.json").read_text(),
             json.dumps(load(postgres_url, name).user_attrs)]
    for args in (("list",), ("list", "--json"), ("show", "--study-name", name),
                 ("show", "--study-name", name, "--json"), ("show", "--study-name", "nope")):
        texts += list(cli("study", args[0], "--storage", url, *args[1:])[1:])
    texts.append(cli(*SPACE, "--storage", url.replace(postgres_url.rsplit(":", 1)[1]
                                                      .split("/")[0], "1"), "--n-trials",
                     "2")[2])
    assert all(secret not in t for t in texts)
    assert "***@" in texts[-1] and texts[-1].startswith("error: cannot open storage")


def test_permanent_storage_errors_are_one_line_by_their_cause(postgres_url, cli):
    import psycopg
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("DO $$ BEGIN CREATE ROLE explore_noperm LOGIN; "
                   "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    host = postgres_url.split("@", 1)[1]
    for user, cause in (("explore_nobody", 'role "explore_nobody" does not exist'),
                        ("explore_noperm", "permission denied")):
        code, _, err = cli(*SPACE, "--storage", f"postgresql://{user}@{host}", "--n-trials", "2")
        assert code == 2 and err.startswith("error: cannot open storage") and cause in err, err
        assert len(err.strip().splitlines()) == 1 and "invalid data" not in err


def test_workers_without_storage_remove_their_temporary_study(tmp_path):
    out = explore(*SPACE, "--n-trials", "6", "--workers", "2", "--json",
                  env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["search"]["evaluated"] == 6
    assert not [p for p in os.listdir(tmp_path) if p.startswith("explore-workers-")]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_orphaned_before_its_first_heartbeat_is_failed(tmp_path, monkeypatch):
    """A worker killed between creating a trial and its first heartbeat leaves a RUNNING trial
    Optuna never expires; the next search fails it instead of waiting for it for ever."""
    import optuna

    from explore.search import storage as S
    from explore.search.engine import SearchSettings, run
    from explore.search.optuna_engine import make_storage
    monkeypatch.setattr(S, "ORPHAN_S", 0.0)
    study = _Toy("a")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    # the timeout only ends a search that waits for the orphan (the test then fails)
    settings = SearchSettings(engine="optuna", storage=url, study_name="o", total_trials=2,
                              timeout_s=60)
    run(study, ["y"], SearchSettings(engine="optuna", storage=url, study_name="o", n_trials=1))
    orphan = optuna.load_study(study_name="o", storage=make_storage(url)).ask()
    run(study, ["y"], settings)
    trials = optuna.load_study(study_name="o", storage=url).get_trials(deepcopy=False)
    assert trials[orphan.number].state.name == "FAIL"
    assert [t.state.name for t in trials].count("COMPLETE") == 2
