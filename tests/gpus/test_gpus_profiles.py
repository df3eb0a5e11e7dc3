"""Every shipped profile loads; the export-control variants differ from their parents where the
sources say they do. Each reference figure names its source; tolerances are stated."""

from __future__ import annotations

import copy
import json
import math
import pickle

import pytest

import gpus

REQUIRED = ("H100", "H800", "H20", "A800")


def test_required_profiles_are_listed_first_in_contract_order():
    assert gpus.names()[:4] == list(REQUIRED)


@pytest.mark.parametrize("name", gpus.names())
def test_every_profile_loads_with_sources(name):
    profile = gpus.get(name)
    assert profile.name == name
    assert profile.sm_count > 0 and profile.clock_hz > 0
    assert profile.hbm_bytes > 0 and profile.hbm_bandwidth_bytes_per_s > 0
    assert profile.peak_flops_per_s
    for value in profile.peak_flops_per_s.values():
        assert math.isfinite(value) and value > 0  # absent formats are absent, never 0
    if profile.data_file.endswith(".toml"):
        assert "bf16" in profile.peak_flops_per_s or "fp16" in profile.peak_flops_per_s
        # every figure of a data file carries its source
        for attr in ("sm_count", "clock_hz", "hbm_bytes", "hbm_bandwidth_bytes_per_s", "l2_bytes",
                     "nvlink_bandwidth_bytes_per_s_per_direction", "tdp_w", "node.nics_per_node",
                     "price.usd_per_gpu_hour", "price.usd_per_gpu_hour_low", "price.usd_per_gpu_hour_high"):
            assert profile.sources[attr], attr
        for dtype in profile.peak_flops_per_s:
            assert profile.sources[f"peak_flops_per_s.{dtype}"]
        assert profile.price.date
    price = profile.price
    assert price.usd_per_gpu_hour_low <= price.usd_per_gpu_hour <= price.usd_per_gpu_hour_high
    json.dumps(profile.to_dict())


def test_profiles_are_frozen_hashable_and_copyable():
    h800 = gpus.get("H800")
    with pytest.raises(AttributeError):
        h800.tdp_w = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        h800.peak_flops_per_s["fp4"] = 1.0  # type: ignore[index]
    assert hash(h800) == hash(gpus.get("h800"))
    assert pickle.loads(pickle.dumps(h800)) == h800
    assert copy.deepcopy(h800) == h800


def test_h800_matches_h100_compute_but_not_links_or_fp64():
    h100, h800 = gpus.get("H100"), gpus.get("H800")
    # Ant Group H20-vs-H800 table and NVIDIA H100 datasheet (dense): BF16 989.5, FP8 1979 TFLOPS on both.
    for dtype in ("bf16", "fp8"):
        assert h800.peak_flops(dtype) == h100.peak_flops(dtype)
    assert h800.peak_flops("bf16") == pytest.approx(989.5e12, rel=1e-9)
    assert h800.peak_flops("fp8") == pytest.approx(1979e12, rel=1e-9)
    # DeepEP #16 (DeepSeek): H800 NVLink "nominal 200GB/s" per direction; H100 datasheet 900 GB/s both ways.
    assert h800.nvlink_bandwidth_bytes_per_s_per_direction == 200e9
    assert h100.nvlink_bandwidth_bytes_per_s_per_direction == 450e9
    # Distributor sheets: H800 FP64 ~1 TFLOPS; H100 datasheet FP64 tensor 67 (vector 34).
    assert h800.peak_flops("fp64") == pytest.approx(1e12, rel=0.05)
    assert h100.peak_flops("fp64") in (pytest.approx(67e12, rel=0.01), pytest.approx(34e12, rel=0.02))
    # Same HBM3 (H100 datasheet, FlashMLA deep-dive: 3.35 TB/s; nvidia-smi 81559 MiB on both).
    assert h800.hbm_bandwidth_bytes_per_s == h100.hbm_bandwidth_bytes_per_s == 3.35e12
    assert h800.hbm_bytes == h100.hbm_bytes == 81559 * 2**20


def test_h20_figures():
    h20 = gpus.get("H20")
    # Ant Group / LMSYS 2025-09-26 table: BF16 148, FP8 296 dense TFLOPS, 96 GB, 4000 GB/s, NVLink 900 GB/s.
    assert h20.peak_flops("bf16") == pytest.approx(148e12, rel=1e-9)
    assert h20.peak_flops("fp8") == pytest.approx(296e12, rel=1e-9)
    assert h20.hbm_marketed_bytes == pytest.approx(96e9, rel=1e-9)
    assert h20.hbm_bytes == 97871 * 2**20  # nvidia-smi 'NVIDIA H20, 97871 MiB'
    assert h20.hbm_bandwidth_bytes_per_s == pytest.approx(4.0e12, rel=1e-9)
    assert h20.nvlink_bandwidth_bytes_per_s_per_direction == 450e9
    # Ant Group: 4 x 400 Gb/s RDMA per 8-GPU node (H800: 8 x 400) -> 25 vs 50 GB/s per GPU.
    assert h20.node.nics_per_node == 4
    assert h20.scale_out_bandwidth_bytes_per_s_per_gpu == pytest.approx(25e9)
    assert gpus.get("H800").scale_out_bandwidth_bytes_per_s_per_gpu == pytest.approx(50e9)
    # About 15% of H100's tensor throughput (DESIGN.md; 148 / 989.5 = 0.150).
    assert h20.peak_flops("bf16") / gpus.get("H100").peak_flops("bf16") == pytest.approx(0.15, abs=0.005)


def test_a800_lacks_fp8():
    a800 = gpus.get("A800")
    assert not a800.supports("fp8")
    assert not a800.supports("fp4")
    assert a800.supports("bf16") and a800.supports("bfloat16")
    assert a800.nearest_dtype("fp8") == "bf16"
    assert a800.nearest_dtype("fp4") == "bf16"
    assert "fp8" not in a800.peak_flops_per_s
    with pytest.raises(ValueError, match=r"no fp8 peak.*it has: fp64, fp32, tf32, bf16, fp16, int8"):
        a800.peak_flops("fp8")
    # A100 datasheet (Klockwood): BF16 312 dense; eeNews/Reuters: NVLink 400 GB/s both ways (A100: 600).
    assert a800.peak_flops("bf16") == pytest.approx(312e12)
    assert a800.nvlink_bandwidth_bytes_per_s_per_direction == 200e9


def test_nearest_dtype_on_hopper():
    h800 = gpus.get("H800")
    assert h800.nearest_dtype("fp4") == "fp8"
    assert h800.nearest_dtype("fp8") == "fp8"
    assert h800.supports("float8_e4m3fn")
    with pytest.raises(ValueError, match="unknown number format 'fp7'"):
        h800.supports("fp7")


def test_deepseek_price_convention():
    # DeepSeek-V3 report Table 1 and the Feb-2025 inference post: $2 per H800 GPU-hour.
    price = gpus.get("H800").price
    assert price.usd_per_gpu_hour == 2.0
    assert "2412.19437" in price.source


@pytest.mark.parametrize("alias", ["h800", "H800", "H800-SXM5", "H800 SXM", "nvidia h800", "NVIDIA H800",
                                   "h800_sxm5", "  H800  sxm5 ", "NVIDIA H800 SXM5 80GB"])
def test_aliases(alias):
    assert gpus.get(alias).name == "H800"


@pytest.mark.parametrize(("alias", "name"), [
    ("NVIDIA H100 80GB HBM3", "H100"), ("h100-sxm5", "H100"), ("H20-96G", "H20"),
    ("NVIDIA A800-SXM4-80GB", "A800"), ("a800 sxm4", "A800"),
])
def test_driver_names_and_variants(alias, name):
    assert gpus.get(alias).name == name


def test_get_passes_profiles_through():
    h20 = gpus.get("H20")
    assert gpus.get(h20) is h20


@pytest.mark.parametrize("bad", ["H900", "", "nvidia", 42, None])
def test_unknown_name_lists_known_names(bad):
    with pytest.raises(ValueError) as info:
        gpus.get(bad)  # type: ignore[arg-type]
    for known in REQUIRED:
        assert known in str(info.value)


def test_ridge_point():
    # H800: 989.5e12 / 3.35e12 = 295 FLOP per byte (BF16).
    assert gpus.get("H800").ridge_point_flop_per_byte("bf16") == pytest.approx(295.4, rel=1e-3)


def test_low_confidence_figures_are_marked():
    # No public datasheet exists for H800, H20, A800 or the Ascend 910B (reference gpu_specs.md §7):
    # each of them marks some figures as secondary, assumed or low.
    for name in ("H800", "H20", "A800", "Ascend-910B"):
        levels = set(gpus.get(name).confidence.values())
        assert levels & {"secondary", "assumed", "low", "derived"}, name
    assert gpus.get("Ascend-910B").confidence["hbm_bandwidth_bytes_per_s"] == "low"
    assert gpus.get("H20").confidence["sm_count"] == "low"


def test_formats_absent_on_other_vendors():
    ascend = gpus.get("Ascend-910B")
    for dtype in ("fp64", "tf32", "fp8", "fp4"):
        assert not ascend.supports(dtype)
    assert ascend.nearest_dtype("fp8") == "bf16"
    assert ascend.nearest_dtype("fp64") == "fp32"
    # AMD MI300X data sheet: FP8 2,614.9 dense TFLOPS, no FP4 on CDNA 3.
    mi300x = gpus.get("MI300X")
    assert mi300x.peak_flops("fp8") == pytest.approx(2614.9e12)
    assert mi300x.nearest_dtype("fp4") == "fp8"
    # NVIDIA HGX B200 page: FP4 72 PFLOPS dense per 8 GPUs = 9 PFLOPS each.
    assert gpus.get("B200").peak_flops("fp4") == pytest.approx(9e15)


def test_price_ranges_and_purchase():
    # DeepSeek-V3 Table 1: $2 per H800 GPU-hour; SemiAnalysis (2024): ~$12,000 per H20.
    assert gpus.get("H20").price.purchase_usd_per_gpu == 12000
    assert gpus.get("A800").price.purchase_usd_per_gpu is None
    for name in gpus.names():
        price = gpus.get(name).price
        assert price.usd_per_gpu_hour_low <= price.usd_per_gpu_hour <= price.usd_per_gpu_hour_high
