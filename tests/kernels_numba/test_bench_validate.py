"""The harness and its command line: file format, rotation sets, merging runs, validate's output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kernels_numba import bench, validate
from sim import calibration as cal
from sim.calibration import devices


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
    groups = devices.groups(doc)
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
        groups[devices.model_family(record)].append(case.shape)
    found: dict[str, list[str]] = {}
    for family, shapes in groups.items():
        fit, held = cal.split_fit_holdout([devices.shape_key(s) for s in shapes])
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
