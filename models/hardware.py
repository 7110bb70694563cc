"""GPU specifications shared by the SD and pipeline studies (chiplet hardware lives in
models/chiplet). Vendor peaks plus the efficiency factors that turn them into achieved rates."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError
from .formats import NumberFormat
from .spec import AT_LEAST_1, FRACTION, NONNEGATIVE, POSITIVE, SHARE, check_fields, spec


@dataclass(frozen=True)
class GpuSpec:
    name: str = spec("preset name")
    peak_flops: float = spec("peak dense bf16 tensor FLOP/s (no sparsity)", "FLOP/s",
                             range=POSITIVE, typical=(1e12, 1e18))
    hbm_bandwidth: float = spec("peak HBM (device memory) bandwidth", "B/s",
                                range=POSITIVE, typical=(1e10, 1e14))
    hbm_bytes: float = spec("device memory capacity", "B", range=POSITIVE, typical=(1e09, 1e13))
    interconnect_bandwidth: float = spec(
        "GPU-to-GPU bandwidth per GPU per direction (NVLink, or PCIe without it)", "B/s",
        range=POSITIVE, typical=(1e09, 1e13))
    peak_flops_fp8: float = spec("peak dense FP8 tensor FLOP/s (0: no FP8 tensor cores)",
                                 "FLOP/s", default=0.0, range=NONNEGATIVE)
    peak_flops_fp4: float = spec("peak dense FP4 tensor FLOP/s (0: no FP4 tensor cores)",
                                 "FLOP/s", default=0.0, range=NONNEGATIVE)
    tdp_w: float = spec("board power (TDP/TGP; 0: not known)", "W", default=0.0, range=NONNEGATIVE)
    scaled_formats: str = spec("block-scaled GEMM inputs the tensor cores take: mx (mxfp8, "
                               "mxfp4), nv (nvfp4); a comma list, '' for none", default="")
    interconnect_latency_s: float = spec("latency per collective step (alpha)", "s",
                                         default=8e-6, range=NONNEGATIVE)
    host_link_bandwidth: float = spec("GPU-host link bandwidth per direction (PCIe)", "B/s",
                                      default=25e9, range=POSITIVE, typical=(1e09, 1e12))
    eta_bw: float = spec("achieved fraction of peak HBM bandwidth on weight streaming",
                         default=0.85, range=FRACTION)
    eta_compute: float = spec("achieved fraction of peak FLOP/s on large GEMMs", default=0.70,
                              range=FRACTION)
    # kernel model of the pipeline study (docs/pipeline.md §7.2)
    gemm_efficiency: float = spec("measured maximum achievable matmul FLOP/s / peak (the "
                                  "best-shaped large GEMM)", default=0.80, range=FRACTION)
    sm_count: int = spec("streaming multiprocessors (wave quantisation)", default=132,
                         range=AT_LEAST_1)
    gemm_tile_m: int = spec("output tile rows of a large GEMM kernel", default=256,
                            range=AT_LEAST_1)
    gemm_tile_n: int = spec("output tile columns of a large GEMM kernel", default=128,
                            range=AT_LEAST_1)
    gemm_k_overhead: float = spec("a GEMM tile's fixed prologue and epilogue, in k elements "
                                  "of its main loop", default=64.0, range=NONNEGATIVE)
    kernel_overhead_s: float = spec("fixed GPU time per kernel (launch gap and tail)", "s",
                                    default=2e-6, range=NONNEGATIVE)
    flash_fwd_efficiency: float = spec("flash-attention forward FLOP/s / peak", default=0.6,
                                       range=FRACTION)
    flash_bwd_efficiency: float = spec("flash-attention backward FLOP/s / peak", default=0.45,
                                       range=FRACTION)
    elementwise_bw_efficiency: float = spec(
        "achieved share of peak HBM bandwidth of element-wise kernels (activations, residual "
        "adds; 0: eta_bw)", default=0.0, range=SHARE)
    norm_bw_efficiency: float = spec("achieved share of peak HBM bandwidth of LayerNorm / "
                                     "RMSNorm kernels (0: eta_bw)", default=0.0, range=SHARE)
    softmax_bw_efficiency: float = spec("achieved share of peak HBM bandwidth of softmax and "
                                        "cross-entropy kernels (0: eta_bw)", default=0.0,
                                        range=SHARE)
    dropout_rate: float = spec("elements per second of a dropout kernel's random-number "
                               "generation (0: bandwidth bound)", "1/s", default=0.0,
                               range=NONNEGATIVE)
    collective_bus_bandwidth: float = spec(
        "achieved NCCL bus bandwidth of ring collectives among the GPUs of one node (0: 0.7 x "
        "interconnect_bandwidth)", "B/s", default=0.0, range=NONNEGATIVE)
    collective_latency_s: float = spec("fixed time of one NCCL collective inside a node", "s",
                                       default=20e-6, range=NONNEGATIVE)
    sources: dict = spec("field -> where the value comes from", default={}, hash=False)
    description: str = spec("one line shown in preset lists", default="")

    def __post_init__(self) -> None:
        check_fields(self, f"gpu {self.name!r}")

    @property
    def ridge_point(self) -> float:
        """Peak FLOP/s / peak bytes/s (FLOP per byte) from vendor peaks."""
        return self.peak_flops / self.hbm_bandwidth

    @property
    def achieved_flops(self) -> float:
        return self.peak_flops * self.eta_compute

    def peak_for(self, fmt: "NumberFormat") -> float:
        """Dense tensor-core peak of GEMMs whose inputs are in `fmt`; an error naming this GPU
        when it has no tensor cores for it."""
        peak = {"bf16": self.peak_flops, "fp8": self.peak_flops_fp8,
                "fp4": self.peak_flops_fp4}.get(fmt.peak, 0.0)
        if not peak > 0:
            raise InputError(f"{self.name} has no {fmt.peak.upper() or fmt.name} tensor cores "
                             f"for {fmt.name} GEMM inputs (peak_flops_{fmt.peak or fmt.name} "
                             f"not set): use bf16")
        if fmt.scaling and fmt.scaling not in self.scaled_formats.split(","):
            raise InputError(f"{self.name}'s tensor cores take no {fmt.name} block-scaled inputs "
                             f"(scaled_formats {self.scaled_formats or 'none'!r})")
        return peak

    def achieved_flops_for(self, fmt: "NumberFormat") -> float:
        return self.peak_for(fmt) * self.eta_compute

    @property
    def achieved_bandwidth(self) -> float:
        return self.hbm_bandwidth * self.eta_bw

    def kernel_bandwidth(self, kind: str) -> float:
        """Achieved bandwidth of a memory-bound kernel class: elementwise, norm or softmax."""
        share = {"elementwise": self.elementwise_bw_efficiency, "norm": self.norm_bw_efficiency,
                 "softmax": self.softmax_bw_efficiency}[kind]
        return self.hbm_bandwidth * (share or self.eta_bw)

    @property
    def bus_bandwidth(self) -> float:
        """Achieved ring-collective bus bandwidth inside a node (measured, else derived)."""
        return self.collective_bus_bandwidth or 0.7 * self.interconnect_bandwidth
