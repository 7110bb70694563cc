"""Number formats (docs/models.md §5): the bytes one element takes with its block scales, and
the tensor-core peak a GEMM whose inputs are in that format runs at.

A weight or KV-cache format narrower than the GEMM's input format is a storage format: kernels
dequantise it on the fly (W4A16, an FP8 KV cache read by a bf16 attention kernel), so it needs
no hardware support and only changes the bytes moved. The GEMM input format (`--activations`)
selects the peak, and the hardware must have tensor cores for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError, did_you_mean


@dataclass(frozen=True)
class NumberFormat:
    name: str
    bits: float          # per element, block scales included
    peak: str            # the GpuSpec peak a GEMM on these inputs uses: bf16, fp8, fp4 ("" none)
    source: str
    scaling: str = ""    # block scaling the tensor cores must apply: mx (OCP), nv (NVFP4)

    @property
    def bytes(self) -> float:
        return self.bits / 8.0


FORMATS = {f.name: f for f in (
    NumberFormat("fp32", 32, "", "IEEE 754 single precision (optimizer states, master weights)"),
    NumberFormat("bf16", 16, "bf16", "bfloat16"),
    NumberFormat("fp16", 16, "bf16", "IEEE 754 half precision (same tensor-core rate as bf16)"),
    NumberFormat("fp8", 8, "fp8", "FP8 E4M3/E5M2 with per-tensor or 128x128-block fp32 scales "
                                  "(DeepSeek-V3: 4 bytes per 16,384 elements, left out)"),
    NumberFormat("mxfp8", 8 + 8 / 32, "fp8", "OCP Microscaling v1.0: FP8 elements, one E8M0 "
                                             "scale per 32", "mx"),
    NumberFormat("mxfp4", 4 + 8 / 32, "fp4", "OCP Microscaling v1.0: FP4 E2M1 elements, one E8M0 "
                                             "scale per 32 (gpt-oss's MoE weights)", "mx"),
    NumberFormat("nvfp4", 4 + 8 / 16, "fp4", "NVIDIA NVFP4: FP4 E2M1 elements, one FP8 E4M3 scale "
                                             "per 16 (the per-tensor fp32 scale left out)", "nv"),
)}


def number_format(name: str, what: str = "format") -> NumberFormat:
    """The format called `name`; an unknown one names the nearest."""
    key = name.strip().lower()
    if key in FORMATS:
        return FORMATS[key]
    raise InputError(f"unknown {what} {name!r}{did_you_mean(key, FORMATS)}; choose from "
                     f"{', '.join(FORMATS)}")
