"""A pipeline configuration as Megatron-LM launch arguments (`explore pipeline best --emit
megatron`), and back. Every flag is one of Megatron-LM's: MEGATRON_FLAGS lists the ones used,
each checked against megatron/training/arguments.py and the config dataclasses its
ArgumentGroupFactory turns into flags (NVIDIA/Megatron-LM at MEGATRON_COMMIT). What Megatron-LM
cannot express (zero-bubble and Chronos schedules, Chronos-Recomp/Offload, ZeRO stages) comes
back as comments, not as flags."""

from __future__ import annotations

from ..errors import InputError

MEGATRON_COMMIT = "d98e8a64dd (2026-08-22)"
# flag -> value type (None: a switch)
MEGATRON_FLAGS: dict[str, type | None] = {
    "--num-layers": int, "--seq-length": int, "--micro-batch-size": int,
    "--global-batch-size": int, "--tensor-model-parallel-size": int,
    "--pipeline-model-parallel-size": int, "--num-layers-per-virtual-pipeline-stage": int,
    "--sequence-parallel": None, "--recompute-granularity": str, "--recompute-method": str,
    "--recompute-num-layers": int, "--use-distributed-optimizer": None,
    "--optimizer-cpu-offload": None, "--overlap-grad-reduce": None,
    "--overlap-param-gather": None, "--tp-comm-overlap": None,
    "--no-overlap-p2p-communication": None, "--no-gradient-accumulation-fusion": None,
    "--bf16": None, "--fp8-format": str, "--fp8-recipe": str, "--fp4-format": str,
    "--fp4-recipe": str, "--expert-model-parallel-size": int,
    "--expert-tensor-parallel-size": int, "--decoder-first-pipeline-num-layers": int,
    "--decoder-last-pipeline-num-layers": int, "--num-virtual-stages-per-pipeline-rank": int,
    "--mtp-num-layers": int, "--context-parallel-size": int, "--cp-comm-type": str,
    "--recompute-modules": list, "--pipeline-model-parallel-layout": str,
    "--overlap-moe-expert-parallel-comm": None,
}
# --gemm-format -> Transformer Engine through Megatron-LM (TransformerConfig.fp8/fp8_recipe,
# fp4/fp4_recipe): E4M3 forward and E5M2 gradients ('hybrid') with the default delayed scaling
GEMM_FORMAT_FLAGS = {"bf16": [], "fp8": ["--fp8-format", "hybrid"],
                     "mxfp8": ["--fp8-format", "e4m3", "--fp8-recipe", "mxfp8"],
                     "nvfp4": ["--fp4-format", "e2m1", "--fp4-recipe", "nvfp4"]}


def megatron_args(config: dict) -> tuple[list[str], list[str]]:
    """(arguments, notes) for a configuration: layers, seq, mbs, global_batch, tp, pp, vpp,
    stage_layers (uneven end stages), pipeline_layout, mtp_layers, cp, cp_comm, schedule, sp,
    recompute, recompute_modules (selective), recompute_layers (per chunk, for full-fit),
    offload, optimizer, and the time model's switches. Notes name what has no Megatron-LM
    flag."""
    c = config
    args = ["--num-layers", str(c["layers"]), "--seq-length", str(c["seq"]),
            "--micro-batch-size", str(c["mbs"]), "--global-batch-size", str(c["global_batch"]),
            "--tensor-model-parallel-size", str(c["tp"]),
            "--pipeline-model-parallel-size", str(c["pp"]), "--bf16"]
    notes = []
    schedule = c["schedule"]
    split = c.get("stage_layers") or [c["layers"] // c["pp"]] * c["pp"]
    uneven = len(set(split)) > 1
    layout = c.get("pipeline_layout")
    if layout:                    # places every layer itself, VPP included
        args += ["--pipeline-model-parallel-layout", layout]
    elif uneven:                  # get_num_layers_to_build: the ends, the rest even between
        args += ["--decoder-first-pipeline-num-layers", str(split[0]),
                 "--decoder-last-pipeline-num-layers", str(split[-1])]
    if schedule == "interleaved" and not layout:   # a layout's virtual stages say VPP
        if uneven:                # uneven VPP needs the chunk count itself
            args += ["--num-virtual-stages-per-pipeline-rank", str(c["vpp"])]
        else:
            per_stage = c["layers"] // (c["pp"] * c["vpp"])
            args += ["--num-layers-per-virtual-pipeline-stage", str(per_stage)]
    elif schedule not in ("1f1b", "gpipe"):
        notes.append(f"schedule {schedule}: no Megatron-LM flag (it would run 1F1B, the "
                     f"predicted time assumes {schedule}); --schedule 1f1b,interleaved "
                     f"searches only what Megatron-LM runs")
    if c.get("cp", 1) > 1:      # ModelParallelConfig / TransformerConfig.cp_comm_type
        args += ["--context-parallel-size", str(c["cp"]), "--cp-comm-type", c["cp_comm"]]
    if c.get("mtp_layers"):
        args += ["--mtp-num-layers", str(c["mtp_layers"])]
    if c.get("sp"):
        args.append("--sequence-parallel")
    if c.get("experts"):         # ModelParallelConfig.expert_model/tensor_parallel_size
        args += ["--expert-model-parallel-size", str(c["ep"]),
                 "--expert-tensor-parallel-size", str(c["etp"])]
    rec = c["recompute"]
    if rec == "selective":
        args += ["--recompute-granularity", "selective"]
        modules = list(c.get("recompute_modules", ["core_attn"]))
        if modules != ["core_attn"]:            # Megatron-Core's default
            args += ["--recompute-modules", *modules]
    elif rec == "full":
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform",
                 "--recompute-num-layers", "1"]
    elif rec == "full-fit":
        k = c.get("recompute_layers")
        if k:
            args += ["--recompute-granularity", "full", "--recompute-method", "block",
                     "--recompute-num-layers", str(k)]
    elif rec == "chronos":
        notes.append("recompute chronos (Chronos-Recomp): no Megatron-LM flag")
    if c["offload"] == "optimizer":
        args.append("--optimizer-cpu-offload")
    elif c["offload"] == "chronos":
        notes.append("offload chronos (Chronos-Offload): no Megatron-LM flag")
    if c["optimizer"] == "dist-opt":
        args.append("--use-distributed-optimizer")
    elif c["optimizer"].startswith("zero"):
        notes.append(f"optimizer {c['optimizer']}: no Megatron-LM flag (DeepSpeed ZeRO)")
    for key, flag in (("overlap_grad_reduce", "--overlap-grad-reduce"),
                      ("overlap_param_gather", "--overlap-param-gather"),
                      ("tp_comm_overlap", "--tp-comm-overlap"),
                      ("overlap_moe_a2a", "--overlap-moe-expert-parallel-comm")):
        if c.get(key):
            args.append(flag)
    if schedule == "interleaved" and c.get("overlap_p2p_comm") is False:
        args.append("--no-overlap-p2p-communication")
    if c.get("grad_accumulation") == "separate":
        args.append("--no-gradient-accumulation-fusion")
    args += GEMM_FORMAT_FLAGS[c.get("gemm_format", "bf16")]
    unknown = [a for a in args if a.startswith("--") and a not in MEGATRON_FLAGS]
    assert not unknown, unknown   # every flag above is listed in MEGATRON_FLAGS
    return args, notes


def launch(out) -> dict:
    """An Outcome's configuration as Megatron-LM arguments, with what they cannot say."""
    from .study import describe

    t = out.terms.hw.time
    args, notes = megatron_args({**describe(out), "overlap_grad_reduce": t.overlap_grad_reduce,
                                 "overlap_param_gather": t.overlap_param_gather,
                                 "tp_comm_overlap": t.tp_comm_overlap,
                                 "overlap_p2p_comm": t.overlap_p2p_comm,
                                 "overlap_moe_a2a": t.overlap_moe_a2a
                                 and out.terms.a2a_overlap,
                                 "grad_accumulation": t.grad_accumulation,
                                 "gemm_format": t.gemm_format})
    return {"megatron": args, "notes": notes, "checked_against": f"NVIDIA/Megatron-LM "
                                                                  f"{MEGATRON_COMMIT}"}


def parse_megatron_args(argv: list[str]) -> dict:
    """Megatron-LM arguments (as megatron_args writes them) -> {flag: value or True}."""
    out: dict = {}
    i = 0
    while i < len(argv):
        flag = argv[i]
        if flag not in MEGATRON_FLAGS:
            raise InputError(f"not a Megatron-LM flag explore writes: {flag!r}")
        kind = MEGATRON_FLAGS[flag]
        if kind is None:
            out[flag], i = True, i + 1
            continue
        if kind is list:                        # nargs='*': the values up to the next flag
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                j += 1
            out[flag], i = argv[i + 1:j], j
            continue
        if i + 1 >= len(argv):
            raise InputError(f"{flag} needs a value")
        try:
            out[flag] = kind(argv[i + 1])
        except ValueError:
            raise InputError(f"{flag} {argv[i + 1]!r}: not a {kind.__name__}") from None
        i += 2
    return out
