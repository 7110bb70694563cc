"""§9 validation: the hard checks hold, the soft ones are reported with their ratios, and the
sensitivities move the way §9 says (directions only; presets are never tuned to the paper)."""

import pytest

from explore import presets
from explore.models.chiplet import validate as V
from explore.models.chiplet.study import ChipletSetup


@pytest.fixture(scope="module")
def result():
    die = presets.load("die", "die-7nm")
    pk = {n: presets.load("package", n) for n in ("standard", "advanced")}
    dr = {n: presets.load("dram", n) for n in ("ddr5", "hbm2e")}
    setups = {m: ChipletSetup(V.scenario_workload(presets.load("model", m)), die, pk, dr)
              for m, _ in V.SERIES}
    return V.validation(setups)


def test_rows_have_every_field(result):
    ids = [r["id"] for r in result["rows"]]
    assert ids == ["V1", "V2", "V3", "V2p", "V3p", "V4a", "V4b", "V5-latency", "V5-energy"]
    for r in result["rows"]:
        assert set(r) == {"id", "check", "reference", "ours", "ratio", "rule", "status",
                          "source", "baseline"}
        assert r["status"] in ("PASS", "WARN", "FAIL")
        if r["id"].startswith(("V2", "V3", "V5")):      # soft checks never fail hard
            assert r["status"] != "FAIL"


def test_hard_checks_v1_and_v4_hold(result):
    assert V.hard_failures(result) == []
    by = {r["id"]: r for r in result["rows"]}
    assert by["V1"]["ratio"] > 1
    assert by["V4a"]["ratio"] <= 1.30 and by["V4b"]["ratio"] >= 3


def test_ratio_column_is_ours_over_reference(result):
    for r in result["rows"]:
        if isinstance(r["reference"], float):
            assert r["ratio"] == pytest.approx(r["ours"] / r["reference"])


def test_sensitivities_move_as_section9_says(result):
    s = {x["case"]: x for x in result["sensitivities"]}
    base = s["scenario (§9)"]["latency_ratio"]
    # a bidirectional ring roughly halves the 1D gap (the latency ratio)
    assert s["bidirectional 1D ring"]["latency_ratio"] == pytest.approx(base / 2, rel=0.25)
    # overlap = none cuts it, advanced links make both compute-bound
    assert 1 < s["overlap = none"]["latency_ratio"] < base
    assert s["advanced package"]["hecaton_comp_over_nop"] > 1
    assert s["advanced package"]["one_d_comp_over_nop"] > 1
    # the energy gap is smaller than the latency gap: MAC energy is equal for both
    assert 1 < base and s["scenario (§9)"]["energy_ratio"] < base


def test_series_rows_carry_the_proxies(result):
    rows = result["series"]
    assert [(r["model"], r["grid"]) for r in rows] == list(V.SERIES)
    assert rows[2]["hecaton_fwd_per_token"] == pytest.approx(15_008.0)
    # 1D's compute/NoP falls with N, Hecaton's stays within the band
    one = [r["one_d_comp_over_nop"] for r in rows]
    assert one == sorted(one, reverse=True)


ENERGY_FIELDS = {"die": ("e_mac", "e_sram", "static_base", "static_per_mb"),
                 "package": ("e_link_low", "e_link_high", "e_router"),
                 "dram": ("e_dram", "io_static")}


@pytest.mark.parametrize("kind", sorted(ENERGY_FIELDS))
def test_every_energy_constant_has_a_source(kind):
    from explore import presets
    for name in presets.names(kind):
        p = presets.load(kind, name)
        missing = [f for f in ENERGY_FIELDS[kind] if f not in p.sources]
        assert not missing, (name, missing)


def test_literature_ranges_parse_and_bad_ones_are_named():
    from dataclasses import replace

    from explore import presets
    from explore.models.chiplet.hardware import literature_ranges
    from explore.models.errors import InputError
    die = presets.load("die", "die-7nm")
    assert literature_ranges(die)["e_sram"] == pytest.approx((0.15e-12, 0.7e-12))
    for bad, message in (({"e_sram": [1]}, "must be \\[low, high\\]"),
                         ({"bogus": [0, 1]}, "not one of its fields"),
                         ({"e_mac": [2, 1]}, "needs 0 <= low <= high"),
                         ({"e_mac": ["1 pJ/bit", "2 pJ"]}, "is not a multiple of J")):
        with pytest.raises(InputError, match=message):
            replace(die, ranges=bad)


def test_energy_ratio_at_the_ends_of_each_range(result):
    """One row per range; at the shipped value the ratio is V3's; the range's ends move it
    (the static power's high end widens Hecaton's lead, the MAC energy's narrows it)."""
    rows = {(r["preset"], r["constant"]): r for r in result["energy_ranges"]}
    assert ("die-7nm", "e_sram") in rows and ("ddr5", "e_dram") in rows
    v3 = next(r for r in result["rows"] if r["id"] == "V3")["ours"]
    for r in rows.values():
        assert r["energy_ratio_now"] == pytest.approx(v3)
        assert r["energy_ratio_low"] > 1 and r["energy_ratio_high"] > 1
    assert rows[("die-7nm", "static_base")]["energy_ratio_high"] > v3
    assert rows[("die-7nm", "e_mac")]["energy_ratio_high"] < v3
