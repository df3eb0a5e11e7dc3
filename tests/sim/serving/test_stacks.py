"""Serving stacks as data: each file loads, every setting cites a source, and a deployment's
``stack`` key fills the keys it does not give."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import gpus
import moe
from sim.serving import stack
from sim.serving.deployment import parse_deployment

V3, H100, A100 = moe.get("deepseek-v3"), gpus.get("H100"), gpus.get("A100")


@pytest.mark.parametrize("name", stack.names())
def test_every_stack_file_loads_and_cites_each_setting(name):
    s = stack.get(name)
    assert s.name == name and s.framework and s.source
    for setting in stack.REQUIRED:
        assert s.sources[setting]
    for setting, source in s.sources.items():
        if getattr(s, setting) is None:
            assert source.startswith("no source"), f"{name}.{setting} has no value but cites {source!r}"


def test_the_default_stack_is_deepseeks_and_keeps_its_deployments():
    inst = parse_deployment({"mode": "colocated", "nodes": 2, "gpus_per_node": 8}, V3, H100).colocated
    assert (inst.stack, inst.ep, inst.moe_tp, inst.dispatcher, inst.micro_batches) == (
        "deepseek",
        16,
        1,
        "deepep",
        2,
    )
    assert inst.tp_allreduce == "nccl" and inst.max_batch_per_gpu is None


def test_a_framework_stack_shards_experts_and_caps_its_batch_by_gpu():
    """vLLM 0.10 without --enable-expert-parallel: experts sharded over the TP group, no micro-batch
    overlap, its custom all-reduce, max_num_seqs 1024 on H100 and 256 on A100."""
    dep = {"mode": "colocated", "nodes": 1, "gpus_per_node": 8, "tp": 8, "stack": "vllm-0.10"}
    h100 = parse_deployment(dep, moe.get("mixtral-8x7b"), H100).colocated
    a100 = parse_deployment({**dep, "weight_dtype": "bf16"}, moe.get("mixtral-8x7b"), A100).colocated
    assert (h100.ep, h100.moe_tp, h100.dispatcher, h100.micro_batches) == (1, 8, "allgather", 1)
    assert (h100.tp_allreduce, h100.max_batch_per_gpu, a100.max_batch_per_gpu) == ("custom", 1024, 256)
    assert (h100.max_tokens_per_gpu, a100.max_tokens_per_gpu) == (8192, 2048)
    explicit = parse_deployment({**dep, "ep": 8, "max_batch_per_gpu": 64}, moe.get("mixtral-8x7b"), H100)
    assert (explicit.colocated.ep, explicit.colocated.max_batch_per_gpu) == (8, 64)


def test_unknown_stack_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown serving stack 'tgi'; known stacks: deepseek"):
        parse_deployment({"mode": "colocated", "stack": "tgi"}, V3, H100)


@pytest.mark.parametrize(
    "text, match",
    [
        ("name = [", "is not valid TOML"),
        ('name = "bad"\nframework = "x"\nversions = "1"\nsource = "s"\nextra = 1\n', "unknown keys"),
        ('name = "bad"\nframework = "x"\nversions = "1"\nsource = "s"\n', "'expert_parallel' is missing"),
        (
            'name = "bad"\nframework = "x"\nversions = "1"\nsource = "s"\n[expert_parallel]\nvalue = true\n',
            "needs a 'source'",
        ),
        (
            'name = "bad"\nframework = "x"\nversions = "1"\nsource = "s"\n'
            '[expert_parallel]\nvalue = "yes"\nsource = "s"\n',
            "'expert_parallel' must be a bool",
        ),
    ],
)
def test_malformed_stack_files_say_what_is_wrong(tmp_path, monkeypatch, text, match):
    folder = tmp_path / "stacks"
    shutil.copytree(stack.stacks_dir(), folder)
    (folder / "bad.toml").write_text(text)
    monkeypatch.setattr(stack, "stacks_dir", lambda: Path(folder))
    with pytest.raises(ValueError, match=match):
        stack.get("bad")


def test_swap_ab_is_a_deployment_choice_that_shortens_small_expert_batches():
    """The stacks modelled here run DeepGEMM-style tiles of 64 rows; ``swap_ab`` (DeepGEMM's opt-in
    kernel) pads 15 requests' rows to 16-32 instead, so V3's decode step on H20 at EP16 is shorter."""
    import numpy as np

    from sim.serving.stepcost import StepCostModel

    h20 = gpus.get("H20")
    dep = {"mode": "colocated", "nodes": 2, "gpus_per_node": 8, "tp": 1, "ep": 16, "stack": "sglang-0.4"}

    def step(**keys):
        inst = parse_deployment({**dep, **keys}, V3, h20).colocated
        return StepCostModel(V3, h20, inst, 0, np.random.default_rng(0)).decode_step(15, 2176).time_s

    assert step(swap_ab=True) < 0.85 * step()
    with pytest.raises(ValueError, match="swap_ab must be true or false"):
        parse_deployment({**dep, "swap_ab": "yes"}, V3, h20)


_VALID = (
    'name = "bad"\nframework = "x"\nversions = "1"\nsource = "s"\n'
    '[expert_parallel]\nvalue = false\nsource = "s"\n[dispatcher]\nvalue = "allgather"\nsource = "s"\n'
    '[two_batch_overlap]\nvalue = false\nsource = "s"\n[tp_allreduce]\nvalue = "custom"\nsource = "s"\n'
    '[cuda_graphs]\nvalue = true\nsource = "s"\n'
)


@pytest.mark.parametrize(
    "extra, match",
    [
        ('[memory_fraction]\nvalue = 1.5\nsource = "s"\n', "must be a fraction in \\(0, 1\\]"),
        ('[memory_fraction]\nvalue = 0.9\nby_gpus = { "x" = 0.8 }\nsource = "s"\n', "keys are GPU counts"),
        ('[memory_fraction_of]\nvalue = "some"\nsource = "s"\n', "memory_fraction_of 'some' is unknown"),
        ('[swap_ab]\nvalue = false\nby_gpus = { "2" = 1 }\nsource = "s"\n', "takes no 'by_gpus' table"),
    ],
)
def test_malformed_memory_fractions_say_what_is_wrong(tmp_path, monkeypatch, extra, match):
    folder = tmp_path / "stacks"
    shutil.copytree(stack.stacks_dir(), folder)
    (folder / "bad.toml").write_text(_VALID + extra)
    monkeypatch.setattr(stack, "stacks_dir", lambda: Path(folder))
    with pytest.raises(ValueError, match=match):
        stack.get("bad")


def _kv_bytes(stack_name: str, gpus_per_node: int = 8, **keys: object) -> tuple[float, object]:
    plan, inst = _plan(stack_name, gpus_per_node, **keys)
    return plan.kv_cache_bytes, inst


def _plan(stack_name: str, gpus_per_node: int = 8, **keys: object) -> tuple[object, object]:
    from sim.serving.deployment import memory_plan

    spec = {"mode": "colocated", "nodes": 1, "gpus_per_node": gpus_per_node, "tp": gpus_per_node}
    inst = parse_deployment({**spec, "stack": stack_name, **keys}, V3, gpus.get("H200")).colocated
    return memory_plan(V3, gpus.get("H200"), inst), inst


def test_each_stack_leaves_its_kv_cache_the_share_its_framework_sets():
    hbm = float(gpus.get("H200").hbm_bytes)
    whole, _ = _kv_bytes("deepseek")  # no fraction: all memory weights and activations leave
    p, inst = _plan("vllm-0.7")  # 0.9 of total, weights and activations inside
    assert inst.memory_fraction == 0.9
    assert p.kv_cache_bytes == pytest.approx(0.9 * hbm - p.weights_bytes - p.workspace_bytes)
    p, _ = _plan("trtllm-0.17-pytorch")  # 0.9 of what weights and activations leave
    assert p.kv_cache_bytes == pytest.approx(0.9 * (hbm - p.weights_bytes - p.workspace_bytes))
    p, inst = _plan("sglang-0.4")  # 0.81 at 8 GPUs: weights and KV within it, activations outside
    assert inst.memory_fraction == 0.81
    assert p.kv_cache_bytes == pytest.approx(0.81 * hbm - p.weights_bytes)
    assert p.kv_cache_bytes < whole
    # the by-GPU-count table, as SGLang picks by TP size
    sglang = stack.get("sglang-0.4")
    assert [sglang.memory_fraction_for(n) for n in (1, 2, 3, 4, 8, 16, 32)] == [
        0.88,
        0.87,
        0.87,
        0.85,
        0.81,
        0.79,
        0.79,
    ]


def test_memory_fraction_is_a_deployment_key_with_clear_errors():
    custom, inst = _kv_bytes("vllm-0.7", memory_fraction=0.95)
    default, _ = _kv_bytes("vllm-0.7")
    assert inst.memory_fraction == 0.95 and custom > default
    with pytest.raises(ValueError, match="memory_fraction must be a fraction"):
        _kv_bytes("vllm-0.7", memory_fraction=0)
    with pytest.raises(ValueError, match="leaves no memory for a KV cache"):
        _kv_bytes("vllm-0.7", memory_fraction=0.5)  # 84 GB of weights in 70 GB


@pytest.mark.parametrize(
    "value, match",
    [
        ("-0.001", r"must be seconds in \[0, 1\)"),
        ("nan", r"must be seconds in \[0, 1\)"),
        ("true", "seconds"),
    ],
)
def test_malformed_step_overheads_say_what_is_wrong(tmp_path, monkeypatch, value, match):
    folder = tmp_path / "stacks"
    shutil.copytree(stack.stacks_dir(), folder)
    (folder / "bad.toml").write_text(_VALID + f'[step_overhead_s]\nvalue = {value}\nsource = "s"\n')
    monkeypatch.setattr(stack, "stacks_dir", lambda: Path(folder))
    with pytest.raises(ValueError, match=match):
        stack.get("bad")


def _decode(stack_name: str, batch: int = 4, **keys: object):  # type: ignore[no-untyped-def]
    import numpy as np

    from sim.serving.stepcost import StepCostModel

    _, inst = _plan(stack_name, **keys)
    cost = StepCostModel(V3, gpus.get("H200"), inst, 0, np.random.default_rng(0))
    return inst, cost.decode_step(batch, 2048), cost.mixed_step(batch, 2048, 512, 1e-4)


def test_a_stack_that_schedules_between_steps_adds_its_host_time_to_every_step():
    """vLLM 0.7's V0 engine runs the scheduler and input preparation between steps (4 ms, its
    stack's source); a deployment key sets another figure; a stack that overlaps them adds nothing."""
    inst, decode, mixed = _decode("vllm-0.7")
    assert inst.step_overhead_s == 0.004
    _, decode0, mixed0 = _decode("vllm-0.7", step_overhead_s=0.0)
    assert decode.time_s == pytest.approx(decode0.time_s + 0.004, rel=1e-12)
    assert mixed.time_s == pytest.approx(mixed0.time_s + 0.004, rel=1e-12)
    assert decode.breakdown_s["host_step"] == 0.004 and "host_step" not in decode0.breakdown_s
    _, slow, _ = _decode("vllm-0.7", step_overhead_s=0.5)
    assert slow.bound_by == "host"
    for name in ("sglang-0.4", "deepseek", "vllm-0.10"):
        assert "host_step" not in _decode(name)[1].breakdown_s
    with pytest.raises(ValueError, match=r"step_overhead_s must be seconds in \[0, 1\)"):
        _decode("vllm-0.7", step_overhead_s=-1e-3)
