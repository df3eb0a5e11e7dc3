"""Tests of sim.timing: roofline, wave quantisation, calibration lookup, errors."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import calibration as cal
from sim import timing


@dataclasses.dataclass(frozen=True)
class FakeGPU:
    """A made-up device with round numbers (not a real part), so the arithmetic is checkable."""

    name: str = "Fake-1"
    architecture: str = "testarch"
    aliases: tuple[str, ...] = ()
    vendor: str = "NVIDIA"
    sm_count: int = 100
    hbm_bandwidth_bytes_per_s: float = 1e12
    peaks: tuple[tuple[str, float], ...] = (("bf16", 1e15), ("fp8", 2e15), ("fp32", 1e14))
    vector_bytes: float = 0.0  # a SIMD width, as CPU profiles have (0: none / unknown)

    def peak_flops(self, dtype: str) -> float:
        table = dict(self.peaks)
        if dtype not in table:
            raise ValueError(f"no {dtype}")
        return table[dtype]

    def supports(self, dtype: str) -> bool:
        return dtype in dict(self.peaks)

    def nearest_dtype(self, dtype: str) -> str:
        return "bf16"


GPU = FakeGPU()
DEFAULT = cal.default_params("gpu")


def used_params(t: timing.OpTime) -> cal.FamilyParams:
    """The parameters behind ``t``: a GPU without its own file uses the reference (H800) fit."""
    if t.calibration == "default":
        return DEFAULT
    reference = cal.find_calibration(["H800"])
    found = (
        cal.family_params(reference, t.family)
        or cal.family_params(reference, "memory")
        or cal.family_params(reference, "gemm")
    )
    assert found is not None
    return found


def test_gemm_roofline_compute_bound() -> None:
    t = timing.gemm_time(GPU, 8192, 8192, 8192, "bf16")
    flops = 2 * 8192**3
    assert t.flops == flops
    assert t.roofline_s == pytest.approx(flops / 1e15)
    assert t.bound_by == "compute"
    # efficiencies at most 1: never faster than the roofline, plus a launch time
    assert t.predicted_s >= t.roofline_s + used_params(t).launch_s * 0.999
    assert t.measured_s is None


def test_gemm_roofline_memory_bound_decode() -> None:
    t = timing.gemm_time(GPU, 1, 8192, 8192, "bf16")
    bytes_moved = (8192 + 8192 * 8192 + 8192) * 2
    assert t.bytes_moved == bytes_moved
    assert t.roofline_s == pytest.approx(bytes_moved / 1e12)
    assert t.bound_by in ("memory", "latency")


def test_wave_quantisation_one_extra_row_costs_a_wave() -> None:
    # 100 SMs. m = 1280 = 10 tiles of 128; n = 2560 with 256-wide tiles: 100 tiles = one wave.
    fast = FakeGPU(hbm_bandwidth_bytes_per_s=1e18)  # make memory negligible
    full = timing.gemm_time(fast, 1280, 2560, 65536, "bf16")
    over = timing.gemm_time(fast, 1281, 2560, 65536, "bf16")
    assert full.compute_s == pytest.approx(full.roofline_s, rel=1e-9)
    # best tiling for 1281 rows: 11 x 40 tiles of 128x64 = 440 tiles = 5 waves of 100
    padded = 5 * 100 * 128 * 64 * 2 * 65536 / 1e15
    assert over.compute_s == pytest.approx(padded, rel=1e-9)
    p = used_params(over)
    expected = p.launch_s + cal.combine(
        padded / p.compute_efficiency, over.memory_s / p.memory_efficiency, p.overlap_exponent
    )
    assert over.predicted_s == pytest.approx(expected, rel=1e-9)
    assert over.roofline_s < 1.01 * full.roofline_s


def test_unsupported_dtype_uses_nearest() -> None:
    fp4 = timing.gemm_time(GPU, 4096, 4096, 4096, "fp4")
    bf16 = timing.gemm_time(GPU, 4096, 4096, 4096, "bf16")
    assert fp4.roofline_s == pytest.approx(bf16.roofline_s)


def test_grouped_gemm_skew_costs_more_than_balanced() -> None:
    fast = FakeGPU(hbm_bandwidth_bytes_per_s=1e18)  # compute-bound, so quantisation shows
    balanced = timing.grouped_gemm_time(fast, [512] * 8, 4096, 4096)
    skewed = timing.grouped_gemm_time(fast, [3648, 64, 64, 64, 64, 64, 64, 64], 4096, 4096)
    assert balanced.flops == skewed.flops
    assert skewed.predicted_s > balanced.predicted_s


def test_grouped_gemm_empty_groups_read_no_weights() -> None:
    a = timing.grouped_gemm_time(GPU, [100, 0, 0, 0], 1024, 1024)
    b = timing.grouped_gemm_time(GPU, [100], 1024, 1024)
    assert a.bytes_moved == b.bytes_moved


def test_attention_causal_pairs_closed_form() -> None:
    assert timing.causal_pairs(4, 4, True) == 10
    assert timing.causal_pairs(2, 5, True) == 4 + 5
    assert timing.causal_pairs(3, 7, False) == 21
    brute = sum(min(7, max(0, 7 - 3 + i + 1)) for i in range(3))
    assert timing.causal_pairs(3, 7, True) == brute


def test_attention_families_and_kv_bytes() -> None:
    prefill = timing.attention_time(GPU, 1, 4096, 4096, 128, 192, 128, True, "bf16")
    assert prefill.family == "attention_prefill"
    assert prefill.flops == pytest.approx(2 * 128 * (4096 * 4097 / 2) * 320)
    decode = timing.attention_time(
        GPU, 64, 1, 4096, 128, 576, 512, True, "bf16", kv_bytes=64 * 4096 * 576 * 2
    )
    assert decode.family == "attention_decode"
    assert decode.bytes_moved == pytest.approx(64 * 128 * 1088 * 2 + 64 * 4096 * 576 * 2)


def test_memory_time_is_bandwidth_plus_launch() -> None:
    t = timing.memory_time(GPU, 1e9)
    assert t.roofline_s == pytest.approx(1e-3)
    p = used_params(t)
    assert t.predicted_s == pytest.approx(p.launch_s + 1e-3 / p.memory_efficiency, rel=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: timing.gemm_time(GPU, 0, 1, 1), "m must be a positive whole number"),
        (lambda: timing.gemm_time(GPU, 1, 1, 1, "fp7"), "unknown dtype"),
        (lambda: timing.grouped_gemm_time(GPU, [], 8, 8), "group_sizes"),
        (lambda: timing.memory_time(GPU, -1), "bytes_moved must be a finite number >= 0"),
        (lambda: timing.gemm_time(object(), 1, 1, 1), "gpu must be"),
        (lambda: timing.gating_time(GPU, 10, 8, 9), "top_k"),
    ],
)
def test_bad_input_raises(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


NAN, INF = math.nan, math.inf


def _attention_kv(kv_bytes: Any) -> timing.OpTime:
    return timing.attention_time(GPU, 1, 1, 10, 1, 64, 64, kv_bytes=kv_bytes)


@pytest.mark.parametrize(
    "call, match",
    [
        # bytes and FLOPs: finite numbers >= 0, named
        (lambda: timing.memory_time(GPU, NAN), r"bytes_moved must be a finite number >= 0, got nan"),
        (lambda: timing.memory_time(GPU, INF), r"bytes_moved must be a finite number >= 0, got inf"),
        (lambda: timing.memory_time(GPU, -INF), r"bytes_moved must be a finite number >= 0"),
        (lambda: timing.memory_time(GPU, "100"), r"bytes_moved must be a finite number >= 0, got '100'"),
        (lambda: timing.memory_time(GPU, None), r"bytes_moved must be a finite number >= 0, got None"),
        (lambda: timing.memory_time(GPU, True), r"bytes_moved must be a finite number >= 0"),
        (lambda: timing.memory_time(GPU, 100, flops=NAN), r"flops must be a finite number >= 0, got nan"),
        (lambda: timing.memory_time(GPU, 100, flops=INF), r"flops must be a finite number >= 0, got inf"),
        (lambda: timing.memory_time(GPU, 100, flops=-1), r"flops must be a finite number >= 0, got -1"),
        (lambda: _attention_kv(NAN), r"kv_bytes must be .* got nan"),
        (lambda: _attention_kv(INF), r"kv_bytes must be .* got inf"),
        (lambda: _attention_kv(-1), r"kv_bytes must be .* got -1"),
        (lambda: _attention_kv("1"), r"kv_bytes must be .* got '1'"),
    ],
)
def test_bytes_and_flops_must_be_finite_non_negative(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


LAUNCH_CALLS = {
    "grouped_gemm_time": lambda launches: timing.grouped_gemm_time(GPU, [8, 0], 8, 8, launches=launches),
    "gating_time": lambda launches: timing.gating_time(GPU, 4, 8, 2, launches=launches),
    "permute_time": lambda launches: timing.permute_time(GPU, 4, 8, 2, launches=launches),
    "memory_time": lambda launches: timing.memory_time(GPU, 100, launches=launches),
}


@pytest.mark.parametrize("function", sorted(LAUNCH_CALLS))
@pytest.mark.parametrize("launches", [-5, 0, 2.5, NAN, INF, None, "3", True])
def test_launches_must_be_a_positive_whole_number(function: str, launches: Any) -> None:
    with pytest.raises(ValueError, match=r"launches must be a positive whole number, got "):
        LAUNCH_CALLS[function](launches)


@pytest.mark.parametrize("function", sorted(LAUNCH_CALLS))
def test_launches_valid_forms_unchanged(function: str) -> None:
    # whole floats and numpy integers are accepted, as before, and cost what the int does
    reference = LAUNCH_CALLS[function](3)
    for same in (3.0, np.int64(3)):
        assert LAUNCH_CALLS[function](same).predicted_s == reference.predicted_s
    one = LAUNCH_CALLS[function](1)
    assert reference.predicted_s > one.predicted_s


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: timing.gemm_time(GPU, NAN, 1, 1), r"m must be a positive whole number, got nan"),
        (lambda: timing.gemm_time(GPU, INF, 1, 1), r"m must be a positive whole number, got inf"),
        (lambda: timing.gemm_time(GPU, None, 1, 1), r"m must be a positive whole number, got None"),
        (lambda: timing.gemm_time(GPU, 1.5, 1, 1), r"m must be a positive whole number, got 1.5"),
        (lambda: timing.gemm_time(GPU, "8", 1, 1), r"m must be a positive whole number, got '8'"),
        (lambda: timing.gemm_time(GPU, True, 1, 1), r"m must be a positive whole number, got True"),
        (lambda: timing.gemm_time(GPU, np.True_, 1, 1), r"m must be a positive whole number"),
        (lambda: timing.gemm_time(GPU, 1, -3, 1), r"n must be a positive whole number, got -3"),
        (lambda: timing.gemm_time(GPU, 1, 1, NAN), r"k must be a positive whole number, got nan"),
        (lambda: timing.gemm_time(GPU, 1, 1, 1, batch=NAN), r"batch must be a positive whole number"),
        (lambda: timing.attention_time(GPU, NAN, 1, 1, 1, 1, 1), r"batch must be a positive whole number"),
        (lambda: timing.attention_time(GPU, 1, INF, 1, 1, 1, 1), r"q_len must be a positive whole number"),
        (lambda: timing.attention_time(GPU, 1, 1, None, 1, 1, 1), r"kv_len must be a positive whole number"),
        (lambda: timing.attention_time(GPU, 1, 1, 1, 1, NAN, 1), r"qk_head_dim must be a positive whole"),
        (lambda: timing.gating_time(GPU, NAN, 8, 2), r"num_tokens must be a positive whole number, got nan"),
        (lambda: timing.gating_time(GPU, 4, INF, 2), r"num_experts must be a positive whole number"),
        (lambda: timing.gating_time(GPU, 4, 8, None), r"top_k must be a positive whole number, got None"),
        (lambda: timing.gating_time(GPU, 4, 8, 2, n_group=NAN), r"n_group must be a positive whole number"),
        (lambda: timing.permute_time(GPU, 4, NAN, 2), r"hidden must be a positive whole number, got nan"),
        (lambda: timing.permute_time(GPU, 4, 8, 2.5), r"top_k must be a positive whole number, got 2.5"),
        (lambda: timing.grouped_gemm_time(GPU, [8], NAN, 8), r"n must be a positive whole number, got nan"),
    ],
)
def test_dimensions_must_be_positive_whole_numbers(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_dimensions_accept_whole_floats_and_numpy_integers_unchanged() -> None:
    reference = timing.gemm_time(GPU, 128, 256, 512)
    assert timing.gemm_time(GPU, 128.0, np.int64(256), np.int32(512)) == reference


@pytest.mark.parametrize(
    "group_sizes, match",
    [
        ([1.7, 0.6], r"group_sizes\[0\] must be a whole number >= 0, got 1.7"),
        ([4, 0.5], r"group_sizes\[1\] must be a whole number >= 0, got 0.5"),
        ([4, -1], r"group_sizes\[1\] must be a whole number >= 0, got -1"),
        ([4, NAN], r"group_sizes\[1\] must be a whole number >= 0, got nan"),
        ([INF], r"group_sizes\[0\] must be a whole number >= 0, got inf"),
        ([4, None], r"group_sizes\[1\] must be a whole number >= 0, got None"),
        ([True, 2], r"group_sizes\[0\] must be a whole number >= 0, got True"),
        (5, r"group_sizes must be a sequence of whole numbers >= 0 .*got int 5"),
        (None, r"group_sizes must be a sequence of whole numbers"),
        ("12", r"group_sizes must be a sequence of whole numbers .*got str '12'"),
        ([], r"group_sizes must be .* with a positive sum"),
        ([0, 0], r"group_sizes must be .* with a positive sum"),
    ],
)
def test_group_sizes_must_be_whole_numbers(group_sizes: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        timing.grouped_gemm_time(GPU, group_sizes, 8, 8)


def test_group_sizes_accept_empty_groups_whole_floats_and_arrays_unchanged() -> None:
    reference = timing.grouped_gemm_time(GPU, [100, 0, 3], 1024, 1024)
    assert timing.grouped_gemm_time(GPU, (100.0, 0.0, 3.0), 1024, 1024) == reference
    assert timing.grouped_gemm_time(GPU, np.array([100, 0, 3]), 1024, 1024) == reference


@pytest.mark.parametrize(
    "q_len, kv_len, match",
    [
        (-5, 10, r"q_len must be a whole number >= 0, got -5"),
        (5, -10, r"kv_len must be a whole number >= 0, got -10"),
        (NAN, 10, r"q_len must be a whole number >= 0, got nan"),
        (5, INF, r"kv_len must be a whole number >= 0, got inf"),
        (2.5, 10, r"q_len must be a whole number >= 0, got 2.5"),
        (None, 10, r"q_len must be a whole number >= 0, got None"),
    ],
)
@pytest.mark.parametrize("causal", [True, False])
def test_causal_pairs_rejects_bad_lengths(q_len: Any, kv_len: Any, match: str, causal: bool) -> None:
    with pytest.raises(ValueError, match=match):
        timing.causal_pairs(q_len, kv_len, causal)


def test_causal_pairs_zero_lengths_still_allowed() -> None:
    assert timing.causal_pairs(0, 5, True) == 0.0
    assert timing.causal_pairs(5, 0, False) == 0.0
    assert timing.causal_pairs(7, 3, True) == timing.causal_pairs(7.0, 3.0, True)


@pytest.mark.parametrize("phase", ["sideways", "", "Forward", None])
def test_gemm_family_rejects_unknown_phase(phase: Any) -> None:
    with pytest.raises(ValueError, match=r"phase must be one of forward, dgrad, wgrad, got "):
        timing.gemm_family(8, phase)


def test_op_time_dispatches_by_work() -> None:
    from moe.operators import Comm, Gemm, GroupedGemm, Memory, Op, OpKind

    g = timing.op_time(GPU, Op("q_proj", OpKind.DENSE_GEMM, Gemm(128, 256, 512, "bf16")))
    assert g.predicted_s == timing.gemm_time(GPU, 128, 256, 512).predicted_s
    w = timing.op_time(GPU, Gemm(512, 256, 128, "bf16", wgrad=True))
    assert w.predicted_s == timing.gemm_time(GPU, 512, 256, 128, phase="wgrad").predicted_s
    e = timing.op_time(GPU, Op("rmsnorm", OpKind.NORM, Memory(2e6, "norm_rope")))
    assert e.bytes_moved == 2e6 and e.family == "norm_rope"
    grouped = timing.op_time(GPU, GroupedGemm((64, 0, 32), 256, 128, "bf16"))
    assert grouped.predicted_s == timing.grouped_gemm_time(GPU, [64, 0, 32], 256, 128).predicted_s
    # the fast path of bandwidth-bound kernels (affine fit) agrees with the full model
    op = Op("cast", OpKind.FP8_CAST, Memory(3.3e7))
    assert timing.op_seconds(GPU, op) == pytest.approx(timing.op_time(GPU, op).predicted_s, rel=1e-12)
    with pytest.raises(ValueError, match="sim.comm"):
        timing.op_time(GPU, Op("dispatch", OpKind.EP_DISPATCH, Comm(64, 7168.0, 8)))


@settings(deadline=None, max_examples=25)
@given(m=st.integers(1, 5000), n=st.integers(1, 5000), k=st.integers(1, 5000))
def test_predicted_never_below_roofline_without_calibration(m: int, n: int, k: int) -> None:
    t = timing.gemm_time(GPU, m, n, k)
    assert t.predicted_s >= t.roofline_s
    assert math.isfinite(t.predicted_s)


def test_h800_uses_fitted_calibration_and_reports_measured() -> None:
    gpus = pytest.importorskip("gpus")
    if not hasattr(gpus, "get"):
        pytest.skip("gpus.get not available yet")
    data = cal.find_calibration(["H800"])
    assert data is not None and data["families"], "gpus/calibration/h800.json must hold fitted families"
    t = timing.gemm_time("H800", 4096, 24576, 1536, "fp8")
    assert t.calibration == "H800"
    # DeepGEMM README (2025-04-09 table): 1212 TFLOPS for this shape; the measured time is echoed back
    assert t.measured_s == pytest.approx(2 * 4096 * 24576 * 1536 / 1212e12, rel=1e-3)
    # a fit-half shape; the table's held-out p90 error is about 20%, so 25% bounds a fitted point
    assert t.predicted_s == pytest.approx(t.measured_s, rel=0.25)
    # H100 borrows the Hopper efficiencies of the H800 fit
    h100 = timing.gemm_time("H100", 4096, 7168, 16384, "fp8")
    assert "same architecture" in h100.calibration


def test_gpus_without_calibration_use_the_reference_efficiencies() -> None:
    gpus = pytest.importorskip("gpus")
    if "A800" not in gpus.names():
        pytest.skip("A800 profile not available")
    a800 = timing.gemm_time("A800", 4096, 4096, 4096, "bf16")
    h800 = timing.gemm_time("H800", 4096, 4096, 4096, "bf16")
    assert "reference efficiencies" in a800.calibration
    # the same achieved fraction of each part's own roofline-plus-quantisation
    assert a800.predicted_s / a800.compute_s == pytest.approx(h800.predicted_s / h800.compute_s, rel=0.05)


def test_wgrad_phase_uses_its_own_family_and_fp32_accumulation() -> None:
    fwd = timing.gemm_time("H800", 7168, 4096, 8192, "fp8")
    wgrad = timing.gemm_time("H800", 7168, 4096, 8192, "fp8", phase="wgrad")
    assert (fwd.family, wgrad.family) == ("gemm", "gemm_wgrad")
    assert wgrad.flops == fwd.flops
    # C is read and written in FP32 (8 bytes per element) instead of written once in BF16
    assert wgrad.bytes_moved - fwd.bytes_moved == pytest.approx(7168 * 4096 * (8.0 - 2.0))
    # the trace's wgrad kernels sustain less than the forward kernels (~650 vs ~900 TFLOPS)
    assert wgrad.predicted_s > fwd.predicted_s
    # dgrad is an ordinary GEMM
    assert timing.gemm_time("H800", 64, 64, 64, "fp8", phase="dgrad").family == "gemm"
    with pytest.raises(ValueError, match="phase must be one of"):
        timing.gemm_time("H800", 64, 64, 64, "fp8", phase="sideways")


def test_batched_gemm_costs_batch_products_in_op_time() -> None:
    from moe.operators import Gemm

    one = timing.gemm_time(GPU, 4096, 512, 128, "bf16")
    batched = timing.op_time(GPU, Gemm(4096, 512, 128, "bf16", batch=128))
    assert batched.flops == pytest.approx(128 * one.flops)
    assert batched.bytes_moved == pytest.approx(128 * one.bytes_moved)
    # one kernel: more than 100x one product (whole waves) and at most 128x
    assert 100 * one.predicted_s < batched.predicted_s <= 128 * one.predicted_s
    single = timing.gemm_time(GPU, 64, 64, 64, batch=1)
    assert single.predicted_s == timing.gemm_time(GPU, 64, 64, 64).predicted_s


def test_memory_bound_family_is_the_default_for_memory_time() -> None:
    t = timing.memory_time("H800", 117e6)
    assert t.family == "memory_bound"
    params = cal.family_params(cal.find_calibration(["H800"]), "memory_bound")
    assert params is not None
    assert t.predicted_s == pytest.approx(params.launch_s + t.memory_s / params.memory_efficiency, rel=1e-6)
    # a Hopper part without its own file inherits the H800 fit
    assert timing.memory_time("H100", 1e8).family == "memory_bound"
    assert timing.memory_time("H100", 1e8).calibration.startswith("H800")


def test_attention_backward_counts_five_matmuls() -> None:
    fwd = timing.attention_time("H800", 1, 4096, 4096, 128, 192, 128, True, "bf16")
    bwd = timing.attention_time("H800", 1, 4096, 4096, 128, 192, 128, True, "bf16", backward=True)
    assert bwd.family == "attention_backward"
    assert bwd.flops == pytest.approx(2.5 * fwd.flops)
    assert bwd.bytes_moved > 2 * fwd.bytes_moved
    # the V3 trace: FlashAttnBwd ~3.6-3.9 ms per layer (on the 112 SMs DeepEP leaves)
    assert 2.5 * fwd.predicted_s < bwd.predicted_s * 132 / 112 < 5.0e-3


def test_materialized_scores_is_its_own_family_with_a_fallback() -> None:
    fused = timing.attention_time("H800", 1, 512, 512, 8, 128, 128, True, "bf16")
    math_path = timing.attention_time(
        "H800", 1, 512, 512, 8, 192, 128, True, "bf16", materialized_scores=True
    )
    assert (fused.family, math_path.family) == ("attention_prefill", "attention_prefill_math")
    # all pairs computed (the mask is applied afterwards) and 3 fp32 passes over the scores
    assert math_path.flops == pytest.approx(2 * 8 * 512 * 512 * (192 + 128))
    assert math_path.calibration == "H800"  # no such family in h800.json: its attention_prefill chain


def test_gating_fused_default_counts_per_logit() -> None:
    # fused: (4 score + 1 bias + 3 groups + k=2) per logit over 4 x 16 logits; logits + outputs
    t = timing.gating_time(GPU, 4, 16, 2, "sigmoid", 4)
    assert t.flops == pytest.approx(4 * 16 * 10)
    assert t.bytes_moved == pytest.approx(4 * 16 * 4 + 4 * 2 * 12)


def test_gating_unfused_counts_top_k_passes_and_intermediates() -> None:
    # ungrouped: one top-k over rows of 16 (2 * 16 comparisons + k log2 k = 2 per row)
    plain = timing.gating_time(GPU, 4, 16, 2, "softmax", 1, launches=7, unfused=True)
    assert plain.flops == pytest.approx(4 * (2 * 16 + 2))
    # sigmoid group-limited: also top-2 inside every group (4 tokens x 4 groups of 4) and the
    # group top-k (topk_group 2 of 4); softmax group-limited takes a max per group instead
    sig = timing.gating_time(GPU, 4, 16, 2, "sigmoid", 4, launches=15, unfused=True, topk_group=2)
    soft = timing.gating_time(GPU, 4, 16, 2, "softmax", 4, launches=14, unfused=True, topk_group=2)
    group_topk = 4 * (2 * 4 + 2)
    assert soft.flops == pytest.approx(plain.flops + group_topk)
    assert sig.flops == pytest.approx(soft.flops + 16 * (2 * 4 + 2))
    # every intermediate is written and read back: more bytes than the fused kernel's
    fused = timing.gating_time(GPU, 4, 16, 2, "sigmoid", 4)
    assert sig.bytes_moved > soft.bytes_moved > plain.bytes_moved > 0
    assert sig.bytes_moved > 5 * fused.bytes_moved


def test_gating_unfused_softmax_on_rows_narrower_than_a_vector_runs_scalar() -> None:
    """A device with 64-byte vectors (16 fp32 lanes): softmax rows of 8 pay 4 scalar operations
    per element on top of the top-k; rows of 16 and more, sigmoid scoring, the fused kernel and a
    device of unknown width pay nothing extra."""
    wide = dataclasses.replace(GPU, name="Fake-simd", vector_bytes=64.0)
    narrow = timing.gating_time(wide, 4, 8, 2, "softmax", 1, launches=7, unfused=True)
    assert narrow.flops == pytest.approx(4 * (2 * 8 + 2) + 4 * 8 * timing.SCALAR_SOFTMAX_OPS_PER_ELEMENT)
    assert timing.SCALAR_SOFTMAX_OPS_PER_ELEMENT == 4
    unknown = timing.gating_time(GPU, 4, 8, 2, "softmax", 1, launches=7, unfused=True)
    assert unknown.flops == pytest.approx(4 * (2 * 8 + 2))
    full = timing.gating_time(wide, 4, 16, 2, "softmax", 1, launches=7, unfused=True)
    assert full.flops == pytest.approx(4 * (2 * 16 + 2))
    sigmoid = timing.gating_time(wide, 4, 8, 2, "sigmoid", 1, launches=7, unfused=True)
    assert sigmoid.flops == pytest.approx(4 * (2 * 8 + 2))
    fused = timing.gating_time(wide, 4, 8, 2, "softmax", 1)
    assert fused.flops == pytest.approx(timing.gating_time(GPU, 4, 8, 2, "softmax", 1).flops)
    assert narrow.bytes_moved == pytest.approx(unknown.bytes_moved)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_experts": 10, "n_group": 4}, "multiple of n_group"),
        ({"num_experts": 16, "n_group": 4, "topk_group": 5}, "topk_group"),
    ],
)
def test_gating_group_arguments_checked(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        timing.gating_time(GPU, 4, top_k=2, **kwargs)


def test_permute_unfused_counts_the_materialised_workspace() -> None:
    # combine: the T*k gathered rows are written to a workspace and read again by bmm
    fused = timing.permute_time(GPU, 8, 64, 2, "fp32", combine=True)
    unfused = timing.permute_time(GPU, 8, 64, 2, "fp32", combine=True, launches=3, unfused=True)
    assert unfused.flops == fused.flops == pytest.approx(2 * 8 * 2 * 64)
    assert unfused.bytes_moved == pytest.approx(3 * 16 * 64 * 4 + 8 * 64 * 4 + 16 * 16)
    assert fused.bytes_moved == pytest.approx((16 * 64 + 8 * 64) * 4 + 16 * 12)
    # permute: rows read and written, plus the int64 index tensors of the sort and scatter
    plain = timing.permute_time(GPU, 8, 64, 2, "fp32", launches=9, unfused=True)
    assert plain.bytes_moved == pytest.approx(2 * 16 * 64 * 4 + 16 * 88)


def test_one_row_gemm_is_the_gemv_family() -> None:
    """``m == 1`` runs a matrix-vector loop (``timing.gemm_family``): the ``gemv`` family; a
    device file without it (H800's tables start at 64 rows) borrows its ``gemm`` fit, so the
    prediction is the same as before; weight gradients stay ``gemm_wgrad``."""
    assert timing.gemm_family(1) == "gemv" and timing.gemm_family(2) == "gemm"
    assert timing.gemm_family(1, "wgrad") == "gemm_wgrad"
    one = timing.gemm_time("H800", 1, 7168, 2048, "fp8")
    assert one.family == "gemv"
    gemm = cal.family_params(cal.find_calibration(["H800"]), "gemm")
    assert gemm is not None and cal.family_params(cal.find_calibration(["H800"]), "gemv") is None
    body = cal.combine(
        one.compute_s / gemm.compute_efficiency, one.memory_s / gemm.memory_efficiency, gemm.overlap_exponent
    )
    assert one.predicted_s == pytest.approx(gemm.launch_s + body, rel=1e-9)


def test_cpu_writes_pay_write_allocate_gpus_do_not() -> None:
    """On a CPU each written byte also reads its line first: memory time (R + 2W) / (1.5 x the
    copy ceiling), which leaves a copy-like mix (R = W) as it was; a permute (writes k rows per
    token) then costs more memory time than the combine that reads them (writes one), at the
    same bytes. A GPU's memory time is bytes over bandwidth either way."""
    import gpus
    from kernels_numba import validate

    cpu = gpus.cpu_profile_from_calibration(validate.device_file())
    permute = timing.permute_time(cpu, 512, 1024, 8, "fp32")
    combine = timing.permute_time(cpu, 512, 1024, 8, "fp32", combine=True)
    bw = cpu.hbm_bandwidth_bytes_per_s
    rows = 512 * 8 * 1024 * 4.0
    assert permute.memory_s == pytest.approx((permute.bytes_moved + rows) / (1.5 * bw))
    assert combine.memory_s == pytest.approx((combine.bytes_moved + 512 * 1024 * 4.0) / (1.5 * bw))
    assert permute.memory_s > 1.4 * combine.memory_s
    copy_like = timing.memory_time(cpu, 1e8)  # no split given: counted as a copy
    assert copy_like.memory_s == pytest.approx(1e8 / bw)
    gpu_permute = timing.permute_time("H800", 512, 1024, 8, "fp32")
    h800_bw = gpus.get("H800").hbm_bandwidth_bytes_per_s
    assert gpu_permute.memory_s == pytest.approx(gpu_permute.bytes_moved / h800_bw)


def test_weights_move_as_stored_and_compute_runs_in_a_format_the_gpu_has():
    """MXFP4 experts on H100 (no FP4 tensor cores): weights read at 4 bits plus one E8M0 scale per 32
    values, products at the BF16 peak with BF16 activations; FP8 experts on A100 read one byte per
    weight and compute in BF16."""
    import gpus
    from moe.accounting import weight_scale_bytes

    groups, n, k = [4] * 8, 5760, 2880
    t = timing.grouped_gemm_time("H100", groups, n, k, "fp4", compute_dtype="bf16")
    rows = sum(groups)
    weights = 8 * n * k * (0.5 + 1 / 32)
    assert weight_scale_bytes("fp4") == 1 / 32
    assert t.bytes_moved == pytest.approx(rows * k * 2 + weights + rows * n * 2, rel=1e-12)
    assert t.compute_s >= 2.0 * rows * n * k / gpus.get("H100").peak_flops("bf16") - 1e-15
    a100 = timing.grouped_gemm_time("A100", groups, n, k, "fp8", compute_dtype="bf16")
    assert a100.bytes_moved == pytest.approx(rows * k * 2 + 8 * n * k * 1.0 + rows * n * 2, rel=1e-12)
    plain = timing.grouped_gemm_time("A100", groups, n, k, "fp8")  # the older call: bytes by compute format
    assert plain.bytes_moved > a100.bytes_moved


@pytest.mark.parametrize("n, k, standard_us, swapped_us", [(4096, 7168, 257, 154), (7168, 2048, 127, 84)])
def test_swap_ab_speedup_matches_deepgemms_h20_measurement(n, k, standard_us, swapped_us):
    """DeepGEMM PR #192 (H20, 16 groups of 32 rows, FP8 masked grouped GEMM): swap-AB takes 154 / 257
    and 84 / 127 of the standard kernel's time. Nothing is fitted to these figures (H20 borrows H800's
    efficiencies; the swapped tiles come from the kernels' shapes): the model's ratio is within 10 %."""
    standard = timing.grouped_gemm_time("H20", [32] * 16, n, k, "fp8")
    swapped = timing.grouped_gemm_time("H20", [32] * 16, n, k, "fp8", swap_ab=True)
    assert swapped.predicted_s / standard.predicted_s == pytest.approx(swapped_us / standard_us, rel=0.10)
    big = timing.grouped_gemm_time("H20", [96] * 16, n, k, "fp8", swap_ab=True)  # >= 64 rows: standard
    assert big.predicted_s == timing.grouped_gemm_time("H20", [96] * 16, n, k, "fp8").predicted_s
