"""Stacks without CUDA graphs: the host issues each kernel from eager PyTorch and the GPU can wait.

The queue rule (``host_queue_lead_s``) is checked on sequences small enough to work by hand; the step
cost is checked against its limits: a host that issues kernels faster than the GPU runs them changes
nothing, a slow host makes the step at least its issue time, and graph-capturing stacks never pay.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gpus
import moe
from kernels_numba import host_overhead
from sim import calibration
from sim.calibration import files as calibration_files
from sim.serving import stack as stacks
from sim.serving import stepcost
from sim.serving.deployment import parse_deployment
from sim.serving.stepcost import StepCostModel, host_queue_lead_s


def test_queue_lead_by_hand() -> None:
    # a host that keeps ahead: the GPU's own time
    assert host_queue_lead_s([1.0, 1.0, 1.0], 0.0) == 3.0
    # issued at 0, 2, 4; each 1 long: the last starts at 4 and ends at 5
    assert host_queue_lead_s([1.0, 1.0, 1.0], 2.0) == 5.0
    # a long first kernel hides the host's issue of the others: 10 + 1 + 1
    assert host_queue_lead_s([10.0, 1.0, 1.0], 2.0) == 12.0
    # short kernels first, a long one last: issued at 4, it ends at 14
    assert host_queue_lead_s([1.0, 1.0, 10.0], 2.0) == 14.0
    assert host_queue_lead_s([], 2.0) == 0.0


def _cost(stack: str, **keys: object) -> StepCostModel:
    model, gpu = moe.get("deepseek-v3"), gpus.get("H200")
    spec = {"mode": "colocated", "nodes": 1, "gpus_per_node": 8, "tp": 8, "stack": stack, **keys}
    inst = parse_deployment(spec, model, gpu).colocated
    assert inst is not None
    return StepCostModel(model, gpu, inst, 0, np.random.default_rng(0))


def test_stack_sets_cuda_graphs_and_a_deployment_key_overrides_it() -> None:
    assert stacks.get("trtllm-0.17-pytorch").cuda_graphs is False
    assert all(stacks.get(n).cuda_graphs for n in stacks.names() if n != "trtllm-0.17-pytorch")
    assert _cost("vllm-0.10", cuda_graphs=False).inst.cuda_graphs is False
    with pytest.raises(ValueError, match="cuda_graphs must be true or false"):
        _cost("vllm-0.10", cuda_graphs="no")


def test_graph_stack_never_waits_for_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stepcost, "eager_operator_s", lambda: 1e-3)
    graphs = _cost("vllm-0.10").mixed_step(4, 2048, 0, 0.0)
    assert "host_launch" not in graphs.breakdown_s


def test_slow_host_bounds_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    issue = 1e-3  # far above any kernel's GPU time at batch 1: every kernel waits for its issue
    monkeypatch.setattr(stepcost, "eager_operator_s", lambda: issue)
    eager = _cost("vllm-0.10", cuda_graphs=False)
    graphs = _cost("vllm-0.10")
    step = eager.decode_step(1, 2048)
    base = graphs.decode_step(1, 2048)
    ops = eager.timed_layer_ops(1, eager.decode_attention(1, 1, 2048), False)
    per_moe_layer = sum(len(v) for k, v in ops.items() if k.startswith("moe")) + 2  # + two all-reduces
    kernels = sum(eager.moe_layer_flags) * per_moe_layer
    assert step.time_s >= kernels * issue
    assert step.time_s == pytest.approx(base.time_s + step.breakdown_s["host_launch"])
    assert step.bound_by == "host"


def test_fast_host_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stepcost, "eager_operator_s", lambda: 1e-12)
    eager = _cost("vllm-0.10", cuda_graphs=False).decode_step(16, 2048)
    graphs = _cost("vllm-0.10").decode_step(16, 2048)
    assert eager.time_s == pytest.approx(graphs.time_s, rel=1e-9)


def test_measured_host_time_is_on_file_and_physical() -> None:
    value = calibration.eager_call_s()
    assert 1e-7 < value < 1e-4  # a module call: between a tenth of a microsecond and 100 us
    measured = host_overhead.measure_eager_call_s(calls=50, repeats=3, warmup=1)
    assert 0 < measured["min_s"] <= measured["median_s"] <= measured["max_s"]
    with pytest.raises(ValueError, match="calls and repeats"):
        host_overhead.measure_eager_call_s(calls=0)


def test_operator_host_time_comes_from_the_published_eager_steps() -> None:
    """One host time per operator, derived from published eager decode steps of two DeepSeek models
    (one GPU; eight with tensor parallelism), lies above one bare torch call (model code issues more than
    one aten call per operator, through Python modules) and reproduces each of those steps within 10%:
    a consistency check of the per-operator form across models and TP degrees, not a validation (the
    steps fed the figure)."""
    issue = stepcost.eager_operator_s()
    assert calibration.eager_call_s() < issue < 1e-3
    for step in calibration.eager_steps():
        model, gpu = moe.get(step.model), gpus.get(step.gpu)
        spec = {"mode": "colocated", "nodes": 1, "gpus_per_node": step.tp, "tp": step.tp, "ep": 1}
        inst = parse_deployment({**spec, "cuda_graphs": False}, model, gpu).colocated
        assert inst is not None
        cost = StepCostModel(model, gpu, inst, 0, np.random.default_rng(0))
        simulated = cost.decode_step(step.batch, 256)
        assert simulated.bound_by == "host"
        assert simulated.time_s == pytest.approx(step.step_s, rel=0.10), step


def test_malformed_eager_steps_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "host").mkdir()
    monkeypatch.setattr(calibration_files, "calibration_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="missing .*eager_pytorch.json"):
        calibration.eager_steps()
    path = tmp_path / calibration.HOST_EAGER_FILE
    path.write_text('{"eager_steps": []}')
    with pytest.raises(ValueError, match="non-empty list"):
        calibration.eager_steps()
    path.write_text('{"eager_steps": [{"model": "deepseek-v2", "tp": 8}]}')
    with pytest.raises(ValueError, match=r"eager_steps\[0\] needs model, gpu, tp, batch, step_s and source"):
        calibration.eager_steps()
    row = {"model": "deepseek-v2", "gpu": "A100", "tp": 8, "batch": 1, "step_s": -1.0, "source": "x"}
    path.write_text(json.dumps({"eager_steps": [row]}))
    with pytest.raises(ValueError, match=r"step_s in \(0, 10\)"):
        calibration.eager_steps()
