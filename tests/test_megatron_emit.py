"""`explore pipeline best --emit megatron`: the configuration as Megatron-LM arguments, every
flag one of Megatron-LM's, and the arguments parsed back give the configuration again."""

import pytest

from explore.models.pipeline.megatron import (MEGATRON_FLAGS, megatron_args,
                                              parse_megatron_args)

BASE = {"layers": 48, "seq": 4096, "mbs": 2, "global_batch": 512, "tp": 8, "pp": 4, "vpp": 1,
        "schedule": "1f1b", "sp": False, "recompute": "none", "recompute_layers": 0,
        "offload": "none", "optimizer": "none", "gemm_format": "bf16"}


def back(config: dict) -> dict:
    """A configuration rebuilt from its Megatron-LM arguments."""
    a = parse_megatron_args(megatron_args(config)[0])
    vpl = a.get("--num-layers-per-virtual-pipeline-stage")
    vstages = a.get("--num-virtual-stages-per-pipeline-rank")
    first, last = (a.get("--decoder-first-pipeline-num-layers"),
                   a.get("--decoder-last-pipeline-num-layers"))
    pp = a["--pipeline-model-parallel-size"]
    extra = {"mtp_layers": a["--mtp-num-layers"]} if "--mtp-num-layers" in a else {}
    if "--context-parallel-size" in a:
        extra |= {"cp": a["--context-parallel-size"], "cp_comm": a["--cp-comm-type"]}
    if first is not None:
        extra["stage_layers"] = [first] + [(a["--num-layers"] - first - last) // (pp - 2)] \
            * (pp - 2) + [last]
    granularity, method = a.get("--recompute-granularity"), a.get("--recompute-method")
    recompute = {None: "none", "selective": "selective"}.get(granularity) or (
        "full" if method == "uniform" else "full-fit")
    return {"layers": a["--num-layers"], "seq": a["--seq-length"],
            "mbs": a["--micro-batch-size"], "global_batch": a["--global-batch-size"],
            "tp": a["--tensor-model-parallel-size"], "pp": a["--pipeline-model-parallel-size"],
            "vpp": vstages or (a["--num-layers"] // (pp * vpl) if vpl else 1),
            "schedule": "interleaved" if vpl or vstages else "1f1b",
            "sp": "--sequence-parallel" in a,
            "recompute": recompute,
            "recompute_layers": a.get("--recompute-num-layers", 0) if recompute == "full-fit"
            else 0,
            "offload": "optimizer" if "--optimizer-cpu-offload" in a else "none",
            "optimizer": "dist-opt" if "--use-distributed-optimizer" in a else "none",
            "gemm_format": "nvfp4" if "--fp4-format" in a else "mxfp8" if a.get(
                "--fp8-recipe") == "mxfp8" else "fp8" if "--fp8-format" in a else "bf16",
            **extra}


@pytest.mark.parametrize("change", [
    {}, {"schedule": "interleaved", "vpp": 3}, {"sp": True}, {"recompute": "selective"},
    {"recompute": "full"}, {"recompute": "full-fit", "recompute_layers": 5},
    {"offload": "optimizer"}, {"optimizer": "dist-opt"},
    {"schedule": "interleaved", "vpp": 2, "sp": True, "optimizer": "dist-opt",
     "recompute": "selective"},
    {"gemm_format": "fp8"}, {"gemm_format": "mxfp8"}, {"gemm_format": "nvfp4"},
    {"stage_layers": [8, 14, 14, 12]}, {"mtp_layers": 1}, {"cp": 4, "cp_comm": "a2a"},
    {"schedule": "interleaved", "vpp": 2, "stage_layers": [12, 14, 14, 8]},
])
def test_arguments_parse_back_to_the_configuration(change):
    config = {**BASE, **change}
    assert back(config) == config


def test_every_flag_is_megatrons_and_what_it_lacks_is_a_note():
    args, notes = megatron_args({**BASE, "schedule": "zb-v", "recompute": "chronos",
                                 "offload": "chronos", "optimizer": "zero3"})
    assert all(a in MEGATRON_FLAGS for a in args if a.startswith("--"))
    assert any("zb-v" in n for n in notes) and any("Chronos-Recomp" in n for n in notes)
    assert any("Chronos-Offload" in n for n in notes) and any("zero3" in n for n in notes)


def test_emit_megatron_cli(cli):
    code, out, err = cli("pipeline", "best", "--model", "llama2-7b", "--gpus", "8",
                         "--global-batch", "16", "--seq", "2048", "--schedule", "1f1b",
                         "--emit", "megatron")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("# Megatron-LM arguments (checked against NVIDIA/Megatron-LM")
    argv = " ".join(x.rstrip(" \\") for x in lines[1:] if not x.startswith("#")).split()
    parsed = parse_megatron_args(argv)
    assert parsed["--global-batch-size"] == 16 and parsed["--seq-length"] == 2048
    tp, pp = parsed["--tensor-model-parallel-size"], parsed["--pipeline-model-parallel-size"]
    assert 8 % (tp * pp) == 0


def test_emit_unknown_framework(cli):
    code, _, err = cli("pipeline", "best", "--layers", "48", "--emit", "deepspeed")
    assert code == 2 and "--emit 'deepspeed': choose megatron" in err
