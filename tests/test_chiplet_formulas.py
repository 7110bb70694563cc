"""Chiplet study (docs/chiplet.md): the numbers of §3, §6 and §8 pinned, the engine self-tests
of §5.3 on every grid of the §5.2 feasibility table, and the layout rules of §5.2."""

import numpy as np
import pytest

from explore import presets
from explore.models.chiplet import mesh as nop
from explore.models.chiplet import methods as M
from explore.models.chiplet.report import evaluate_one
from explore.models.chiplet.study import ChipletSetup
from explore.models.chiplet.validate import proxies, scenario_point, scenario_workload
from explore.models.errors import InputError
from explore.models.shapes import ModelShape

REL = 1e-3  # §8: "tolerance 0.1 %" (the table is printed to 4-5 significant digits)
TABLE_GRIDS = (4, 5, 6, 8, 16)   # the §5.2 feasibility table


def shape(name):
    return presets.load("model", name)


# ---- §8 -----------------------------------------------------------------------------------

SECTION8 = [  # model, N, P_layer, W_d MB, Hec fwd, 1D fwd, ratio, R_hec, R_1D, Hec bwd, buffers
    ("llama2-7b", 4, 202_375_168, 25.30, 12_336.0, 15_360.0, 1.245, 1025.3, 823.5, 16_704.0,
     13_056, 10_944),
    ("llama2-13b", 5, 317_194_240, 25.38, 13_189.1, 19_660.8, 1.491, 962.0, 645.3, 17_858.6,
     13_107, 12_452),
    ("llama2-70b", 8, 855_638_016, 26.74, 15_008.0, 32_256.0, 2.149, 890.8, 414.5, 20_832.0,
     16_384, 18_176),
    ("llama3.1-405b", 16, 3_187_671_040, 24.90, 15_240.0, 65_280.0, 4.283, 817.0, 190.7,
     21_240.0, 15_360, 33_600),
]


@pytest.mark.parametrize("row", SECTION8, ids=[r[0] for r in SECTION8])
def test_section8_table(row):
    name, n, p_layer, w_d, hec, one, ratio, r_hec, r_1d, bwd, buf_h, buf_1 = row
    p = proxies(shape(name), n)
    assert p["p_layer"] == p_layer            # exact: integer count of linear parameters
    for key, want in (("w_d_bytes", w_d * 1e6), ("hecaton_fwd_per_token", hec),
                      ("one_d_fwd_per_token", one), ("ratio", ratio), ("r_hec", r_hec),
                      ("r_1d", r_1d), ("hecaton_bwd_per_token", bwd),
                      ("hecaton_buf_bytes", buf_h), ("one_d_buf_bytes", buf_1)):
        assert p[key] == pytest.approx(want, rel=REL), key


def test_llama2_70b_linear_parameters():
    assert shape("llama2-70b").linear_params * 80 == pytest.approx(68.45e9, rel=REL)


@pytest.mark.parametrize("row", SECTION8, ids=[r[0] for r in SECTION8])
def test_engine_reproduces_section8_from_the_plans(row):
    """The same quantities out of the costing engine and the plans (padded widths and
    replicated KV heads may only add, and stay within 1 %)."""
    name, n, *_ = row
    m, mesh = shape(name), nop.Mesh(n, n)
    p = proxies(m, n)
    hec = M.plan(M.Method("hecaton2d"), mesh, m, 4096)
    one = M.plan(M.Method("1d"), mesh, m, 4096)
    fwd = hec.totals("fwd", "chunk", "linear")["per_die"]
    assert p["hecaton_fwd_per_token"] <= fwd * (1 + 1e-12) <= p["hecaton_fwd_per_token"] * 1.01
    assert one.totals("fwd", "chunk", "linear")["per_die"] == pytest.approx(
        p["one_d_fwd_per_token"], rel=1e-9)
    assert hec.buf_tok * 2 == pytest.approx(p["hecaton_buf_bytes"], rel=REL)
    assert (one.buf_tok - m.hidden) * 2 == pytest.approx(p["one_d_buf_bytes"], rel=REL)


HBAR = {2: (1.50, 1.80, 2.00, 2.50, 3.50, 4.50), 4: (1.25, 1.40, 1.556, 1.875, 2.528, 3.1875)}


@pytest.mark.parametrize("sides", (2, 4))
def test_average_hops_to_io_dies(sides):
    for n, want in zip((4, 5, 6, 8, 12, 16), HBAR[sides]):
        assert nop.io_hops(n, n, sides).mean() == pytest.approx(want, rel=REL)


def test_io_die_counts():
    assert nop.n_io(8, 8, 2) == 16 and nop.n_io(8, 6, 4) == 28


# ---- §5.2 layouts ---------------------------------------------------------------------------

def test_hamiltonian_cycle_exists_iff_p_even():
    for r in range(2, 17):
        for c in range(2, 17):
            order, closing = nop.hamiltonian_order(r, c)
            assert sorted(order) == list(range(r * c))
            steps = [divmod(a, c) for a in order]
            hops = [abs(a[0] - b[0]) + abs(a[1] - b[1])
                    for a, b in zip(steps, steps[1:] + steps[:1])]
            assert hops[:-1] == [1] * (r * c - 1)               # a Hamiltonian path
            assert closing == hops[-1] == (1 if r * c % 2 == 0 else 2), (r, c)


FEASIBLE_25D = {4: [2], 5: [], 6: [2, 3], 8: [2, 4], 16: [2, 4, 8]}   # q; d = (N/q)^2


@pytest.mark.parametrize("n", TABLE_GRIDS)
def test_feasibility_table(n):
    mesh = nop.Mesh(n, n)
    labels = [m.label for m in M.methods_for(mesh)]
    assert "1d" in labels and "2d" in labels and "hecaton2d" in labels
    assert [int(x[len("2.5d-q"):]) for x in labels if x.startswith("2.5d")] == FEASIBLE_25D[n]
    assert [M.tile_side(M.Method("2.5d", q=q), mesh) for q in FEASIBLE_25D[n]] == {
        4: [(2, 4)], 5: [], 6: [(2, 9), (3, 4)], 8: [(2, 16), (4, 4)],
        16: [(2, 64), (4, 16), (8, 4)]}[n]
    assert ("3d" in labels) == (n == 8) and (M.cube_side(mesh) == 4) == (n == 8)


def test_rectangular_grids_only_allow_1d_and_hecaton():
    for r, c in ((8, 4), (4, 6), (5, 7), (16, 8)):
        labels = {m.label for m in M.methods_for(nop.Mesh(r, c))}
        assert labels == {"1d", "1d-bi", "hecaton2d"}
        reason = M.layout_reason(M.Method("2d"), nop.Mesh(r, c))
        assert "needs a square grid" in reason


def test_unknown_method_is_explained():
    from explore.models.errors import InputError
    with pytest.raises(InputError, match="unknown method '4d'"):
        M.parse_method("4d")
    assert M.parse_method("2.5d-q4") == M.Method("2.5d", q=4)
    assert M.parse_method("megatron").label == "1d"


# ---- §5.3 engine self-tests --------------------------------------------------------------

@pytest.mark.parametrize("n", TABLE_GRIDS)
def test_line_all_gather_loads_each_end_link_with_n_minus_1_chunks(n):
    mesh = nop.Mesh(n, n)
    for sched in (nop.line_all_gather(mesh.row_lines(), 3.0),
                  nop.line_reduce_scatter(mesh.col_lines(), 3.0)):
        c = nop.cost(mesh, sched)
        assert c.link_load.max() == pytest.approx((n - 1) * 3.0)
        assert c.load == pytest.approx((n - 1) * 3.0)        # t_line bandwidth term
        assert c.hops == n - 1                                # t_line latency steps
        assert c.per_die == pytest.approx((n - 1) * 3.0)
    # the links into the two end dies of a row carry (n-1) chunks each, the first link 1
    c = nop.cost(mesh, nop.line_all_gather(mesh.row_lines(), 1.0))
    assert c.link_load[(n - 2) * 4 + nop.EAST] == pytest.approx(n - 1)
    assert c.link_load[1 * 4 + nop.WEST] == pytest.approx(n - 1)
    assert c.link_load[0 * 4 + nop.EAST] == pytest.approx(1)


@pytest.mark.parametrize("n", (4, 6, 8, 16))
def test_ring_all_reduce_on_one_hop_cycle_loads_every_link_equally(n):
    mesh = nop.Mesh(n, n)
    order, closing = nop.hamiltonian_order(n, n)
    v, p = 5.0, n * n
    c = nop.cost(mesh, nop.ring_all_reduce(np.array([order]), v))
    used = c.link_load[c.link_load > 0]
    assert closing == 1 and len(used) == p
    assert used == pytest.approx(np.full(p, 2 * (p - 1) / p * v))
    assert c.hops == 2 * (p - 1)
    bi = nop.cost(mesh, nop.ring_all_reduce(np.array([order]), v, bidirectional=True))
    assert bi.load == pytest.approx(c.load / 2)               # halves the bandwidth term


def test_xy_routing_goes_along_the_row_first():
    mesh = nop.Mesh(4, 4)
    t, links, hops = nop.route(mesh, np.array([0]), np.array([mesh.node(2, 3)]))
    assert hops.tolist() == [5]
    assert links.tolist() == [0 * 4 + nop.EAST, 1 * 4 + nop.EAST, 2 * 4 + nop.EAST,
                              3 * 4 + nop.SOUTH, 7 * 4 + nop.SOUTH]


DIV = ModelShape(name="div240", layers=2, hidden=3840, heads=240, kv_heads=240, head_dim=16,
                 intermediate=7680, vocab=1000)   # every width divides by 4, 5, 6, 8 and 16


def closed_forms(method, mesh):
    """§5 per-die volumes (elements) of the linears: per token (chunk), per micro-batch
    (weights) and per iteration (2.5D gradient all-reduce)."""
    lin = DIV.linears()
    sk, sm = sum(k for _, k, _ in lin), sum(m for _, _, m in lin)
    skm = sum(k * m for _, k, m in lin)
    n1, n2, p = mesh.rows, mesh.cols, mesh.P
    if method.kind == "1d":
        v = 4 * (p - 1) / p * DIV.hidden
        return {("fwd", "chunk"): v, ("bwd", "chunk"): v}
    if method.kind == "hecaton2d":
        fwd = bwd = 0.0
        for name, k, m in lin:
            a, b = (n2, n1) if name in M.COLUMN_PARALLEL else (n1, n2)   # gather, scatter line
            fwd += ((a - 1) * k + (b - 1) * m) / p
            bwd += ((b - 1) * m + 2 * (a - 1) * k) / p
        return {("fwd", "chunk"): fwd, ("bwd", "chunk"): bwd}
    if method.kind in ("2d", "2.5d"):
        q, d = M.tile_side(method, mesh)
        f = (q - 1) / q**2
        out = {("fwd", "chunk"): f * sk / d, ("fwd", "mb"): f * skm,
               ("bwd", "chunk"): f * (2 * sk + sm) / d, ("bwd", "mb"): f * 2 * skm}
        if d > 1:
            out[("bwd", "iter")] = 2 * (d - 1) / d * skm / q**2
        return out
    q = M.cube_side(mesh)
    f = (q - 1) / q**3
    # §5 says backward ~ 2 x forward; the algorithm built here moves 2TK + 2KM + TM exactly
    return {("fwd", "chunk"): f * (sk + sm), ("fwd", "mb"): f * skm,
            ("bwd", "chunk"): f * (2 * sk + sm), ("bwd", "mb"): f * 2 * skm}


@pytest.mark.parametrize("n", TABLE_GRIDS)
def test_engine_volumes_equal_section5_on_every_table_grid(n):
    mesh = nop.Mesh(n, n)
    methods = M.methods_for(mesh)
    assert methods
    for method in methods:
        plan = M.plan(method, mesh, DIV, 4096)
        want = closed_forms(method, mesh)
        for (pass_, freq), v in want.items():
            part = "gradient" if freq == "iter" else "linear"
            got = plan.totals(pass_, freq, part)["per_die"]
            assert got == pytest.approx(v, rel=1e-9), (method.label, pass_, freq)
        for pass_ in M.PASSES:
            for freq in M.FREQS:
                if (pass_, freq) not in want:
                    assert plan.totals(pass_, freq, "linear")["per_die"] == 0


def test_hecaton_rectangular_volumes():
    mesh = nop.Mesh(4, 8)
    plan = M.plan(M.Method("hecaton2d"), mesh, DIV, 4096)
    want = closed_forms(M.Method("hecaton2d"), mesh)
    assert plan.totals("fwd", "chunk", "linear")["per_die"] == pytest.approx(
        want[("fwd", "chunk")])
    assert plan.totals("bwd", "chunk", "linear")["per_die"] == pytest.approx(
        want[("bwd", "chunk")])


def test_hecaton_transfers_are_one_hop_and_rows_and_columns_are_disjoint():
    mesh = nop.Mesh(6, 4)
    plan = M.plan(M.Method("hecaton2d"), mesh, DIV, 4096)
    for c in plan.comms:
        assert c.stream in ("row", "col")
        assert c.cost.elem_hops == pytest.approx(c.cost.elems)      # every transfer: 1 hop
        used = np.flatnonzero(c.cost.link_load) % 4
        allowed = {nop.EAST, nop.WEST} if c.stream == "row" else {nop.SOUTH, nop.NORTH}
        assert set(used.tolist()) <= allowed


def test_3d_strided_axes_share_links():
    """Two of the three 3D axes are strided by 2 hops on 8x8, and interleaved lines share a
    link: the axis-a all-gather loads a link with twice what one line puts on it."""
    mesh = nop.Mesh(8, 8)
    axes = M.cube_axes(mesh)
    c = nop.cost(mesh, nop.line_all_gather(axes["a"], 1.0))
    one = nop.cost(mesh, nop.line_all_gather(axes["a"][:1], 1.0))
    assert c.link_load.max() == pytest.approx(2 * one.link_load.max())
    assert c.hops == 2 * 3                                    # 3 steps of 2 hops


def test_odd_ring_pays_a_two_hop_edge():
    mesh = nop.Mesh(5, 5)
    order, closing = nop.hamiltonian_order(5, 5)
    c = nop.cost(mesh, nop.ring_all_reduce(np.array([order]), 25.0))
    assert closing == 2 and c.hops == 2 * 24 * 2


# ---- §3 hardware ---------------------------------------------------------------------------

def test_hardware_derived_values():
    die = presets.load("die", "die-7nm")
    assert die.peak_flops == pytest.approx(78.6e12, rel=REL)
    assert die.mac_energy == pytest.approx(0.44e-12, rel=REL)
    assert die.sram_energy == pytest.approx(0.0688e-12, rel=REL)
    assert die.static_power(128e6) == pytest.approx(4.06)       # "4.1 W at 128 MB"
    std, adv = presets.load("package", "standard"), presets.load("package", "advanced")
    assert die.area_mm2(128e6, std.port_area_mm2) == pytest.approx(106.4, rel=REL)
    assert (std.bandwidth, adv.bandwidth) == (32e9, 256e9)
    assert std.e_hop == pytest.approx(0.6e-12) and adv.e_hop == pytest.approx(0.4e-12)
    assert std.alpha_hop == pytest.approx(20e-9) and adv.alpha_hop == pytest.approx(15e-9)
    ddr5, hbm = presets.load("dram", "ddr5"), presets.load("dram", "hbm2e")
    assert ddr5.bw_site == pytest.approx(76.8e9) and hbm.bw_site == pytest.approx(409.6e9)


def test_every_hardware_field_is_documented_and_sourced():
    from explore.models.spec import field_docs
    for kind in ("die", "package", "dram"):
        for name in presets.names(kind):
            obj = presets.load(kind, name)
            for f, _unit, doc, _ in field_docs(type(obj)):
                assert doc, (kind, f)
            assert obj.sources, (kind, name)


# ---- §6 DRAM traffic, SRAM threshold, capacity ---------------------------------------------

def setup_for(model="llama2-70b", **work):
    s = ChipletSetup(scenario_workload(shape(model)), presets.load("die", "die-7nm"),
                     {"standard": presets.load("package", "standard")},
                     {"ddr5": presets.load("dram", "ddr5"), "hbm2e": presets.load("dram",
                                                                                  "hbm2e")})
    if work:
        from dataclasses import replace
        s = replace(s, work=replace(s.work, **work))
    return s


def dram_by_category(r):
    reps = r["phase_reps"]
    return {c: sum(r.get(f"{ph}.dram_{c}", 0.0) for ph in ("fwd", "rec", "bwd")) * reps
            for c in ("weights", "gradients", "activations")}


def test_layer_major_dram_traffic():
    s = setup_for()
    m = s.work.model
    r = evaluate_one(s, scenario_point("8x8"))
    assert r["resident"] == 1
    got = dram_by_category(r)
    L, P, H, BS = m.layers, m.linear_params, m.hidden, 128 * 4096
    assert got["weights"] == pytest.approx(2 * L * P * 2)
    assert got["gradients"] == pytest.approx(L * P * 4)
    assert got["activations"] == pytest.approx(5 * L * BS * H * 2)
    adam = m.total_params * 30                       # (12 + 4) + (12 + 2) bytes per parameter
    assert r["dram_bytes"] == pytest.approx(sum(got.values()) + adam)


def test_micro_batch_major_dram_traffic():
    s = setup_for()
    m = s.work.model
    r = evaluate_one(s, scenario_point("8x8", schedule="micro-batch-major"))
    got = dram_by_category(r)
    L, P, H, BS, n_mb = m.layers, m.linear_params, m.hidden, 128 * 4096, 16
    assert got["weights"] == pytest.approx(2 * n_mb * L * P * 2)
    assert got["gradients"] == pytest.approx(2 * n_mb * L * P * 4)
    assert got["activations"] == pytest.approx(2 * L * BS * H * 2)


def test_residency_threshold_examples():
    """§6: W_d = 26.74 MB needs 53.5 / 80.2 / 107.0 MB for (no prefetch, bf16), (one of the
    two), (prefetch, fp32), plus chunk and KV buffers. Just above the threshold the weights are
    resident; just below they are re-streamed (16 x the weight traffic) and the iteration is
    no shorter; the binding label is whatever resource, made 10 % faster, saves most."""
    w_d = 26_738_688
    kv = 2 * 4096 * 128 * 2              # one KV head per die, one sequence
    chunk = 256 * 16_384
    for prefetch, gb, factor in ((False, 2.0, 2), (True, 2.0, 3), (False, 4.0, 3),
                                 (True, 4.0, 4)):
        s = setup_for(prefetch=prefetch, grad_bytes=gb)
        need = factor * w_d + chunk + kv
        assert factor * w_d / 1e6 == pytest.approx({2: 53.5, 3: 80.2, 4: 107.0}[factor],
                                                    rel=REL)
        above = evaluate_one(s, scenario_point("8x8", sram_mb=need / 1e6 + 0.01))
        below = evaluate_one(s, scenario_point("8x8", sram_mb=need / 1e6 - 0.01))
        assert above["resident"] == 1 and below["resident"] == 0
        assert below["latency_s"] >= above["latency_s"] * (1 - 1e-12)
        assert below["violation_sram"] <= 0                          # still feasible
        gains = [below[f"gain_{r}_s"] for r in ("compute", "nop", "dram", "io")]
        assert below["binding"] == int(np.argmax(gains))
        assert dram_by_category(below)["weights"] == pytest.approx(
            16 * dram_by_category(above)["weights"])                 # reads x n_mb


def test_dram_capacity_example():
    """§6: Llama2-70B at B S = 524,288 needs ~1.24 + 0.69 TB: ddr5 on 8x8 with two I/O sides
    (2.05 TB) fits, hbm2e (256 GB) does not."""
    s = setup_for()
    m = s.work.model
    assert m.total_params * 18 / 1e12 == pytest.approx(1.24, rel=0.01)
    assert 80 * 524_288 * 8192 * 2 / 1e12 == pytest.approx(0.69, rel=0.01)
    ddr = evaluate_one(s, scenario_point("8x8"))
    hbm = evaluate_one(s, scenario_point("8x8", dram="hbm2e"))
    assert ddr["n_io"] * 128e9 == pytest.approx(2.048e12)
    assert ddr["violation_dram_capacity"] < 0 < hbm["violation_dram_capacity"]
    assert hbm["reason"].startswith("DRAM capacity")


def test_dram_path_parts():
    """§3: the I/O die's own port width sets t_io, the channels set t_DRAM; stacks beside the
    edge dies have no port (t_io = 0) and save the I/O die's hop (h̄ - 1)."""
    from dataclasses import replace
    s = setup_for()
    ddr5 = s.drams["ddr5"]
    wide = replace(s, drams={"ddr5": replace(ddr5, io_port_modules=3)})
    beside = replace(s, drams={"ddr5": replace(ddr5, placement="beside")})
    point = scenario_point("8x8", sram_mb=64)
    base, w, b = (evaluate_one(x, point) for x in (s, wide, beside))
    assert base["t_io_s"] == pytest.approx(3 * w["t_io_s"])     # 32 -> 96 GB/s per I/O die
    assert w["t_dram_s"] == base["t_dram_s"] > w["t_io_s"]      # 65 GB/s channels now bind
    assert b["t_io_s"] == 0 and b["hbar"] == pytest.approx(base["hbar"] - 1)
    assert b["dram_bytes"] == base["dram_bytes"] and b["e_nop_j"] < base["e_nop_j"]
    assert base["n_io"] * ddr5.stacks * ddr5.capacity == pytest.approx(2.048e12)
    with pytest.raises(InputError, match="placement 'side' is not one of io-die, beside"):
        replace(ddr5, placement="side")
    with pytest.raises(InputError, match="0 when the stacks sit beside"):
        replace(ddr5, placement="beside", io_port_modules=2)


def test_hbm_beside_is_limited_by_its_capacity_for_70b_training():
    """hbm3e-beside: 16 edge stacks of 24 GB on 8x8 cannot hold 70B's 1.93 TB training state;
    an 8B model fits, and its DRAM bandwidth is n_io x 1177.6 GB/s x 0.85."""
    from dataclasses import replace
    hbm = presets.load("dram", "hbm3e-beside")
    s = replace(setup_for(), drams={"hbm3e-beside": hbm})
    r = evaluate_one(s, scenario_point("8x8", dram="hbm3e-beside"))
    assert r["reason"].startswith("DRAM capacity") and "16 edge dies' stacks" in r["reason"]
    small = replace(setup_for("llama3.1-8b"), drams={"hbm3e-beside": hbm})
    r = evaluate_one(small, scenario_point("8x8", dram="hbm3e-beside", sram_mb=64))
    assert r["violation_dram_capacity"] < 0 and r["t_io_s"] == 0
    assert r["t_dram_s"] == pytest.approx(r["dram_bytes"] / (16 * 1177.6e9 * 0.85)
                                          - r["opt_bytes"] / (16 * 1177.6e9 * 0.85), rel=1e-9)


def test_latency_terms_follow_section7():
    """overlap = none adds the three terms; max takes the largest plus the fill."""
    s = setup_for()
    r = evaluate_one(s, scenario_point("8x8", overlap="none"))
    for ph in ("fwd", "rec", "bwd"):
        t = r[f"{ph}.t_comp"] + r[f"{ph}.t_nop"] + max(r[f"{ph}.t_dram"], r[f"{ph}.t_io"])
        assert r[f"{ph}.t_phase"] == pytest.approx(t)
        assert r[f"{ph}.t_nop"] == pytest.approx(r[f"{ph}.t_row"] + r[f"{ph}.t_col"]
                                                 + r[f"{ph}.t_mesh"])
    total = r["phase_reps"] * sum(r[f"{ph}.t_phase"] for ph in ("fwd", "rec", "bwd"))
    assert r["latency_s"] == pytest.approx(total + r["t_head_s"] + r["t_opt_s"])
    mx = evaluate_one(s, scenario_point("8x8"))
    assert mx["fwd.t_nop"] == pytest.approx(max(mx["fwd.t_row"], mx["fwd.t_col"])
                                            + mx["fwd.t_mesh"])
    # MAC energy is the same for every method: FLOPs / 2 x e_MAC
    one = evaluate_one(s, scenario_point("8x8", method="1d"))
    assert one["e_mac_j"] == pytest.approx(mx["e_mac_j"])
    assert mx["e_mac_j"] == pytest.approx(mx["flops"] / 2 * 0.44e-12, rel=REL)


def test_tiling_efficiency_only_slows_compute():
    s, t = setup_for(), setup_for(tiling=True)
    for method in ("hecaton2d", "2d", "1d"):
        a = evaluate_one(s, scenario_point("8x8", method=method, micro_batch=8))
        b = evaluate_one(t, scenario_point("8x8", method=method, micro_batch=8))
        assert b["t_comp_s"] >= a["t_comp_s"] * (1 - 1e-12)


# ---- step classes: one step costed, times its count, equal to step by step ------------------

def _same_cost(a: nop.CollectiveCost, b: nop.CollectiveCost) -> None:
    for f in ("load", "hops", "elem_hops", "elems", "per_die"):
        assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-12), f
    assert np.allclose(a.link_load, b.link_load, rtol=1e-12, atol=0)


@pytest.mark.parametrize("rows, cols", [(2, 2), (4, 4), (4, 8), (8, 8), (16, 16)])
def test_step_classes_cost_what_the_step_by_step_engine_costs(rows, cols):
    """Rings (one step class repeated), line collectives, broadcasts and their sequences on
    meshes up to 16 x 16: the step-class costing equals routing and costing every step."""
    mesh = nop.Mesh(rows, cols)
    order, _ = nop.hamiltonian_order(rows, cols)
    lines = mesh.row_lines()
    schedules = [nop.ring(np.array([order]), 3.0, mesh.P - 1),
                 nop.ring_all_reduce(np.array([order]), 12.0, bidirectional=True),
                 nop.ring_all_reduce(lines, 5.0),
                 nop.line_all_gather(mesh.col_lines(), 2.0),
                 nop.line_reduce_scatter(lines, 1.5),
                 nop.sequence("broadcasts", [nop.line_broadcast(lines, k, 4.0)
                                             for k in range(cols)]),
                 nop.ring_all_reduce(lines, 5.0) + nop.line_all_gather(lines, 1.0)]
    for s in schedules:
        _same_cost(nop.cost(mesh, s), nop.cost(mesh, s.stepwise()))


def test_a_collective_costed_for_one_element_scales_to_its_piece():
    """SUMMA's broadcasts are routed once for one element and scaled: the same as routing the
    real piece (hops do not scale)."""
    mesh = nop.Mesh(8, 8)
    lines = mesh.row_lines()
    unit = nop.cost(mesh, nop.sequence("b", [nop.line_broadcast(lines, k, 1.0)
                                             for k in range(8)]))
    real = nop.cost(mesh, nop.sequence("b", [nop.line_broadcast(lines, k, 37.5)
                                             for k in range(8)]))
    _same_cost(unit.scaled(37.5), real)


def test_the_binding_resource_is_the_one_whose_speed_matters_most():
    """Over a sweep of SRAM sizes and both overlap rules: a feasible point's binding label is
    the resource whose 10 % speed-up saves the most iteration time, and that saving is
    positive (something always binds)."""
    s = setup_for()
    for overlap in ("max", "none"):
        for sram in (16, 48, 64, 128, 256):
            r = evaluate_one(s, scenario_point("8x8", sram_mb=sram, overlap=overlap))
            if r["violation_sram"] > 0:
                continue
            gains = [r[f"gain_{x}_s"] for x in ("compute", "nop", "dram", "io")]
            assert r["binding"] == int(np.argmax(gains)) and max(gains) > 0


@pytest.mark.parametrize("method", ["hecaton2d", "1d"])
def test_more_sram_never_costs_energy_when_dram_traffic_falls_and_static_power_is_held(method):
    """With the static power held (no per-MB leakage), growing the SRAM can only cut DRAM
    traffic: where it does (and never raises it), the iteration's energy does not rise."""
    from dataclasses import replace
    s = setup_for()
    s = replace(s, die=replace(s.die, static_per_mb=0.0))
    runs = [evaluate_one(s, scenario_point("8x8", method=method, sram_mb=m))
            for m in (16, 32, 48, 64, 96, 128, 192, 256)]
    runs = [r for r in runs if r["violation_sram"] <= 0]
    assert len(runs) >= 3
    for small, big in zip(runs, runs[1:]):
        assert big["dram_bytes"] <= small["dram_bytes"] * (1 + 1e-12)
        assert big["energy_j"] <= small["energy_j"] * (1 + 1e-9)


def test_sram_below_the_working_set_raises_latency_through_the_dram_flows():
    """DRAM flows cross the mesh from the edge I/O dies (route_dram, the default): below the
    residency threshold the re-streamed weights load the NoP and the iteration takes longer;
    with a separate memory network (route_dram off) the same traffic hides under the NoP."""
    s = setup_for()
    small, big = (evaluate_one(s, scenario_point("8x8", sram_mb=m)) for m in (64, 192))
    assert small["dram_bytes"] > 2 * big["dram_bytes"]
    assert small["latency_s"] > 1.1 * big["latency_s"]
    apart = setup_for(route_dram=False)
    a_small, a_big = (evaluate_one(apart, scenario_point("8x8", sram_mb=m)) for m in (64, 192))
    assert a_small["latency_s"] == pytest.approx(a_big["latency_s"], rel=1e-3)
