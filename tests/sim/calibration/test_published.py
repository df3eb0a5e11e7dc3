"""DeepSeek's published H800 tables and the V3 training trace: parsing, fits, held-out scores, files."""

from __future__ import annotations

import pytest

from sim import calibration as cal
from sim import comm
from sim.calibration import published


def test_published_tables_use_newest_versions() -> None:
    records = published.load_reference()
    gemm = {r.key: r for r in published.gemm_rows(records)}
    grouped = published.grouped_rows(records)
    assert len(gemm) == 18 and len(grouped) == 10
    # DeepGEMM 2025-04-09 table (deepseek_figures.md 4.1): 4096x7168x16384 at 1520 TFLOPS (v1 was 1358)
    assert gemm[(4096, 7168, 16384)].measured_s == pytest.approx(2 * 4096 * 7168 * 16384 / 1520e12)
    rows = published.deepep_rows()
    assert len(rows) == 20
    # DeepEP after 2025-04-22: internode EP32 dispatch 58 GB/s (launch: 44)
    ep32 = next(r for r in rows if r.key == ("normal", 32, "dispatch"))
    assert ep32.shape["rdma_bytes"] / ep32.measured_s == pytest.approx(58e9)

def test_h800_held_out_targets() -> None:
    """Issue 3: H800 GEMM and grouped GEMM held-out median error at most 20% per table."""
    result = published.fit_and_score()
    assert result["tables"]["deepgemm_gemm"]["median_pct"] <= 20
    assert result["tables"]["deepgemm_grouped_gemm"]["median_pct"] <= 20
    for family in result["families"].values():
        params = family["published"]
        assert params["compute_efficiency"] <= 1.0 and params["memory_efficiency"] <= 1.0

def test_committed_h800_file_matches_a_fresh_fit() -> None:
    """gpus/calibration/h800.json holds exactly what the fit produces (no hand edits)."""
    committed = cal.find_calibration(["H800"])
    assert committed is not None
    fresh = published.fit_and_score()
    for family, per_impl in fresh["families"].items():
        for name in cal.PARAMETER_NAMES:
            assert committed["families"][family]["published"][name] == pytest.approx(
                per_impl["published"][name], rel=1e-6
            )
    for kind in ("nvlink", "ib"):
        contains = committed["links"][kind]["low_latency_kernel_contains"]
        assert contains == fresh["links"][kind]["low_latency_kernel_contains"]
    # DeepEP's 2025-06 low-latency combine is timed zero-copy (tests/test_low_latency.py since
    # dcaf73e): its staging copy is outside the table time, the send and receive phases inside
    assert committed["links"]["ib"]["low_latency_kernel_contains"] == [
        "dispatch_send",
        "dispatch_recv",
        "combine_recv",
    ]

def test_vintage_tables_change_only_the_figures_later_versions_changed() -> None:
    """As of 2025-02 (deepseek_figures.md 4.1-4.3): DeepGEMM v1, FlashMLA at launch, DeepEP at launch."""
    records = published.load_reference()
    old = published.vintage("2025-02")
    new = {r.key: r for r in published.gemm_rows(records)}
    feb = {r.key: r for r in published.gemm_rows(records, old)}
    assert feb[(4096, 7168, 16384)].measured_s == pytest.approx(2 * 4096 * 7168 * 16384 / 1358e12)
    assert new[(4096, 7168, 16384)].measured_s == pytest.approx(2 * 4096 * 7168 * 16384 / 1520e12)
    assert feb[(64, 2112, 7168)].measured_s == new[(64, 2112, 7168)].measured_s  # M = 64: unchanged
    grouped = {r.key: r for r in published.grouped_rows(records, old)}
    assert grouped[("contiguous", 4, 8192, 4096, 7168)].measured_s == pytest.approx(
        2 * 4 * 8192 * 4096 * 7168 / 1297e12
    )
    masked = grouped[("masked", 1, 1024, 4096, 7168)]
    assert masked.measured_s == pytest.approx(2 * 1024 * 4096 * 7168 / 1233e12)
    mla = {r.key[0]: r for r in published.flashmla_rows(records, old)}
    mla_new = {r.key[0]: r for r in published.flashmla_rows(records)}
    assert mla["compute"].measured_s == pytest.approx(mla_new["compute"].measured_s * 660 / 580)
    assert mla["memory"].measured_s == mla_new["memory"].measured_s
    ep = {r.key: r for r in published.deepep_rows(old)}
    ep32 = ep[("normal", 32, "dispatch")]
    assert ep32.shape["rdma_bytes"] / ep32.measured_s == pytest.approx(44e9)
    ll8 = ep[("low_latency", 8, "dispatch")]
    assert ll8.measured_s == pytest.approx(163e-6)
    assert ll8.shape["nvlink_bytes"] == 0.0 and ll8.shape["rdma_bytes"] > 0  # pure RDMA then
    with pytest.raises(ValueError, match="known: 2025-02"):
        published.vintage("2024-12")

def test_committed_vintage_file_matches_a_fresh_fit_and_lends_to_no_other_gpu() -> None:
    committed = cal.find_calibration(["H800@2025-02"])
    assert committed is not None and committed["device"] == "H800@2025-02"
    assert committed["applies_to_architectures"] == [] and committed["reference_for_other_gpus"] is False
    fresh = published.fit_and_score(as_of="2025-02")
    for family, per_impl in fresh["families"].items():
        for name in cal.PARAMETER_NAMES:
            assert committed["families"][family]["published"][name] == pytest.approx(
                per_impl["published"][name], rel=1e-6
            )
    assert committed["links"]["ib"]["bandwidth_bytes_per_s"] == pytest.approx(
        fresh["links"]["ib"]["bandwidth_bytes_per_s"], rel=1e-6
    )
    # the launch test (@ebfe47e) times the combine with its staging copy: every phase is inside
    for kind in ("nvlink", "ib"):
        assert committed["links"][kind]["low_latency_kernel_contains"] == list(comm.LOW_LATENCY_PHASES)
        assert fresh["links"][kind]["low_latency_kernel_contains"] == list(comm.LOW_LATENCY_PHASES)
    # the older tables are slower where they differ: lower fitted efficiencies
    newest = cal.find_calibration(["H800"])
    assert newest is not None
    for family in ("gemm", "attention_decode"):
        assert (
            committed["families"][family]["published"]["compute_efficiency"]
            < newest["families"][family]["published"]["compute_efficiency"]
        )

def test_published_cli_writes_a_vintage_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert published.main(["--as-of", "2025-02"]) == 0
    assert "tables as of 2025-02" in capsys.readouterr().out
    assert published.main(["--as-of", "1999-01"]) == 2
    assert "known: 2025-02" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        published.main(["--write"])

def test_v3_training_trace_cross_checks() -> None:
    """Level-3 cross-check (not fitted): the H800 model against DeepSeek's V3 training trace
    (deepseek-ai/profile-data train.json; deepseek_figures.md 1.7). Tolerance 25% of the middle of
    each kernel's time range (the ranges themselves span +-3% to +-21%)."""
    checks = published.trace_cross_checks()
    assert set(checks) == {"mla_attention_fwd", "expert_gemm_gate_up", "expert_gemm_down"}
    for name, check in checks.items():
        assert check["error_vs_middle_pct"] <= 25, (name, check)
