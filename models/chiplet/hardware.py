"""Chiplet hardware (docs/chiplet.md §3): compute die, D2D package, DRAM behind the I/O dies.

Every field is documented with its SI unit; presets carry a `sources` mapping that the CLI prints.
Areas are in mm² (the unit is in the field name); everything else is SI.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError
from ..spec import AT_LEAST_1, check_fields, spec
from ..units import PJ, parse_quantity

RANGES_DOC = ("field -> [low, high]: the range the literature gives for the value "
              "(docs/research/chiplet-energy.md); explore chiplet validate shows the energy "
              "ratio at both ends")


def literature_ranges(obj) -> dict[str, tuple[float, float]]:
    """A preset's `ranges` in the SI units of their fields (numbers or '0.5 pJ/bit'
    strings); InputError naming an entry that is not a field, not two values or not low <=
    high."""
    units = {f.name: f.metadata.get("unit", "") for f in dataclasses.fields(obj)}
    out = {}
    for name, pair in obj.ranges.items():
        if name not in units or name in ("ranges", "sources", "name", "description"):
            raise InputError(f"{obj.name!r}: ranges names {name!r}, not one of its fields")
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise InputError(f"{obj.name!r}: ranges.{name} must be [low, high]")
        try:
            lo, hi = (v if isinstance(v, (int, float)) else parse_quantity(str(v), units[name])
                      for v in pair)
        except ValueError as e:
            raise InputError(f"{obj.name!r}: ranges.{name}: {e}") from None
        if not 0 <= lo <= hi:
            raise InputError(f"{obj.name!r}: ranges.{name} needs 0 <= low <= high")
        out[name] = (float(lo), float(hi))
    return out

# Horowitz, ISSCC 2014 (45 nm, 0.9 V) [literature]; the derivations are [design] (§3):
E_MAC_45NM = 1.1 * PJ + 0.9 * PJ        # bf16-class multiply + fp32 add, J per MAC
E_SRAM_45NM = 20 * PJ / 64              # 64-bit read from a 32 KB bank, J per bit
NODE_SCALE = {45: 1.0, 16: 0.40, 7: 0.22, 5: 0.17}   # energy per op relative to 45 nm [design]


@dataclass(frozen=True)
class DieSpec:
    """One compute die: PE array, vector unit, SRAM scratchpad and a four-port router."""
    name: str = spec("preset name")
    n_mac: int = spec("MAC units per die (bf16 multiply, fp32 accumulate)")
    f: float = spec("clock frequency", "Hz")
    sram: float = spec("SRAM per die M_s (banked scratchpad); the search overrides it", "B")
    array_rows: int = spec("rows R of one core's output-stationary PE array (tiling, SRAM "
                           "operand reuse)", default=32, range=AT_LEAST_1)
    array_cols: int = spec("columns C of one core's PE array", default=64, range=AT_LEAST_1)
    eta: float = spec("achieved fraction of peak FLOP/s on large GEMMs", default=0.85)
    node_nm: int = spec("process node in nm; selects the energy scale s_node (45, 16, 7, 5)",
                        default=7)
    e_mac: float | None = spec("energy per MAC; empty = 2.0 pJ x s_node (Horowitz 45 nm)", "J",
                               default=None)
    e_sram: float | None = spec("SRAM access energy per bit; empty = 0.3125 pJ/bit x s_node",
                                "J/bit", default=None)
    static_base: float = spec("static power of the die without SRAM", "W", default=1.5)
    static_per_mb: float = spec("static (leakage) power per MB of SRAM", "W", default=0.02)
    area_per_mac_mm2: float = spec("silicon area per MAC unit in mm²", default=1.0e-3)
    area_per_mb_mm2: float = spec("silicon area per MB of SRAM in mm²", default=0.45)
    area_fixed_mm2: float = spec("fixed area (vector unit, router, control) in mm²",
                                 default=10.0)
    formats: dict = spec(
        "number formats the arrays take beyond bf16: format -> {mac_rate: MACs per unit per "
        "cycle relative to bf16, e_mac: J per MAC} (docs/chiplet.md §3); none in the shipped "
        "dies, which have only sourced bf16 energies", default={})
    mac_rate: float = spec("MACs per MAC unit per cycle (1 for bf16; from formats)", default=1.0)
    number_format: str = spec("the format the arrays compute in", default="bf16")
    sources: dict = spec("field -> where the value comes from", default={})
    ranges: dict = spec(RANGES_DOC, default={})
    description: str = spec("one line shown in preset lists", default="")

    def __post_init__(self) -> None:
        check_fields(self, f"die {self.name!r}")
        literature_ranges(self)
        if self.n_mac <= 0 or self.f <= 0 or self.sram <= 0 or not self.mac_rate > 0:
            raise InputError(f"die {self.name!r}: n_mac, f and sram must be positive")
        if self.n_mac % (self.array_rows * self.array_cols):
            raise InputError(f"die {self.name!r}: n_mac {self.n_mac} is not a whole number of "
                             f"{self.array_rows}x{self.array_cols} cores")
        if not 0 < self.eta <= 1:
            raise InputError(f"die {self.name!r}: eta must be in (0, 1]")
        if self.node_nm not in NODE_SCALE and (self.e_mac is None or self.e_sram is None):
            raise InputError(f"die {self.name!r}: no energy scale for {self.node_nm} nm "
                             f"(known: {sorted(NODE_SCALE)}); give e_mac and e_sram")

    def in_format(self, name: str) -> "DieSpec":
        """This die computing in format `name`: bf16 as it is, another format from its
        `formats` entry (its MAC rate and energy); an error naming the die when it has none."""
        from dataclasses import replace

        from ..formats import number_format
        fmt = number_format(name, "--format")
        if fmt.name == "bf16":
            return self
        entry = self.formats.get(fmt.name)
        if not isinstance(entry, dict) or not {"mac_rate", "e_mac"} <= set(entry):
            have = ", ".join(["bf16", *sorted(self.formats)])
            raise InputError(f"die {self.name!r} has no {fmt.name} MAC data (formats: {have}); "
                             f"add formats: {{{fmt.name}: {{mac_rate: ..., e_mac: ...}}}} to "
                             f"the die preset, with its source")
        return replace(self, mac_rate=float(entry["mac_rate"]), e_mac=float(entry["e_mac"]),
                       number_format=fmt.name)

    @property
    def peak_flops(self) -> float:
        """C = 2 n_MAC f x the format's MACs per unit per cycle."""
        return 2.0 * self.n_mac * self.f * self.mac_rate

    @property
    def mac_energy(self) -> float:
        return self.e_mac if self.e_mac is not None else E_MAC_45NM * NODE_SCALE[self.node_nm]

    @property
    def sram_energy(self) -> float:
        return self.e_sram if self.e_sram is not None else E_SRAM_45NM * NODE_SCALE[self.node_nm]

    def static_power(self, sram_bytes):
        """P_static,die = 1.5 W + 0.02 W/MB x M_s."""
        return self.static_base + self.static_per_mb * sram_bytes / 1e6

    def area_mm2(self, sram_bytes, port_area_mm2):
        """A_die = n_MAC a_mac + M_s a_MB + 4 A_port + A_fixed (mm²)."""
        return (self.n_mac * self.area_per_mac_mm2 + sram_bytes / 1e6 * self.area_per_mb_mm2
                + 4 * port_area_mm2 + self.area_fixed_mm2)


@dataclass(frozen=True)
class PackageSpec:
    """D2D links of the network-on-package: one port per die edge, UCIe-style modules."""
    name: str = spec("preset name")
    lanes: int = spec("data lanes per module")
    rate: float = spec("signalling rate per lane", "T/s")
    e_link_low: float = spec("link energy per bit at rates up to rate_threshold", "J/bit")
    e_link_high: float = spec("link energy per bit above rate_threshold", "J/bit")
    router_latency: float = spec("router and flit overhead per hop (rest of alpha_hop)", "s")
    shoreline: float = spec("bandwidth density limit per mm of die edge", "B/s/mm")
    port_area_mm2: float = spec("area of one module (PHY + adapter) in mm²")
    technology: str = spec("substrate and bump pitch", default="")
    modules_per_port: int = spec("UCIe modules ganged into one port (the search overrides it)",
                                 default=1)
    rate_threshold: float = spec("rate at which the link energy steps up", "T/s",
                                 default=16e9)
    e_router: float = spec("router energy per bit per hop", "J/bit", default=0.1e-12)
    phy_latency: float = spec("PHY plus adapter round trip", "s", default=2e-9)
    sources: dict = spec("field -> where the value comes from", default={})
    ranges: dict = spec(RANGES_DOC, default={})
    description: str = spec("one line shown in preset lists", default="")

    def __post_init__(self) -> None:
        literature_ranges(self)
        if self.lanes <= 0 or self.rate <= 0 or self.modules_per_port < 1:
            raise InputError(f"package {self.name!r}: lanes, rate and modules_per_port must be "
                             f"positive")

    @property
    def bandwidth(self) -> float:
        """b = modules x lanes x rate / 8, bytes/s per port per direction."""
        return self.modules_per_port * self.lanes * self.rate / 8

    @property
    def e_hop(self) -> float:
        """Link energy at this rate plus the router, J per bit per hop."""
        link = self.e_link_low if self.rate <= self.rate_threshold else self.e_link_high
        return link + self.e_router

    @property
    def alpha_hop(self) -> float:
        return self.phy_latency + self.router_latency


DRAM_PLACEMENTS = ("io-die", "beside")


@dataclass(frozen=True)
class DramSpec:
    """The DRAM path (§3): stacks or channels at each attachment point on the mesh edge, either
    behind an I/O die joined to a boundary die by one D2D port (io-die) or on the package next
    to a boundary compute die and driven by that die's own DRAM PHY (beside: 2.5D HBM)."""
    name: str = spec("preset name")
    bw_stack: float = spec("peak bandwidth of one stack (HBM) or channel (DDR)", "B/s")
    e_dram: float = spec("DRAM access energy per bit (device + PHY)", "J/bit")
    capacity: float = spec("capacity of one stack or channel", "B")
    stacks: int = spec("stacks or channels at each attachment point", default=1)
    placement: str = spec("io-die: behind an edge I/O die and its D2D port; beside: next to a "
                          "boundary compute die on the package, no I/O die", default="io-die")
    io_port_modules: int = spec("UCIe modules of the I/O die's port into the mesh (0 = as "
                                "wide as the mesh ports, the searched modules per port)",
                                default=0)
    eta: float = spec("achieved fraction of peak DRAM bandwidth eta_D", default=0.85)
    io_static: float = spec("static power per attachment point: one I/O die (io-die) or one "
                            "stack's controller and PHY (beside)", "W", default=2.0)
    io_area_mm2: float = spec("area per attachment point in mm²: one I/O die (io-die) or the "
                              "stacks' footprint on the package (beside)", default=20.0)
    sources: dict = spec("field -> where the value comes from", default={})
    ranges: dict = spec(RANGES_DOC, default={})
    description: str = spec("one line shown in preset lists", default="")

    def __post_init__(self) -> None:
        literature_ranges(self)
        if self.bw_stack <= 0 or self.capacity <= 0 or self.stacks < 1:
            raise InputError(f"dram {self.name!r}: bw_stack, capacity and stacks must be "
                             f"positive")
        if not 0 < self.eta <= 1:
            raise InputError(f"dram {self.name!r}: eta must be in (0, 1]")
        if self.placement not in DRAM_PLACEMENTS:
            raise InputError(f"dram {self.name!r}: placement {self.placement!r} is not one of "
                             f"{', '.join(DRAM_PLACEMENTS)}")
        if self.io_port_modules < 0 or (self.placement == "beside" and self.io_port_modules):
            raise InputError(f"dram {self.name!r}: io_port_modules must be >= 0, and 0 when "
                             f"the stacks sit beside the dies (they have no I/O port)")

    @property
    def bw_site(self) -> float:
        """Peak DRAM bandwidth at one attachment point: stacks x bw_stack."""
        return self.stacks * self.bw_stack
