"""Sweeps on a real local Dask cluster (a scheduler and two worker processes): the same rows as in
this process, and every configuration exactly once when a worker is killed in the middle."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

import sim

distributed = pytest.importorskip("distributed")

# 2 models x 4 GPUs x 2 deployments x 2 inputs x 2 outputs x 2 cache-hit rates x 4 targets x 4 prices
# = 2,048 configurations; 1,024 distinct evaluations (the price axis reuses one within a chunk).
SPEC: dict[str, Any] = {
    "kind": "serving",
    "chunk_size": 128,
    "retries": 2,
    "grid": {
        "model": ["mixtral-8x7b", "qwen3-30b-a3b"],
        "gpu": ["H100", "H800", "H20", "A800"],
        "deployment": [{"nodes": 1}, {"nodes": 1, "tp": 2}],
        "input_len": [1024, 4096],
        "output_len": [512, 2048],
        "cache_hit_rate": [0.0, 0.5],
        "tpot_target_s": [0.01, 0.02, 0.05, 0.1],
        "usd_per_gpu_hour": ["profile", 1.0, 2.0, 3.0],
    },
}
SIZE = 2048


def _table(results: Path) -> Any:
    return sim.query_sweep(results, "SELECT * FROM results ORDER BY config_id")


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Any:
    results = tmp_path_factory.mktemp("in_process")
    summary = sim.sweep(SPEC, results, jobs=1)
    assert summary.ok and summary.configurations == SIZE
    return _table(results)


@pytest.fixture()
def cluster() -> Any:
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, silence_logs=40
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def test_a_local_dask_cluster_gives_the_rows_this_process_gives(
    in_process: Any, cluster: Any, tmp_path: Path
) -> None:
    assert len(cluster.scheduler_info()["workers"]) == 2
    pids = set(cluster.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes, not this one
    summary = sim.sweep(SPEC, tmp_path, cluster=cluster)
    assert summary.ok and summary.engine.startswith("dask tcp://")
    assert summary.configurations_evaluated == SIZE and summary.chunks_written == 16
    on_cluster = _table(tmp_path)
    assert on_cluster.num_rows == SIZE
    assert on_cluster.equals(in_process)
    # the same cluster by its address, as `moe-sim sweep --cluster ADDRESS` connects
    again = sim.sweep(SPEC, tmp_path / "by_address", cluster=cluster.scheduler.address)
    assert again.ok and _table(tmp_path / "by_address").equals(in_process)


def test_killing_a_worker_in_the_middle_loses_and_repeats_no_configuration(
    in_process: Any, cluster: Any, tmp_path: Path
) -> None:
    pids = cluster.run(os.getpid)
    victim = sorted(pids.values())[0]
    killed: list[int] = []

    def kill_after_the_first_chunk(record: dict[str, Any]) -> None:
        if not killed:
            os.kill(victim, signal.SIGKILL)
            killed.append(record["chunk"])

    summary = sim.sweep(SPEC, tmp_path, cluster=cluster, on_chunk=kill_after_the_first_chunk)
    assert killed, "no chunk finished, so no worker was killed"
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)  # the worker really is gone
    assert summary.ok and summary.chunks_written == 16
    counts = sim.query_sweep(
        tmp_path,
        "SELECT count(*) AS n, count(DISTINCT config_id) AS d, min(config_id) AS lo, "
        "max(config_id) AS hi FROM results",
    ).to_pylist()[0]
    assert counts == {"n": SIZE, "d": SIZE, "lo": 0, "hi": SIZE - 1}
    assert _table(tmp_path).equals(in_process)
