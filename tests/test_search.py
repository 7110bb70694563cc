"""The generic search core on a toy study: engines agree, constraints and Pareto sets."""

import numpy as np
import pytest

from explore.models.errors import InputError
from explore.search import Evaluation, Metric, Objective, Param, Space
from explore.search.engine import SearchSettings, pareto_front, run


class Toy:
    name = "toy"
    space = Space((Param("x", tuple(range(30))), Param("y", tuple(range(12)))))
    metrics = (Metric("f", "f"), Metric("g", "g"))
    objectives = (Objective("f", "maximize"), Objective("g", "minimize"))

    def evaluate(self, p):
        x, y = p["x"].astype(float), p["y"].astype(float)
        f = -(x - 17.3) ** 2 - 1.7 * (y - 4.2) ** 2
        return Evaluation({"f": f, "g": x + 2 * y}, {"cap": x + y - 25.0})


def test_exhaustive_respects_constraints():
    r = run(Toy(), ["f"], SearchSettings())
    assert r.engine == "exhaustive" and r.n == 360
    assert r.point(r.best) == {"x": 17, "y": 4}
    assert (~r.feasible).sum() == sum(1 for x in range(30) for y in range(12) if x + y > 25)
    assert all(r.reasons[i] == "cap" for i in np.flatnonzero(~r.feasible))


def test_optuna_finds_the_exhaustive_optimum():
    ex = run(Toy(), ["f"], SearchSettings(engine="exhaustive"))
    op = run(Toy(), ["f"], SearchSettings(engine="optuna", n_trials=200, seed=1))
    assert op.point(op.best) == ex.point(ex.best)


def test_pareto_front_is_non_dominated():
    r = run(Toy(), ["f", "g"], SearchSettings())
    front = r.pareto()
    scores = np.stack([r.score(o) for o in r.objectives], axis=1)
    for i in front:
        dominated = np.all(scores <= scores[i], axis=1) & np.any(scores < scores[i], axis=1)
        assert not dominated.any()
    assert len(front) > 3


def test_pareto_front_small_case():
    s = np.array([[1, 5], [2, 2], [3, 3], [5, 1], [np.inf, 0]])
    assert sorted(pareto_front(s).tolist()) == [0, 1, 3]


def test_unknown_objective():
    with pytest.raises(InputError, match="unknown objective"):
        run(Toy(), ["h"], SearchSettings())


def test_space_enumeration_and_signature():
    s = Toy.space
    cols = s.columns(0, 13)
    assert cols["x"][:2].tolist() == [0, 0] and cols["y"][12] == 0 and cols["x"][12] == 1
    assert s.signature() != Space((Param("x", tuple(range(31))),
                                   Param("y", tuple(range(12))))).signature()


class Skipping(Toy):
    """Toy that does not evaluate odd y (redundant with y - 1) nor x > 20 (pruned)."""

    def evaluate(self, p):
        ev = super().evaluate(p)
        x, y = p["x"], p["y"]
        ev.skipped = np.where(y % 2 == 1, "redundant", np.where(x > 20, "pruned", ""))
        for m in ev.metrics.values():
            m[ev.skipped != ""] = np.nan
        return ev


def _expected_counts():
    counts = dict.fromkeys(("ok", "infeasible", "pruned", "redundant"), 0)
    for x in range(30):
        for y in range(12):
            status = "redundant" if y % 2 else "pruned" if x > 20 else \
                "infeasible" if x + y > 25 else "ok"
            counts[status] += 1
    return counts


def test_statuses_are_honest_in_the_exhaustive_sweep():
    """Pruned and redundant points are neither feasible nor infeasible (issue 11)."""
    r = run(Skipping(), ["f"], SearchSettings(engine="exhaustive"))
    assert r.counts() == _expected_counts()
    assert r.point(r.best) == {"x": 17, "y": 4}
    assert r.row(r.best)["status"] == "ok"


def test_optuna_sees_skipped_points_as_pruned_trials(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 's.db'}"
    r = run(Skipping(), ["f"], SearchSettings(engine="optuna", sampler="random", n_trials=80,
                                              seed=3, storage=url, study_name="skip"))
    trials = optuna.load_study(study_name="skip", storage=url).get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned and all(t.params["y"] % 2 or t.params["x"] > 20 for t in pruned)
    assert all(not t.constraints for t in pruned)          # never a constraint violation
    assert {t.user_attrs["status"] for t in pruned} <= {"pruned", "redundant"}
    assert r.n == len(trials)
    assert sum(r.counts()[s] for s in ("pruned", "redundant")) == len(pruned)


@pytest.mark.parametrize("sampler", ["tpe", "random", "nsga2"])
def test_optuna_never_repeats_a_point_and_stops_when_all_are_held(sampler):
    """Issue 19: a budget larger than the space visits each point once, then stops."""
    class Small(Toy):
        space = Space((Param("x", tuple(range(6))), Param("y", tuple(range(5)))))

    r = run(Small(), ["f"], SearchSettings(engine="optuna", sampler=sampler, n_trials=100,
                                           seed=2))
    points = {tuple(r.point(i).values()) for i in range(r.n)}
    assert r.n == len(points) == 30 and r.exhausted
