"""The H800 kernel families fitted on the V3 training trace (sim.calibration.published)."""

from __future__ import annotations

import pytest

from sim.calibration import published


@pytest.fixture(scope="module")
def kernels():  # type: ignore[no-untyped-def]
    return published.load_trace_kernels()


def test_wgrad_units_follow_the_layer_structure(kernels) -> None:  # type: ignore[no-untyped-def]
    rows = published.wgrad_trace_rows(kernels)
    assert len(rows) == 4 * 9  # 4 layers x (7 single kernels + 2 units of 4 expert kernels)
    names = {r.key[0] for r in rows}
    assert names == {
        "shared_down",
        "experts_down x4",
        "experts_gate_up x4",
        "shared_gate_up",
        "o",
        "kv_b",
        "q_b",
        "kv_a",
        "q_a",
    }
    o = next(r for r in rows if r.key == ("o", 0))
    assert o.shape["m"] * o.shape["n"] * o.shape["k"] * 2 == pytest.approx(0.962e12, rel=0.01)
    assert 1.4e-3 < o.measured_s < 1.6e-3  # o_proj wgrad 1.47 ms in the trace


@pytest.mark.parametrize("table", [t for t, _, _ in published.TRACE_TABLES])
def test_trace_split_holds_out_whole_shapes(kernels, table) -> None:  # type: ignore[no-untyped-def]
    rows = published.trace_rows(table, kernels)
    fit, held = published.trace_split(rows)
    assert (fit, held) == published.trace_split(rows)  # fixed: no random draw
    assert not set(fit) & set(held) and len(fit) + len(held) == len(rows)
    # no held-out row shares a kernel kind, or the timing model's inputs, with a fitted row
    assert not {rows[i].key[0] for i in fit} & {rows[i].key[0] for i in held}
    inputs = {(rows[i].compute_s, rows[i].memory_s) for i in fit}
    assert not any((rows[i].compute_s, rows[i].memory_s) in inputs for i in held)
    shapes = published.trace_shapes(rows)
    assert sorted(i for idx in shapes for i in idx) == list(range(len(rows)))
    if len(shapes) == 1:
        assert held == []  # one shape: fitted only
    else:
        assert len({rows[i].key[0] for i in held}) >= 1 and len(held) < len(rows)


def test_wgrad_split_keeps_every_layer_of_a_shape_together(kernels) -> None:  # type: ignore[no-untyped-def]
    rows = published.wgrad_trace_rows(kernels)
    fit, held = published.trace_split(rows)
    for side in (fit, held):
        by_kind: dict[str, set[int]] = {}
        for i in side:
            by_kind.setdefault(rows[i].key[0], set()).add(rows[i].key[1])
        assert all(layers == {0, 1, 2, 3} for layers in by_kind.values())


def test_trace_families_are_scored_and_kept_as_data() -> None:
    from sim import calibration as cal

    result = published.fit_and_score()
    for table, family in (
        ("v3_trace_wgrad", "gemm_wgrad"),
        ("v3_trace_memory_bound", "memory_bound"),
        ("v3_trace_norm_rope", "norm_rope"),
        ("v3_trace_attention_bwd", "attention_backward"),
    ):
        summary = result["tables"][table]
        if table == "v3_trace_attention_bwd":  # one shape: fitted only, no held-out error reported
            assert summary["n"] == 0 and summary["fitted_only"] and "median_pct" not in summary
            assert result["families"][family]["published"]["fitted_only"]
            assert "held_out_median_pct" not in result["families"][family]["published"]
        else:
            assert summary["n"] > 0 and not summary.get("fitted_only")
        assert summary["fit_n"] > 0
        assert len(summary["fitted"]) <= 4
        fitted = result["families"][family]["published"]
        stored = cal.family_params(cal.find_calibration(["H800"]), family)
        assert stored is not None
        for name in cal.PARAMETER_NAMES:  # the committed file holds this fit
            assert getattr(stored, name) == pytest.approx(fitted[name], rel=1e-6)
    assert result["tables"]["v3_trace_wgrad"]["median_pct"] <= 15.0
    # the acceptance check's limit for published tables (../shared/checks/kernels): 20%
    assert result["tables"]["v3_trace_memory_bound"]["median_pct"] <= 20.0
    assert result["tables"]["v3_trace_norm_rope"]["median_pct"] <= 20.0


def test_norms_and_rope_are_their_own_family() -> None:
    """RMSNorm and RoPE rows fit ``norm_rope``; casts and attention pre/post stay ``memory_bound``;
    no kernel instance is in both tables, and none is lost by the split."""
    rows = published.memory_trace_rows()
    norm = [r for r in rows if r.family == "norm_rope"]
    rest = [r for r in rows if r.family == "memory_bound"]
    assert len(norm) + len(rest) == len(rows) and norm and rest
    assert all(r.key[0].startswith(("ln_fwd", "ln_bwd", "rotary")) for r in norm)
    assert all(r.table == "v3_trace_norm_rope" for r in norm)
    assert not any(r.key[0].startswith(("ln_", "rotary")) for r in rest)


def test_training_and_serving_charge_norms_to_norm_rope() -> None:
    """The simulators time RMSNorm and RoPE with the ``norm_rope`` fit (slower on H800)."""
    from sim import timing

    slow = timing.memory_time("H800", 1e8, family="norm_rope")
    fast = timing.memory_time("H800", 1e8, family="memory_bound")
    assert slow.predicted_s > 1.5 * fast.predicted_s
    # a device file without the family borrows its memory_bound fit first (the CPU file has
    # neither, so both fall to its "memory" fit)
    import gpus
    from kernels_numba import validate

    cpu = gpus.cpu_profile_from_calibration(validate.device_file())
    assert timing.memory_time(cpu, 1e8, family="norm_rope").predicted_s == pytest.approx(
        timing.memory_time(cpu, 1e8, family="memory_bound").predicted_s
    )
