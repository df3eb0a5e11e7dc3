"""The harness and the validation: file format, fixed split, fitting, published H800 tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kernels_numba import bench, published, validate
from sim import calibration as cal
from sim import comm


@pytest.fixture(scope="module")
def quick_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("calib") / "cpu-quick-test.json"
    bench.run(quick=True, out=path, threads=1, log=lambda line: None)
    return path


def test_bench_writes_a_complete_calibration_file(quick_file: Path) -> None:
    doc = json.loads(quick_file.read_text())
    assert doc["kind"] == "cpu" and doc["cores"] == 1 and doc["device"]
    assert {"numpy", "numba", "torch", "python"} <= set(doc["versions"])
    assert doc["ceilings"]["matmul_flops_per_s"]["fp32"] > 1e8
    assert doc["ceilings"]["copy_bytes_per_s"] > 1e8
    seen = {(r["family"], r["impl"]) for r in doc["measurements"]}
    for family in ("gemm", "grouped_gemm", "gating", "permute", "attention_prefill", "attention_decode"):
        assert {(family, "numba_cpu"), (family, "torch_cpu")} <= seen
    assert all(r["measured_s"] > 0 and r["runs"] >= 3 for r in doc["measurements"])
    for per_impl in doc["families"].values():
        for params in per_impl.values():
            fitted = [n for n in cal.PARAMETER_NAMES if n in params]
            assert len(fitted) <= 4


def test_validate_json_last_line(quick_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate.main(["--json", "--file", str(quick_file)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(last)
    assert {"device", "held_out", "published"} <= set(data)
    assert set(data["published"]) == {
        "deepgemm_gemm",
        "deepgemm_grouped_gemm",
        "flashmla",
        "deepep",
        "v3_trace_wgrad",
        "v3_trace_memory_bound",
        "v3_trace_norm_rope",
    }
    # one FlashAttnBwd shape in the trace: fitted on it, no held-out error
    assert set(data["fitted_only"]) == {"v3_trace_attention_bwd"}
    for summary in data["held_out"].values():
        assert summary["n"] >= 1 and summary["median_pct"] >= 0


def test_split_is_fixed_whole_shapes_and_alternating() -> None:
    keys = [(64, 1), (1, 2), (64, 1), (1, 2), (16, 0), (8, 3)]
    fit, held = cal.split_fit_holdout(keys)
    # sorted distinct: (1,2) (8,3) (16,0) (64,1) -> fit (1,2),(16,0); held (8,3),(64,1)
    assert [keys[i] for i in fit] == [(1, 2), (1, 2), (16, 0)]
    assert [keys[i] for i in held] == [(64, 1), (64, 1), (8, 3)]
    reverse_fit, _ = cal.split_fit_holdout(list(reversed(keys)))
    assert {list(reversed(keys))[i] for i in reverse_fit} == {keys[i] for i in fit}  # order-free


def test_fit_recovers_known_parameters() -> None:
    truth = cal.FamilyParams(
        launch_s=2e-5, compute_efficiency=0.6, memory_efficiency=0.8, overlap_exponent=3.0
    )
    rng = np.random.default_rng(5)
    compute = rng.uniform(1e-6, 1e-2, 40)
    memory = rng.uniform(1e-6, 1e-2, 40)
    measured = [cal.predict_seconds(truth, c, m) for c, m in zip(compute, memory, strict=True)]

    def predict(p: cal.FamilyParams, i: int) -> float:
        return cal.predict_seconds(p, compute[i], memory[i])

    fitted = cal.fit_params(predict, measured, list(range(0, 40, 2)), cal.FamilyParams(1e-5, 0.5, 0.5, 2.0))
    held = [predict(fitted, i) / measured[i] - 1 for i in range(1, 40, 2)]
    assert max(abs(e) for e in held) < 0.01


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


def _committed_cpu_file() -> Path:
    files = sorted(p for p in cal.calibration_dir().glob("cpu-*.json"))
    assert files, "this machine's calibration (gpus/calibration/cpu-*.json) must be committed"
    return files[0]


def test_committed_cpu_calibration_drives_sim_timing() -> None:
    """The CPU profile derived from the committed file gets fitted parameters and measured times."""
    import gpus
    from sim import timing

    path = _committed_cpu_file()
    doc = json.loads(path.read_text())
    profile = gpus.cpu_profile_from_calibration(path)
    record = next(
        r for r in doc["measurements"] if r["family"] == "gemm" and r["impl"] == doc["default_impl"]
    )
    s = record["shape"]
    t = timing.gemm_time(profile, s["m"], s["n"], s["k"], s["dtype"])
    assert t.measured_s == pytest.approx(record["measured_s"])
    assert t.calibration == doc["device"]
    assert set(doc["families"]) >= {
        "gemm",
        "grouped_gemm",
        "gating",
        "permute",
        "attention_prefill",
        "attention_decode",
    }


def test_validate_is_deterministic_on_committed_data(capsys: pytest.CaptureFixture[str]) -> None:
    path = _committed_cpu_file()
    validate.main(["--json", "--file", str(path)])
    first = capsys.readouterr().out.strip().splitlines()[-1]
    validate.main(["--json", "--file", str(path)])
    second = capsys.readouterr().out.strip().splitlines()[-1]
    assert first == second


def test_v3_training_trace_cross_checks() -> None:
    """Level-3 cross-check (not fitted): the H800 model against DeepSeek's V3 training trace
    (deepseek-ai/profile-data train.json; deepseek_figures.md 1.7). Tolerance 25% of the middle of
    each kernel's time range (the ranges themselves span +-3% to +-21%)."""
    checks = published.trace_cross_checks()
    assert set(checks) == {"mla_attention_fwd", "expert_gemm_gate_up", "expert_gemm_down"}
    for name, check in checks.items():
        assert check["error_vs_middle_pct"] <= 25, (name, check)


def test_rotation_sets_are_independent_draws() -> None:
    """Identical copies would let the branch predictor learn top-k's comparisons; every set
    after the first is its own draw (different values), deterministic under the seed."""
    from kernels_numba.shapes import grid

    case = next(c for c in grid(quick=True) if c.family == "gating")
    first = bench.make_inputs(case, np.random.default_rng([0, 3]))
    sets = bench.rotation_sets(case, first, 3, 0, 3)
    again = bench.rotation_sets(case, first, 3, 0, 3)
    assert len(sets) == 3 and sets[0] is first
    logits = [s["logits"] for s in sets]
    assert not np.array_equal(logits[0], logits[1]) and not np.array_equal(logits[1], logits[2])
    assert all(a.shape == b.shape for a, b in zip(logits, logits[1:], strict=False))
    assert np.array_equal(sets[2]["logits"], again[2]["logits"])


def test_torch_gating_family_fits_both_routing_variants() -> None:
    """One four-parameter torch gating fit over sigmoid group-limited, softmax group-limited and
    ungrouped routing: the grouped shapes of 1,024 tokens and more within 15% (committed data)."""
    path = cal.calibration_dir() / "cpu-amd-epyc.json"
    doc = json.loads(path.read_text())
    profile = validate.profile_for(doc, path)
    records = validate.groups(doc)[("gating", "torch_cpu")]
    _, _, _, pairs = validate.fit_group(profile, records, "cpu")
    checked = set()
    for record, (predicted, measured) in zip(records, pairs, strict=True):
        config = record["config"]
        if config["n_group"] > 1 and record["shape"]["num_tokens"] >= 1024:
            checked.add(config["scoring"])
            assert abs(predicted / measured - 1) < 0.15, (record["shape"], predicted, measured)
    assert checked == {"sigmoid", "softmax"}


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Intel(R) Xeon(R) Processor", "intel-xeon-processor"),
        ("AMD EPYC", "amd-epyc"),
        ("H800 SXM", "h800-sxm"),
        ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"),
        ("Core(TM) i9 / test", "core-i9-test"),
    ],
)
def test_device_key_makes_plain_file_stems(name: str, key: str) -> None:
    assert cal.device_key(name) == key


def test_this_machines_calibration_records_its_simd_level() -> None:
    """The file the bench writes on a CPU carries torch's SIMD level, which sets the gating
    model's scalar softmax rows; a file without it (measured before it was recorded) gives an
    unknown width rather than a guessed one."""
    import gpus

    for path in sorted(cal.calibration_dir().glob("cpu-*.json")):
        doc = json.loads(path.read_text())
        cpu = gpus.cpu_profile_from_calibration(path)
        if "cpu_capability" in doc:
            assert cpu.vector_bytes > 0 or doc["cpu_capability"] == "DEFAULT"
        else:
            assert cpu.vector_bytes == 0.0 and "vector_bytes" in cpu.notes


def test_warm_up_calls_every_rotation_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """No timed call may be the first write to its set's output buffer (first-touch page faults
    made a 1024 x 2048 x 512 torch GEMM read 32 ms instead of 13 ms over 16 sets): the warm-up
    runs each rotation set once, at least twice in all."""
    from kernels_numba.shapes import grid

    case = next(c for c in grid(quick=True) if c.family == "gemm")
    monkeypatch.setattr(bench, "rotation_copies", lambda inputs, llc, quick: 3)
    warmups: list[int] = []
    real = bench.time_cpu_clocks

    def spy(run, warmup=2, **kwargs):  # type: ignore[no-untyped-def]
        warmups.append(warmup)
        return real(run, warmup=warmup, **kwargs)

    monkeypatch.setattr(bench, "time_cpu_clocks", spy)
    records = bench.measure([case], ["torch_cpu"], quick=True, log=lambda line: None)
    assert warmups == [3] and len(records) == 1 and records[0]["measured_s"] > 0


def test_one_row_gemm_records_fit_as_gemv_and_keep_their_measurements() -> None:
    """The bench records every dense GEMM as ``gemm``; validation fits the one-row shapes as
    ``gemv`` (the timing model's family for them), and the timing model still finds their
    measured time in the device file."""
    import gpus
    from sim import timing

    path = validate.device_file()
    doc = json.loads(path.read_text())
    groups = validate.groups(doc)
    assert all(r["shape"]["m"] == 1 for r in groups[("gemv", "torch_cpu")])
    assert all(r["shape"]["m"] > 1 for r in groups[("gemm", "torch_cpu")])
    record = groups[("gemv", doc["default_impl"])][0]
    s = record["shape"]
    t = timing.gemm_time(gpus.cpu_profile_from_calibration(path), s["m"], s["n"], s["k"], s["dtype"])
    assert t.family == "gemv" and t.measured_s == pytest.approx(record["measured_s"])


def _run_doc(date: str, passes: list[float], flops: float) -> dict[str, object]:
    record = {"family": "gemm", "impl": "torch_cpu", "shape": {"m": 4, "n": 8, "k": 8, "dtype": "fp32"},
              "config": {}, "measured_s": float(np.median(passes)), "pass_s": passes, "runs": 30,
              "wall_s": passes, "cpu_s": passes, "clock": {"perf_counter": len(passes)}, "input_sets": 1}
    return {"schema": 1, "device": "Test CPU", "kind": "cpu", "cores": 1, "date": date,
            "versions": {"torch": "x"}, "cpu_capability": "AVX2",
            "ceilings": {"matmul_flops_per_s": {"fp32": flops}, "copy_bytes_per_s": 1e10},
            "default_impl": "torch_cpu", "families": {}, "measurements": [record]}


def test_merge_pools_the_passes_of_runs_taken_apart(tmp_path: Path) -> None:
    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "m.json"
    a.write_text(json.dumps(_run_doc("2026-12-01T10:00:00Z", [1.0, 2.0, 3.0], 1e11)))
    b.write_text(json.dumps(_run_doc("2026-12-01T11:00:00Z", [10.0, 11.0, 12.0], 3e11)))
    assert bench.main(["--merge", str(a), str(b), "--out", str(out), "--no-fit"]) == 0
    doc = json.loads(out.read_text())
    (record,) = doc["measurements"]
    assert record["pass_s"] == [1.0, 2.0, 3.0, 10.0, 11.0, 12.0]
    assert record["measured_s"] == pytest.approx(6.5) and record["runs"] == 60
    assert record["clock"] == {"perf_counter": 6}
    assert doc["ceilings"]["matmul_flops_per_s"]["fp32"] == pytest.approx(2e11)
    assert [m["date"] for m in doc["merged_from"]] == ["2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"]
    assert doc["date"] == "2026-12-01T11:00:00Z" and doc["cpu_capability"] == "AVX2"


def test_merge_refuses_runs_that_differ(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_run_doc("d1", [1.0], 1e11)))
    other = _run_doc("d2", [1.0], 1e11)
    other["cores"] = 2
    b.write_text(json.dumps(other))
    assert bench.main(["--merge", str(a), str(b), "--out", str(tmp_path / "m.json")]) == 2
    assert "cores" in capsys.readouterr().err
    assert bench.main(["--merge", str(a), "--out", str(tmp_path / "m.json")]) == 2
    assert not (tmp_path / "m.json").exists()


def test_update_adds_a_missing_simd_level_and_refuses_another_device(
    quick_file: Path, tmp_path: Path
) -> None:
    doc = json.loads(quick_file.read_text())
    capability = doc.pop("cpu_capability")
    older = tmp_path / "older.json"
    older.write_text(json.dumps(doc))
    bench.run(quick=True, out=older, threads=1, families=["gemm"], update=True, fit=False, log=lambda _: None)
    updated = json.loads(older.read_text())
    assert updated["cpu_capability"] == capability
    assert updated["updates"][-1]["cpu_capability_added"] == capability
    assert {r["family"] for r in updated["measurements"]} == {r["family"] for r in doc["measurements"]}
    other = dict(doc, device="Some Other CPU")
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="file's device 'Some Other CPU'"):
        bench.run(quick=True, out=elsewhere, threads=1, families=["gemm"], update=True, fit=False)
    assert json.loads(elsewhere.read_text()) == other  # nothing written


def _one_sided_levels(cases: list, impl: str) -> dict[str, list[str]]:
    """Per model family (as validate groups records for ``impl``): the shape-field values that
    occur in two or more shapes yet fall on one side of the fixed split only."""
    from collections import defaultdict

    groups: dict[str, list[dict]] = defaultdict(list)
    for case in cases:
        record = {"family": case.family, "shape": case.shape, "impl": impl}
        groups[validate.model_family(record)].append(case.shape)
    found: dict[str, list[str]] = {}
    for family, shapes in groups.items():
        fit, held = cal.split_fit_holdout([validate.shape_key(s) for s in shapes])
        sides: dict[tuple[str, str], set[str]] = defaultdict(set)
        count: dict[tuple[str, str], int] = defaultdict(int)
        for side, indices in (("fit", fit), ("held", held)):
            for i in indices:
                for name, value in shapes[i].items():
                    level = (name, json.dumps(len(value) if name == "group_sizes" else value))
                    sides[level].add(side)
                    count[level] += 1
        bad = [f"{n}={v}" for (n, v), s in sides.items() if len(s) == 1 and count[(n, v)] >= 2]
        if bad:
            found[family] = sorted(bad)
    return found


@pytest.mark.parametrize("impl", ["numba_cpu", "torch_cpu"])
def test_split_does_not_alias_a_grid_factor(impl: str) -> None:
    """Every value of a shape field that the grid varies lies on both sides of the fixed split, so
    the held-out half tests the model on levels its fit has seen. With two (n, k) pairs per
    grouped configuration, alternation over sorted shapes put every n=512 shape on the held-out
    side (and torch's flash prefill: every head dim 128); a fit cannot learn what it never sees."""
    from kernels_numba.shapes import grid

    assert _one_sided_levels(grid(), impl) == {}
