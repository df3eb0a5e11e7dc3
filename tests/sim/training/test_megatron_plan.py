"""Plans as Megatron-LM expresses them: dispatcher, 1F1B A2A overlap, recompute modules, sequence
parallelism, distributed optimizer, gradient dtype, expert tensor parallelism, pipeline splits."""

from __future__ import annotations

import json

import pytest

import gpus
import moe
from sim import comm
from sim.training.api import build_plan
from sim.training.estimate import estimate_training
from sim.training.memory import activation_bytes_per_token, memory_report
from sim.training.plan import megatron_layer_counts
from sim.training.schedules import get_schedule, overlap_steady_pairs

SMALL = dict(
    model="deepseek-v2-lite",
    gpu="H800",
    num_gpus=64,
    tp=1,
    pp=4,
    ep=8,
    seq_len=2048,
    global_batch_seqs=256,
    tokens=1e9,
    precision="bf16",
    schedule="1f1b",
)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"dispatcher": "nccl"}, "unknown dispatcher 'nccl'; allowed: deepep, alltoall, allgather"),
        ({"a2a_overlap": True, "schedule": "dualpipe"}, "a2a_overlap .* 1F1B"),
        ({"a2a_overlap": True, "ep": 1}, "a2a_overlap needs expert parallelism"),
        ({"a2a_overlap": True}, "a2a_overlap with pipeline parallelism needs virtual pipeline stages"),
        ({"a2a_overlap": "yes"}, "a2a_overlap must be True or False"),
        ({"recompute_modules": ["layernorm", "attn"]}, "unknown recompute module.*'attn'.*allowed: core"),
        ({"recompute_modules": ["moe"]}, "'moe', the whole MoE layer .* not modelled"),
        ({"recompute_modules": "layernorm"}, "list of module names"),
        ({"recompute": "full", "recompute_modules": ["layernorm"]}, "needs recompute='selective'"),
        ({"sequence_parallel": True}, "sequence_parallel .* needs tp > 1"),
        ({"grad_dtype": "fp16"}, "unknown grad_dtype 'fp16'; allowed: fp32, bf16"),
        ({"moe_tp": 16}, "ep\\*moe_tp \\(8\\*16\\) must divide tp\\*dp"),
        ({"moe_tp": 0}, "moe_tp must be a positive whole number"),
        ({"dispatch_dtype": "fp8"}, "dispatch_dtype 'fp8' .* GEMMs run in bf16"),
        ({"dispatch_dtype": "int8"}, "unknown dispatch_dtype"),
        ({"pipeline_split": "greedy"}, "unknown pipeline_split 'greedy'; allowed: balanced, even"),
        ({"pipeline_split": "even", "layers_per_stage": [7, 7, 6, 7]}, "either layers_per_stage or"),
        # V2-Lite has 27 layers: 27 + embedding + loss = 29 slots do not divide over 4 stages
        (
            {"account_for_embedding_in_pipeline_split": True, "account_for_loss_in_pipeline_split": True},
            "27 layers \\+ embedding \\+ loss \\(29 slots\\) to divide evenly over the 4",
        ),
        ({"pipeline_split": "even"}, "27 layers \\(27 slots\\) to divide evenly"),
    ],
)
def test_bad_megatron_keys_are_clear_errors(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        estimate_training(**{**SMALL, **change})


def test_megatron_layer_counts_give_the_embedding_and_loss_a_slot() -> None:
    # Megatron's --account-for-embedding/loss-in-pipeline-split: 94 + 2 slots over 32 pieces
    assert megatron_layer_counts(94, 32, embedding=True, loss=True) == [2] + [3] * 30 + [2]
    assert megatron_layer_counts(31, 8, embedding=True, loss=False) == [3] + [4] * 7
    assert megatron_layer_counts(36, 4, embedding=False, loss=False) == [9, 9, 9, 9]
    with pytest.raises(ValueError, match="no transformer layer"):
        megatron_layer_counts(2, 4, embedding=True, loss=True)


def test_even_split_and_accounted_split_reach_the_plan() -> None:
    m, g = moe.get("qwen3-30b-a3b"), gpus.get("H100")  # 48 layers
    kw = dict(tp=1, ep=8, seq_len=4096, global_batch_seqs=64, precision="bf16")
    even = build_plan(m, g, 32, pp=4, schedule="1f1b", pipeline_split="even", **kw)  # type: ignore[arg-type]
    assert even.plan.layers_per_piece == (12, 12, 12, 12)
    accounted = build_plan(
        m,
        g,
        32,
        pp=2,
        schedule="interleaved-1f1b",
        virtual_stages=5,
        account_for_embedding_in_pipeline_split=True,
        account_for_loss_in_pipeline_split=True,
        **kw,  # type: ignore[arg-type]
    )
    assert accounted.plan.layers_per_piece == (4,) + (5,) * 8 + (4,)
    assert accounted.plan.piece_units[0][0] == "embed" and accounted.plan.piece_units[-1][-1] == "head"


def _a2a_seconds(dispatcher: str, **extra: object) -> float:
    m, g = moe.get("qwen3-235b-a22b"), gpus.get("H100")
    built = build_plan(
        m,
        g,
        256,
        tp=2,
        pp=8,
        ep=32,
        seq_len=4096,
        global_batch_seqs=2048,
        precision="fp8",
        schedule="1f1b",
        dispatcher=dispatcher,
        **extra,  # type: ignore[arg-type]
    )
    return built.cost._a2a(1000.0, 0).seconds


def test_alltoall_sends_one_copy_per_remote_expert() -> None:
    """Megatron's alltoall dispatcher: k copies per token, (ep - 8)/ep of them to other nodes; DeepEP
    crosses InfiniBand once per remote node (Qwen3-235B: k = 8 experts, EP32 over 4 nodes)."""
    m, g = moe.get("qwen3-235b-a22b"), gpus.get("H100")
    cluster = gpus.cluster(g, num_gpus=256)
    ib = comm.link(cluster, "ib")
    tokens = 4096 // 2  # per GPU after sequence parallelism (tp=2)
    k = m.experts_per_token
    expected = ib.latency_s + tokens * k * (32 - 8) / 32 * 1000.0 / ib.bandwidth_bytes_per_s
    assert _a2a_seconds("alltoall") == pytest.approx(expected, rel=1e-12)
    # node-limited DeepEP sends fewer bytes over InfiniBand: at most one copy per remote node
    assert _a2a_seconds("deepep") < _a2a_seconds("alltoall")


def test_allgather_dispatch_is_an_all_gather_of_the_ep_group() -> None:
    cluster = gpus.cluster(gpus.get("H100"), num_gpus=256)
    expected = comm.all_gather_time(cluster, 2048 * 32 * 1000.0, 32).predicted_s
    assert _a2a_seconds("allgather") == pytest.approx(expected, rel=1e-12)


def test_megatron_dispatchers_send_bf16_and_deepep_fp8_by_default() -> None:
    m, g = moe.get("qwen3-235b-a22b"), gpus.get("H100")
    kw = dict(tp=2, pp=8, ep=32, seq_len=4096, global_batch_seqs=2048, precision="fp8", schedule="1f1b")
    assert build_plan(m, g, 256, **kw, dispatcher="deepep").plan.dispatch_fp8  # type: ignore[arg-type]
    assert not build_plan(m, g, 256, **kw, dispatcher="alltoall").plan.dispatch_fp8  # type: ignore[arg-type]
    assert not build_plan(m, g, 256, **kw, dispatch_dtype="bf16").plan.dispatch_fp8  # type: ignore[arg-type]


def test_moe_tp_splits_the_expert_gemms_and_gathers_rows() -> None:
    m, g = moe.get("qwen3-30b-a3b"), gpus.get("H100")
    kw = dict(tp=2, pp=1, ep=8, seq_len=4096, global_batch_seqs=64, precision="bf16", schedule="1f1b")
    one = build_plan(m, g, 16, **kw)  # type: ignore[arg-type]
    two = build_plan(m, g, 16, **kw, moe_tp=2)  # type: ignore[arg-type]
    unit = next(u for u in one.pieces[0] if u.kind == "layer" and u.moe)

    def gate_up(built):  # type: ignore[no-untyped-def]
        return next(op.work for op in built.cost.unit_ops(unit) if op.name == "experts_gate_up")

    w1, w2 = gate_up(one), gate_up(two)
    assert sum(w2.groups) == 2 * sum(w1.groups)  # all rows of the expert, gathered
    assert w2.n * 2 == w1.n  # half of each expert's intermediate width
    assert two.plan.expert_dp * 2 == one.plan.expert_dp
    assert two.cost._a2a(1000.0, 0).seconds > one.cost._a2a(1000.0, 0).seconds
    m1 = memory_report(m, g, one.plan, one.layout, one.pieces)[0]
    m2 = memory_report(m, g, two.plan, two.layout, two.pieces)[0]
    assert m2.weights_bytes < m1.weights_bytes


def test_a2a_overlap_merges_each_backward_with_the_next_forward() -> None:
    layout = get_schedule("1f1b").build(4, 8)
    merged = overlap_steady_pairs(layout)
    last = [str(a) for a in merged.orders[3]]  # the last stage: no warm-up
    assert last[:3] == ["F0@3", "F1@3&BW0@3", "F2@3&BW1@3"]
    assert last[-1] == "BW7@3"
    # every chunk still runs once
    for before, after in zip(layout.orders, merged.orders, strict=True):
        chunks = sorted(str(c) for a in before for c in a.chunks)
        assert chunks == sorted(str(c) for a in after for c in a.chunks)


@pytest.mark.parametrize("pp,schedule,v", [(1, "1f1b", 1), (4, "interleaved-1f1b", 2)])
def test_a2a_overlap_runs_and_hides_expert_communication(pp: int, schedule: str, v: int) -> None:
    # EP16 over two nodes: the all-to-all crosses InfiniBand
    kw = {**SMALL, "pp": pp, "ep": 16, "schedule": schedule, "virtual_stages": v, "dispatcher": "alltoall"}
    plain = estimate_training(**kw)
    over = estimate_training(**kw, a2a_overlap=True)
    assert over.step_time_s < plain.step_time_s
    assert over.breakdown_s.get("exposed_ep_comm", 0.0) < plain.breakdown_s.get("exposed_ep_comm", 0.0)
    assert over.plan["a2a_overlap"] is True


def test_with_free_communication_the_overlap_changes_nothing() -> None:
    """Limiting case: with no communication there is nothing to hide; overlapped chunks share the one
    compute stream, so the step is no shorter (merging may only add waiting)."""
    kw = {**SMALL, "pp": 1, "dispatcher": "alltoall", "free_comm": True}
    plain = estimate_training(**kw)
    over = estimate_training(**kw, a2a_overlap=True)
    assert over.step_time_s >= plain.step_time_s - 1e-12


def _plan(**extra: object):  # type: ignore[no-untyped-def]
    kw = dict(SMALL)
    kw.pop("tokens")
    m, g = moe.get(kw.pop("model")), gpus.get(kw.pop("gpu"))
    n = kw.pop("num_gpus")
    return m, g, build_plan(m, g, n, **{**kw, **extra})  # type: ignore[arg-type]


def test_recompute_modules_choose_what_runs_again() -> None:
    m, g, v3 = _plan()  # DeepSeek-V3's selective set
    _, _, norms = _plan(recompute_modules=["layernorm"])
    unit = next(u for u in v3.pieces[1] if u.kind == "layer" and u.moe)
    names_v3 = {op.name for op in v3.cost.unit_ops(unit)}
    names_norms = {op.name for op in norms.cost.unit_ops(unit)}
    assert "experts_act (recompute)" in names_v3 and "experts_act (recompute)" not in names_norms
    assert "attn_norm (recompute)" in names_norms
    _, _, attn = _plan(recompute_modules=["core_attn"])
    assert "attention (recompute)" in {op.name for op in attn.cost.unit_ops(unit)}
    # keeping the SwiGLU output (no moe_act recompute) costs memory
    assert activation_bytes_per_token(m, unit, norms.plan) > activation_bytes_per_token(m, unit, v3.plan)
    assert v3.plan.to_dict()["recompute_modules"] == ["dense_act", "layernorm", "mla_up_proj", "moe_act"]


def test_sequence_parallel_splits_the_hidden_sized_activations() -> None:
    m, g = moe.get("qwen3-30b-a3b"), gpus.get("H100")
    kw = dict(tp=4, pp=1, ep=8, seq_len=4096, global_batch_seqs=64, precision="bf16", schedule="1f1b")
    sp = build_plan(m, g, 32, **kw)  # type: ignore[arg-type]
    no = build_plan(m, g, 32, **kw, sequence_parallel=False)  # type: ignore[arg-type]
    assert sp.plan.sequence_parallel and not no.plan.sequence_parallel
    unit = next(u for u in sp.pieces[0] if u.kind == "layer")
    assert activation_bytes_per_token(m, unit, sp.plan) < activation_bytes_per_token(m, unit, no.plan)


def test_distributed_optimizer_and_grad_dtype_set_the_state_bytes() -> None:
    """Megatron's estimator: 6 + 12/dp bytes per parameter with the distributed optimizer, 18 without
    (BF16 weights, FP32 gradients); BF16 gradients halve the gradient buffer."""
    m, g, zero1 = _plan()
    _, _, full = _plan(distributed_optimizer=False)
    _, _, bf16 = _plan(grad_dtype="bf16")
    r1 = memory_report(m, g, zero1.plan, zero1.layout, zero1.pieces)[0]
    rf = memory_report(m, g, full.plan, full.layout, full.pieces)[0]
    rb = memory_report(m, g, bf16.plan, bf16.layout, bf16.pieces)[0]
    dense = sum(zero1.plan.piece_params[p][0] for p in zero1.plan.pieces_of_rank[0])
    expert = sum(zero1.plan.piece_params[p][1] for p in zero1.plan.pieces_of_rank[0]) / 8  # ep = 8
    ratio = (dense + expert) / (dense / 16 + expert / 2)  # dp = 16, expert dp = 2
    assert rf.optimizer_bytes / r1.optimizer_bytes == pytest.approx(ratio)
    assert rb.gradients_bytes == pytest.approx(r1.gradients_bytes / 2)
    assert rf.weights_bytes == r1.weights_bytes
    # the step moves each rank's whole state without the distributed optimizer
    opt = lambda b: b.cost.tail_segments(0)[0].duration_s  # noqa: E731
    assert opt(full) > opt(zero1)


def test_engine_step_has_no_deadlock_for_interleaved_overlap_with_many_pieces() -> None:
    t = estimate_training(
        **{**SMALL, "schedule": "interleaved-1f1b", "virtual_stages": 3, "pp": 2, "num_gpus": 32},
        dispatcher="alltoall",
        a2a_overlap=True,
        pipeline_split="balanced",
    )
    assert t.step_time_s > 0


def test_gpt_oss_alternates_windowed_and_full_attention_in_training() -> None:
    """gpt-oss's layers alternate a 128-token sliding window and full attention (HF config
    ``layer_types``); each training layer's core attention reaches as far as its own layer does."""
    m, g = moe.get("gpt-oss-120b"), gpus.get("H100")
    built = build_plan(m, g, 64, tp=1, pp=4, ep=8, seq_len=4096, global_batch_seqs=64, schedule="1f1b")
    layers = [u for u in built.pieces[0] if u.kind == "layer"][:2]
    reach = [next(op.work.kv_len for op in built.cost.unit_ops(u) if op.name == "attention") for u in layers]
    assert reach == [128, 4096]
    full, windowed = (built.cost.unit_cost(u) for u in (layers[1], layers[0]))
    assert sum(s.duration_s for s in full.forward) > sum(s.duration_s for s in windowed.forward)


def test_train_command_takes_the_megatron_keys(capsys: pytest.CaptureFixture[str]) -> None:
    from sim.cli import main

    argv = ["train", "--model", "deepseek-v2-lite", "--num-gpus", "64", "--pp", "1", "--ep", "16"]
    argv += ["--global-batch-seqs", "64", "--seq-len", "2048", "--precision", "bf16", "--schedule", "1f1b"]
    argv += ["--dispatcher", "alltoall", "--a2a-overlap", "--recompute-modules", "layernorm", "moe_act"]
    argv += ["--grad-dtype", "bf16", "--json", "--tokens", "1e9"]
    assert main(argv) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["dispatcher"] == "alltoall" and plan["a2a_overlap"] is True
    assert plan["recompute_modules"] == ["layernorm", "moe_act"]
    assert main(["train", "--dispatcher", "nccl"]) == 2
    assert "allowed: deepep, alltoall, allgather" in capsys.readouterr().err
