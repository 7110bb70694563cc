"""GPU specifications shared by the SD and pipeline studies (chiplet hardware lives in
models/chiplet). Vendor peaks plus the efficiency factors that turn them into achieved rates."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError
from .spec import spec


@dataclass(frozen=True)
class GpuSpec:
    name: str = spec("preset name")
    peak_flops: float = spec("peak dense bf16 tensor FLOP/s (no sparsity)", "FLOP/s")
    hbm_bandwidth: float = spec("peak HBM (device memory) bandwidth", "B/s")
    hbm_bytes: float = spec("device memory capacity", "B")
    interconnect_bandwidth: float = spec(
        "GPU-to-GPU bandwidth per GPU per direction (NVLink, or PCIe without it)", "B/s")
    interconnect_latency_s: float = spec("latency per collective step (alpha)", "s",
                                         default=8e-6)
    host_link_bandwidth: float = spec("GPU-host link bandwidth per direction (PCIe)", "B/s",
                                      default=25e9)
    eta_bw: float = spec("achieved fraction of peak HBM bandwidth on weight streaming",
                         default=0.85)
    eta_compute: float = spec("achieved fraction of peak FLOP/s on large GEMMs", default=0.70)
    sources: dict = spec("field -> where the value comes from", default={})
    description: str = spec("one line shown in preset lists", default="")

    def __post_init__(self) -> None:
        for name in ("peak_flops", "hbm_bandwidth", "hbm_bytes", "interconnect_bandwidth",
                     "host_link_bandwidth"):
            if not getattr(self, name) > 0:
                raise InputError(f"gpu {self.name!r}: {name} must be positive")
        for name in ("eta_bw", "eta_compute"):
            if not 0 < getattr(self, name) <= 1:
                raise InputError(f"gpu {self.name!r}: {name} must be in (0, 1]")
        for name in ("interconnect_latency_s",):
            if getattr(self, name) < 0:
                raise InputError(f"gpu {self.name!r}: {name} must be >= 0")

    @property
    def ridge_point(self) -> float:
        """Peak FLOP/s / peak bytes/s (FLOP per byte) from vendor peaks."""
        return self.peak_flops / self.hbm_bandwidth

    @property
    def achieved_flops(self) -> float:
        return self.peak_flops * self.eta_compute

    @property
    def achieved_bandwidth(self) -> float:
        return self.hbm_bandwidth * self.eta_bw
