"""Qualitative physics of the a-priori model (issue 2): Qwen2-57B-A14B on 2 x H800, Qwen2-0.5B
draft on one GPU, HumanEval / temperature-0 acceptance, B = 1..100."""

import numpy as np
import pytest

from explore import presets
from explore.models import sd

B = np.arange(1, 101)
ALPHA = presets.load("acceptance", "qwen2-57b-humaneval-t0").alpha


def curve(target, gpu, gamma, tp=2):
    t = sd.PhysicalTimes(
        sd.Deployment(presets.load("model", target), presets.load("gpu", gpu), tp),
        sd.Deployment(presets.load("model", "qwen2-0.5b"), presets.load("gpu", gpu), 1), 512)
    return sd.evaluate(t, ALPHA, B, gamma)


@pytest.mark.parametrize("gamma", [2, 3, 4])
def test_moe_speedup_rises_then_falls(gamma):
    s = curve("qwen2-57b-a14b", "h800", gamma).speedup
    peak = int(np.argmax(s))
    assert 0 < peak < len(B) - 1, "peak must be inside the range"
    assert s[peak] > s[0] * 1.1 and s[peak] > s[-1] * 1.05


@pytest.mark.parametrize("gamma", [2, 3, 4])
def test_dense_target_efficiency_falls_monotonically(gamma):
    te = curve("qwen2-7b", "h800", gamma).target_efficiency
    assert np.all(np.diff(te) < 0)


@pytest.mark.parametrize("gamma", [2, 3, 4])
def test_moe_beats_dense_at_medium_batch(gamma):
    moe = curve("qwen2-57b-a14b", "h800", gamma).speedup
    dense = curve("qwen2-7b", "h800", gamma).speedup
    assert np.any(moe[B >= 16] > dense[B >= 16])


@pytest.mark.parametrize("gamma", [2, 3, 4])
def test_higher_ridge_point_gives_higher_peak(gamma):
    assert curve("qwen2-57b-a14b", "h800", gamma).speedup.max() > \
        curve("qwen2-57b-a14b", "a800", gamma).speedup.max()


def test_four_gpus_give_less_than_two():
    """The draft stays on one GPU, so a faster 4-GPU target leaves it relatively dearer."""
    for gamma in (2, 3, 4):
        assert curve("qwen2-57b-a14b", "a800", gamma, tp=4).speedup.max() < \
            curve("qwen2-57b-a14b", "a800", gamma, tp=2).speedup.max()
