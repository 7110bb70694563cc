"""How a draft proposes and how much of it is accepted (docs/sd.md §3.1-§3.3): draft families,
token trees, and the three forms acceptance is given in (an i.i.d. rate alpha, per-position
rates, a measured mean accepted length), converted into one another.

A draft configuration is a tree of `steps` levels, `topk` branches and `tokens` verified
positions per sequence (SGLang's --speculative-num-steps / -eagle-topk / -num-draft-tokens);
a chain of gamma draft tokens is the tree (gamma, 1, gamma + 1). Everything broadcasts over
the steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .spec import spec

FAMILIES = ("model", "eagle", "mtp", "ngram")
# [assumed] how fast more candidates for one position stop missing the target's token: with
# b candidates the miss is (1 - r) / b^c. c = 1/2 keeps a wide tree well short of the
# independent-candidates bound (1 - r)^b, which no EAGLE tree approaches (docs/sd.md §3.2);
# measured trees should be given by their accepted length (--accept-len).
TREE_MISS_EXPONENT = 0.5


@dataclass(frozen=True)
class DraftPreset:
    """A draft as a serving engine runs it: its family, the model preset of its layers and
    what it shares with the target (preset kind `draft`)."""
    name: str = spec("preset name")
    family: str = spec("model: a standalone small model; eagle: EAGLE-1/2/3 heads (decoder "
                       "layers of the target's width reading its hidden states); mtp: "
                       "multi-token-prediction modules (DeepSeek-V3); ngram: prompt or "
                       "suffix lookup, no forward")
    model: str = spec("model preset of the draft's layers (not for ngram)", default="")
    vocab: int = spec("draft vocabulary of its LM head (EAGLE-3's reduced one); 0 = the "
                      "model preset's", default=0)
    shares_embedding: bool = spec("the embedding is the target's, not held twice (EAGLE, "
                                  "MTP)", default=False)
    shares_head: bool = spec("the LM head is the target's (EAGLE-1/2, MTP; EAGLE-3 has its "
                             "own over the draft vocabulary)", default=False)
    acceptance: str = spec("acceptance preset used when none is given", default="")
    repo: str = spec("Hugging Face repository of its weights, for launch flags", default="")
    source: str = spec("where the numbers come from", default="")
    description: str = spec("one line shown in preset lists", default="")

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise InputError(f"draft {self.name!r}: family must be one of "
                             f"{', '.join(FAMILIES)}, got {self.family!r}")
        if (self.family == "ngram") == bool(self.model):
            raise InputError(f"draft {self.name!r}: " + (
                "an ngram draft runs no model" if self.model else
                f"a {self.family} draft needs the model preset of its layers"))
        if self.vocab < 0:
            raise InputError(f"draft {self.name!r}: vocab must be >= 0, got {self.vocab}")


def check_rates(rates) -> tuple[float, ...]:
    """Per-position acceptance rates, each in [0, 1): rate i is the probability that draft
    position i is accepted once the ones before it were."""
    out = tuple(float(r) for r in rates)
    if not out:
        raise InputError("give at least one acceptance rate")
    bad = [r for r in out if not 0.0 <= r < 1.0]
    if bad:
        raise InputError(f"acceptance rates must lie in [0, 1), got {bad[0]:g}")
    return out


def check_tree(topk: int, tokens: int | None) -> None:
    """A token tree's shape: topk >= 1 branches, tokens >= 2 verified positions (the last
    accepted token and at least one draft)."""
    if topk < 1:
        raise InputError(f"--draft-topk must be >= 1, got {topk}")
    if tokens is not None and tokens < 2:
        raise InputError(f"--draft-tokens must be >= 2 (the last accepted token and one "
                         f"draft), got {tokens}")


def verify_width(steps, topk: int = 1, tokens: int | None = None):
    """Positions the target scores per sequence for a tree: `tokens` when given, else every
    node of a chain or of a full beam, steps x topk + 1 (the +1 is the last accepted token)."""
    steps = np.asarray(steps, dtype=float)
    return steps * topk + 1.0 if tokens is None else np.full_like(steps, float(tokens))


def branches(steps: int, topk: int, tokens: int) -> np.ndarray:
    """Draft nodes on each level 1..steps a tree of `tokens` verified positions keeps: every
    level one, then the rest level by level from the top, at most topk each [design: the
    accepted prefix has that many candidate continuations]."""
    budget = tokens - 1
    out = np.minimum(1, np.maximum(0, budget - np.arange(steps)))
    extra = budget - int(out.sum())
    for d in range(steps):
        add = min(topk - int(out[d]), extra) if out[d] else 0
        out[d] += add
        extra -= add
    return out


def accepted_length(rates, steps, topk: int = 1, tokens: int | None = None):
    """Expected tokens per round (the accepted drafts plus the target's own next token, as
    vLLM and SGLang log it) for a tree (docs/sd.md §3.2):

        tau = 1 + sum_{d=1..S} prod_{j<=d} a_j,   a_j = 1 - (1 - r_j) / b_j^c

    with r_j the rate at depth j (the last one repeated past the given ones), b_j the
    branches of level j (`branches`; a_j = 0 where a level has none) and c
    TREE_MISS_EXPONENT. A chain (topk 1, b_j = 1) gives 1 + sum prod r_j, with one rate
    alpha the closed form (1 - alpha^(gamma+1)) / (1 - alpha)."""
    r = check_rates((rates,) if np.isscalar(rates) else rates)
    steps_arr = np.asarray(steps)
    out = np.empty(steps_arr.shape, dtype=float)
    for s in np.unique(steps_arr):
        s = int(s)
        if s < 1:
            raise InputError(f"draft steps must be >= 1, got {s}")
        width = int(verify_width(s, topk, tokens))
        if width < 2:
            raise InputError(f"--draft-tokens {width} verifies no draft token")
        rate = np.array([r[min(d, len(r) - 1)] for d in range(s)])
        b = branches(s, topk, width)
        a = np.where(b > 0, 1.0 - (1.0 - rate) / np.maximum(b, 1) ** TREE_MISS_EXPONENT, 0.0)
        out[steps_arr == s] = 1.0 + np.cumprod(a).sum()
    return out if out.shape else float(out)


def alpha_from_accepted_length(length: float, steps: int, topk: int = 1,
                               tokens: int | None = None, tol: float = 1e-12) -> float:
    """The i.i.d. rate alpha whose tree of this shape accepts `length` tokens per round on
    average (bisection: the length grows with alpha)."""
    top = accepted_length(1.0 - 1e-15, steps, topk, tokens)
    if not 1.0 <= length < top:
        raise InputError(f"--accept-len {length:g}: a round of this draft shape yields 1 to "
                         f"{top:.4g} tokens")
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if accepted_length(mid, steps, topk, tokens) < length else (lo, mid)
    return 0.5 * (lo + hi)
