"""The speculation advisor (docs/sd.md §9): for each batch size the best draft shape of the
setup's draft, or speculation off, the batch range where speculation pays, and the launch
flags vLLM and SGLang take for it. Pure: the CLI renders and emits."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np

from .errors import InfeasibleError, InputError
from .sd_study import SdSetup, batch_range

TREE_TOPK = (2, 4, 8)              # SGLang --speculative-eagle-topk values tried
TREE_TOKENS = (8, 16, 32, 64)      # --speculative-num-draft-tokens values tried
TREE_FAMILIES = ("eagle", "mtp")   # drafts SGLang's EAGLE worker runs as trees
ENGINES = ("vllm", "sglang")


@dataclass(frozen=True)
class Shape:
    """One draft configuration: a chain (topk 1) or a tree."""
    steps: int
    topk: int = 1
    tokens: int | None = None

    @property
    def label(self) -> str:
        if self.topk == 1 and self.tokens is None:
            return f"chain of {self.steps}"
        return f"tree {self.steps} steps x topk {self.topk}, {self.tokens} tokens"

    @property
    def verified(self) -> int:
        return self.steps + 1 if self.tokens is None else self.tokens


def shapes(steps, family: str) -> list[Shape]:
    """The configurations tried: a chain of every searched length and, for drafts SGLang runs
    as trees, every topk and verified-token count a tree of those steps can hold."""
    out = [Shape(s) for s in steps]
    if family in TREE_FAMILIES:
        out += [Shape(s, k, n) for s in steps if s > 1 for k in TREE_TOPK
                for n in TREE_TOKENS if s + 1 < n <= s * k + 1]
    return out


def advise(setup: SdSetup, batches, steps, min_speedup: float = 1.0) -> dict:
    """For every batch size the shape with the highest speedup among those whose weights and
    KV cache fit, or off when none reaches `min_speedup`; runs of equal decisions; where
    speculation pays; the one shape (and the one chain) that pays most on average over those
    batches, for engines that take one configuration."""
    if not min_speedup >= 1.0:
        raise InputError(f"--min-speedup must be >= 1 (1: speculate wherever it is faster), "
                         f"got {min_speedup}")
    batches = np.asarray(sorted(set(int(b) for b in batches)), dtype=float)
    tried = shapes(steps, setup.draft.family)
    times = setup.times()
    grid = np.stack([_speedup(setup, times, batches, s) for s in tried])   # shape x batch
    best = grid.argmax(axis=0)
    speedup = grid[best, np.arange(len(batches))]
    on = speedup >= min_speedup
    if not np.isfinite(speedup).any():
        raise InfeasibleError(f"{setup.target.model.name}: no draft shape fits in "
                         f"{setup.usable_bytes / 2**30:.1f} GiB per GPU at any batch size "
                         f"searched")
    fits = np.isfinite(speedup)

    def one(candidates) -> dict | None:
        """The shape with the best mean speedup over the batches where speculation pays."""
        if not on.any():
            return None
        k = max(candidates, key=lambda i: float(np.mean(np.where(on, grid[i], 0.0))))
        return {"shape": tried[k].label, "steps": tried[k].steps, "topk": tried[k].topk,
                "tokens": tried[k].verified,
                "mean_speedup": float(np.mean(grid[k][on]))}
    choices: list[Shape | str] = [tried[k] if o else "off" if f else "does not fit"
                                  for k, o, f in zip(best, on, fits)]
    runs: list[_Run] = []
    for b, choice, x in zip(batches.astype(int), choices, speedup.tolist()):
        if runs and runs[-1].choice == choice:
            r = runs[-1]
            r.last, r.low, r.high = int(b), min(r.low, x), max(r.high, x)
        else:
            runs.append(_Run(int(b), int(b), choice, x, x))
    peak = int(np.argmax(speedup))
    above = np.flatnonzero(~on[peak:])
    off_from = int(batches[peak + above[0]]) if len(above) else None
    return {"shapes_tried": len(tried), "min_speedup": min_speedup,
            "batches": batches.astype(int).tolist(), "speedup": speedup.tolist(),
            "choice": [c.label if isinstance(c, Shape) else c for c in choices],
            "one_shape": one(range(len(tried))),
            "one_chain": one([i for i, s in enumerate(tried) if s.topk == 1]),
            "pays": batch_range(batches, on), "peak": {"batch": int(batches[peak]),
                                                     "speedup": float(speedup[peak]),
                                                     "shape": tried[best[peak]].label},
            "off_from": off_from,
            "schedule": [r.entry() for r in runs]}


@dataclass
class _Run:
    """Consecutive batch sizes with one decision (a shape, 'off' or 'does not fit')."""
    first: int
    last: int
    choice: Shape | str
    low: float
    high: float

    def entry(self) -> dict:
        s = self.choice
        shape = s if isinstance(s, Shape) else None
        return {"batch": [self.first, self.last], "speculate": shape is not None,
                "shape": shape.label if shape else s, "steps": shape and shape.steps,
                "topk": shape and shape.topk, "tokens": shape and shape.verified,
                "speedup": [self.low, self.high] if np.isfinite(self.low) else None}


def _speedup(setup: SdSetup, times, batches, shape: Shape) -> np.ndarray:
    """Speedup over the batches, -inf where weights and KV cache do not fit."""
    s = replace(setup, topk=shape.topk, tree_tokens=shape.tokens)
    speedup = np.asarray(s.evaluate(times, batches, shape.steps).speedup, dtype=float)
    return np.where(s.memory_per_gpu(batches, shape.steps) <= s.usable_bytes, speedup,
                    -np.inf)


# ---- launch flags ------------------------------------------------------------------------------

# explore family -> vLLM's SpeculativeConfig.method (vllm/config/speculative.py) and SGLang's
# --speculative-algorithm (server_args.py); EAGLE-3 heads, named by their draft vocabulary
VLLM_METHOD = {"eagle": "eagle", "eagle3": "eagle3", "mtp": "mtp", "ngram": "ngram",
               "model": "draft_model"}
SGLANG_ALGORITHM = {"eagle": "EAGLE", "eagle3": "EAGLE3", "mtp": "NEXTN", "ngram": "NGRAM",
                    "model": "STANDALONE"}


def launch(advice: dict, engine: str, family: str, draft_name: str, draft_repo: str = "",
           draft_tp: int = 1, eagle3: bool = False) -> dict:
    """The advice as one engine's launch flags, with what its flags cannot say as notes. Both
    engines take one draft configuration for every batch: the one that pays most over the
    batches where speculation pays; vLLM stops drafting above the first batch left off
    (disable_by_batch_size), SGLang has no such switch."""
    if engine not in ENGINES:
        raise InputError(f"--emit {engine!r}: choose from {', '.join(ENGINES)}")
    rows = [r for r in advice["schedule"] if r["speculate"]]
    notes: list[str] = []
    if not rows:
        return {"engine": engine, "flags": [], "notes": [
            "speculation pays at no batch size searched: launch without it"]}
    pick = advice["one_chain" if engine == "vllm" else "one_shape"]
    main = Shape(pick["steps"], pick["topk"], None if pick["topk"] == 1 else pick["tokens"])
    if len({r["shape"] for r in rows}) > 1 or rows[0]["shape"] != main.label:
        notes.append(f"one launch takes one shape: {main.label}, the best on average over "
                     f"the batches where speculation pays ({pick['mean_speedup']:.2f}x; "
                     f"the per-batch best is in the table)")
    first = advice["batches"][0]
    if advice["pays"] and advice["pays"][0] > first:
        notes.append(f"speculation does not pay below batch {advice['pays'][0]}: neither "
                     f"engine switches it on by batch size")
    key = "eagle3" if family == "eagle" and eagle3 else family
    repo = draft_repo or f"<{draft_name} weights>"
    off = advice["off_from"]
    if engine == "vllm":
        steps = main.steps                       # vLLM takes chains: the best chain
        config: dict = {"method": VLLM_METHOD[key], "num_speculative_tokens": steps}
        if family not in ("ngram", "mtp"):
            config["model"] = repo
        if family == "model" and draft_tp > 1:
            config["draft_tensor_parallel_size"] = draft_tp
        if off is not None:
            config["disable_by_batch_size"] = max(2, off - 1)
        return {"engine": engine, "flags": ["--speculative-config",
                                            json.dumps(config, separators=(", ", ": "))],
                "notes": notes}
    flags = ["--speculative-algorithm", SGLANG_ALGORITHM[key]]
    if family not in ("ngram", "mtp"):
        flags += ["--speculative-draft-model-path", repo]
    if family != "ngram":                    # NGRAM takes only its draft-token count
        flags += ["--speculative-num-steps", str(main.steps), "--speculative-eagle-topk",
                  str(main.topk)]
    flags += ["--speculative-num-draft-tokens", str(main.verified)]
    if off is not None:
        notes.append(f"SGLang speculates at every batch size; above batch {off - 1} serve "
                     f"without speculation (no SGLang flag switches it off by batch size)")
    return {"engine": engine, "flags": flags, "notes": notes}
