"""`explore sd`: its option groups, the request they form, and the study built from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Optional

from explore.models.spec import AT_LEAST_1, POSITIVE, SHARE, Range

from ..common import RANGE_HELP, SearchOptions
from ..options import option

DEFAULT_MODEL = "qwen2-57b-a14b"
DEFAULT_GPU = "h100-sxm"
DEFAULT_ENGINE = "vllm-v0-spec-decode"   # the only profile checked against measurements
DEFAULT_BATCH = "1-100"
DEFAULT_GAMMA = "1-8"
# draft steps per round: engines run 1-8; the acceptance of a tree is quadratic in it (a
# 1-10000 range took 44 s to evaluate 20 points)
MAX_GAMMA = 64
FALLBACK_ACCEPTANCE = "generic-0.8"
OBJECTIVE_ALIASES = {"speedup": "speedup", "throughput": "throughput", "latency": "latency_s",
                     "te": "target_efficiency"}


@dataclass
class SdWorkload:
    """What is served: target and draft, acceptance, context, verification."""
    PANEL: ClassVar[str] = "Workload"
    model: str = option(DEFAULT_MODEL, "--model", "-m", help="target model preset or a "
                        "Hugging Face config.json path")
    draft: Optional[str] = option(None, "--draft", help="draft preset (EAGLE head, MTP "
                                  "module, ngram: `explore presets list draft`) or a model "
                                  "preset run as a standalone draft",
                                  default_text="the target's usual draft")
    alpha: Optional[float] = option(None, "--alpha", help="per-token acceptance probability "
                                    "in [0, 1)", range=Range(0, 1, open_high=True))
    sigma: Optional[str] = option(None, "--sigma", help="measured sigma = tokens per round / "
                                  "(gamma+1); write 0.91@4 for sigma at gamma 4")
    accept_len: Optional[str] = option(None, "--accept-len", help="measured mean accepted "
                                       "length: tokens per round incl. the target's own, as "
                                       "vLLM and SGLang log it; write 3.2@4 for draft steps 4 "
                                       "(of the --draft-topk/--draft-tokens tree)")
    position_rates: Optional[str] = option(None, "--position-rates", help="per-position "
                                           "acceptance rates, comma list (rate i: position i "
                                           "accepted once the ones before were; the last "
                                           "repeats), e.g. MTP heads 0.9,0.8,0.7")
    draft_topk: int = option(1, "--draft-topk", help="token tree: branches per draft step "
                             "(SGLang --speculative-eagle-topk; 1 = a chain)", range=AT_LEAST_1)
    draft_tokens: Optional[int] = option(None, "--draft-tokens", help="token tree: positions "
                                         "verified per sequence (SGLang "
                                         "--speculative-num-draft-tokens)",
                                         default_text="steps + 1 for a chain, steps x topk + 1 "
                                                      "for a tree", range=AT_LEAST_1)
    acceptance: Optional[str] = option(None, "--acceptance", help="acceptance preset",
                                       default_text="the pairing's")
    ctx: int = option(512, "--ctx", help="KV-cache length per sequence", unit="tokens")
    verify_tokens: str = option("gamma+1", "--verify-tokens", help="positions scored in "
                                "verification: gamma+1 (real engines) or gamma (paper)")
    routing_correlation: float = option(0.0, "--routing-correlation", help="fraction of a "
                                        "sequence's consecutive tokens that reuse experts "
                                        "(0 = i.i.d., the paper)", range=SHARE)
    routing: str = option("uniform", "--routing", help="MoE routing: uniform (i.i.d., the "
                          "paper), zipf:S (expert popularity a power law of exponent S) or a "
                          "CSV/YAML file of per-expert frequencies (a histogram, any scale)")
    dense: Optional[str] = option(None, "--dense", help="also evaluate this dense model (e.g. "
                                  "qwen2-7b) for comparison")
    calibration: Optional[str] = option(None, "--calibration", help="calibration YAML from "
                                        "`explore sd fit`: use the fitted model")


@dataclass
class SdHardware:
    """Where it runs."""
    PANEL: ClassVar[str] = "Hardware"
    hardware: Optional[str] = option(None, "--hardware", "--gpu", help="GPU preset",
                                     default_text=DEFAULT_GPU)
    tp: Optional[int] = option(None, "--tp", help="tensor-parallel GPUs for the target",
                               default_text="the smallest that holds weights + KV cache")
    draft_tp: Optional[int] = option(None, "--draft-tp", help="GPUs for the draft",
                                     default_text="1", range=AT_LEAST_1)
    ep: int = option(1, "--ep", help="expert parallelism over the target's GPUs: 1 (experts "
                     "tensor-parallel) or the TP degree (E/EP whole experts per GPU, "
                     "all-to-all dispatch and combine)", range=AT_LEAST_1)
    dp_attention: bool = option(False, "--dp-attention/--no-dp-attention", help="with --ep: "
                                "attention data-parallel (B/TP sequences per GPU, attention "
                                "weights replicated; SGLang --enable-dp-attention)")
    overlap: str = option("none", "--overlap", help="roofline per GEMM group: none (memory + "
                          "compute add) or max (they overlap)")
    engine: Optional[str] = option(None, "--engine", help="serving-engine profile: the fixed "
                                   "costs around the kernels (`explore presets list engine`)",
                                   default_text=DEFAULT_ENGINE)


@dataclass
class SdFormats:
    """Number formats (docs/models.md §5)."""
    PANEL: ClassVar[str] = "Number formats"
    weights: Optional[str] = option(None, "--weights", help="decoder weights of target and "
                                    "draft: bf16, fp8, mxfp8, mxfp4, nvfp4 (embedding and LM "
                                    "head stay bf16)",
                                    default_text="the model preset's")
    expert_weights: Optional[str] = option(None, "--expert-weights", help="routed experts' "
                                           "weights, when they differ from --weights",
                                           default_text="--weights, else the preset's")
    kv_cache: Optional[str] = option(None, "--kv-cache", help="KV-cache format: bf16 or fp8",
                                     default_text="the model preset's (bf16)")
    activations: str = option("bf16", "--activations", help="GEMM input format: bf16, or "
                              "fp8/mxfp8 and fp4 formats on GPUs with those tensor cores")

    def apply(self, model):
        """The model with the formats given (the preset's where not)."""
        from dataclasses import replace

        from explore.models.formats import number_format
        for flag, value in (("--weights", self.weights), ("--expert-weights",
                                                          self.expert_weights),
                            ("--kv-cache", self.kv_cache), ("--activations", self.activations)):
            if value is not None:
                number_format(value, f"{flag} format")
        changes = {k: v for k, v in (("weight_format", self.weights),
                                     ("expert_format", self.expert_weights or self.weights),
                                     ("kv_format", self.kv_cache)) if v is not None}
        return replace(model, **changes) if changes else model


@dataclass
class SdSpace:
    """What is searched and for what."""
    PANEL: ClassVar[str] = "Search space"
    batch: str = option(DEFAULT_BATCH, "--batch", "-b", ints=1, help=f"batch sizes: {RANGE_HELP}")
    gamma: Optional[str] = option(None, "--gamma", "-g", "--draft-steps", ints=1, most=MAX_GAMMA,
                                  help=f"draft lengths (a tree's steps): {RANGE_HELP}",
                                  default_text=f"the range the acceptance preset was measured "
                                               f"at, else {DEFAULT_GAMMA}")
    objective: str = option("speedup", "--objective", help="speedup, throughput, latency or te "
                            "(target efficiency); a comma list searches their Pareto set, the "
                            "first ranks it")
    max_latency_ms: Optional[float] = option(None, "--max-latency-ms", help="constraint: time "
                                             "per generated token with SD", unit="ms",
                                             range=POSITIVE)


@dataclass
class SdReport:
    """What the tables show."""
    PANEL: ClassVar[str] = "Output"
    top: int = option(5, "--top", range=AT_LEAST_1, help="rows in the ranking table")
    plot: bool = option(True, "--plot/--no-plot", help="terminal plot of speedup over batch "
                        "size per draft length")
    wide: bool = option(False, "--wide", help="every column of the forward-time breakdown "
                        "(bytes and FLOPs per GPU); shown anyway on terminals of 120 columns "
                        "or more")


@dataclass
class SdRequest:
    """Everything `explore sd` is asked, before defaults are filled in."""
    work: SdWorkload = field(default_factory=SdWorkload)
    hw: SdHardware = field(default_factory=SdHardware)
    formats: SdFormats = field(default_factory=SdFormats)
    space: SdSpace = field(default_factory=SdSpace)
    search: SearchOptions = field(default_factory=SearchOptions)
    report: SdReport = field(default_factory=SdReport)


class Built(NamedTuple):
    setup: Any          # SdSetup
    study: Any          # SdStudy
    dense: Any          # SdSetup of the --dense comparison, or None
    notes: list[str]    # every default used, and why
    warnings: list[str]
    info: dict          # the setup as JSON-ready data


def build(req: SdRequest) -> Built:
    """Flags -> the study and its setup, with a note on every default used."""
    from explore import presets
    from explore.models import sd
    from explore.models.errors import InputError
    from explore.models.sd_draft import alpha_from_accepted_length, check_rates, check_tree
    from explore.models.sd_study import SdSetup, SdStudy, smallest_tp

    from ..common import parse_at, parse_floats, parse_int_range

    w, h, sp, fm = req.work, req.hw, req.space, req.formats
    notes: list[str] = []
    warnings: list[str] = []
    target = fm.apply(presets.load("model", w.model))
    batches = parse_int_range(sp.batch, "--batch")
    gammas = parse_int_range(sp.gamma, "--gamma") if sp.gamma else None
    if w.ctx < 0:
        raise InputError(f"--ctx must be >= 0 tokens, got {w.ctx}")
    if req.report.top < 1:
        raise InputError(f"--top must be >= 1, got {req.report.top}")
    pairing = None
    if not presets.is_path(w.model) and target.name in presets.names("pairing"):
        pairing = presets.load("pairing", target.name)

    draft_name = w.draft or (pairing.draft if pairing else None)
    if draft_name is None:
        raise InputError(f"{target.name} has no usual draft preset; pass --draft NAME "
                         f"(`explore presets list draft`, or a model preset)")
    family, draft, draft_preset = draft_of(draft_name, fm)
    if w.draft is None:
        notes.append(f"draft {draft_name}: the usual draft of {target.name}")
    check_tree(w.draft_topk, w.draft_tokens)
    if not (fm.weights or fm.expert_weights or fm.kv_cache):
        notes.append("number formats: the model preset's (--weights, --expert-weights, "
                     "--kv-cache and --activations change them)")

    given = [n for n, v in (("--alpha", w.alpha), ("--sigma", w.sigma),
                            ("--accept-len", w.accept_len),
                            ("--position-rates", w.position_rates),
                            ("--acceptance", w.acceptance)) if v is not None]
    if len(given) > 1:
        raise InputError(f"give only one of {', '.join(given)}")
    measured = None         # (lowest, highest) gamma the acceptance rate was measured at
    rates: tuple[float, ...] = ()
    searched = gammas or parse_int_range(DEFAULT_GAMMA, "--gamma")
    if w.alpha is not None:
        alpha = sd.check_alpha(w.alpha)
        acceptance = f"alpha = {alpha:g} (--alpha)"
    elif w.sigma is not None:
        sigma, at = parse_at(w.sigma, searched, "--sigma", "0.91@4")
        alpha = float(sd.alpha_from_sigma(sigma, at))
        acceptance = f"alpha = {alpha:.4f} from sigma {sigma:g} at gamma {at}"
    elif w.accept_len is not None:
        length, at = parse_at(w.accept_len, searched, "--accept-len", "3.2@4")
        alpha = alpha_from_accepted_length(length, at, w.draft_topk, w.draft_tokens)
        acceptance = f"alpha = {alpha:.4f} from accepted length {length:g} at steps {at}" + (
            f", topk {w.draft_topk}" if w.draft_topk > 1 else "") + (
            f", {w.draft_tokens} verified" if w.draft_tokens else "")
    elif w.position_rates is not None:
        rates = check_rates(parse_floats(w.position_rates, "--position-rates"))
        alpha = rates[0]
        acceptance = "per-position rates " + ", ".join(f"{r:g}" for r in rates) + \
            " (--position-rates; the last repeats)"
    else:
        own = pairing.draft == draft_name if pairing else False
        name = w.acceptance or (pairing.acceptance if pairing and own else None) or (
            draft_preset.acceptance if draft_preset and draft_preset.acceptance
            else FALLBACK_ACCEPTANCE)
        preset = presets.load("acceptance", name)
        alpha = preset.alpha
        measured = preset.measured_gammas
        acceptance = f"{preset.name}: alpha = {alpha:g}" + (
            f", measured at gamma {measured[0]}-{measured[1]}" if measured else "")
        rates = tuple(preset.position_rates)
        if w.acceptance is None:
            notes.append(f"acceptance {preset.name} (alpha {alpha:g}): "
                         + ("the pairing's default" if pairing and own else
                            "the draft preset's" if name != FALLBACK_ACCEPTANCE else
                            "no measured rate for this pair; pass --alpha, --sigma, "
                            "--accept-len or --acceptance"))

    if gammas is None:
        gammas = tuple(range(measured[0], measured[1] + 1)) if measured else \
            parse_int_range(DEFAULT_GAMMA, "--gamma")
        if measured:
            notes.append(f"gamma {measured[0]}-{measured[1]}: the range the acceptance rate "
                         f"was measured at")
    if measured and (min(gammas) < measured[0] or max(gammas) > measured[1]):
        outside = [g for g in gammas if not measured[0] <= g <= measured[1]]
        warnings.append(f"gamma {_span(outside)} lies outside {measured[0]}-{measured[1]}, the "
                        f"range the acceptance rate was measured at: alpha is extrapolated there")

    calibration = None
    if w.calibration:
        from explore.models.sd_fit import Calibration
        calibration = presets.load_dataclass(Calibration, w.calibration)
        if calibration.target != target.name:
            raise InputError(f"{w.calibration} was fitted for {calibration.target}, not "
                             f"{target.name}")
        fitted_on = f"{w.calibration} was fitted on {calibration.gpus} x {calibration.hardware}"
        if h.hardware and presets.load("gpu", h.hardware).name != calibration.hardware:
            raise InputError(f"{fitted_on}; drop --hardware or refit")
        if h.tp is not None and h.tp != calibration.gpus:
            raise InputError(f"{fitted_on}; drop --tp or refit")

    gpu = presets.load("gpu", h.hardware or (calibration.hardware if calibration
                                             else DEFAULT_GPU))
    if h.hardware is None and calibration is None:
        notes.append(f"hardware {gpu.name}: default current GPU")
    draft_tp = h.draft_tp or (pairing.draft_tp if pairing else 1)
    drafting = sd.Draft(family, None if draft is None else sd.Deployment(
        draft, gpu, draft_tp, fm.activations),
        bool(draft_preset and draft_preset.shares_embedding),
        bool(draft_preset and draft_preset.shares_head))

    if calibration is not None:
        tp = calibration.gpus
    elif h.tp is None:
        sd.Deployment(target, gpu, 1, fm.activations)   # a format the GPU lacks: say so first
        tp = smallest_tp(target, drafting, gpu, max(batches), w.ctx, max(gammas))
        notes.append(f"tp {tp}: smallest TP degree whose GPUs hold weights + KV cache at batch "
                     f"{max(batches)}, ctx {w.ctx}")
    else:
        tp = h.tp
    if h.draft_tp is None:
        notes.append(f"draft on {draft_tp} GPU (tensor parallel {draft_tp})")

    engine = presets.load("engine", h.engine or DEFAULT_ENGINE)
    if h.engine is None:
        notes.append(f"engine {engine.name}: the engine of the MoESD measurements, the only "
                     f"profile checked against them (explore validate sd)")

    routing = read_routing(w.routing, target) if target.is_moe else None

    def setup_for(model, tp_, cal=None, ep=1, dp=False):
        return SdSetup(sd.Deployment(model, gpu, tp_, fm.activations, ep, dp), drafting,
                       alpha, w.ctx, w.verify_tokens, w.routing_correlation, h.overlap,
                       max_latency_s=None if sp.max_latency_ms is None
                       else sp.max_latency_ms * 1e-3, calibration=cal, engine=engine,
                       rates=rates, topk=w.draft_topk, tree_tokens=w.draft_tokens,
                       routing=routing if model is target else None)

    setup = setup_for(target, tp, calibration, h.ep, h.dp_attention)
    study = SdStudy(setup, batches, gammas)
    dense = None
    if w.dense:
        dense_model = presets.load("model", w.dense)
        dense = setup_for(dense_model, smallest_tp(dense_model, drafting, gpu, max(batches),
                                                   w.ctx, max(gammas)))
    info = {"target": target.name, "draft": draft_name, "draft_family": family,
            "draft_vocab": draft_preset.vocab if draft_preset else 0,
            "draft_topk": w.draft_topk, "draft_tokens": w.draft_tokens,
            "position_rates": list(rates) or None, "hardware": gpu.name, "tp": tp,
            "ep": h.ep, "dp_attention": h.dp_attention, "routing": w.routing,
            "draft_tp": draft_tp, "engine": engine.name, "alpha": alpha,
            "formats": {"weights": target.weight_format,
                        "experts": target.expert_format or target.weight_format,
                        "kv_cache": target.kv_format, "activations": fm.activations},
            "acceptance": acceptance, "ctx": w.ctx,
            "verify_tokens": w.verify_tokens, "overlap": h.overlap,
            "routing_correlation": w.routing_correlation, "batch": sp.batch,
            "gamma": sp.gamma or _span(gammas), "measured_gamma": list(measured) if measured
            else None, "calibration": w.calibration}
    return Built(setup, study, dense, notes, warnings, info)


def read_routing(text: str, target) -> tuple[float, ...] | None:
    """--routing -> per-expert frequencies (None for uniform): zipf:S, or a file of numbers
    (YAML/JSON list, or CSV cells; read as data, never executed)."""
    from pathlib import Path

    from explore import presets
    from explore.models import sd
    from explore.models.errors import ConfigError, shown

    if text == "uniform":
        return None
    if text.startswith("zipf:"):
        return sd.popularity(target.experts, text)
    path = Path(text)
    if not presets.is_file(path):
        raise ConfigError(f"--routing {shown(text)}: not uniform, zipf:S or a file")
    raw = presets.read_text(path, "routing file")
    if path.suffix in (".yaml", ".yml", ".json"):
        data = presets.parse_yaml(raw, f"--routing {text}")
        values = data.get("frequencies") if isinstance(data, dict) else data
    else:
        values = [c for line in raw.splitlines() for c in line.replace(";", ",").split(",")
                  if c.strip()]
    try:
        numbers = [float(v) for v in values or []]
    except (TypeError, ValueError):
        raise ConfigError(f"--routing {text}: every entry must be a number (one frequency "
                          f"per routed expert)") from None
    return sd.popularity(target.experts, frequencies=numbers)


def draft_of(name: str, formats: SdFormats):
    """--draft NAME -> (family, the model of its layers or None for ngram, its draft preset or
    None): a draft preset, else a model preset run as a standalone draft."""
    from dataclasses import replace

    from explore import presets
    if not presets.is_path(name) and (name in presets.names("draft")
                                      or name in presets.aliases("draft")):
        d = presets.load("draft", name)
        model = formats.apply(presets.load("model", d.model)) if d.model else None
        if model is not None and d.vocab:
            model = replace(model, vocab=d.vocab)       # EAGLE-3's reduced LM head
        return d.family, model, d
    return "model", formats.apply(presets.load("model", name)), None


def _span(values) -> str:
    """(2, 3, 4) -> '2-4'; non-contiguous values as a comma list."""
    v = sorted(values)
    if v == list(range(v[0], v[-1] + 1)):
        return f"{v[0]}-{v[-1]}" if len(v) > 1 else str(v[0])
    return ",".join(map(str, v))


def objectives(text: str) -> list[str]:
    """--objective aliases -> metric names."""
    from explore.models.errors import InputError

    out = []
    for name in text.split(","):
        if name.strip() not in OBJECTIVE_ALIASES:
            raise InputError(f"--objective {text!r}: choose from {', '.join(OBJECTIVE_ALIASES)} "
                             f"(or a comma list of them)")
        out.append(OBJECTIVE_ALIASES[name.strip()])
    return out
