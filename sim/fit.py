"""Does a model fit on a set of GPUs? Weights per precision, training state, and KV cache.

This is the quick capacity check behind ``moe-sim fit``. It spreads every byte evenly over all
GPUs of the deployment (the best any sharding can do), so "does not fit" here is definitive,
while "fits" is necessary but not sufficient: the training simulator's per-plan memory check
(activations, pipeline in-flight micro-batches, uneven stages) is the exact answer for a plan.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import gpus
import moe

#: Recipes reported by ``fit``: all weights BF16; DeepSeek-V3's FP8 recipe; V4's FP4 experts.
RECIPES: tuple[str, ...] = ("bf16", "fp8", "fp4_experts")


@dataclass(frozen=True)
class RecipeFit:
    """Bytes per GPU for one precision recipe, with every byte spread evenly over the GPUs."""

    recipe: str
    weights_bytes_per_gpu: float
    training_state_bytes_per_gpu: float  # weights + gradients + optimizer moments + master weights
    serving_fits: bool
    training_fits: bool
    kv_bytes_free_per_gpu: float  # HBM left for KV cache after weights and the reserve
    max_sequences_at_context: int  # whole deployment, each holding context_len tokens of KV


@dataclass(frozen=True)
class FitReport:
    """What ``fit`` found; sizes in bytes, per GPU unless named otherwise."""

    model: str
    gpu: str
    nodes: int
    gpus_per_node: int
    num_gpus: int
    hbm_bytes_per_gpu: float
    reserve_fraction: float
    context_len: int
    kv_dtype: str
    kv_bytes_per_token: float
    kv_bytes_per_sequence: float
    total_params: int
    active_params: int
    recipes: tuple[RecipeFit, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["recipes"] = [asdict(r) for r in self.recipes]
        return data


def _check_count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a whole number of at least 1, got {value!r}")
    return value


def fit(
    model: str | moe.MoEModel,
    gpu: str | gpus.GPUProfile,
    nodes: int = 1,
    gpus_per_node: int | None = None,
    context_len: int = 4096,
    kv_dtype: str = "bf16",
    reserve_fraction: float = 0.1,
) -> FitReport:
    """Capacity check of ``model`` on ``nodes`` x ``gpus_per_node`` GPUs.

    ``reserve_fraction`` is the share of each GPU's HBM kept back for the CUDA context, allocator
    fragmentation, activations and workspaces (a user assumption, default 10%); the rest holds
    weights, training state or KV cache.
    """
    model_obj = moe.get(model)
    profile = gpus.get(gpu)
    nodes = _check_count(nodes, "nodes")
    per_node = (
        profile.node.gpus_per_node if gpus_per_node is None else _check_count(gpus_per_node, "gpus_per_node")
    )
    context_len = _check_count(context_len, "context_len")
    if not (isinstance(reserve_fraction, (int, float)) and 0.0 <= reserve_fraction < 1.0):
        raise ValueError(f"reserve_fraction must be in [0, 1), got {reserve_fraction!r}")
    num_gpus = nodes * per_node
    usable = profile.hbm_bytes * (1.0 - reserve_fraction)
    kv_per_token = float(model_obj.kv_cache_bytes_per_token(dtype=kv_dtype, context_len=context_len))
    kv_per_sequence = kv_per_token * context_len
    results = []
    for recipe in RECIPES:
        memory = model_obj.memory_bytes(recipe)
        weights = memory.weights_bytes / num_gpus
        state = (
            memory.weights_bytes
            + memory.gradients_bytes
            + memory.optimizer_bytes
            + memory.master_weights_bytes
        ) / num_gpus
        free = max(0.0, usable - weights)
        max_seqs = math.floor(free * num_gpus / kv_per_sequence) if kv_per_sequence > 0 else 0
        results.append(
            RecipeFit(
                recipe=recipe,
                weights_bytes_per_gpu=weights,
                training_state_bytes_per_gpu=state,
                serving_fits=weights <= usable,
                training_fits=state <= usable,
                kv_bytes_free_per_gpu=free,
                max_sequences_at_context=max_seqs,
            )
        )
    return FitReport(
        model=model_obj.name,
        gpu=profile.name,
        nodes=nodes,
        gpus_per_node=per_node,
        num_gpus=num_gpus,
        hbm_bytes_per_gpu=profile.hbm_bytes,
        reserve_fraction=float(reserve_fraction),
        context_len=context_len,
        kv_dtype=kv_dtype,
        kv_bytes_per_token=kv_per_token,
        kv_bytes_per_sequence=kv_per_sequence,
        total_params=model_obj.total_params,
        active_params=model_obj.active_params,
        recipes=tuple(results),
    )
