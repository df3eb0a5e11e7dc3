"""Sweeps in this process and in local processes: rows, refusals, resumption, bounded retries, whole files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import gpus
import moe
import sim
from sim.grid import runner, store
from sim.grid.evaluate import columns, evaluate_config
from sim.grid.spec import parse_sweep_spec
from sim.serving.deployment import parse_deployment
from sim.serving.fleet import prefill_capacity
from sim.serving.plan import decode_operating_point
from sim.serving.workloads import parse_workload

SPEC: dict[str, Any] = {
    "kind": "serving",
    "chunk_size": 10,
    "retries": 1,
    "grid": {
        "model": ["mixtral-8x7b", "deepseek-v3"],  # V3 fits on no single node of these: refused rows
        "gpu": ["H100", "H20"],
        "deployment": [{"nodes": 1}],
        "input_len": [1024, 4096],
        "output_len": [256],
        "tpot_target_s": [0.005, 0.05],  # 5 ms: infeasible for some
        "usd_per_gpu_hour": ["profile", 2.0],
    },
}


def _rows(results: Path) -> list[dict[str, Any]]:
    return sorted(sim.query_sweep(results, "SELECT * FROM results").to_pylist(), key=lambda r: r["config_id"])


def test_a_serving_row_holds_what_fleet_sizing_computes_for_the_same_configuration() -> None:
    spec = parse_sweep_spec(SPEC)
    config = spec.config(3)  # mixtral, H100, 1024 in, 50 ms, $2
    assert (config["model"], config["gpu"], config["tpot_target_s"], config["usd_per_gpu_hour"]) == (
        "mixtral-8x7b",
        "H100",
        0.05,
        2.0,
    )
    row = evaluate_config(spec, config)
    model, gpu = moe.get("mixtral-8x7b"), gpus.get("H100")
    deployment = parse_deployment(
        {"mode": "disaggregated", "prefill": {"nodes": 1}, "decode": {"nodes": 1}}, model, gpu
    )
    workload = parse_workload({"input_len": 1024, "output_len": 256, "arrival_rate_per_s": 1.0})
    assert deployment.decode is not None and deployment.prefill is not None
    decode = decode_operating_point(model, gpu, deployment.decode, workload, 0.05, np.random.default_rng(0))
    prefill = prefill_capacity(model, gpu, deployment.prefill, workload, np.random.default_rng(0))
    assert row["ok"] and row["error"] is None
    assert row["decode_batch_per_gpu"] == decode.batch_per_gpu
    assert row["output_tokens_per_s_per_gpu"] == decode.output_tokens_per_s_per_gpu
    assert row["prefill_input_tokens_per_s_per_gpu"] == prefill.input_tokens_per_s_per_instance / 8
    # $2 per GPU-hour over the tokens one GPU makes in an hour
    assert row["usd_per_million_output_tokens"] == pytest.approx(
        2.0 / 3600 / decode.output_tokens_per_s_per_gpu * 1e6
    )
    assert set(row) == {name for name, _ in columns("serving")}
    assert json.loads(row["calibration_sha256"]) and json.loads(row["stack"])["moe-fleetcost"]


def test_a_configuration_the_simulator_refuses_is_a_row_with_its_message(tmp_path: Path) -> None:
    summary = sim.sweep(SPEC, tmp_path)
    assert summary.ok and summary.configurations == 32 and summary.chunks_written == 4
    rows = _rows(tmp_path)
    assert [r["config_id"] for r in rows] == list(range(32))
    refused = [r for r in rows if not r["ok"]]
    assert len(refused) == 16 and all(r["model"] == "deepseek-v3" for r in refused)
    assert all(
        "cannot hold deepseek-v3" in r["error"] and r["output_tokens_per_s_per_gpu"] is None for r in refused
    )
    assert summary.refused_configurations == len(refused)
    infeasible = [r for r in rows if r["ok"] and not r["decode_feasible"]]
    assert infeasible and all(r["usd_per_million_output_tokens"] is None for r in infeasible)
    profile_price = next(r for r in rows if r["gpu"] == "H20" and r["price_source"] == "profile")
    assert profile_price["usd_per_gpu_hour"] == gpus.get("H20").price.usd_per_gpu_hour
    manifest = json.loads((tmp_path / store.MANIFEST).read_text())
    assert manifest["spec_sha256"] == parse_sweep_spec(SPEC).sha256
    assert {c["status"] for c in manifest["chunks"].values()} == {"done"}
    assert manifest["runs"][-1]["summary"]["ok"]


def test_a_rerun_skips_written_chunks_and_another_spec_is_refused(tmp_path: Path) -> None:
    first = sim.sweep(SPEC, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("chunk-*.parquet")}
    (tmp_path / "chunk-000002.parquet").unlink()
    again = sim.sweep(SPEC, tmp_path)
    assert (again.chunks_skipped, again.chunks_written, again.configurations_evaluated) == (3, 1, 10)
    assert {
        p.name: p.stat().st_mtime_ns
        for p in tmp_path.glob("chunk-*.parquet")
        if p.name != "chunk-000002.parquet"
    } == {k: v for k, v in stamps.items() if k != "chunk-000002.parquet"}
    assert first.configurations == again.configurations == len(_rows(tmp_path))
    other = {**SPEC, "seed": 1}
    with pytest.raises(ValueError, match="holds the results of another sweep"):
        sim.sweep(other, tmp_path)


def test_a_failing_chunk_is_retried_a_bounded_number_of_times_and_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = runner.evaluate_range
    calls: list[int] = []

    def flaky(spec: Any, start: int, end: int) -> list[dict[str, Any]]:
        calls.append(start)
        if start == 10:
            raise RuntimeError("disk on fire")
        return real(spec, start, end)

    monkeypatch.setattr(runner, "evaluate_range", flaky)
    summary = sim.sweep(SPEC, tmp_path, retries=2)
    assert not summary.ok and summary.chunks_failed == 1 and summary.chunks_written == 3
    assert calls.count(10) == 3  # one attempt and two retries
    assert not (tmp_path / "chunk-000001.parquet").exists()
    assert not list(tmp_path.glob(".*.tmp"))
    manifest = json.loads((tmp_path / store.MANIFEST).read_text())
    assert manifest["chunks"]["1"]["status"] == "failed"
    assert manifest["chunks"]["1"]["errors"] == ["RuntimeError: disk on fire"] * 3
    # fixed: the rerun computes only the missing chunk
    monkeypatch.setattr(runner, "evaluate_range", real)
    again = sim.sweep(SPEC, tmp_path)
    assert again.ok and again.chunks_written == 1 and len(_rows(tmp_path)) == 32


def test_a_chunk_that_fails_while_being_written_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet

    def broken(table: Any, where: str, **kwargs: Any) -> None:
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("no space left on device")

    monkeypatch.setattr(pyarrow.parquet, "write_table", broken)
    with pytest.raises(OSError, match="no space"):
        store.write_chunk(tmp_path, 0, "serving", [])
    assert list(tmp_path.iterdir()) == []


def test_local_processes_give_the_rows_this_process_gives(tmp_path: Path) -> None:
    serial = sim.sweep(SPEC, tmp_path / "serial")
    pooled = sim.sweep(SPEC, tmp_path / "pooled", jobs=2)
    assert pooled.engine == "2 local processes" and serial.engine == "this process"
    a = pq.read_table(sorted((tmp_path / "serial").glob("chunk-*.parquet"))[0])
    b = pq.read_table(sorted((tmp_path / "pooled").glob("chunk-*.parquet"))[0])
    assert a.equals(b)
    assert _rows(tmp_path / "serial") == _rows(tmp_path / "pooled")


def test_a_training_sweep_runs_the_training_estimate() -> None:
    spec = parse_sweep_spec(
        {
            "kind": "training",
            "grid": {
                "model": "mixtral-8x7b",
                "gpu": ["H100"],
                "global_batch_seqs": 256,
                "tokens": 1e12,
                "plan": [
                    {"num_gpus": 64, "tp": 1, "pp": 4, "ep": 8, "schedule": "1f1b"},
                    {"num_gpus": 64, "tp": 1, "pp": 4, "ep": 7},
                ],
            },
        }
    )
    good, bad = (evaluate_config(spec, c) for c in spec.configs())
    result = sim.estimate_training(
        model="mixtral-8x7b",
        gpu="H100",
        num_gpus=64,
        tp=1,
        pp=4,
        ep=8,
        schedule="1f1b",
        seq_len=4096,
        global_batch_seqs=256,
        tokens=1e12,
        precision="bf16",
    )
    assert good["ok"] and good["step_time_s"] == result.step_time_s and good["num_gpus"] == 64
    assert not bad["ok"] and "ep" in bad["error"]
