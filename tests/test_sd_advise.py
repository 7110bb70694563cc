"""`explore sd advise` (docs/sd.md §9): per batch the best draft shape or off, the physics of
where speculation pays, and the launch flags of vLLM and SGLang."""

import json
import shlex

import numpy as np
import pytest

from explore import presets
from explore.models import sd
from explore.models.sd_advise import advise, launch, shapes
from explore.models.sd_study import SdSetup

H100 = presets.load("gpu", "h100")


def _setup(target="qwen3-30b-a3b", draft="qwen3-0.6b", alpha=0.6, engine="vllm-v1"):
    return SdSetup(sd.Deployment(presets.load("model", target), H100, 1),
                   sd.Draft("model", sd.Deployment(presets.load("model", draft), H100, 1)),
                   alpha, 512, engine=presets.load("engine", engine))


def test_each_batch_gets_the_best_shape_that_fits():
    s = _setup()
    batches = np.arange(1, 200, 7)
    a = advise(s, batches, range(1, 7))
    for i, b in enumerate(batches):
        best = max(float(s.evaluate(s.times(), b, g).speedup) for g in range(1, 7))
        if a["choice"][i] == "off":
            assert best < 1.0
        elif a["choice"][i] != "does not fit":
            assert a["speedup"][i] == pytest.approx(best)
    for run in advise(s, range(1, 1200, 40), range(1, 7))["schedule"]:
        assert (run["speedup"] is None) == (run["shape"] == "does not fit")


def test_speculation_stays_off_above_where_it_stops_paying():
    """MoESD's shape on a sparse MoE target: speculation does not pay at the smallest batches
    (few experts per verify token), pays in between, and once the speedup falls below 1
    above its peak it never pays again at a larger batch."""
    a = advise(_setup(), range(1, 400, 4), range(1, 7))
    on = np.array([c not in ("off", "does not fit") for c in a["choice"]])
    peak = a["batches"].index(a["peak"]["batch"])
    assert not on[0] and on[peak]
    first_off = peak + int(np.argmin(on[peak:]))
    assert not on[first_off:].any()
    assert a["off_from"] == a["batches"][first_off]


def test_trees_are_tried_only_for_drafts_sglang_runs_as_trees():
    assert all(s.topk == 1 for s in shapes(range(1, 9), "model"))
    trees = [s for s in shapes(range(1, 9), "eagle") if s.topk > 1]
    assert trees and all(s.steps + 1 < s.verified <= s.steps * s.topk + 1 for s in trees)


def test_launch_flags_of_both_engines():
    a = advise(_setup(), range(1, 400, 4), range(1, 7))
    v = launch(a, "vllm", "eagle", "eagle3-qwen3-30b-a3b", "org/head", 1, eagle3=True)
    config = json.loads(v["flags"][1])
    assert v["flags"][0] == "--speculative-config"
    assert config["method"] == "eagle3" and config["model"] == "org/head"
    assert config["num_speculative_tokens"] == a["one_chain"]["steps"]
    assert config["disable_by_batch_size"] == a["off_from"] - 1
    g = launch(a, "sglang", "mtp", "deepseek-v3-mtp")
    flags = dict(zip(g["flags"][::2], g["flags"][1::2]))
    assert flags["--speculative-algorithm"] == "NEXTN"
    assert "--speculative-draft-model-path" not in flags
    assert int(flags["--speculative-num-draft-tokens"]) == a["one_shape"]["tokens"]
    assert any("does not pay below batch" in n for n in g["notes"])
    n = launch(a, "sglang", "ngram", "ngram")
    assert "--speculative-num-steps" not in n["flags"]


def test_advise_on_the_cli(cli):
    code, out, err = cli("sd", "advise", "--model", "qwen3-30b-a3b", "--hardware", "h100",
                         "--tp", "2", "--engine", "sglang", "--batch", "1-64", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["schedule"][0]["batch"][0] == 1 and d["schedule"][-1]["batch"][1] == 64
    assert set(d["launch"]) == {"vllm", "sglang"}
    code, out, err = cli("sd", "advise", "--model", "qwen3-30b-a3b", "--hardware", "h100",
                         "--tp", "2", "--engine", "sglang", "--batch", "1-64", "--emit",
                         "sglang")
    assert code == 0, err
    argv = shlex.split(out.split("\n#")[0].replace("\\\n", " "))
    assert argv[:2] == ["--speculative-algorithm", "EAGLE3"]
    code, out, _ = cli("sd", "advise", "--model", "qwen3-30b-a3b", "--batch", "1-8")
    assert code == 0 and "Per batch size" in out and "sglang launch flags" in out


@pytest.mark.parametrize("args, message", [
    (("--emit", "trtllm"), "--emit 'trtllm': choose from vllm, sglang"),
    (("--min-speedup", "0.5"), "--min-speedup must be >= 1"),
    (("--draft-steps", "0-3"), "--draft-steps '0-3': values must be >= 1"),
])
def test_bad_advise_inputs_are_named(cli, args, message):
    code, _, err = cli("sd", "advise", "--model", "qwen3-30b-a3b", "--batch", "1-4", *args)
    assert code == 2 and message in err and "Traceback" not in err
