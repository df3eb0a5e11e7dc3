"""Both simulators time one operator inventory (moe.operators): an operator added to a layer's list
shows up in the training segments and in the serving step, each by exactly its own time."""

from __future__ import annotations

import numpy as np
import pytest

import gpus
import moe
from moe.operators import Memory, OpKind, Phase, strategy_for
from moe.operators.attention import MultiHeadLatentAttention
from sim import timing
from sim.serving.deployment import parse_instance
from sim.serving.stepcost import StepCostModel
from sim.training.api import build_plan
from sim.training.costs import Unit

H800 = gpus.get("H800")
V3 = moe.get("deepseek-v3")
PROBE = Memory(3.0e8)  # a bandwidth-bound kernel moving 300 MB


def _with_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Append one operator to MLA's attention block, for every lowering."""
    original = MultiHeadLatentAttention.block

    def block(self, model, b, shape):  # type: ignore[no-untyped-def]
        original(self, model, b, shape)
        b.memory("probe", OpKind.NORM, PROBE.bytes)

    monkeypatch.setattr(MultiHeadLatentAttention, "block", block)


def _training_forward_s() -> tuple[float, list[str]]:
    kw = dict(tp=1, pp=16, ep=64, seq_len=4096, global_batch_seqs=15360, precision="fp8", schedule="dualpipe")
    cost = build_plan(V3, H800, 2048, **kw).cost
    lc = cost.unit_cost(Unit("layer", 10, True))
    return sum(s.duration_s for s in lc.forward), [op.name for op in lc.ops["forward"]]


def _decode_step_s() -> float:
    inst = parse_instance("decode", {"nodes": 4, "ep": 32, "micro_batches": 1}, V3, H800)
    cost = StepCostModel(V3, H800, inst, 0, np.random.default_rng(0))
    return cost.decode_step(1, 4096).time_s


def test_one_operator_added_grows_both_simulators_by_exactly_its_time(monkeypatch):
    assert isinstance(strategy_for(V3), MultiHeadLatentAttention)
    train_before, names = _training_forward_s()
    serve_before = _decode_step_s()
    _with_probe(monkeypatch)
    train_after, names_after = _training_forward_s()
    serve_after = _decode_step_s()
    assert "probe" not in names and names_after.count("probe") == 1
    # training: the layer's forward segment, once (a memory-bound kernel is not stretched by the SMs
    # that the overlapped all-to-all holds)
    probe_train = timing.op_time(H800, PROBE).predicted_s
    assert train_after - train_before == pytest.approx(probe_train, rel=1e-9)
    # serving: one decode step of one micro-batch runs every layer's attention block once
    probe_serve = timing.op_seconds(H800, _probe_op())
    assert serve_after - serve_before == pytest.approx(V3.num_layers * probe_serve, rel=1e-9)
    assert probe_train == pytest.approx(probe_serve, rel=1e-12)


def _probe_op():  # type: ignore[no-untyped-def]
    from moe.operators import Op

    return Op("probe", OpKind.NORM, PROBE, Phase.DECODE)
